"""Where a job is claimed: due jobs handed to one worker, each with a lease.

`claim` takes up to `limit` runnable jobs of the worker's types that are due now, in
claim order and within their queues' settings, and records their claims, in one
statement (`jobs_claim_recorded`, sql/0084): its own transaction, one round trip. The
database picks the jobs (`jobs_claim`, with `FOR UPDATE SKIP LOCKED`), so concurrent
claimers never take the same job, and appends each one job.claimed.v1 through the one
append (`events_append`), the worker's id as actor: the attempt after the job's last,
a lease of `lease_seconds` from when the jobs were claimed. A job of a queue with settings
records the version of those settings it was claimed under (`queue_version`): with
the queue's own events, the ledger says which limits applied while it waited.
Likewise a job of a tenant with settings records their version (`tenant_version`,
sql/0070): the claim is fair across tenants, within each tenant's `max_running` and
in proportion to its `weight`. A worker's reserve of slots is claimed with `quiet`:
only tenants without a backlog (sql/0079), or one concurrency key without a backlog
in a round-robin queue (`key`, sql/0087).

The event is the one `commands.decide` gives a `ClaimJob` (a property test holds the
two to the same event); the database, which holds the row locks, writes it without a
round trip back to this process in between.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import msgspec

from ledger import errors, lifecycle, sqlfile, store
from ledger import events as ev
from projections import current

Q = sqlfile.load("workers")


class QuietKey(msgspec.Struct, frozen=True):
    """A concurrency key of a queue of a tenant, whose new jobs the doorbell named."""

    tenant: str
    queue: str
    key: str


async def claim(
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    *,
    worker_id: str,
    lease_seconds: float,
    types: Sequence[str],
    limit: int,
    quiet: int | None = None,
    tenant: str | None = None,
    key: QuietKey | None = None,
) -> list[lifecycle.JobState]:
    """Claim up to `limit` due jobs of `types` and record the claims; their states after.

    `quiet`: only jobs of tenants whose processing and due jobs together number at
    most `quiet` (`jobs_claim_quiet`, sql/0079), for a worker's reserve of slots;
    `tenant` (with `quiet`): only that tenant's, if it is quiet (`jobs_claim_quiet_in`);
    `key` (with `quiet`, instead of `tenant`): only that key's, if it has no backlog, in a
    round-robin queue, else its tenant's if quiet (`jobs_claim_quiet_key`).
    """
    if quiet is None:
        tenant, key = None, None
    elif key is not None:
        tenant = key.tenant
    try:
        rows = await conn.fetch(
            Q["jobs_claim_recorded"],
            worker_id,
            lease_seconds,
            limit,
            list(types),
            quiet,
            tenant,
            key.queue if key is not None else None,
            key.key if key is not None else None,
        )
    except asyncpg.DeadlockDetectedError as exc:
        raise errors.ClaimRaced(str(exc)) from exc
    if not rows:
        return []
    states = [current.state_from_row(row) for row in rows]
    recorded = [
        recorded_claim(state, row, worker_id) for state, row in zip(states, rows, strict=True)
    ]
    await event_store.project(conn, recorded, before={s.job_id: s for s in states})
    return [lifecycle.evolve(s, r.event) for s, r in zip(states, recorded, strict=True)]


def recorded_claim(
    state: lifecycle.JobState, row: asyncpg.Record, worker_id: str
) -> store.Recorded:
    """The claim the database appended for `state` (the job before it), as recorded."""
    event = ev.JobClaimed(
        job_id=state.job_id,
        version=state.version + 1,
        actor=worker_id,
        occurred_at=row["occurred_at"],
        worker_id=worker_id,
        attempt=state.attempt + 1,
        lease_until=row["lease_until"],
        queue_version=row["queue_version"],
        tenant_version=row["tenant_version"],
    )
    return store.Recorded(
        position=row["position"],
        txid=row["txid"],
        prev_hash=row["prev_hash"],
        hash=row["hash"],
        event=event,
        tenant=state.tenant,
    )
