"""Outcomes of attempts that finish together share one transaction, and each is still recorded once."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from ledger import commands, errors, lifecycle, store
from ledger import events as ev
from projections import current
from tests import factories
from tests.workers.conftest import PoolStarter, eventually
from workers import leases, outcomes

WORKER = "worker-a"


async def _claimed(
    event_store: store.EventStore,
    conn: asyncpg.Connection,
    admin_conn: asyncpg.Connection,
    count: int,
) -> list[lifecycle.JobState]:
    """`count` jobs claimed by WORKER, as the pool holds them after its claim."""
    states = []
    for _ in range(count):
        job_id = await factories.submit(event_store, conn, job_type="test.noop")
        await event_store.execute(
            conn, job_id, commands.ClaimJob(worker_id=WORKER, lease_seconds=30), actor=WORKER
        )
        state = await current.get(conn, job_id)
        assert state is not None
        states.append(state)
    # A heartbeat gives each attempt its lease row, which recording the outcome drops.
    await leases.heartbeat(conn, leases.this_process(3, 30, WORKER), [s.job_id for s in states])
    assert await admin_conn.fetchval("SELECT count(*) FROM job_leases") == len(states)
    return states


async def _types(
    event_store: store.EventStore, conn: asyncpg.Connection, job_id: uuid.UUID
) -> list[str]:
    return [ev.type_tag(r.event) for r in await event_store.history(conn, job_id)]


async def test_outcomes_recorded_together_share_one_transaction(
    conn: asyncpg.Connection, admin_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    states = await _claimed(event_store, conn, admin_conn, 3)

    done = await outcomes.record(
        conn,
        event_store,
        WORKER,
        [
            outcomes.Outcome(s, commands.CompleteJob(worker_id=WORKER, result={"i": i}))
            for i, s in enumerate(states)
        ],
    )

    assert done == [True, True, True]
    txids = await conn.fetch("SELECT DISTINCT txid FROM events WHERE type = 'job.completed.v1'")
    assert len(txids) == 1
    for i, s in enumerate(states):
        now = await current.get(conn, s.job_id)
        assert now is not None and (now.status, now.result) == ("completed", {"i": i})
    assert await admin_conn.fetchval("SELECT count(*) FROM job_leases") == 0


async def test_an_attempt_no_longer_held_is_left_alone_while_the_rest_of_its_batch_is_recorded(
    conn: asyncpg.Connection, admin_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    first, cancelled, last = await _claimed(event_store, conn, admin_conn, 3)
    await event_store.execute(conn, cancelled.job_id, commands.CancelJob(), actor="alice")

    done = await outcomes.record(
        conn,
        event_store,
        WORKER,
        [
            outcomes.Outcome(s, commands.CompleteJob(worker_id=WORKER, result=None))
            for s in (first, cancelled, last)
        ],
    )

    assert done == [True, False, True]
    assert await _types(event_store, conn, cancelled.job_id) == [
        "job.submitted.v1",
        "job.claimed.v1",
        "job.cancelled.v1",
    ]
    for s in (first, last):
        assert (await _types(event_store, conn, s.job_id))[-1] == "job.completed.v1"
    assert await admin_conn.fetchval("SELECT count(*) FROM job_leases") == 0


async def test_a_busy_pool_records_its_outcomes_in_far_fewer_commits_than_jobs(
    start_pool: PoolStarter, conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    ids = [await factories.submit(event_store, conn, job_type="test.noop") for _ in range(60)]
    await start_pool(slots=60)

    async def all_done() -> bool:
        count = await conn.fetchval(
            "SELECT count(*) FROM jobs WHERE status = 'completed' AND job_id = ANY($1)", ids
        )
        return bool(count == len(ids))

    await eventually(all_done)
    per_job = await conn.fetchval(
        "SELECT count(*) FROM events WHERE type = 'job.completed.v1' AND job_id = ANY($1)", ids
    )
    commits = await conn.fetchval(
        "SELECT count(DISTINCT txid) FROM events WHERE type = 'job.completed.v1'"
    )
    assert per_job == len(ids)  # each outcome recorded exactly once
    assert commits < len(ids) // 2


async def test_recording_as_claimed_refuses_a_batch_with_a_job_that_moved_and_records_none(
    conn: asyncpg.Connection, admin_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    first, cancelled = await _claimed(event_store, conn, admin_conn, 2)
    await event_store.execute(conn, cancelled.job_id, commands.CancelJob(), actor="alice")
    batch = [
        outcomes.Outcome(s, commands.CompleteJob(worker_id=WORKER, result=None))
        for s in (first, cancelled)
    ]

    with pytest.raises(errors.VersionConflict):
        await outcomes.record_as_claimed(conn, event_store, WORKER, batch)

    assert (await _types(event_store, conn, first.job_id))[-1] == "job.claimed.v1"
    assert await outcomes.record(conn, event_store, WORKER, batch) == [True, False]
    assert (await _types(event_store, conn, first.job_id))[-1] == "job.completed.v1"
    assert (await _types(event_store, conn, cancelled.job_id))[-1] == "job.cancelled.v1"
