"""Writers that commit out of position order, for the feed's never-skip tests (invariant 5).

Fast writers append batches of submissions, each its own transaction; a slow writer
takes its transaction id first and commits only after two more fast commits, so
commits land out of (txid, position) order.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg

from ledger import commands, store
from ledger import events as ev
from tests import factories

BATCH = 30


def batch(actor: str) -> list[ev.JobEvent]:
    """BATCH submissions of new jobs by `actor`."""
    now = datetime.now(UTC)
    events: list[ev.JobEvent] = []
    for _ in range(BATCH):
        events += commands.decide(
            None, factories.submit_command(), job_id=uuid.uuid4(), actor=actor, now=now
        )
    return events


class Writers:
    """`fast` writers of `fast_rounds` batches each, and one slow writer of `slow_rounds`."""

    def __init__(self, event_store: store.EventStore, fast_rounds: int, slow_rounds: int) -> None:
        self.store = event_store
        self.fast_rounds = fast_rounds
        self.slow_rounds = slow_rounds
        self._fast_commits = 0
        self._progressed = asyncio.Condition()

    def total(self, fast_writers: int) -> int:
        """How many events `run` with `fast_writers` fast connections appends."""
        return (fast_writers * self.fast_rounds + self.slow_rounds) * BATCH

    async def run(self, fast: list[asyncpg.Connection], slow: asyncpg.Connection) -> None:
        """All the writers at once, until each has appended its batches."""
        await asyncio.gather(
            *(self._fast(c, f"fast{i}") for i, c in enumerate(fast)),
            self._slow(slow, len(fast) * self.fast_rounds),
        )

    async def _fast(self, conn: asyncpg.Connection, name: str) -> None:
        for _ in range(self.fast_rounds):
            await self.store.append(conn, batch(name))
            async with self._progressed:
                self._fast_commits += 1
                self._progressed.notify_all()

    async def _slow(self, conn: asyncpg.Connection, fast_total: int) -> None:
        for _ in range(self.slow_rounds):
            async with conn.transaction():
                await conn.fetchval("SELECT pg_current_xact_id()")
                await self.store.append(conn, batch("slow"))
                async with self._progressed:
                    target = min(self._fast_commits + 2, fast_total)
                    while self._fast_commits < target:
                        await self._progressed.wait()
