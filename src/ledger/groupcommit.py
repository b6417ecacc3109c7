"""Group commit: concurrent appends share one transaction, each caller answered after its commit.

Callers hand their events to `append` and wait. One flusher task at a time takes
everything queued, appends it through the event store in one transaction (one
durable commit for all), and then resolves every caller with its own recorded
events. Nobody is answered before the commit that made their events durable.
If the shared append fails, each caller's events are appended alone, so one bad
submission cannot fail the others; each caller gets its own outcome or error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Final

import asyncpg

from ledger import db, errors, store
from ledger import events as ev

MAX_EVENTS: Final = 1000
_APPEND_ERRORS: Final = (asyncpg.PostgresError, errors.LedgerError, OSError)

_Waiter = tuple[Sequence[ev.JobEvent], "asyncio.Future[list[store.Recorded]]"]


class GroupCommit:
    """Appends from many concurrent callers, batched into shared transactions."""

    def __init__(self, pool: asyncpg.Pool, event_store: store.EventStore) -> None:
        self._pool = pool
        self._store = event_store
        self._queue: list[_Waiter] = []
        self._flusher: asyncio.Task[None] | None = None

    async def append(self, events: Sequence[ev.JobEvent]) -> list[store.Recorded]:
        """Append `events` (in a transaction shared with concurrent callers); after the commit."""
        done: asyncio.Future[list[store.Recorded]] = asyncio.get_running_loop().create_future()
        self._queue.append((events, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._drain(), name="ledger-group-commit")
        return await done

    async def _drain(self) -> None:
        await asyncio.sleep(0)  # let the requests of this loop turn join the first batch
        while self._queue:
            batch: list[_Waiter] = []
            count = 0
            while self._queue and (not batch or count + len(self._queue[0][0]) <= MAX_EVENTS):
                waiter = self._queue.pop(0)
                batch.append(waiter)
                count += len(waiter[0])
            try:
                await self._flush(batch)
            except BaseException as exc:
                # Whatever stopped this flush (a lost connection, shutdown): no caller
                # may wait forever. Each waiter in the batch gets the error.
                _fail(batch, exc)
                if not isinstance(exc, Exception):
                    _fail(self._queue, exc)
                    self._queue.clear()
                    raise

    async def _flush(self, batch: list[_Waiter]) -> None:
        try:
            async with db.acquire(self._pool) as conn:
                recorded = await self._store.append(
                    conn, [e for events, _ in batch for e in events]
                )
        except _APPEND_ERRORS:
            if len(batch) == 1:
                await self._alone(batch[0])
                return
            for waiter in batch:  # someone's events broke the shared append: each on its own
                await self._alone(waiter)
            return
        by_key = {(r.event.job_id.int, r.event.version): r for r in recorded}
        for events, done in batch:
            if not done.done():
                done.set_result([by_key[(e.job_id.int, e.version)] for e in events])

    async def _alone(self, waiter: _Waiter) -> None:
        events, done = waiter
        try:
            async with db.acquire(self._pool) as conn:
                recorded = await self._store.append(conn, events)
        except _APPEND_ERRORS as exc:
            if not done.done():
                done.set_exception(exc)
            return
        if not done.done():
            done.set_result(recorded)


def _fail(waiters: list[_Waiter], exc: BaseException) -> None:
    error = exc if isinstance(exc, Exception) else errors.LedgerError("the append was interrupted")
    for _, done in waiters:
        if not done.done():
            done.set_exception(error)
