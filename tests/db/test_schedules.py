"""Schedules (issue #17): each slot recorded once, in order, by the database; every slot
accounted for (fired, or skipped saying why); the fired job names its schedule and slot."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import pytest

from ledger import acting, errors, jobtypes, metrics, schedules, submission, tenants
from ledger import events as ev
from tests.conftest import IN_DEFAULT, Databases
from workers import scheduler as scheduler_module

T0 = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)


def _schedules() -> schedules.Schedules:
    registry = jobtypes.Registry()

    async def noop(payload: dict[str, object], ctx: Any) -> None:
        return None

    jobtypes.job_type("noop", dict[str, object], registry=registry)(noop)
    return schedules.Schedules(submission.Submitter(registry))


def _body(**fields: Any) -> schedules.ScheduleIn:
    body: dict[str, Any] = {"id": "tick", "job": {"type": "noop", "payload": {}}}
    body.update(fields)
    return msgspec.convert(body, schedules.ScheduleIn)


async def _slot_events(conn: asyncpg.Connection, schedule_id: str = "tick") -> list[ev.JobEvent]:
    rows = await conn.fetch(
        "SELECT * FROM events WHERE type LIKE 'schedule.slot_%' AND data->>'schedule_id' = $1"
        " ORDER BY position",
        schedule_id,
    )
    return [ev.from_row(r) for r in rows]


async def _tick(
    s: schedules.Schedules, conn: asyncpg.Connection, now: datetime, schedule_id: str = "tick"
) -> list[ev.JobEvent]:
    return await s.record_due(conn, "default", schedule_id, now)


async def test_each_slot_fires_once_in_order_and_its_job_names_the_schedule(
    conn: asyncpg.Connection,
) -> None:
    s = _schedules()
    created = await s.create(
        conn, _body(cron="* * * * * *", start_at=T0, overlap="allow_all"), actor="ops"
    )
    assert created.next_slot == T0
    for second in (0, 0, 2, 2, 3):
        await _tick(s, conn, T0 + timedelta(seconds=second, milliseconds=500))
    fired = await _slot_events(conn)
    assert [(type(e).__name__, e.slot) for e in fired] == [  # type: ignore[union-attr]
        ("ScheduleSlotFired", T0 + timedelta(seconds=n)) for n in range(4)
    ]
    jobs = await conn.fetch(
        "SELECT schedule_id, schedule_slot, idempotency_key FROM jobs ORDER BY schedule_slot"
    )
    assert [(r["schedule_id"], r["schedule_slot"]) for r in jobs] == [
        ("tick", T0 + timedelta(seconds=n)) for n in range(4)
    ]
    assert jobs[0]["idempotency_key"] == "schedule:tick@2026-05-01T12:00:00+00:00"


async def test_overlap_skip_records_the_slots_the_running_job_overlaps(
    conn: asyncpg.Connection,
) -> None:
    s = _schedules()
    await s.create(conn, _body(cron="* * * * * *", start_at=T0), actor="ops")
    await _tick(s, conn, T0 + timedelta(seconds=2, milliseconds=1))
    outcomes = [(type(e).__name__, getattr(e, "reason", None)) for e in await _slot_events(conn)]
    assert outcomes == [
        ("ScheduleSlotFired", None),
        ("ScheduleSlotSkipped", "overlap"),
        ("ScheduleSlotSkipped", "overlap"),
    ]


async def test_allow_all_fires_every_slot_and_buffer_one_holds_one(
    conn: asyncpg.Connection,
) -> None:
    s = _schedules()
    await s.create(conn, _body(cron="* * * * * *", start_at=T0, overlap="allow_all"), actor="o")
    await _tick(s, conn, T0 + timedelta(seconds=2))
    assert [type(e).__name__ for e in await _slot_events(conn)] == ["ScheduleSlotFired"] * 3
    await s.create(
        conn, _body(id="buf", cron="* * * * * *", start_at=T0, overlap="buffer_one"), actor="o"
    )
    await _tick(s, conn, T0 + timedelta(seconds=2), "buf")
    assert [type(e).__name__ for e in await _slot_events(conn, "buf")] == [
        "ScheduleSlotFired",
        "ScheduleSlotBuffered",
        "ScheduleSlotSkipped",
    ]
    first = (await _slot_events(conn, "buf"))[0]
    await submission.Submitter(s.submitter.registry).cancel(
        conn,
        first.job,  # type: ignore[union-attr]
        actor="ops",
    )
    await _tick(s, conn, T0 + timedelta(seconds=2, milliseconds=500), "buf")
    last = (await _slot_events(conn, "buf"))[-1]
    assert isinstance(last, ev.ScheduleSlotFired) and last.buffered
    assert last.slot == T0 + timedelta(seconds=1)


async def test_a_buffered_slot_waits_while_its_schedule_is_paused_and_fires_once_resumed(
    conn: asyncpg.Connection,
) -> None:
    s = _schedules()
    await s.create(
        conn, _body(id="buf", cron="* * * * * *", start_at=T0, overlap="buffer_one"), actor="o"
    )
    await _tick(s, conn, T0 + timedelta(seconds=1), "buf")
    first, waiting = await _slot_events(conn, "buf")
    assert isinstance(waiting, ev.ScheduleSlotBuffered)
    await s.pause(conn, "buf", note="maintenance", actor="ops")
    await submission.Submitter(s.submitter.registry).cancel(
        conn,
        first.job,  # type: ignore[union-attr]
        actor="ops",
    )
    # The previous job ended, but the schedule is paused: the buffered slot does not fire.
    assert await _tick(s, conn, T0 + timedelta(seconds=1, milliseconds=500), "buf") == []
    await s.resume(conn, "buf", note=None, actor="ops")
    fired = await _tick(s, conn, T0 + timedelta(seconds=1, milliseconds=600), "buf")
    assert [(type(e).__name__, e.slot, e.buffered) for e in fired] == [  # type: ignore[attr-defined]
        ("ScheduleSlotFired", waiting.slot, True)
    ]


async def test_cancel_other_cancels_the_previous_job(conn: asyncpg.Connection) -> None:
    s = _schedules()
    await s.create(conn, _body(cron="* * * * * *", start_at=T0, overlap="cancel_other"), actor="o")
    await _tick(s, conn, T0 + timedelta(seconds=1))
    statuses = await conn.fetch("SELECT status FROM jobs ORDER BY schedule_slot")
    assert [r["status"] for r in statuses] == ["cancelled", "pending"]


async def test_racing_processes_record_each_slot_once(dbs: Databases) -> None:
    s = _schedules()
    setup = await asyncpg.connect(dbs.app, server_settings={"timezone": "UTC"})
    try:
        async with setup.transaction():
            await acting.act_in(setup, "default")
            await s.create(
                setup, _body(cron="* * * * * *", start_at=T0, overlap="allow_all"), actor="o"
            )
    finally:
        await setup.close()
    conns = [await asyncpg.connect(dbs.app, server_settings={"timezone": "UTC"}) for _ in range(3)]
    try:
        runners = [scheduler_module.Scheduler(dbs.app, schedules_=s) for _ in conns]
        for second in range(1, 6):
            now = T0 + timedelta(seconds=second)
            await asyncio.gather(*(r.tick(c, now) for r, c in zip(runners, conns, strict=True)))
        async with conns[0].transaction():
            await acting.act_in(conns[0], "default")
            slots = await conns[0].fetch("SELECT slot, outcome FROM schedule_slots ORDER BY slot")
            jobs = await conns[0].fetchval("SELECT count(*) FROM jobs")
    finally:
        for c in conns:
            await c.close()
    assert [r["slot"] for r in slots] == [T0 + timedelta(seconds=n) for n in range(6)]
    assert {r["outcome"] for r in slots} == {"fired"}
    assert jobs == 6


async def test_the_database_refuses_a_slot_out_of_order(conn: asyncpg.Connection) -> None:
    s = _schedules()
    state = await s.create(conn, _body(cron="* * * * * *", start_at=T0), actor="o")
    wrong = ev.ScheduleSlotSkipped(
        job_id=schedules.stream_id("tick", "default"),
        version=state.version + 1,
        actor="x",
        occurred_at=T0,
        schedule_id="tick",
        slot=T0 + timedelta(seconds=5),
        reason="overlap",
        next_slot=T0 + timedelta(seconds=6),
    )
    with pytest.raises(asyncpg.PostgresError, match="out of order"):
        await s.store.append(conn, [wrong])


async def test_a_downtime_is_accounted_for_late_fires_within_the_window(
    conn: asyncpg.Connection,
) -> None:
    s = _schedules()
    await s.create(
        conn,
        _body(interval_seconds=10, start_at=T0, catchup_window_seconds=30, overlap="allow_all"),
        actor="o",
    )
    # Every process was down from T0 until T0 + 95 s.
    await _tick(s, conn, T0 + timedelta(seconds=95))
    recorded = await _slot_events(conn)
    assert [(type(e).__name__, e.slot) for e in recorded] == [  # type: ignore[union-attr]
        ("ScheduleSlotSkipped", T0),
        ("ScheduleSlotFired", T0 + timedelta(seconds=70)),
        ("ScheduleSlotFired", T0 + timedelta(seconds=80)),
        ("ScheduleSlotFired", T0 + timedelta(seconds=90)),
    ]
    skipped = recorded[0]
    assert isinstance(skipped, ev.ScheduleSlotSkipped)
    assert (skipped.reason, skipped.next_slot) == (
        "outside_catchup_window",
        T0 + timedelta(seconds=70),
    )
    listed = await schedules.slots_between(conn, "tick", T0, T0 + timedelta(seconds=100))
    assert [(x.outcome, x.reason) for x in listed] == [
        *[("skipped", "outside_catchup_window")] * 7,
        *[("fired", None)] * 3,
        ("pending", None),
    ]


async def test_paused_slots_are_recorded_skipped_on_resume(conn: asyncpg.Connection) -> None:
    s = _schedules()
    await s.create(conn, _body(interval_seconds=10, start_at=T0 + timedelta(days=-1)), actor="o")
    # start in the past: the first round skips it all; then pause and resume
    state = await s.pause(conn, "tick", note="maintenance", actor="ops")
    assert state.paused and state.note == "maintenance"
    assert await _tick(s, conn, datetime.now(UTC)) == []
    resumed = await s.resume(conn, "tick", note=None, actor="ops")
    assert not resumed.paused
    assert resumed.next_slot is not None and resumed.next_slot > datetime.now(UTC) - timedelta(
        seconds=1
    )
    recorded = await _slot_events(conn)
    assert [(type(e).__name__, getattr(e, "reason", None)) for e in recorded] == [
        ("ScheduleSlotSkipped", "paused")
    ]


async def test_an_update_takes_effect_from_now_not_from_the_old_rule_s_next_slot(
    conn: asyncpg.Connection,
) -> None:
    s = _schedules()
    later = datetime.now(UTC) + timedelta(hours=2)
    created = await s.create(conn, _body(interval_seconds=3600, start_at=later), actor="ops")
    assert created.next_slot == later

    updated = await s.update(conn, "tick", _body(interval_seconds=60).spec(), actor="ops")

    assert updated.next_slot is not None
    assert updated.next_slot <= datetime.now(UTC) + timedelta(seconds=60)


async def test_a_dst_change_fires_the_skipped_and_the_repeated_hour_once(
    conn: asyncpg.Connection,
) -> None:
    s = _schedules()
    # Europe/Paris: 2026-03-29 02:00 -> 03:00, 2026-10-25 03:00 -> 02:00.
    start = datetime(2026, 3, 29, 0, 0, tzinfo=UTC)
    await s.create(
        conn,
        _body(cron="30 2 * * *", timezone="Europe/Paris", start_at=start, overlap="allow_all"),
        actor="o",
    )
    await s.create(
        conn,
        _body(
            id="hourly",
            cron="30 * * * *",
            timezone="Europe/Paris",
            start_at=datetime(2026, 10, 24, 22, 0, tzinfo=UTC),
            overlap="allow_all",
        ),
        actor="o",
    )
    clock = start
    while clock < datetime(2026, 3, 31, tzinfo=UTC):
        clock += timedelta(minutes=30)
        await _tick(s, conn, clock)
    daily = [e.slot for e in await _slot_events(conn)]  # type: ignore[union-attr]
    assert daily == [
        datetime(2026, 3, 29, 1, 30, tzinfo=UTC),  # 02:30 does not exist: 03:30 CEST, once
        datetime(2026, 3, 30, 0, 30, tzinfo=UTC),
    ]
    clock = datetime(2026, 10, 24, 22, 0, tzinfo=UTC)
    while clock < datetime(2026, 10, 25, 4, tzinfo=UTC):
        clock += timedelta(minutes=10)
        await _tick(s, conn, clock, "hourly")
    hourly = [e.slot for e in await _slot_events(conn, "hourly")]  # type: ignore[union-attr]
    assert [h.astimezone(UTC).strftime("%H:%M") for h in hourly] == [
        "22:30",
        "23:30",
        "00:30",  # 02:30 CEST; 02:30 CET (01:30 UTC) is the repeated hour: not again
        "02:30",
        "03:30",
    ]


async def test_a_deleted_schedule_records_no_more_slots(conn: asyncpg.Connection) -> None:
    s = _schedules()
    await s.create(conn, _body(cron="* * * * * *", start_at=T0), actor="o")
    await s.delete(conn, "tick", note="gone", actor="ops")
    assert await _tick(s, conn, T0 + timedelta(seconds=3)) == []
    with pytest.raises(schedules.UnknownSchedule):
        await schedules.get(conn, "tick")
    assert await conn.fetchval("SELECT count(*) FROM jobs") == 0


async def test_trigger_and_backfill_fire_jobs_that_name_the_schedule(
    conn: asyncpg.Connection,
) -> None:
    s = _schedules()
    await s.create(conn, _body(interval_seconds=60, start_at=T0), actor="o")
    state, job = await s.trigger(conn, "tick", actor="ops")
    assert state.last_job_id == job.job_id and job.schedule_id == "tick"
    assert job.schedule_slot is None
    _, done = await s.backfill(
        conn, "tick", T0, T0 + timedelta(minutes=3), overlap="allow_all", actor="ops"
    )
    assert [d.slot for d in done] == [T0 + timedelta(minutes=n) for n in (1, 2, 3)]
    rows = await conn.fetch(
        "SELECT schedule_slot FROM jobs WHERE schedule_slot IS NOT NULL ORDER BY 1"
    )
    assert [r["schedule_slot"] for r in rows] == [d.slot for d in done]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "* * *"}, "cron"),
        ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, "timezone"),
        ({"cron": "* * * * *", "interval_seconds": 5}, "cron"),
        (
            {
                "interval_seconds": 5,
                "start_at": "2026-01-02T00:00:00Z",
                "end_at": "2026-01-01T00:00:00Z",
            },
            "end_at",
        ),
        ({"cron": "* * * * *", "job": {"type": "nope", "payload": {}}}, "job.type"),
    ],
)
async def test_bad_schedules_are_refused_naming_the_field(
    conn: asyncpg.Connection, fields: dict[str, Any], field: str
) -> None:
    with pytest.raises(errors.InvalidInput) as refused:
        await _schedules().create(conn, _body(**fields), actor="o")
    assert field in str(refused.value.field_errors)


async def test_tenants_see_only_their_own_schedules(dbs: Databases) -> None:
    s = _schedules()
    conn = await asyncpg.connect(dbs.app, server_settings={"timezone": "UTC"})
    try:
        for tenant in ("acme", "globex"):
            async with conn.transaction():
                await acting.act_in(conn, tenant)
                await s.create(conn, _body(id=f"{tenant}-job", cron="* * * * *"), actor="o")
        async with conn.transaction():
            await acting.act_in(conn, "acme")
            assert [x.schedule_id for x in await schedules.listed(conn)] == ["acme-job"]
            seen = await conn.fetchval("SELECT count(*) FROM schedules")
        assert seen == 1
    finally:
        await conn.close()


async def test_metrics_count_slots_fired_and_skipped_and_their_lateness(
    conn: asyncpg.Connection,
) -> None:
    from ledger import metrics, store
    from projections import metering

    registry = metrics.Metrics()
    jobtypes_registry = _schedules().submitter.registry
    s = schedules.Schedules(
        submission.Submitter(jobtypes_registry, store.EventStore([metering.JobMetrics(registry)]))
    )
    await s.create(conn, _body(cron="* * * * * *", start_at=T0), actor="o")
    await _tick(s, conn, T0 + timedelta(seconds=2))
    sample = registry.registry.get_sample_value
    assert sample("ledger_schedule_slots_fired_total") == 1
    assert sample("ledger_schedule_slots_skipped_total", {"reason": "overlap"}) == 2
    assert sample("ledger_schedule_lateness_seconds_count") == 1


Command = Callable[[schedules.Schedules, asyncpg.Connection], Awaitable[object]]
# Each command a person gives a schedule, and the event it appends.
COMMANDS: dict[str, tuple[str, Command]] = {
    "pause": ("schedule.paused.v1", lambda s, c: s.pause(c, "tick", note="ops", actor="ops")),
    "update": (
        "schedule.updated.v1",
        lambda s, c: s.update(c, "tick", _body(cron="*/2 * * * * *").spec(), actor="ops"),
    ),
    "delete": ("schedule.deleted.v1", lambda s, c: s.delete(c, "tick", note=None, actor="ops")),
    "trigger": ("schedule.triggered.v1", lambda s, c: s.trigger(c, "tick", actor="ops")),
    "backfill": (
        "schedule.backfilled.v1",
        lambda s, c: s.backfill(
            c, "tick", T0, T0 + timedelta(seconds=1), overlap="allow_all", actor="ops"
        ),
    ),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
async def test_a_command_racing_a_slot_being_recorded_waits_for_it_and_is_recorded_after(
    dbs: Databases, command: str
) -> None:
    tag, act = COMMANDS[command]
    s = _schedules()
    operator = await asyncpg.connect(dbs.app, server_settings=IN_DEFAULT)
    recorder = await asyncpg.connect(dbs.app, server_settings={"timezone": "UTC"})
    admin = await asyncpg.connect(dbs.admin)
    try:
        await s.create(
            operator, _body(cron="* * * * * *", start_at=T0, overlap="allow_all"), actor="o"
        )
        recording = recorder.transaction()
        await recording.start()
        fired = await s.record_due(recorder, "default", "tick", T0)
        assert [type(e) for e in fired] == [ev.ScheduleSlotFired]
        # The operator acts while the slot's transaction has not committed yet.
        acting_now = asyncio.ensure_future(act(s, operator))
        operator_pid = operator.get_server_pid()

        async def blocked() -> bool:
            waiting = await admin.fetchval(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1", operator_pid
            )
            return bool(waiting == "Lock") or acting_now.done()

        deadline = asyncio.get_running_loop().time() + 20
        while not await blocked():
            assert asyncio.get_running_loop().time() < deadline, "the command never waited"
            await asyncio.sleep(0.01)
        await recording.commit()
        await asyncio.wait_for(acting_now, timeout=20)
        recorded = await operator.fetch(
            "SELECT type FROM events WHERE job_id = $1 ORDER BY position",
            schedules.stream_id("tick", "default"),
        )
    finally:
        for c in (operator, recorder, admin):
            await c.close()
    # The slot recorded first, the command after it (not refused as a conflict).
    assert [r["type"] for r in recorded] == [
        "schedule.created.v1",
        "schedule.slot_fired.v1",
        tag,
    ]


async def test_a_tenant_over_its_quota_does_not_stop_the_other_tenants_schedules(
    dbs: Databases, conn: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    s = _schedules()
    await tenants.configure(conn, s.store, "acme", {"max_queued": 1}, actor="ops")
    async with conn.transaction():
        await acting.act_in(conn, "acme")
        await s.create(conn, _body(cron="* * * * * *", start_at=T0, overlap="allow_all"), actor="o")
    await s.create(conn, _body(cron="* * * * * *", start_at=T0, overlap="allow_all"), actor="o")
    runner = scheduler_module.Scheduler(dbs.app, schedules_=s)
    registry = metrics.Metrics(process=False)
    registry.add_scheduler_gauge(lambda: len(runner.failing))

    def failing() -> float | None:
        return registry.registry.get_sample_value("ledger_schedules_failing")

    recorder = await asyncpg.connect(dbs.app, server_settings={"timezone": "UTC"})
    try:
        await runner.tick(recorder, T0 + timedelta(milliseconds=500))  # one job each
        assert failing() == 0
        # acme's second job would pass its quota (nobody runs its first): its slot waits,
        # and the default tenant's slots go on firing, round after round.
        for ms in (1_500, 1_700, 2_500):
            await runner.tick(recorder, T0 + timedelta(milliseconds=ms))
            assert failing() == 1  # /metrics says so while it lasts
    finally:
        await recorder.close()

    async def slots_of(tenant: str) -> list[tuple[datetime, str]]:
        async with conn.transaction():
            await acting.act_in(conn, tenant)
            rows = await conn.fetch("SELECT slot, outcome FROM schedule_slots ORDER BY slot")
            return [(r["slot"], r["outcome"]) for r in rows]

    assert await slots_of("default") == [(T0 + timedelta(seconds=n), "fired") for n in range(3)]
    assert await slots_of("acme") == [(T0, "fired")]
    async with conn.transaction():
        await acting.act_in(conn, "acme")
        assert (await schedules.live(conn, "tick")).next_slot == T0 + timedelta(seconds=1)
    failed = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    # Said once for the slot that could not be recorded, not once per round.
    assert failed == [
        f"schedule tick of tenant acme: its due slots (from {T0 + timedelta(seconds=1)})"
        " could not be recorded; trying again each round"
    ]
    # Room again: the slot is recorded and the schedule no longer counts as failing; nor
    # does one that is no longer due at all (deleted meanwhile, say).
    await tenants.configure(conn, s.store, "acme", {"max_queued": 100}, actor="ops")
    runner.failing[("acme", "deleted")] = T0
    recorder = await asyncpg.connect(dbs.app, server_settings={"timezone": "UTC"})
    try:
        await runner.tick(recorder, T0 + timedelta(milliseconds=2_600))
    finally:
        await recorder.close()
    assert failing() == 0
    assert [slot for slot, _ in await slots_of("acme")] == [
        T0 + timedelta(seconds=n) for n in range(3)
    ]
