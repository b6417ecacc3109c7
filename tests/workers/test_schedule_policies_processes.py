"""Overlap policies, pause and resume, backfill and deletion of schedules across two real
`ledger worker` processes (issue #17), and a schedule those processes cannot fire. A job that outlasts the interval is a
`test.gated` one: it runs until the test opens its gate (a file). Everything is checked
from the ledger (the schedule's slot events, `schedule_slots`, the fired jobs' events):
every slot decided exactly once, and as the schedule's policy says. No test sleeps to
assert; a time that must pass is waited for on another schedule's slots."""

from __future__ import annotations

import asyncio
import itertools
import signal
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

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

SECOND: Final = timedelta(seconds=1)
POLICIES: Final = ("skip", "buffer_one", "buffer_all", "cancel_other", "allow_all")
ENDED: Final = ["completed", "failed", "cancelled"]  # a job's statuses once it ended
ENDING: Final = frozenset({"job.completed.v1", "job.failed.v1", "job.cancelled.v1"})
NOOP: Final = {"type": "test.noop", "payload": {}}

Stream = list[tuple[int, ev.JobEvent]]  # (position, event), in the ledger's order


def _schedules() -> schedules.Schedules:
    return schedules.Schedules(submission.Submitter(jobs.register(jobtypes.Registry())))


def _in_whole_seconds(n: int) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) + n * SECOND


def _every_second(first: datetime, last: datetime) -> list[datetime]:
    return [first + n * SECOND for n in range(int((last - first) / SECOND) + 1)]


def _gated(gate: Path) -> dict[str, Any]:
    return {"type": "test.gated", "payload": {"gate": str(gate)}}


def _id(policy: str) -> str:
    return "overlap-" + policy.replace("_", "-")


async def _create(
    conn: asyncpg.Connection, schedule_id: str, **fields: Any
) -> schedules.ScheduleState:
    body: dict[str, Any] = {"id": schedule_id, "cron": "* * * * * *", "job": NOOP}
    body.update(fields)
    return await _schedules().create(conn, msgspec.convert(body, schedules.ScheduleIn), actor="ops")


async def _running(spawn: Spawn, conn: asyncpg.Connection) -> list[WorkerProcess]:
    started = [spawn(WORKER_COUNT=5) for _ in range(2)]
    for process in started:
        await process.registered(conn)
    return started


async def _stopped(processes: list[WorkerProcess]) -> None:
    """SIGTERM every process and see each exit cleanly (nothing writes to the ledger after)."""
    for process in processes:
        process.signal(signal.SIGTERM)
    for process in processes:
        assert await process.exited() == 0, process.output()


async def _last_slot(conn: asyncpg.Connection, schedule_id: str) -> datetime | None:
    return (await schedules.get(conn, schedule_id)).last_slot


async def _reached(conn: asyncpg.Connection, schedule_id: str, slot: datetime) -> bool:
    last = await _last_slot(conn, schedule_id)
    return last is not None and last >= slot


async def _stream(conn: asyncpg.Connection, schedule_id: str) -> Stream:
    """The schedule's events: its changes and every slot's outcome."""
    rows = await conn.fetch(
        "SELECT * FROM events WHERE job_id = $1 ORDER BY position",
        schedules.stream_id(schedule_id, "default"),
    )
    return [(r["position"], ev.from_row(r)) for r in rows]


def _decisions(stream: Stream, last: datetime) -> dict[datetime, list[str]]:
    """Each slot with what the ledger recorded for it, in order: `fired`, `buffered`,
    `fired buffered` (a buffered slot's job, later) or `skipped <reason>` (a skipped run
    of slots counts for each of them)."""
    out: dict[datetime, list[str]] = {}
    for _, e in stream:
        if isinstance(e, ev.ScheduleSlotSkipped):
            slot, until = e.slot, e.next_slot or last + SECOND
            while slot < until:
                out.setdefault(slot, []).append(f"skipped {e.reason}")
                slot += SECOND
        elif isinstance(e, ev.ScheduleSlotBuffered):
            out.setdefault(e.slot, []).append("buffered")
        elif isinstance(e, ev.ScheduleSlotFired):
            out.setdefault(e.slot, []).append("fired buffered" if e.buffered else "fired")
    return out


def _fired(stream: Stream) -> list[ev.ScheduleSlotFired]:
    return [e for _, e in stream if isinstance(e, ev.ScheduleSlotFired)]


