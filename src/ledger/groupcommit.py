"""Group commit: concurrent appends share one transaction, each caller answered after its commit.

Callers hand their events to `append` and wait. One flush at a time takes
everything queued, appends it through the event store in one transaction (one
durable commit for all), and then resolves every caller with its own recorded
events. Nobody is answered before the commit that made their events durable.
If the shared append fails, each caller's events are appended alone, so one bad
submission cannot fail the others; each caller gets its own outcome or error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import asyncpg

from ledger import batching, db, errors, store
from ledger import events as ev

MAX_EVENTS: Final = 1000
_APPEND_ERRORS: Final = (asyncpg.PostgresError, errors.LedgerError, OSError)


class GroupCommit:
    """Appends from many concurrent callers, batched into shared transactions."""

    def __init__(self, pool: asyncpg.Pool, event_store: store.EventStore) -> None:
        self._pool = pool
        self._store = event_store
        self._batcher: batching.Batcher[Sequence[ev.JobEvent], list[store.Recorded]] = (
            batching.Batcher(
                self._flush,
                self._alone,
                limit=MAX_EVENTS,
                size=len,
                fallback_on=_APPEND_ERRORS,
                name="ledger-group-commit",
            )
        )

    async def append(self, events: Sequence[ev.JobEvent]) -> list[store.Recorded]:
        """Append `events` (in a transaction shared with concurrent callers); after the commit."""
        return await self._batcher.submit(events)

    async def _flush(self, batch: Sequence[Sequence[ev.JobEvent]]) -> list[list[store.Recorded]]:
        async with db.acquire(self._pool) as conn:
            recorded = await self._store.append(conn, [e for events in batch for e in events])
        by_key = {(r.event.job_id.int, r.event.version): r for r in recorded}
        return [[by_key[(e.job_id.int, e.version)] for e in events] for events in batch]

    async def _alone(self, events: Sequence[ev.JobEvent]) -> list[store.Recorded]:
        async with db.acquire(self._pool) as conn:
            return await self._store.append(conn, events)
