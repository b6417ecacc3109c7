"""Where a job is claimed: due jobs handed to one worker, each with a lease.

`claim` takes up to `limit` runnable jobs of the worker's types that are due now, in
claim order and within their queues' settings, in one transaction. The database
picks them (`jobs_claim`: the function `jobs_claim_next`, sql/0059, with
`FOR UPDATE SKIP LOCKED`), so concurrent claimers never take the same job; each
claimed job gets one job.claimed.v1, the worker's id as actor, appended through the
event store. A job of a queue with settings records the version of those settings
it was claimed under (`queue_version`): with the queue's own events, the ledger says
which limits applied while it waited. Likewise a job of a tenant with settings records
their version (`tenant_version`, sql/0070): the claim is fair across tenants, within
each tenant's `max_running` and in proportion to its `weight`. A worker's reserve of
slots is claimed with `quiet`: only tenants without a backlog (sql/0079).
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import msgspec

from ledger import commands, lifecycle, sqlfile, store
from projections import current

Q = sqlfile.load("workers")


async def claim(
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    *,
    worker_id: str,
    lease_seconds: float,
    types: Sequence[str],
    limit: int,
    quiet: int | None = None,
) -> list[lifecycle.JobState]:
    """Claim up to `limit` due jobs of `types` in one transaction; their states after the claim.

    `quiet`: only jobs of tenants whose processing and due jobs together number at
    most `quiet` (`jobs_claim_quiet`, sql/0079), for a worker's reserve of slots.
    """
    plain = commands.ClaimJob(worker_id=worker_id, lease_seconds=lease_seconds)
    async with conn.transaction():
        if quiet is None:
            rows = await conn.fetch(Q["jobs_claim"], limit, list(types))
        else:
            rows = await conn.fetch(Q["jobs_claim_quiet"], limit, list(types), quiet)
        if not rows:
            return []
        now = event_store.clock()
        states = [current.state_from_row(row) for row in rows]
        decided = [
            event
            for state, row in zip(states, rows, strict=True)
            for event in commands.decide(
                state,
                plain
                if row["queue_version"] is None and row["tenant_version"] is None
                else msgspec.structs.replace(
                    plain,
                    queue_version=row["queue_version"],
                    tenant_version=row["tenant_version"],
                ),
                job_id=state.job_id,
                actor=worker_id,
                now=now,
            )
        ]
        recorded = await event_store.append(conn, decided, before={s.job_id: s for s in states})
    return [lifecycle.evolve(s, r.event) for s, r in zip(states, recorded, strict=True)]
