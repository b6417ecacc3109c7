"""The worker pool in-process against the real database: wake-ups, claims, outcomes, retries, cancel, drain.

Every pool here polls once an hour, so a job that runs did so because of a
NOTIFY, a freed slot or the retry clock, never because of a poll.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from audit import chains
from ledger import commands, embedded, jobtypes, lifecycle, store
from ledger import events as ev
from projections import current, rebuild, status
from tests import factories
from tests.conftest import Databases
from tests.workers.conftest import PoolStarter, eventually
from workers import pool


async def _status(conn: asyncpg.Connection, job_id: uuid.UUID) -> lifecycle.JobState:
    state = await current.get(conn, job_id)
    assert state is not None
    return state


async def _until_status(
    conn: asyncpg.Connection, job_id: uuid.UUID, *statuses: str, within: float = 20
) -> lifecycle.JobState:
    async def probe() -> lifecycle.JobState | None:
        state = await _status(conn, job_id)
        return state if state.status in statuses else None

    return await eventually(probe, within=within)


async def _types(
    event_store: store.EventStore, conn: asyncpg.Connection, job_id: uuid.UUID
) -> list[str]:
    return [ev.type_tag(r.event) for r in await event_store.history(conn, job_id)]


async def _submit_many(
    event_store: store.EventStore, conn: asyncpg.Connection, count: int, **fields: Any
) -> list[uuid.UUID]:
    """`count` jobs submitted in one transaction."""
    now = datetime.now(UTC)
    decided: list[ev.JobEvent] = []
    for _ in range(count):
        job_id = uuid.uuid4()
        decided += commands.decide(
            None, factories.submit_command(**fields), job_id=job_id, actor="alice", now=now
        )
    await event_store.append(conn, decided)
    return [e.job_id for e in decided]


async def test_a_job_submitted_to_an_idle_pool_runs_without_waiting_for_a_poll(
    start_pool: PoolStarter,
    conn: asyncpg.Connection,
    admin_conn: asyncpg.Connection,
    event_store: store.EventStore,
) -> None:
    workers = await start_pool()
    job_id = await factories.submit(event_store, conn, job_type="test.noop", payload={"n": 7})

    done = await _until_status(conn, job_id, "completed")

    assert done.result == {"n": 7, "attempt": 1}
    history = await event_store.history(conn, job_id)
    claimed, completed = history[1].event, history[2].event
    assert isinstance(claimed, ev.JobClaimed) and isinstance(completed, ev.JobCompleted)
    assert (claimed.actor, claimed.worker_id, claimed.attempt) == (workers.worker_id,) * 2 + (1,)
    assert claimed.lease_until > claimed.occurred_at
    assert completed.actor == workers.worker_id
    assert await admin_conn.fetchval("SELECT count(*) FROM job_leases") == 0


async def test_the_listener_may_use_its_own_connection_string(
    start_pool: PoolStarter,
    dbs: Databases,
    admin_conn: asyncpg.Connection,
    conn: asyncpg.Connection,
    event_store: store.EventStore,
) -> None:
    # As behind a transaction-pooling PgBouncer: LISTEN goes straight to the server.
    await start_pool(listen_dsn=dbs.admin)
    roles = await admin_conn.fetch(
        "SELECT DISTINCT application_name, usename FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name LIKE 'job-ledger-%'"
    )
    by_name = {r["application_name"]: r["usename"] for r in roles}
    superuser = await admin_conn.fetchval("SELECT current_user")
    assert by_name["job-ledger-listener"] == superuser
    assert by_name["job-ledger-worker"] != superuser
    job_id = await factories.submit(event_store, conn, job_type="test.noop")
    await _until_status(conn, job_id, "completed")


async def test_a_worker_registers_only_once_it_listens_for_the_doorbell(
    dbs: Databases, registry: jobtypes.Registry, admin_conn: asyncpg.Connection, tmp_path: Path
) -> None:
    # Work submitted after a worker is registered rings it: a doorbell naming a key or a
    # tenant reaches its reserve (the wake on connecting would not name them).
    workers = pool.Pool(
        dbs.app,
        settings=pool.PoolSettings(slots=2, poll_seconds=3600, storage_root=tmp_path),
        registry=registry,
    )
    task = asyncio.create_task(workers.run())
    try:

        async def registered() -> bool:
            return bool(
                await admin_conn.fetchval(
                    "SELECT count(*) FROM worker_processes WHERE worker_id = $1",
                    workers.worker_id,
                )
            )

        await eventually(registered, every=0.001)
        assert workers.listener.connected.is_set()
    finally:
        workers.request_stop()
        await asyncio.wait_for(task, timeout=30)


async def test_a_worker_whose_listener_cannot_connect_starts_anyway_and_polls(
    dbs: Databases,
    registry: jobtypes.Registry,
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pool, "LISTEN_FIRST_SECONDS", 0.2)
    job_id = await factories.submit(event_store, conn, job_type="test.noop")
    nowhere = f"postgresql://nobody@127.0.0.1:{embedded.free_port()}/none"
    workers = pool.Pool(
        dbs.app,
        listen_dsn=nowhere,
        settings=pool.PoolSettings(slots=2, poll_seconds=3600, storage_root=tmp_path),
        registry=registry,
    )
    task = asyncio.create_task(workers.run())
    try:
        await _until_status(conn, job_id, "completed")  # the first claim round took it
        assert not workers.listener.connected.is_set()
    finally:
        workers.request_stop()
        await asyncio.wait_for(task, timeout=30)


async def test_several_free_slots_claim_several_jobs_in_one_transaction(
    start_pool: PoolStarter, conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    job_ids = await _submit_many(event_store, conn, 4, job_type="test.noop")
    await start_pool(slots=4)
    for job_id in job_ids:
        await _until_status(conn, job_id, "completed")
    txids = await conn.fetch(
        "SELECT DISTINCT txid FROM events WHERE type = 'job.claimed.v1' AND job_id = ANY($1)",
        job_ids,
    )
    assert len(txids) == 1


async def test_claims_follow_due_time_then_priority_then_submission(
    start_pool: PoolStarter, conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    due = datetime.now(UTC) - timedelta(minutes=1)
    earlier = await factories.submit(
        event_store, conn, job_type="test.noop", priority="low", run_at=due - timedelta(seconds=1)
    )
    low = await factories.submit(
        event_store, conn, job_type="test.noop", priority="low", run_at=due
    )
    normal_1 = await factories.submit(event_store, conn, job_type="test.noop", run_at=due)
    high = await factories.submit(
        event_store, conn, job_type="test.noop", priority="high", run_at=due
    )
    normal_2 = await factories.submit(event_store, conn, job_type="test.noop", run_at=due)
    await start_pool(slots=1)
    for job_id in (earlier, low, normal_1, high, normal_2):
        await _until_status(conn, job_id, "completed")
    order = await conn.fetch(
        "SELECT job_id FROM events WHERE type = 'job.claimed.v1' ORDER BY position"
    )
    assert [r["job_id"] for r in order] == [earlier, high, normal_1, normal_2, low]


async def test_a_retryable_failure_retries_with_backoff_until_it_succeeds(
    start_pool: PoolStarter, conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await start_pool()
    job_id = await factories.submit(
        event_store,
        conn,
        job_type="test.fail_times",
        payload={"failures": 2},
        max_attempts=3,
        backoff_base_seconds=0.2,
        backoff_cap_seconds=0.3,
    )
    # Only the retry clock (APScheduler) can wake the pool for the later attempts.
    done = await _until_status(conn, job_id, "completed")

    assert done.attempt == 3 and done.result == {"attempt": 3}
    history = await event_store.history(conn, job_id)
    assert [ev.type_tag(r.event) for r in history] == [
        "job.submitted.v1",
        "job.claimed.v1",
        "job.retry_scheduled.v1",
        "job.claimed.v1",
        "job.retry_scheduled.v1",
        "job.claimed.v1",
        "job.completed.v1",
    ]
    for n, (ran, failed, claimed) in enumerate([history[1:4], history[3:6]]):
        assert isinstance(failed.event, ev.JobRetryScheduled)
        assert failed.event.error == f"failure {n + 1} of 2"
        due = failed.event.next_attempt_at
        assert due is not None
        low, high = [(0.1, 0.2), (0.15, 0.3)][n]
        # The worker drew the delay at a moment between the attempt's claim and the
        # failure's recording (the database times both).
        assert (due - ran.event.occurred_at).total_seconds() >= low
        assert (due - failed.event.occurred_at).total_seconds() <= high
        assert claimed.event.occurred_at >= due


async def test_a_job_out_of_attempts_fails_with_its_error(
    start_pool: PoolStarter, conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await start_pool()
    job_id = await factories.submit(
        event_store,
        conn,
        job_type="test.fail_times",
        payload={"failures": 5},
        max_attempts=2,
        backoff_base_seconds=0.01,
        backoff_cap_seconds=0.01,
    )
    failed = await _until_status(conn, job_id, "failed")
    assert (failed.attempt, failed.error) == (2, "failure 2 of 5")
    assert (await _types(event_store, conn, job_id))[-2:] == [
        "job.claimed.v1",
        "job.failed.v1",
    ]


async def test_a_permanent_error_fails_at_once_with_attempts_left(
    start_pool: PoolStarter, conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await start_pool()
    job_id = await factories.submit(
        event_store, conn, job_type="test.permanent", payload={"n": 3}, max_attempts=5
    )
    failed = await _until_status(conn, job_id, "failed")
    assert (failed.attempt, failed.error) == (1, "payload 3 can never succeed")


async def test_an_unexpected_exception_is_a_retryable_failure_naming_it(
    start_pool: PoolStarter, conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await start_pool()
    job_id = await factories.submit(
        event_store,
        conn,
        job_type="test.crash",
        max_attempts=2,
        backoff_base_seconds=0.01,
        backoff_cap_seconds=0.01,
    )
    failed = await _until_status(conn, job_id, "failed")
    assert failed.error == "ValueError: unexpected"
    assert (await _types(event_store, conn, job_id)).count("job.retry_scheduled.v1") == 1


async def test_a_payload_that_does_not_match_its_type_fails_permanently(
    start_pool: PoolStarter, conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await start_pool()
    job_id = await factories.submit(
        event_store, conn, job_type="test.fail_times", payload={"failures": "two"}
    )
    failed = await _until_status(conn, job_id, "failed")
    assert failed.attempt == 1 and failed.error is not None and "failures" in failed.error


async def test_a_sync_handler_runs_off_the_event_loop(
    start_pool: PoolStarter, conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await start_pool()
    job_id = await factories.submit(event_store, conn, job_type="test.sync_noop")
    done = await _until_status(conn, job_id, "completed")
    assert done.result["thread"].startswith("ledger-job")


async def test_a_job_past_its_timeout_is_cancelled_and_counts_as_a_failed_attempt(
    start_pool: PoolStarter,
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    tmp_path: Path,
) -> None:
    await start_pool()
    gate = tmp_path / "never-opened"
    job_id = await factories.submit(
        event_store,
        conn,
        job_type="test.gated",
        payload={"gate": str(gate)},
        timeout_seconds=0.3,
        max_attempts=1,
    )
    failed = await _until_status(conn, job_id, "failed")
    assert failed.error == "timed out after 0.3 seconds"
    assert await asyncio.to_thread(Path(f"{gate}.cancelled").read_text) == "1"


async def test_cancelling_a_running_job_stops_its_handler(
    start_pool: PoolStarter,
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    tmp_path: Path,
) -> None:
    workers = await start_pool()
    gate = tmp_path / "gate"
    job_id = await factories.submit(
        event_store, conn, job_type="test.gated", payload={"gate": str(gate)}
    )
    await _until_status(conn, job_id, "processing")
    await eventually(lambda: _exists(Path(f"{gate}.started")))

    await event_store.execute(
        conn, job_id, commands.CancelJob(reason="no longer needed"), actor="alice"
    )

    await eventually(lambda: _exists(Path(f"{gate}.cancelled")))
    await eventually(lambda: _true(job_id not in workers.running))
    assert (await _status(conn, job_id)).status == "cancelled"
    assert (await _types(event_store, conn, job_id))[-1] == "job.cancelled.v1"


async def test_a_running_job_the_worker_no_longer_holds_is_stopped_by_the_poll(
    start_pool: PoolStarter,
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    tmp_path: Path,
) -> None:
    workers = await start_pool(poll_seconds=0.2)
    gate = tmp_path / "gate"
    job_id = await factories.submit(
        event_store, conn, job_type="test.gated", payload={"gate": str(gate)}, max_attempts=1
    )
    await _until_status(conn, job_id, "processing")
    # The lease is expired behind the worker's back (as if its heartbeats had been lost).
    state = await _status(conn, job_id)
    decided = commands.decide(
        state,
        commands.ExpireLease(retry_delay=timedelta(0)),
        job_id=job_id,
        actor="recovery:test",
        now=datetime.now(UTC),
    )
    await event_store.append(conn, decided)

    await eventually(lambda: _exists(Path(f"{gate}.cancelled")))
    await eventually(lambda: _true(job_id not in workers.running))
    assert (await _types(event_store, conn, job_id))[-1] == "job.lease_expired.v1"


async def test_a_full_pool_picks_up_notified_work_as_soon_as_a_slot_frees(
    start_pool: PoolStarter,
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    tmp_path: Path,
) -> None:
    await start_pool(slots=1)
    gate = tmp_path / "gate"
    first = await factories.submit(
        event_store, conn, job_type="test.gated", payload={"gate": str(gate)}
    )
    await _until_status(conn, first, "processing")
    second = await factories.submit(event_store, conn, job_type="test.noop")
    assert (await _status(conn, second)).status == "pending"
    gate.touch()
    await _until_status(conn, first, "completed")
    await _until_status(conn, second, "completed")


async def test_stopping_finishes_quick_jobs_and_hands_back_the_rest(
    start_pool: PoolStarter,
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    tmp_path: Path,
) -> None:
    workers = await start_pool(grace_seconds=3.0)
    stuck = await factories.submit(
        event_store, conn, job_type="test.gated", payload={"gate": str(tmp_path / "never")}
    )
    quick = await factories.submit(
        event_store,
        conn,
        job_type="test.gated",
        payload={"gate": str(tmp_path / "q"), "seconds": 0.3},
    )
    await _until_status(conn, stuck, "processing")
    await _until_status(conn, quick, "processing")
    assert await status.workers_alive(conn) == 5

    workers.request_stop()
    await eventually(lambda: _true(not workers.running))

    assert (await _status(conn, quick)).status == "completed"
    handed_back = await _status(conn, stuck)
    assert (handed_back.status, handed_back.attempt) == ("pending", 0)
    released = (await event_store.history(conn, stuck))[-1].event
    assert isinstance(released, ev.JobReleased) and released.worker_id == workers.worker_id
    await eventually(lambda: _no_live_slots(conn))


async def test_a_restarted_pool_runs_a_retry_at_its_stored_time(
    start_pool: PoolStarter, conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    # A retry decided before this pool existed: only the ledger remembers it.
    job_id = await factories.submit(event_store, conn, job_type="test.noop")
    await event_store.execute(
        conn, job_id, commands.ClaimJob(worker_id="gone", lease_seconds=30), actor="gone"
    )
    delay = timedelta(seconds=1)
    await event_store.execute(
        conn,
        job_id,
        commands.FailAttempt(worker_id="gone", error="boom", permanent=False, retry_delay=delay),
        actor="gone",
    )
    workers = await start_pool()
    assert workers.clock.pending, "the retry clock was rebuilt from the ledger at start"
    done = await _until_status(conn, job_id, "completed")
    history = await event_store.history(conn, job_id)
    scheduled, claimed = history[2].event, history[-2].event
    assert isinstance(scheduled, ev.JobRetryScheduled)
    assert isinstance(claimed, ev.JobClaimed)
    assert claimed.occurred_at >= scheduled.next_attempt_at
    assert done.attempt == 2


async def test_after_a_busy_run_the_view_and_the_chains_verify(
    start_pool: PoolStarter, conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await start_pool()
    await start_pool()
    ids = await _submit_many(event_store, conn, 100, job_type="test.noop")
    ids += await _submit_many(
        event_store,
        conn,
        20,
        job_type="test.fail_times",
        payload={"failures": 1},
        backoff_base_seconds=0.01,
        backoff_cap_seconds=0.05,
    )

    async def all_done() -> bool:
        count = await conn.fetchval(
            "SELECT count(*) FROM jobs WHERE job_id = ANY($1) AND status = 'completed'", ids
        )
        return bool(count == len(ids))

    await eventually(all_done, within=60)
    completions = await conn.fetch(
        "SELECT job_id, count(*) AS n FROM events WHERE type = 'job.completed.v1' GROUP BY job_id"
    )
    assert len(completions) == len(ids) and all(r["n"] == 1 for r in completions)
    assert await rebuild.verify(conn) == []
    assert (await chains.verify(conn)).ok


async def _exists(path: Path) -> bool:
    return await asyncio.to_thread(path.exists)


async def _true(value: bool) -> bool:
    return value


async def _no_live_slots(conn: asyncpg.Connection) -> bool:
    return await status.workers_alive(conn) == 0
