"""Heartbeats, live slots and lease recovery against the real database (no worker processes)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from ledger import commands, store
from ledger import events as ev
from projections import current, rebuild, status
from tests import factories
from tests.conftest import Databases
from workers import leases


async def _age_heartbeat(conn: asyncpg.Connection, worker_id: str, seconds: float) -> None:
    await conn.execute(
        "UPDATE worker_processes SET heartbeat_at = now() - make_interval(secs => $2) "
        "WHERE worker_id = $1",
        worker_id,
        seconds,
    )


async def test_live_slots_count_fresh_heartbeats_only(conn: asyncpg.Connection) -> None:
    assert await status.workers_alive(conn) == 0
    a = leases.this_process(slots=5, lease_seconds=30)
    b = leases.this_process(slots=3, lease_seconds=30)
    await leases.register(conn, a)
    await leases.register(conn, b)
    assert await status.workers_alive(conn) == 8

    await _age_heartbeat(conn, b.worker_id, 31)
    assert await status.workers_alive(conn) == 5

    await leases.heartbeat(conn, b)
    assert await status.workers_alive(conn) == 8

    await leases.unregister(conn, a.worker_id)
    assert await status.workers_alive(conn) == 3


async def test_heartbeat_brings_back_a_pruned_worker(conn: asyncpg.Connection) -> None:
    worker = leases.this_process(slots=2, lease_seconds=10)
    await leases.register(conn, worker)
    await _age_heartbeat(conn, worker.worker_id, leases.FORGET_AFTER_SECONDS + 1)
    await leases.prune(conn)
    assert await status.workers_alive(conn) == 0
    await leases.heartbeat(conn, worker)
    assert await status.workers_alive(conn) == 2


def _past_clock(seconds: float) -> store.Clock:
    def clock() -> datetime:
        return datetime.now(UTC) - timedelta(seconds=seconds)

    return clock


async def _claim_in_the_past(
    conn: asyncpg.Connection, job_id: uuid.UUID, worker_id: str, *, ago: float, lease: float
) -> None:
    past = store.EventStore(clock=_past_clock(ago))
    await past.execute(
        conn, job_id, commands.ClaimJob(worker_id=worker_id, lease_seconds=lease), actor=worker_id
    )


async def test_expired_lease_is_recorded_as_a_failed_attempt(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    job_id = await factories.submit(
        event_store, conn, max_attempts=3, backoff_base_seconds=2, backoff_cap_seconds=60
    )
    await _claim_in_the_past(conn, job_id, "dead-worker", ago=60, lease=30)

    before = datetime.now(UTC)
    recovered = await leases.recover_expired(conn, event_store, actor="recovery:test")

    assert recovered == [job_id]
    history = await event_store.history(conn, job_id)
    expired = history[-1].event
    assert isinstance(expired, ev.JobLeaseExpired)
    assert expired.worker_id == "dead-worker"
    assert expired.actor == "recovery:test"
    assert expired.next_attempt_at is not None
    # Attempt 1 draws between base/2 and base, at a moment between `before` and the
    # expiry's recording.
    assert (expired.next_attempt_at - before).total_seconds() >= 1.0
    assert (expired.next_attempt_at - expired.occurred_at).total_seconds() <= 2.0
    row = await current.get(conn, job_id)
    assert row is not None and (row.status, row.attempt) == ("retrying", 1)
    assert await leases.recover_expired(conn, event_store, actor="recovery:test") == []
    assert await rebuild.verify(conn) == []


async def test_expired_lease_on_the_last_attempt_fails_the_job(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    job_id = await factories.submit(event_store, conn, max_attempts=1)
    await _claim_in_the_past(conn, job_id, "dead-worker", ago=60, lease=30)
    assert await leases.recover_expired(conn, event_store, actor="recovery:test") == [job_id]
    row = await current.get(conn, job_id)
    assert row is not None and row.status == "failed"
    assert row.error is not None and "lease expired" in row.error


async def test_renewed_lease_keeps_the_attempt_alive(
    conn: asyncpg.Connection, admin_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    worker = leases.this_process(slots=1, lease_seconds=30)
    await leases.register(conn, worker)
    job_id = await factories.submit(event_store, conn)
    await _claim_in_the_past(conn, job_id, worker.worker_id, ago=60, lease=30)
    assert await admin_conn.fetchval("SELECT count(*) FROM job_leases") == 0  # a claim writes none

    await leases.heartbeat(conn, worker, [job_id])

    assert await leases.recover_expired(conn, event_store, actor="recovery:test") == []
    assert (
        await admin_conn.fetchval("SELECT attempt FROM job_leases WHERE job_id = $1", job_id) == 1
    )
    row = await current.get(conn, job_id)
    assert row is not None and row.status == "processing"


async def test_a_renewal_of_another_attempt_does_not_count(
    conn: asyncpg.Connection, admin_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    worker = leases.this_process(slots=1, lease_seconds=30)
    job_id = await factories.submit(event_store, conn)
    await _claim_in_the_past(conn, job_id, worker.worker_id, ago=60, lease=30)
    # A lease row left over from some other attempt number renews nothing.
    await admin_conn.execute(
        "INSERT INTO job_leases (job_id, worker_id, attempt, lease_until)"
        " VALUES ($1, $2, 7, now() + interval '1 hour')",
        job_id,
        worker.worker_id,
    )
    assert await leases.recover_expired(conn, event_store, actor="recovery:test") == [job_id]


async def test_one_notification_per_committing_transaction(
    dbs: Databases, conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    received: asyncio.Queue[str] = asyncio.Queue()

    def on_notify(_c: object, _pid: int, channel: str, payload: str) -> None:
        received.put_nowait(f"{channel}:{payload}")

    listener = await asyncpg.connect(dbs.app)
    try:
        await listener.add_listener("ledger_jobs", on_notify)
        async with conn.transaction():
            for _ in range(5):
                await factories.submit(event_store, conn)
        # The doorbell names the tenant with new runnable jobs (sql/0084), once.
        assert await asyncio.wait_for(received.get(), timeout=10) == "ledger_jobs:tenant:default"
        await listener.fetchval("SELECT 1")  # any pending notification arrives before this answers
        await asyncio.sleep(0)
        assert received.empty()
    finally:
        await listener.close()


async def test_cancelling_a_running_job_notifies_its_id(
    dbs: Databases, conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    received: asyncio.Queue[str] = asyncio.Queue()

    def on_notify(_c: object, _pid: int, _channel: str, payload: str) -> None:
        received.put_nowait(payload)

    job_id = await factories.submit(event_store, conn)
    await event_store.execute(
        conn, job_id, commands.ClaimJob(worker_id="w", lease_seconds=30), actor="w"
    )
    listener = await asyncpg.connect(dbs.app)
    try:
        await listener.add_listener("ledger_cancel", on_notify)
        await event_store.execute(conn, job_id, commands.CancelJob(reason="stop"), actor="alice")
        assert await asyncio.wait_for(received.get(), timeout=10) == str(job_id)
    finally:
        await listener.close()


async def test_a_heartbeat_renews_only_the_attempts_still_running(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    worker = leases.this_process(slots=2, lease_seconds=30)
    await leases.register(conn, worker)
    running = await factories.submit(event_store, conn)
    abandoned = await factories.submit(event_store, conn)
    for job_id in (running, abandoned):
        await _claim_in_the_past(conn, job_id, worker.worker_id, ago=60, lease=30)

    await leases.heartbeat(conn, worker, [running])

    assert await leases.recover_expired(conn, event_store, actor="recovery:test") == [abandoned]


async def test_the_claim_walks_the_due_index_even_when_statistics_say_the_queue_is_empty(
    admin_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    # Statistics taken while the queue was empty, then a burst of submissions: the
    # planner believes one row is runnable. The claim must still stop at its limit in
    # index order rather than sort every runnable job.
    await admin_conn.execute("ANALYZE jobs")
    now = datetime.now(UTC)
    burst = [
        e
        for _ in range(5000)
        for e in commands.decide(
            None, factories.submit_command(), job_id=uuid.uuid4(), actor="bulk", now=now
        )
    ]
    await event_store.append(admin_conn, burst)
    body, config = await admin_conn.fetchrow(
        "SELECT prosrc, proconfig FROM pg_proc WHERE proname = 'jobs_claimable'"
    )
    async with admin_conn.transaction():
        for setting in config:
            name, value = setting.split("=", 1)
            await admin_conn.execute(f"SET LOCAL {name} = {value}")
        await admin_conn.execute(
            f"PREPARE claim_plan (integer, text[]) AS {body.replace('max_jobs', '$1').replace('job_types', '$2')}"
        )
        plan = "\n".join(
            r[0] for r in await admin_conn.fetch("EXPLAIN EXECUTE claim_plan(10, '{noop}')")
        )
        await admin_conn.execute("DEALLOCATE claim_plan")
    assert "Index Scan using jobs_due_idx" in plan, plan
    assert "Sort" not in plan, plan
