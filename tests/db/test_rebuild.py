"""Invariant 3: the jobs view is disposable; rebuilt from events it comes back the same."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import pytest

from ledger import commands, schedules, store
from projections import rebuild
from tests import factories
from tests.db import test_schedules


async def _workload(event_store: store.EventStore, conn: asyncpg.Connection) -> list[object]:
    ids = []
    for i in range(12):
        job_id = await factories.submit(event_store, conn, payload={"i": i}, max_attempts=2)
        ids.append(job_id)
        if i % 4 == 0:
            continue
        await event_store.execute(
            conn, job_id, commands.ClaimJob(worker_id="w", lease_seconds=5), actor="w"
        )
        if i % 4 == 1:
            await event_store.execute(
                conn, job_id, commands.CompleteJob(worker_id="w", result=[i]), actor="w"
            )
        elif i % 4 == 2:
            await event_store.execute(
                conn,
                job_id,
                commands.FailAttempt(
                    worker_id="w", error="x", permanent=False, retry_delay=timedelta(minutes=5)
                ),
                actor="w",
            )
        else:
            await event_store.execute(conn, job_id, commands.CancelJob(reason="stop"), actor="bob")
    return ids


async def test_rebuild_of_an_untouched_view_has_no_diff(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await _workload(event_store, conn)
    assert await rebuild.verify(conn) == []


async def test_a_drifted_row_is_reported_and_rebuild_restores_it(
    conn: asyncpg.Connection, admin_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    ids = await _workload(event_store, conn)
    # Only the owner can make the view drift (the application's role writes no row).
    await admin_conn.execute("UPDATE jobs SET status = 'completed' WHERE job_id = $1", ids[0])
    await admin_conn.execute("DELETE FROM jobs WHERE job_id = $1", ids[1])

    diffs = await rebuild.verify(conn)
    assert {d.job_id for d in diffs} == {ids[0], ids[1]}
    drifted = next(d for d in diffs if d.job_id == ids[0])
    assert drifted.live is not None and drifted.live["status"] == "completed"
    assert drifted.rebuilt is not None and drifted.rebuilt["status"] == "pending"
    missing = next(d for d in diffs if d.job_id == ids[1])
    assert missing.live is None and missing.rebuilt is not None

    before = await conn.fetch("SELECT * FROM jobs ORDER BY job_id")
    assert await rebuild.rebuild(admin_conn) == 12
    assert await rebuild.verify(conn) == []
    after = {r["job_id"]: dict(r) for r in await conn.fetch("SELECT * FROM jobs ORDER BY job_id")}
    untouched = [dict(r) for r in before if r["job_id"] not in (ids[0], ids[1])]
    assert all(after[r["job_id"]] == r for r in untouched)


async def test_dropping_the_view_and_rebuilding_gives_back_the_same_rows(
    conn: asyncpg.Connection, admin_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await _workload(event_store, conn)
    before = [dict(r) for r in await conn.fetch("SELECT * FROM jobs ORDER BY job_id")]
    await admin_conn.execute("DELETE FROM jobs")
    await rebuild.rebuild(admin_conn)
    after = [dict(r) for r in await conn.fetch("SELECT * FROM jobs ORDER BY job_id")]
    assert after == before


async def test_only_the_owner_rebuilds_the_view(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await _workload(event_store, conn)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await rebuild.rebuild(conn)
    assert await rebuild.verify(conn) == []


async def _schedule_workload(conn: asyncpg.Connection) -> None:
    """Two schedules with every kind of slot outcome, a pause, a delete and a re-creation."""
    s = test_schedules._schedules()
    t0 = test_schedules.T0
    await s.create(
        conn, test_schedules._body(cron="* * * * * *", start_at=t0, overlap="buffer_one"), actor="o"
    )
    await s.create(
        conn, test_schedules._body(id="hourly", interval_seconds=3600, start_at=t0), actor="o"
    )
    for second in (0, 1, 2, 120):  # fired, buffered, skipped (overlap), outside the window
        await s.record_due(conn, "default", "tick", t0 + timedelta(seconds=second))
        await s.record_due(conn, "default", "hourly", t0 + timedelta(seconds=second))
    await s.pause(conn, "hourly", note="maintenance", actor="o")
    await s.trigger(conn, "tick", actor="o")
    await s.delete(conn, "tick", note=None, actor="o")
    await s.create(conn, test_schedules._body(cron="0 * * * * *", start_at=t0), actor="o")


async def test_the_schedules_and_their_slots_rebuild_from_their_events(
    conn: asyncpg.Connection, admin_conn: asyncpg.Connection
) -> None:
    await _schedule_workload(conn)
    outcomes = await conn.fetch("SELECT DISTINCT outcome FROM schedule_slots")
    assert {r["outcome"] for r in outcomes} == {"fired", "skipped", "buffered"}
    assert await rebuild.verify(conn) == []

    tick = schedules.stream_id("tick", "default")
    await admin_conn.execute("UPDATE schedules SET paused = true WHERE schedule_id = 'tick'")
    await admin_conn.execute(
        "DELETE FROM schedule_slots WHERE schedule_id = 'hourly' AND outcome = 'fired'"
    )
    diffs = await rebuild.verify(conn)
    assert {d.job_id for d in diffs} == {tick, schedules.stream_id("hourly", "default")}
    drifted = next(d for d in diffs if d.job_id == tick)
    assert drifted.live is not None and drifted.live["paused"] is True
    assert drifted.rebuilt is not None and drifted.rebuilt["paused"] is False
    missing = next(d for d in diffs if d.job_id != tick)
    assert missing.live is None and missing.rebuilt is not None
    assert missing.rebuilt["outcome"] == "fired"

    await rebuild.rebuild(admin_conn)
    assert await rebuild.verify(conn) == []


async def test_dropping_the_schedules_and_rebuilding_gives_back_the_same_rows(
    conn: asyncpg.Connection, admin_conn: asyncpg.Connection
) -> None:
    await _schedule_workload(conn)
    tables = {
        "schedules": "SELECT * FROM schedules ORDER BY tenant, schedule_id",
        "schedule_slots": "SELECT * FROM schedule_slots ORDER BY tenant, schedule_id, slot",
    }
    before = {t: [dict(r) for r in await conn.fetch(q)] for t, q in tables.items()}
    await admin_conn.execute("DELETE FROM schedule_slots")
    await admin_conn.execute("DELETE FROM schedules")
    await rebuild.rebuild(admin_conn)
    after = {t: [dict(r) for r in await conn.fetch(q)] for t, q in tables.items()}
    assert after == before
    assert len(before["schedule_slots"]) >= 5
