"""Group commit: concurrent appends share one transaction, each caller answered after its commit.

Callers hand their events to `append` and wait. One flush at a time takes
everything queued, appends it through the event store in one transaction (one
durable commit for all), and then resolves every caller with its own recorded
events. Nobody is answered before the commit that made their events durable.
If the shared append fails, each caller's events are appended alone, so one bad
submission cannot fail the others; each caller gets its own outcome or error.

Each tenant has its own queue of callers: a flush appends one tenant's events, in a
transaction acting in that tenant (`acting.act_in`); the default tenant's flush is
the one statement it always was (a transaction naming no tenant appends in `default`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import asyncpg

from ledger import acting, batching, db, errors, store, tenancy
from ledger import events as ev

MAX_EVENTS: Final = 1000
_APPEND_ERRORS: Final = (asyncpg.PostgresError, errors.LedgerError, OSError)


class GroupCommit:
    """Appends from many concurrent callers, batched into shared transactions per tenant."""

    def __init__(self, pool: asyncpg.Pool, event_store: store.EventStore) -> None:
        self._pool = pool
        self._store = event_store
        self._batchers: dict[
            str, batching.Batcher[Sequence[ev.JobEvent], list[store.Recorded]]
        ] = {}

    async def append(
        self, events: Sequence[ev.JobEvent], *, tenant: str = tenancy.DEFAULT
    ) -> list[store.Recorded]:
        """Append `events` in `tenant` (in a transaction shared with concurrent callers of
        that tenant); after the commit."""
        batcher = self._batchers.get(tenant)
        if batcher is None:
            batcher = self._batchers[tenant] = self._batcher_for(tenancy.checked(tenant))
        return await batcher.submit(events)

    def _batcher_for(
        self, tenant: str
    ) -> batching.Batcher[Sequence[ev.JobEvent], list[store.Recorded]]:
        async def flush(batch: Sequence[Sequence[ev.JobEvent]]) -> list[list[store.Recorded]]:
            recorded = await self._append(tenant, [e for events in batch for e in events])
            by_key = {(r.event.job_id.int, r.event.version): r for r in recorded}
            return [[by_key[(e.job_id.int, e.version)] for e in events] for events in batch]

        async def alone(events: Sequence[ev.JobEvent]) -> list[store.Recorded]:
            return await self._append(tenant, events)

        return batching.Batcher(
            flush,
            alone,
            limit=MAX_EVENTS,
            size=len,
            fallback_on=_APPEND_ERRORS,
            name=f"ledger-group-commit-{tenant}",
        )

    async def _append(self, tenant: str, events: Sequence[ev.JobEvent]) -> list[store.Recorded]:
        async with db.acquire(self._pool) as conn:
            if tenant == tenancy.DEFAULT:
                return await self._store.append(conn, events)
            async with conn.transaction():
                await acting.act_in(conn, tenant)
                return await self._store.append(conn, events)