async def _histories(
    conn: asyncpg.Connection, job_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, Stream]:
    wanted = list(job_ids)
    rows = await conn.fetch(
        "SELECT * FROM events WHERE job_id = ANY($1::uuid[]) ORDER BY position", wanted
    )
    out: dict[uuid.UUID, Stream] = {job_id: [] for job_id in wanted}
    for r in rows:
        out[r["job_id"]].append((r["position"], ev.from_row(r)))
    return out


def _tags(history: Stream) -> list[str]:
    return [ev.type_tag(e) for _, e in history]


async def _all_ended(conn: asyncpg.Connection, schedule_ids: list[str]) -> bool:
    running = await conn.fetchval(
        "SELECT count(*) FROM jobs WHERE schedule_id = ANY($1) AND NOT status = ANY($2)",
        schedule_ids,
        ENDED,
    )
    return bool(running == 0)


async def _jobs_by_slot(conn: asyncpg.Connection, schedule_id: str) -> dict[uuid.UUID, datetime]:
    rows = await conn.fetch(
        "SELECT job_id, schedule_slot FROM jobs WHERE schedule_id = $1", schedule_id
    )
    return {r["job_id"]: r["schedule_slot"] for r in rows}


async def _slot_rows(conn: asyncpg.Connection, schedule_id: str) -> list[tuple[Any, ...]]:
    rows = await conn.fetch(
        "SELECT slot, outcome, reason, job_id FROM schedule_slots WHERE schedule_id = $1"
        " ORDER BY slot",
        schedule_id,
    )
    return [(r["slot"], r["outcome"], r["reason"], r["job_id"]) for r in rows]


def _one_after_another(order: list[uuid.UUID], histories: dict[uuid.UUID, Stream]) -> None:
    """Each job was submitted only after the one before it had ended (no two overlapped)."""
    for before, after in itertools.pairwise(order):
        ended = [p for p, e in histories[before] if ev.type_tag(e) in ENDING]
        submitted = histories[after][0]
        assert ev.type_tag(submitted[1]) == "job.submitted.v1"
        assert ended and ended[0] < submitted[0], (before, after)


# What each policy records while its first job runs across four every-second slots.
WHILE_THE_FIRST_JOB_RUNS: Final = {
    "skip": ["fired", "skipped overlap", "skipped overlap", "skipped overlap"],
    "buffer_one": ["fired", "buffered", "skipped overlap", "skipped overlap"],
    "buffer_all": ["fired", "buffered", "buffered", "buffered"],
    "cancel_other": ["fired", "fired", "fired", "fired"],
    "allow_all": ["fired", "fired", "fired", "fired"],
}


