"""The claim the database records in one statement (`jobs_claim_recorded`, sql/0084) is
the event `commands.decide` gives a `ClaimJob` for the same job, settings and time."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit import chains
from ledger import acting, commands, errors, queues, store, tenants, wire
from ledger import events as ev
from tests import factories
from tests.conftest import IN_DEFAULT, Databases
from workers import claims, outcomes

WORKER = "w-claims"


async def _fail_and_retry_now(
    conn: asyncpg.Connection, event_store: store.EventStore, job_type: str
) -> None:
    """Claim the job of `job_type` and fail its attempt, retried at once."""
    (state,) = await claims.claim(
        conn, event_store, worker_id=WORKER, lease_seconds=30, types=[job_type], limit=1
    )
    failed = commands.FailAttempt(
        worker_id=WORKER, error="boom", permanent=False, retry_delay=timedelta(0)
    )
    await outcomes.record_as_claimed(conn, event_store, WORKER, [outcomes.Outcome(state, failed)])


async def _claimed_as_decided(
    dbs: Databases, *, tenant: str, failed: int, lease: float, queue_settings: bool
) -> tuple[ev.JobEvent, ev.JobEvent, bool]:
    event_store = store.EventStore()
    job_type = f"t{uuid.uuid4().hex[:12]}"  # this example's job alone is claimable
    queue = f"q{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(dbs.app, server_settings=IN_DEFAULT)
    worker = await asyncpg.connect(dbs.app, server_settings={"timezone": "UTC"})
    try:
        if queue_settings:
            async with conn.transaction():
                await acting.act_in(conn, tenant)
                await queues.configure(conn, event_store, queue, wire.QueueSettings(), actor="ops")
        async with conn.transaction():
            await acting.act_in(conn, tenant)
            job_id = await factories.submit(
                event_store, conn, job_type=job_type, queue=queue, max_attempts=failed + 1
            )
        for _ in range(failed):
            await _fail_and_retry_now(worker, event_store, job_type)
        async with conn.transaction():
            await acting.act_in(conn, tenant)
            before = await event_store.load(conn, job_id)
            queue_state = await queues.current(conn, queue)
            tenant_state = await tenants.current(conn)
        (after,) = await claims.claim(
            worker, event_store, worker_id=WORKER, lease_seconds=lease, types=[job_type], limit=5
        )
        async with conn.transaction():
            await acting.act_in(conn, tenant)
            history = await event_store.history(conn, job_id)
            folded = await event_store.load(conn, job_id)
        stored = history[-1].event
        assert before is not None
        (decided,) = commands.decide(
            before,
            commands.ClaimJob(
                worker_id=WORKER,
                lease_seconds=lease,
                queue_version=queue_state.version if queue_state else None,
                tenant_version=tenant_state.version or None,
            ),
            job_id=job_id,
            actor=WORKER,
            now=stored.occurred_at,
        )
        return stored, decided, after == folded and (await chains.verify(conn)).ok
    finally:
        await conn.close()
        await worker.close()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    tenant=st.sampled_from(["default", "acme"]),
    failed=st.integers(0, 2),
    lease=st.integers(1, 10**7).map(lambda ms: ms / 1000),
    queue_settings=st.booleans(),
)
def test_the_recorded_claim_is_the_event_the_python_decider_gives(
    dbs: Databases, tenant: str, failed: int, lease: float, queue_settings: bool
) -> None:
    stored, decided, consistent = asyncio.run(
        _claimed_as_decided(
            dbs, tenant=tenant, failed=failed, lease=lease, queue_settings=queue_settings
        )
    )
    assert isinstance(stored, ev.JobClaimed) and isinstance(decided, ev.JobClaimed)
    # The lease runs from when the jobs were claimed, a moment before the append's time.
    assert msgspec.structs.replace(decided, lease_until=stored.lease_until) == stored
    early = decided.lease_until - stored.lease_until
    assert timedelta(0) <= early < timedelta(seconds=1)
    assert stored.attempt == failed + 1
    assert consistent


async def test_a_tenant_with_settings_has_its_version_in_the_claim(
    conn: asyncpg.Connection,
    worker_conn: asyncpg.Connection,
    event_store: store.EventStore,
) -> None:
    await tenants.configure(conn, event_store, "acme", {"weight": 3}, actor="ops")
    async with conn.transaction():
        await acting.act_in(conn, "acme")
        job_id = await factories.submit(event_store, conn)
    (claimed,) = await claims.claim(
        worker_conn, event_store, worker_id=WORKER, lease_seconds=30, types=["noop"], limit=9
    )
    assert claimed.job_id == job_id and claimed.status == "processing"
    async with conn.transaction():
        await acting.act_in(conn, "acme")
        history = await event_store.history(conn, job_id)
    event: Any = history[-1].event
    assert isinstance(event, ev.JobClaimed)
    assert (event.tenant_version, event.queue_version, event.attempt) == (1, None, 1)


async def test_nothing_due_records_nothing(
    worker_conn: asyncpg.Connection, admin_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    before = await admin_conn.fetchval("SELECT count(*) FROM events")
    assert (
        await claims.claim(
            worker_conn, event_store, worker_id=WORKER, lease_seconds=30, types=["noop"], limit=9
        )
        == []
    )
    assert await admin_conn.fetchval("SELECT count(*) FROM events") == before


async def test_a_claim_that_loses_a_deadlock_is_a_claim_race_and_claims_nothing(
    conn: asyncpg.Connection,
    worker_conn: asyncpg.Connection,
    admin_conn: asyncpg.Connection,
    event_store: store.EventStore,
) -> None:
    job_type = f"t{uuid.uuid4().hex[:12]}"
    queue = f"q{uuid.uuid4().hex[:8]}"
    await queues.configure(
        conn, event_store, queue, wire.QueueSettings(fairness="round_robin"), actor="ops"
    )
    jobs = [
        await factories.submit(
            event_store, conn, job_type=job_type, queue=queue, concurrency_key=key
        )
        for key in ("a", "b")
    ]
    other = admin_conn
    holding = other.transaction()
    await holding.start()
    # Another transaction writes key a's turn first (not yet committed) ...
    await other.execute(
        "INSERT INTO queue_key_turns (tenant, queue, concurrency_key, served_at) "
        "VALUES ('default', $1, 'a', now())",
        queue,
    )
    # ... the claim locks both jobs' rows, then waits to write the keys' turns ...
    claiming = asyncio.ensure_future(
        claims.claim(
            worker_conn, event_store, worker_id=WORKER, lease_seconds=30, types=[job_type], limit=2
        )
    )
    for _ in range(500):
        if await conn.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted"):
            break
        await asyncio.sleep(0.01)
    # ... and the other transaction waits for a row the claim holds: a deadlock, which
    # the database breaks by failing the claim (it waited first).
    locking = asyncio.ensure_future(
        other.execute("SELECT 1 FROM jobs WHERE job_id = $1 FOR UPDATE", jobs[0])
    )
    with pytest.raises(errors.ClaimRaced, match="deadlock"):
        await claiming
    await locking
    await holding.rollback()
    # Nothing was claimed: a claim now takes both jobs at their first attempt.
    claimed = await claims.claim(
        worker_conn, event_store, worker_id=WORKER, lease_seconds=30, types=[job_type], limit=2
    )
    assert sorted((c.job_id, c.version, c.attempt) for c in claimed) == sorted(
        (j, 2, 1) for j in jobs
    )
