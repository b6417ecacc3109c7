"""Small ledgers for the audit tests, and the ways a hostile superuser can tamper with them."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg

from audit import signing
from ledger import commands, store
from tests import factories


async def run_job(event_store: store.EventStore, conn: asyncpg.Connection, n: int) -> uuid.UUID:
    """A job submitted, claimed and completed: three events in three transactions."""
    job_id = await factories.submit(event_store, conn, payload={"n": n})
    await event_store.execute(
        conn, job_id, commands.ClaimJob(worker_id="w1", lease_seconds=30), actor="worker:w1"
    )
    await event_store.execute(
        conn, job_id, commands.CompleteJob(worker_id="w1", result={"n": n}), actor="worker:w1"
    )
    return job_id


async def ledger_of(
    event_store: store.EventStore, conn: asyncpg.Connection, jobs: int
) -> list[uuid.UUID]:
    return [await run_job(event_store, conn, n) for n in range(jobs)]


def signer(tmp_path: Path, name: str = "audit.pem") -> signing.Signer:
    return signing.load_or_create(tmp_path / name)


async def as_superuser(admin: asyncpg.Connection, sql: str, *args: object) -> None:
    """Run `sql` with the append-only trigger out of the way, as a hostile DBA would."""
    await admin.execute("SET session_replication_role = replica")
    try:
        await admin.execute(sql, *args)
    finally:
        await admin.execute("SET session_replication_role = DEFAULT")


async def edit_data(admin: asyncpg.Connection, job_id: uuid.UUID, version: int) -> None:
    await as_superuser(
        admin,
        "UPDATE events SET data = jsonb_set(data, '{tampered}', 'true') "
        "WHERE job_id = $1 AND version = $2",
        job_id,
        version,
    )


async def edit_data_rehashed(admin: asyncpg.Connection, job_id: uuid.UUID, version: int) -> None:
    """Edit an event and recompute its hash, so its job's chain still holds (its last event)."""
    await as_superuser(
        admin,
        "UPDATE events SET data = jsonb_set(data, '{tampered}', 'true'), "
        "hash = sha256(prev_hash || event_canonical(type, job_id, version, actor, occurred_at, "
        "jsonb_set(data, '{tampered}', 'true'))) WHERE job_id = $1 AND version = $2",
        job_id,
        version,
    )


async def delete_last_event(admin: asyncpg.Connection, job_id: uuid.UUID) -> int:
    version = await admin.fetchval("SELECT max(version) FROM events WHERE job_id = $1", job_id)
    await as_superuser(
        admin, "DELETE FROM events WHERE job_id = $1 AND version = $2", job_id, version
    )
    return int(version)


async def delete_job(admin: asyncpg.Connection, job_id: uuid.UUID) -> None:
    await as_superuser(admin, "DELETE FROM events WHERE job_id = $1", job_id)


_SELECT_CONTENT = (
    "SELECT job_id, version, type, data, actor, occurred_at, prev_hash, hash "
    "FROM events WHERE position = $1"
)
_SET_CONTENT = (
    "UPDATE events SET (job_id, version, type, data, actor, occurred_at, prev_hash, hash) "
    "= ($2, $3, $4, $5, $6, $7, $8, $9) WHERE position = $1"
)


async def swap_events(admin: asyncpg.Connection, first: int, second: int) -> None:
    """Swap everything but the feed place (position, txid) between two events."""
    a = await admin.fetchrow(_SELECT_CONTENT, first)
    b = await admin.fetchrow(_SELECT_CONTENT, second)
    assert a is not None and b is not None
    await as_superuser(
        admin, "UPDATE events SET job_id = gen_random_uuid() WHERE position = $1", first
    )
    await as_superuser(admin, _SET_CONTENT, second, *a.values())
    await as_superuser(admin, _SET_CONTENT, first, *b.values())


async def truncate_tail(admin: asyncpg.Connection, events: int) -> None:
    await as_superuser(
        admin,
        "DELETE FROM events WHERE position IN "
        "(SELECT position FROM events ORDER BY txid DESC, position DESC LIMIT $1)",
        events,
    )


BULK_SUBMISSION = (
    '{"queue": "default", "run_at": "2026-01-01T00:00:00Z", "payload": {}, "job_type": "noop", '
    '"priority": "normal", "replay_of": null, "max_attempts": 3, "idempotency_key": null, '
    '"timeout_seconds": 300.0, "backoff_cap_seconds": 300.0, "backoff_base_seconds": 1.0}'
)


async def bulk_events(admin: asyncpg.Connection, events: int, per_transaction: int = 5000) -> None:
    """`events` submitted jobs appended through events_append, many to a transaction (fast)."""
    while events > 0:
        n = min(events, per_transaction)
        await admin.execute(
            "SELECT count(*) FROM events_append($1, $2, $3, $4, $5)",
            [uuid.uuid4() for _ in range(n)],
            [1] * n,
            ["job.submitted.v1"] * n,
            ["bench"] * n,
            [BULK_SUBMISSION] * n,
        )
        events -= n