async def test_each_overlap_policy_decides_every_slot_once_while_its_job_outlasts_the_interval(
    spawn: Spawn, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    processes = await _running(spawn, conn)
    first = _in_whole_seconds(2)
    held = first + 3 * SECOND  # every gate stays shut across the slots up to this one
    # `skip` goes on after its job ended, to fire again.
    ends = dict.fromkeys(POLICIES, held) | {"skip": held + 4 * SECOND}
    gates = {p: tmp_path / f"gate-{p}" for p in POLICIES}
    for policy in POLICIES:
        await _create(
            conn,
            _id(policy),
            overlap=policy,
            start_at=first,
            end_at=ends[policy],
            job=_gated(gates[policy]),
        )

    async def all_held() -> bool:
        return all([await _reached(conn, _id(p), held) for p in POLICIES])

    async def four_running_at_once() -> bool:
        running = await conn.fetchval(
            "SELECT count(*) FROM jobs WHERE schedule_id = $1 AND status = 'processing'",
            _id("allow_all"),
        )
        return bool(running == 4)

    try:
        await eventually(all_held, within=30, every=0.1)
    except AssertionError:
        print(*(p.output() for p in processes))
        raise
    while_shut = {p: _decisions(await _stream(conn, _id(p)), ends[p]) for p in POLICIES}
    held_slots = _every_second(first, held)
    for policy, expected in WHILE_THE_FIRST_JOB_RUNS.items():
        assert [while_shut[policy].get(s) for s in held_slots] == [[d] for d in expected], policy
    for policy in POLICIES:
        if policy != "allow_all":
            gates[policy].touch()
    # allow_all's four jobs ran side by side (two worker processes, five slots each).
    await eventually(four_running_at_once, within=30, every=0.1)
    gates["allow_all"].touch()

    async def settled() -> bool:
        for policy in POLICIES:
            state = await schedules.get(conn, _id(policy))
            if state.last_slot != ends[policy] or state.next_slot is not None or state.buffered:
                return False
        return await _all_ended(conn, [_id(p) for p in POLICIES])

    try:
        await eventually(settled, within=30, every=0.1)
    except AssertionError:
        print(*(p.output() for p in processes))
        raise
    await _stopped(processes)

    for policy in POLICIES:
        stream = await _stream(conn, _id(policy))
        decided = _decisions(stream, ends[policy])
        assert sorted(decided) == _every_second(first, ends[policy]), policy  # none missed
        fired = _fired(stream)
        order = [e.job for e in fired]
        histories = await _histories(conn, order)
        # Each fired job names its slot, and was claimed by a worker process once.
        assert await _jobs_by_slot(conn, _id(policy)) == {e.job: e.slot for e in fired}
        claims = [e for h in histories.values() for _, e in h if isinstance(e, ev.JobClaimed)]
        assert {c.worker_id for c in claims} <= {p.worker_id for p in processes}
        # `schedule_slots` holds each slot once, a buffered one fired by its later job.
        job_of = {e.slot: e.job for e in fired}
        assert await _slot_rows(conn, _id(policy)) == [
            (
                slot,
                "skipped" if d[-1].startswith("skipped") else "fired",
                d[-1].removeprefix("skipped ") if d[-1].startswith("skipped") else None,
                job_of.get(slot),
            )
            for slot, d in sorted(decided.items())
        ]
        _check_policy(policy, first, held, decided, order, histories)
    # The worker processes stopped the handlers of the jobs cancel_other cancelled.
    cancelled = await _histories(
        conn, [e.job for e in _fired(await _stream(conn, _id("cancel_other")))][:-1]
    )
    if any("job.claimed.v1" in _tags(h) for h in cancelled.values()):
        assert await asyncio.to_thread(Path(f"{gates['cancel_other']}.cancelled").exists)
    await _verify_invariants(conn)


def _check_policy(
    policy: str,
    first: datetime,
    held: datetime,
    decided: dict[datetime, list[str]],
    order: list[uuid.UUID],
    histories: dict[uuid.UUID, Stream],
) -> None:
    completed_once = ["job.submitted.v1", "job.claimed.v1", "job.completed.v1"]
    later = sorted(s for s in decided if s > held)
    if policy == "skip":
        # Once the job ended, the slots fired again, never while one ran.
        assert all(decided[s] in (["fired"], ["skipped overlap"]) for s in later)
        assert ["fired"] in [decided[s] for s in later], decided
        _one_after_another(order, histories)
    elif policy == "buffer_one":
        assert [decided[s] for s in sorted(decided)] == [
            ["fired"],
            ["buffered", "fired buffered"],
            ["skipped overlap"],
            ["skipped overlap"],
        ]
        _one_after_another(order, histories)
    elif policy == "buffer_all":
        assert [decided[s] for s in sorted(decided)] == [["fired"]] + [
            ["buffered", "fired buffered"]
        ] * 3
        _one_after_another(order, histories)  # in the order of their slots
    elif policy == "cancel_other":
        assert [decided[s] for s in sorted(decided)] == [["fired"]] * 4
        *cancelled, last = order
        for job_id, next_slot in zip(cancelled, _every_second(first + SECOND, held), strict=True):
            tags = _tags(histories[job_id])
            assert tags in (
                ["job.submitted.v1", "job.claimed.v1", "job.cancelled.v1"],
                ["job.submitted.v1", "job.cancelled.v1"],
            ), tags
            _, cancel = histories[job_id][-1]
            assert isinstance(cancel, ev.JobCancelled) and cancel.actor == schedules.ACTOR
            assert cancel.reason is not None and next_slot.isoformat() in cancel.reason
        assert _tags(histories[last]) == completed_once
        return
    else:
        assert [decided[s] for s in sorted(decided)] == [["fired"]] * 4
    assert all(_tags(h) == completed_once for h in histories.values()), policy


async def test_a_paused_schedule_records_no_slot_until_resumed_which_skips_them_saying_paused(
    spawn: Spawn, conn: asyncpg.Connection
) -> None:
    processes = await _running(spawn, conn)
    first = _in_whole_seconds(2)
    await _create(conn, "paused", overlap="allow_all", start_at=first)
    await _create(conn, "witness", overlap="allow_all", start_at=first)
    s = _schedules()
    await eventually(lambda: _reached(conn, "paused", first + SECOND), within=30, every=0.1)

    paused = await s.pause(conn, "paused", note="maintenance", actor="ops")
    assert paused.paused and paused.last_slot is not None and paused.next_slot is not None
    # The processes go on deciding slots (the witness fires three more) but none of its.
    after_pause = paused.updated_at.replace(microsecond=0) + 3 * SECOND
    await eventually(lambda: _reached(conn, "witness", after_pause), within=30, every=0.1)
    while_paused = await _stream(conn, "paused")
    assert isinstance(while_paused[-1][1], ev.SchedulePaused)

    resumed = await s.resume(conn, "paused", note="back", actor="ops")
    assert not resumed.paused and resumed.next_slot is not None
    bound = resumed.next_slot + SECOND
    try:
        await eventually(lambda: _reached(conn, "paused", bound), within=30, every=0.1)
        await eventually(lambda: _all_ended(conn, ["paused", "witness"]), within=30, every=0.1)
    except AssertionError:
        print(*(p.output() for p in processes))
        raise
    await _stopped(processes)

    stream = await _stream(conn, "paused")
    changes = [e for _, e in stream[len(while_paused) - 1 :]][:4]
    pause, skipped, resume, fired = changes
    assert isinstance(pause, ev.SchedulePaused) and pause.note == "maintenance"
    # The slots due while paused: one event, recorded by the resume in its transaction.
    assert isinstance(skipped, ev.ScheduleSlotSkipped)
    assert (skipped.slot, skipped.next_slot, skipped.reason, skipped.actor) == (
        paused.next_slot,
        resumed.next_slot,
        "paused",
        schedules.ACTOR,
    )
    assert isinstance(resume, ev.ScheduleResumed) and resume.note == "back"
    assert isinstance(fired, ev.ScheduleSlotFired) and fired.slot == resumed.next_slot
    decided = _decisions(stream, bound)
    every = _every_second(first, max(decided))
    assert sorted(decided) == every  # each slot once, none missed
    for slot in every:
        in_pause = paused.last_slot < slot < resumed.next_slot
        assert decided[slot] == (["skipped paused"] if in_pause else ["fired"]), slot
    assert sorted((await _jobs_by_slot(conn, "paused")).values()) == [
        s for s in every if decided[s] == ["fired"]
    ]
    listed = await schedules.slots_between(conn, "paused", first, bound)
    assert [(x.slot, x.outcome, x.reason) for x in listed] == [
        (slot, "skipped", "paused") if decided[slot] != ["fired"] else (slot, "fired", None)
        for slot in _every_second(first, bound)
    ]
    witness = _decisions(await _stream(conn, "witness"), bound)
    assert sorted(witness) == _every_second(first, max(witness))
    assert all(d == ["fired"] for d in witness.values())
    await _verify_invariants(conn)


async def test_a_deleted_schedule_fires_no_more_while_the_processes_fire_the_others(
    spawn: Spawn, conn: asyncpg.Connection
) -> None:
    processes = await _running(spawn, conn)
    first = _in_whole_seconds(2)
    await _create(conn, "doomed", overlap="allow_all", start_at=first)
    await _create(conn, "witness", overlap="allow_all", start_at=first)
    await eventually(lambda: _reached(conn, "doomed", first + SECOND), within=30, every=0.1)

    deleted = await _schedules().delete(conn, "doomed", note="retired", actor="ops")
    assert deleted.deleted and deleted.last_slot is not None
    # The processes go on deciding slots (the witness fires three more) but none of its.
    after_delete = deleted.updated_at.replace(microsecond=0) + 3 * SECOND
    try:
        await eventually(lambda: _reached(conn, "witness", after_delete), within=30, every=0.1)
        await eventually(lambda: _all_ended(conn, ["doomed", "witness"]), within=30, every=0.1)
    except AssertionError:
        print(*(p.output() for p in processes))
        raise
    await _stopped(processes)

    stream = await _stream(conn, "doomed")
    last = stream[-1][1]
    assert isinstance(last, ev.ScheduleDeleted) and last.note == "retired"
    decided = _decisions(stream, deleted.last_slot)
    every = _every_second(first, deleted.last_slot)
    assert sorted(decided) == every and all(decided[s] == ["fired"] for s in every)
    assert sorted((await _jobs_by_slot(conn, "doomed")).values()) == every
    with pytest.raises(schedules.UnknownSchedule):
        await schedules.get(conn, "doomed")
    assert [x.schedule_id for x in await schedules.listed(conn)] == ["witness"]
    witness = _decisions(await _stream(conn, "witness"), after_delete)
    assert sorted(witness) == _every_second(first, max(witness))
    assert max(witness) >= after_delete
    await _verify_invariants(conn)


async def test_backfill_fires_past_slots_under_its_overlap_policy_and_the_processes_run_them(
    spawn: Spawn, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    processes = await _running(spawn, conn)
    gate = tmp_path / "gate"
    first = _in_whole_seconds(2)
    end = first + 2 * SECOND
    await _create(conn, "backfilled", start_at=first, end_at=end, job=_gated(gate))  # skip

    async def ended() -> bool:
        state = await schedules.get(conn, "backfilled")
        return state.last_slot == end and state.next_slot is None

    await eventually(ended, within=30, every=0.1)
    s = _schedules()
    # The first slot's job still runs: under `skip` a backfill fires none of the slots.
    _, none_fired = await s.backfill(conn, "backfilled", first, end, overlap=None, actor="ops")
    assert none_fired == [ev.BackfilledSlot(slot=first + SECOND), ev.BackfilledSlot(slot=end)]

    gate.touch()
    await eventually(lambda: _all_ended(conn, ["backfilled"]), within=30, every=0.1)
    _, each = await s.backfill(conn, "backfilled", first, end, overlap="allow_all", actor="ops")
    _, one = await s.backfill(conn, "backfilled", first, end, overlap="buffer_one", actor="ops")
    try:
        await eventually(lambda: _all_ended(conn, ["backfilled"]), within=30, every=0.1)
    except AssertionError:
        print(*(p.output() for p in processes))
        raise
    await _stopped(processes)

    assert [x.slot for x in each] == [first + SECOND, end] and all(x.job for x in each)
    assert [(x.slot, x.job is not None) for x in one] == [(first + SECOND, True), (end, False)]
    stream = await _stream(conn, "backfilled")
    backfills = [e for _, e in stream if isinstance(e, ev.ScheduleBackfilled)]
    assert [(b.overlap, b.slots, b.last_job) for b in backfills] == [
        ("skip", none_fired, None),
        ("allow_all", each, each[-1].job),
        ("buffer_one", one, one[0].job),
    ]
    # The slots' own outcomes stay as recorded: a backfill is an event of its own.
    assert _decisions(stream, end) == {
        first: ["fired"],
        first + SECOND: ["skipped overlap"],
        end: ["skipped overlap"],
    }
    (scheduled,) = _fired(stream)
    again = [x.job for x in each + one if x.job is not None]
    histories = await _histories(conn, [scheduled.job, *again])
    completed_once = ["job.submitted.v1", "job.claimed.v1", "job.completed.v1"]
    assert all(_tags(h) == completed_once for h in histories.values())
    assert await _jobs_by_slot(conn, "backfilled") == {
        scheduled.job: first,
        each[0].job: first + SECOND,
        each[1].job: end,
        one[0].job: first + SECOND,
    }
    keys = await conn.fetch(
        "SELECT idempotency_key FROM jobs WHERE job_id = ANY($1::uuid[]) ORDER BY 1", again
    )
    assert all("/backfill/" in r["idempotency_key"] for r in keys)
    assert len({r["idempotency_key"] for r in keys}) == 3
    assert (await schedules.get(conn, "backfilled")).last_job_id == one[0].job
    await _verify_invariants(conn)


async def test_a_schedule_whose_job_cannot_be_submitted_does_not_stop_the_others(
    spawn: Spawn, conn: asyncpg.Connection
) -> None:
    processes = await _running(spawn, conn)
    first = _in_whole_seconds(2)
    # `test.retired` is known here, not to the worker processes (a later deploy removed it).
    registry = jobs.register(jobtypes.Registry())
    jobtypes.job_type("test.retired", jobs.Count, registry=registry)(jobs.noop)
    body = {"id": "retired", "cron": "* * * * * *", "start_at": first}
    body["job"] = {"type": "test.retired", "payload": {}}
    await schedules.Schedules(submission.Submitter(registry)).create(
        conn, msgspec.convert(body, schedules.ScheduleIn), actor="ops"
    )
    await _create(conn, "witness", overlap="allow_all", start_at=first + SECOND)

    try:
        await eventually(
            lambda: _reached(conn, "witness", first + 3 * SECOND), within=15, every=0.1
        )
    except AssertionError:
        print(*(p.output() for p in processes))
        raise
    assert all(p.proc.poll() is None for p in processes)
    await _stopped(processes)

    witness = _decisions(await _stream(conn, "witness"), first + 3 * SECOND)
    assert sorted(witness) == _every_second(first + SECOND, max(witness))
    assert all(d == ["fired"] for d in witness.values())
    # Nothing of the retired schedule's slots was stored; each process said why.
    assert [ev.type_tag(e) for _, e in await _stream(conn, "retired")] == ["schedule.created.v1"]
    assert await _jobs_by_slot(conn, "retired") == {}
    for process in processes:
        logged = await asyncio.to_thread(process.log.read_text)
        assert "schedule retired of tenant default" in logged
        assert "test.retired" in logged
    await _verify_invariants(conn)
