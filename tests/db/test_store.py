"""The event store: typed events, the inline projection, optimistic concurrency (invariants 2 and 4)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from ledger import commands, errors, lifecycle, store
from ledger import events as ev
from projections import current
from tests import factories
from tests.conftest import IN_DEFAULT, Databases


async def test_submission_appends_one_event_and_projects_it(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    job_id = await factories.submit(event_store, conn, priority="high", queue="q1")

    history = await event_store.history(conn, job_id)
    assert [type(r.event) for r in history] == [ev.JobSubmitted]
    row = await current.get(conn, job_id)
    assert row is not None
    assert (row.status, row.queue, row.priority, row.attempt, row.submitted_by) == (
        "pending",
        "q1",
        0,
        0,
        "alice",
    )
    assert row == lifecycle.fold(r.event for r in history)


async def test_every_event_records_actor_time_version_and_transaction(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    job_id = await factories.submit(event_store, conn)
    await event_store.execute(
        conn, job_id, commands.ClaimJob(worker_id="w1", lease_seconds=30), actor="worker:w1"
    )
    rows = await conn.fetch(
        "SELECT version, actor, occurred_at, txid::text::bigint AS txid FROM events "
        "WHERE job_id = $1 ORDER BY version",
        job_id,
    )
    assert [(r["version"], r["actor"]) for r in rows] == [(1, "alice"), (2, "worker:w1")]
    assert rows[0]["txid"] != rows[1]["txid"]
    assert all(r["occurred_at"].tzinfo is not None for r in rows)


async def test_racing_appends_one_conflicts(dbs: Databases, event_store: store.EventStore) -> None:
    setup = await asyncpg.connect(dbs.app, server_settings=IN_DEFAULT)
    job_id = await factories.submit(event_store, setup)
    await setup.close()
    a, b = (
        await asyncpg.connect(dbs.app, server_settings=IN_DEFAULT),
        await asyncpg.connect(dbs.app, server_settings=IN_DEFAULT),
    )
    try:
        state = await event_store.load(a, job_id)
        assert state is not None
        now = datetime.now(UTC)
        claim = commands.ClaimJob(worker_id="w", lease_seconds=30)
        first = commands.decide(state, claim, job_id=job_id, actor="worker:a", now=now)
        second = commands.decide(state, claim, job_id=job_id, actor="worker:b", now=now)
        results = await asyncio.gather(
            event_store.append(a, first), event_store.append(b, second), return_exceptions=True
        )
        conflicts = [r for r in results if isinstance(r, errors.VersionConflict)]
        wins = [r for r in results if isinstance(r, list)]
        assert len(conflicts) == 1 and len(wins) == 1
        assert conflicts[0].job_id == job_id and conflicts[0].expected_version == 1
        history = await event_store.history(a, job_id)
        assert [r.event.version for r in history] == [1, 2]
        row = await current.get(a, job_id)
        assert row is not None and row.version == 2
    finally:
        await a.close()
        await b.close()


async def test_append_without_predecessor_is_a_conflict_not_a_fork(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    job_id = await factories.submit(event_store, conn)
    orphan = ev.JobCancelled(job_id=job_id, version=3, actor="alice", occurred_at=datetime.now(UTC))
    with pytest.raises(errors.VersionConflict):
        await event_store.append(conn, [orphan])
    assert await conn.fetchval("SELECT max(version) FROM events WHERE job_id = $1", job_id) == 1


async def test_failed_projection_rolls_back_the_append(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    job_id = uuid.uuid4()
    # A claim for a job never submitted: the projection refuses it, so the event must not stay.
    stray = ev.JobClaimed(
        job_id=job_id,
        version=1,
        actor="w",
        occurred_at=datetime.now(UTC),
        worker_id="w",
        attempt=1,
        lease_until=datetime.now(UTC),
    )
    with pytest.raises(asyncpg.RaiseError, match="before its submission"):
        await event_store.append(conn, [stray])
    assert await conn.fetchval("SELECT count(*) FROM events") == 0
    assert await conn.fetchval("SELECT count(*) FROM jobs") == 0


async def test_many_jobs_append_in_one_transaction(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    now = datetime.now(UTC)
    batch: list[ev.JobEvent] = []
    for _ in range(50):
        batch += commands.decide(
            None, factories.submit_command(), job_id=uuid.uuid4(), actor="bulk", now=now
        )
    recorded = await event_store.append(conn, batch)
    assert len({r.txid for r in recorded}) == 1
    assert await conn.fetchval("SELECT count(*) FROM jobs WHERE status = 'pending'") == 50


async def test_several_events_of_one_job_chain_in_one_append(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    job_id = uuid.uuid4()
    now = datetime.now(UTC)
    submitted = commands.decide(None, factories.submit_command(), job_id=job_id, actor="a", now=now)
    state = lifecycle.fold(submitted)
    claimed = commands.decide(
        state, commands.ClaimJob(worker_id="w", lease_seconds=5), job_id=job_id, actor="w", now=now
    )
    recorded = await event_store.append(conn, [*submitted, *claimed])
    assert recorded[1].prev_hash == recorded[0].hash
    row = await current.get(conn, job_id)
    assert row is not None and row.status == "processing"


async def test_lifecycle_commands_move_the_view(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    job_id = await factories.submit(event_store, conn, max_attempts=2)
    steps: list[tuple[commands.Command, str]] = [
        (commands.ClaimJob(worker_id="w", lease_seconds=30), "processing"),
        (
            commands.FailAttempt(
                worker_id="w", error="boom", permanent=False, retry_delay=timedelta(minutes=5)
            ),
            "retrying",
        ),
        (commands.ClaimJob(worker_id="w", lease_seconds=30), "processing"),
        (
            commands.FailAttempt(
                worker_id="w", error="boom2", permanent=False, retry_delay=timedelta(minutes=5)
            ),
            "failed",
        ),
        (commands.RetryJob(), "pending"),
        (commands.CancelJob(reason="no longer needed"), "cancelled"),
    ]
    for command, status in steps:
        await event_store.execute(conn, job_id, command, actor="someone")
        row = await current.get(conn, job_id)
        assert row is not None and row.status == status, command
    with pytest.raises(errors.InvalidTransition):
        await event_store.execute(conn, job_id, commands.CancelJob(), actor="someone")


async def test_a_deadlock_between_a_claim_and_a_cancel_is_a_conflict_for_one_of_them(
    dbs: Databases, event_store: store.EventStore
) -> None:
    setup = await asyncpg.connect(dbs.app, server_settings=IN_DEFAULT)
    job_id = await factories.submit(event_store, setup)
    state = await event_store.load(setup, job_id)
    assert state is not None
    a, b = (
        await asyncpg.connect(dbs.app, server_settings=IN_DEFAULT),
        await asyncpg.connect(dbs.app, server_settings=IN_DEFAULT),
    )
    claiming = a.transaction()
    try:
        # The claim's order: lock the job's row, then append.
        await claiming.start()
        locked = await a.fetch("SELECT job_id FROM jobs_claimable(1, ARRAY['noop'])")
        assert [r["job_id"] for r in locked] == [job_id]
        # The cancel's order: append, then project into the row (which waits for the claim).
        cancel = asyncio.ensure_future(
            event_store.execute(b, job_id, commands.CancelJob(), actor="alice")
        )
        b_pid = b.get_server_pid()
        for _ in range(500):
            waiting = await setup.fetchval(
                "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", b_pid
            )
            if waiting:
                break
            await asyncio.sleep(0.01)
        assert waiting, "the cancel never waited for the claim's row lock"
        claim = commands.decide(
            state,
            commands.ClaimJob(worker_id="w", lease_seconds=30),
            job_id=job_id,
            actor="w",
            now=datetime.now(UTC),
        )
        claimed: list[store.Recorded] | BaseException
        try:
            claimed = await event_store.append(a, claim)
            await claiming.commit()
        except errors.VersionConflict as exc:
            claimed = exc
            await claiming.rollback()
        cancelled = (await asyncio.gather(cancel, return_exceptions=True))[0]

        outcomes = [claimed, cancelled]
        assert sum(isinstance(o, errors.VersionConflict) for o in outcomes) == 1
        assert sum(isinstance(o, list) for o in outcomes) == 1
        history = await event_store.history(setup, job_id)
        assert [r.event.version for r in history] == [1, 2]  # one writer won, no fork
    finally:
        for c in (a, b, setup):
            await c.close()


async def test_the_append_never_scans_the_whole_events_table_even_with_a_generic_plan(
    admin_conn: asyncpg.Connection, conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    # A generic plan made on a small, never-analyzed events table (a new database) is
    # kept while the table grows; it must look each predecessor up by its key. The
    # plan is the one events_append (sql/0056) runs, shown by auto_explain.
    job_id = await factories.submit(event_store, conn)
    plans: list[str] = []
    admin_conn.add_log_listener(lambda _c, message: plans.append(message.message))
    for setting in (
        "LOAD 'auto_explain'",
        "SET auto_explain.log_min_duration = 0",
        "SET auto_explain.log_nested_statements = on",
        "SET auto_explain.log_level = notice",
        "SET plan_cache_mode = force_generic_plan",
    ):
        await admin_conn.execute(setting)
    await admin_conn.fetch(
        store.Q["events_append"], [job_id], [2], ["job.cancelled.v1"], ["alice"], ["{}"]
    )
    plan = next(p for p in plans if "Insert on events" in p)
    assert "Seq Scan on events" not in plan
    assert "Index Scan using events_job_id_version_key" in plan


async def test_a_batch_of_submissions_is_all_or_nothing_in_its_single_statement(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    now = datetime.now(UTC)
    await factories.submit(event_store, conn, idempotency_key="taken")
    batch: list[ev.JobEvent] = []
    for key in ("k1", "k2", "taken"):
        batch += commands.decide(
            None,
            factories.submit_command(idempotency_key=key),
            job_id=uuid.uuid4(),
            actor="alice",
            now=now,
        )
    assert not conn.is_in_transaction()

    with pytest.raises(errors.IdempotencyKeyTaken):
        await event_store.append(conn, batch)

    ids = [e.job_id for e in batch]
    assert await conn.fetchval("SELECT count(*) FROM events WHERE job_id = ANY($1)", ids) == 0
    assert await conn.fetchval("SELECT count(*) FROM jobs WHERE job_id = ANY($1)", ids) == 0
    recorded = await event_store.append(conn, batch[:2])  # without the taken key it goes in
    assert len({r.txid for r in recorded}) == 1
    assert await conn.fetchval("SELECT count(*) FROM jobs WHERE job_id = ANY($1)", ids) == 2
