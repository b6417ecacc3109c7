"""Schedules across real `ledger worker` processes (issue #17): each slot of an
every-second schedule fires exactly once whatever number of processes race for it, and
the slots due while every process was down are all accounted for when one comes back.
Everything is checked from the ledger (slot events, `schedule_slots`, the fired jobs)."""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import pytest

from ledger import events as ev
from ledger import jobtypes, schedules, submission
from tests.workers import jobs
from tests.workers.conftest import eventually
from tests.workers.test_worker_processes import Spawn, WorkerProcess, _verify_invariants, spawn

pytestmark = pytest.mark.slow
__all__ = ["spawn"]  # the fixture, shared with the other worker-process tests

SECOND = timedelta(seconds=1)


def _schedules() -> schedules.Schedules:
    return schedules.Schedules(submission.Submitter(jobs.register(jobtypes.Registry())))


def _whole_second(instant: datetime) -> datetime:
    return instant.replace(microsecond=0)


async def _create(conn: asyncpg.Connection, **fields: Any) -> schedules.ScheduleState:
    body: dict[str, Any] = {
        "id": "every-second",
        "cron": "* * * * * *",
        "overlap": "allow_all",
        "job": {"type": "test.noop", "payload": {}},
    }
    body.update(fields)
    return await _schedules().create(conn, msgspec.convert(body, schedules.ScheduleIn), actor="ops")


async def _state(conn: asyncpg.Connection) -> schedules.ScheduleState:
    return await schedules.get(conn, "every-second")


async def _slot_events(conn: asyncpg.Connection) -> list[ev.JobEvent]:
    rows = await conn.fetch(
        "SELECT * FROM events WHERE type LIKE 'schedule.slot_%' ORDER BY position"
    )
    return [ev.from_row(r) for r in rows]


async def _until(instant: datetime) -> None:
    """Let wall-clock time reach `instant` (a downtime must last: this is no assertion)."""
    left = (instant - datetime.now(UTC)).total_seconds()
    if left > 0:
        await asyncio.sleep(left)


async def _running(spawn: Spawn, conn: asyncpg.Connection, n: int) -> list[WorkerProcess]:
    started = [spawn(WORKER_COUNT=2) for _ in range(n)]
    for process in started:
        await process.registered(conn)
    return started


async def test_three_processes_fire_each_slot_of_an_every_second_schedule_exactly_once(
    spawn: Spawn, conn: asyncpg.Connection
) -> None:
    processes = await _running(spawn, conn, 3)
    first = _whole_second(datetime.now(UTC)) + 2 * SECOND
    last = first + 10 * SECOND
    await _create(conn, start_at=first, end_at=last)

    async def ended() -> bool:
        state = await _state(conn)
        return state.last_slot == last and state.next_slot is None

    try:
        await eventually(ended, within=60, every=0.25)
    except AssertionError:
        print(*(p.output() for p in processes))
        raise

    expected = [first + n * SECOND for n in range(11)]
    recorded = await _slot_events(conn)
    assert [type(e) for e in recorded] == [ev.ScheduleSlotFired] * 11
    assert [e.slot for e in recorded] == expected  # type: ignore[union-attr]
    slots = await conn.fetch("SELECT slot, outcome, job_id FROM schedule_slots ORDER BY slot")
    assert [(r["slot"], r["outcome"]) for r in slots] == [(s, "fired") for s in expected]
    fired = await conn.fetch(
        "SELECT job_id, schedule_slot FROM jobs WHERE schedule_id = 'every-second'"
        " ORDER BY schedule_slot"
    )
    assert [r["schedule_slot"] for r in fired] == expected  # one job per slot
    assert [r["job_id"] for r in fired] == [r["job_id"] for r in slots]
    assert all(p.proc.poll() is None for p in processes)
    await _verify_invariants(conn)


async def test_slots_due_while_every_process_was_down_are_all_accounted_for(
    spawn: Spawn, conn: asyncpg.Connection
) -> None:
    (before,) = await _running(spawn, conn, 1)
    first = _whole_second(datetime.now(UTC)) + 2 * SECOND
    await _create(conn, start_at=first, catchup_window_seconds=3)

    async def fired_twice() -> bool:
        state = await _state(conn)
        return state.last_slot is not None and state.last_slot >= first + SECOND

    await eventually(fired_twice, within=30, every=0.1)
    before.signal(signal.SIGTERM)
    assert await before.exited() == 0, before.output()
    stopped_after = (await _state(conn)).last_slot
    assert stopped_after is not None
    # Down across several slots, more than the catch-up window.
    await _until(stopped_after + 9 * SECOND)
    (after,) = await _running(spawn, conn, 1)
    restarted = datetime.now(UTC)

    async def caught_up() -> bool:
        state = await _state(conn)
        return state.last_slot is not None and state.last_slot >= restarted

    try:
        await eventually(caught_up, within=30, every=0.1)
    except AssertionError:
        print(before.output(), after.output())
        raise
    after.signal(signal.SIGTERM)
    assert await after.exited() == 0, after.output()

    end = (await _state(conn)).last_slot
    assert end is not None
    accounted = await schedules.slots_between(conn, "every-second", first, end)
    expected = [first + n * SECOND for n in range(int((end - first) / SECOND) + 1)]
    assert [s.slot for s in accounted] == expected  # every slot, none twice
    outcomes = {s.slot: s for s in accounted}
    assert {s.outcome for s in accounted} == {"fired", "skipped"}
    assert {s.reason for s in accounted if s.outcome == "skipped"} == {"outside_catchup_window"}
    # It came back 9 s after the last slot recorded: the slots older than the window then.
    down = [s for s in expected if stopped_after < s <= stopped_after + 5 * SECOND]
    assert down and all(outcomes[s].outcome == "skipped" for s in down)
    # The slots still inside the window when it came back fired then, late.
    late = await conn.fetch(
        "SELECT slot, recorded_at FROM schedule_slots"
        " WHERE outcome = 'fired' AND slot > $1 AND recorded_at - slot > interval '1 second'",
        stopped_after,
    )
    assert late, "no slot fired late inside the catch-up window"
    assert all(r["recorded_at"] - r["slot"] <= timedelta(seconds=3.5) for r in late)
    fired = await conn.fetch(
        "SELECT schedule_slot FROM jobs WHERE schedule_id = 'every-second' ORDER BY 1"
    )
    assert [r["schedule_slot"] for r in fired] == [
        s for s in expected if outcomes[s].outcome == "fired"
    ]
    await _verify_invariants(conn)
