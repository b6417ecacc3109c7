"""Schedules: a job fired at each slot of a cron expression or an interval, each slot
exactly once across every process, and every slot accounted for.

A schedule is one event stream in its tenant, like a queue's (ledger/queues.py): its id
is `stream_id` of the tenant and the schedule id, its events (`schedule.*`,
ledger/events.py) are hash-chained, in the feed and covered by checkpoints, and the
append projects them into `schedules` and `schedule_slots` (sql/0073). Its changes
(create, update, pause with a note, resume, delete, trigger, backfill) are events, and
so is each slot's outcome, appended in the order of the slots:

- `schedule.slot_fired.v1` {slot, job}: the slot's job was submitted through the
  Submitter in the same transaction, idempotency key `schedule:<id>@<slot>`, its
  `job.submitted.v1` naming the schedule and the slot;
- `schedule.slot_skipped.v1` {slot, reason, next_slot}: every slot from `slot` up to
  `next_slot` did not fire (`overlap`, `outside_catchup_window`, `paused`);
- `schedule.slot_buffered.v1` {slot}: the slot waits for the previous job (overlap
  `buffer_one`/`buffer_all`) and fires (`slot_fired` with `buffered`) once it ends.

Exactly once per slot is the database's decision: two processes recording a slot
append the same version of the stream, and one of them gets a VersionConflict (its
transaction, job included, rolls back); the projection also refuses any slot but the
schedule's next one, and `schedule_slots` holds a slot once.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

import asyncpg
import msgspec

from ledger import acting, errors, schedule_wire, slots, sqlfile, submission, wire
from ledger import events as ev

Q = sqlfile.load("ledger")
# The namespace of schedule stream ids (uuid5 of tenant and id under it); fixed forever.
NAMESPACE: Final = uuid.UUID("0b6c8a0e-5f0e-4b8e-a3a1-7d2f9c4e6b15")
ACTOR: Final = "scheduler"  # who records slots and submits their jobs
MAX_SLOTS_PER_ROUND: Final = 1_000  # a round records at most this many slot events
MAX_BACKFILL: Final = 1_000
MAX_LISTED: Final = 1_000
# A command is decided again on the schedule as it is now when another writer (most often
# a process recording a slot) appended first; only one that keeps winning makes it fail.
CHANGE_ATTEMPTS: Final = 5
ACTIVE: Final = frozenset({"pending", "processing", "retrying"})

# The API's structs (ledger.schedule_wire, which the HTTP client shares), by these names too.
SCHEDULE_ID_PATTERN = schedule_wire.SCHEDULE_ID_PATTERN
Overlap = schedule_wire.Overlap
ScheduleId = schedule_wire.ScheduleId
ScheduleIn = schedule_wire.ScheduleIn
ScheduleOut = schedule_wire.ScheduleOut
ScheduleState = schedule_wire.ScheduleState
SkipReason = schedule_wire.SkipReason
SlotOut = schedule_wire.SlotOut
Spec = schedule_wire.Spec


class UnknownSchedule(errors.LedgerError):
    """No schedule of that id in the tenant (404)."""

    def __init__(self, schedule_id: str) -> None:
        super().__init__(f"no schedule {schedule_id!r}")
        self.schedule_id = schedule_id


class ScheduleExists(errors.LedgerError):
    """A schedule of that id exists already (409)."""

    def __init__(self, schedule_id: str) -> None:
        super().__init__(f"schedule {schedule_id!r} exists already")
        self.schedule_id = schedule_id


class ScheduleChanged(errors.VersionConflict):
    """Another writer changed the schedule first (409); read it and decide again."""

    def __init__(self, schedule_id: str, conflict: errors.VersionConflict) -> None:
        super().__init__(conflict.job_id, conflict.expected_version)
        self.args = (f"schedule {schedule_id!r} changed concurrently; read it and try again",)
        self.schedule_id = schedule_id


def stream_id(schedule_id: str, tenant: str) -> uuid.UUID:
    """The id of a tenant's schedule's event stream (no id holds a newline)."""
    return uuid.uuid5(NAMESPACE, f"{tenant}\n{schedule_id}")


def slot_key(schedule_id: str, slot: datetime) -> str:
    """The idempotency key of the job a slot fires."""
    return f"schedule:{schedule_id}@{slot.isoformat()}"


_spec_decode = msgspec.json.Decoder(Spec).decode


def spec_of(data: Any) -> Spec:
    if isinstance(data, str | bytes):
        return _spec_decode(data)
    return msgspec.convert(data, Spec)


def spec_data(spec: Spec) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(spec)
    return data


def from_row(row: asyncpg.Record) -> ScheduleState:
    return ScheduleState(
        schedule_id=row["schedule_id"],
        tenant=row["tenant"],
        version=row["version"],
        spec=spec_of(row["spec"]),
        paused=row["paused"],
        deleted=row["deleted"],
        next_slot=row["next_slot"],
        last_slot=row["last_slot"],
        last_job_id=row["last_job_id"],
        buffered=tuple(row["buffered"]),
        note=row["note"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        updated_by=row["updated_by"],
        updated_at=row["updated_at"],
    )


def checked_spec(spec: Spec, registry: submission.Submitter, now: datetime) -> slots.Rule:
    """The spec's rule, its job checked as a submission would be (InvalidInput otherwise)."""
    rule = spec.rule()
    if spec.job.run_at is not None or spec.job.delay_seconds is not None:
        raise errors.InvalidInput.at("job.run_at", "a schedule's job runs at its slot")
    registry.prepare(spec.job.validated(), now=now, where="job.")
    return rule


# -- reading -----------------------------------------------------------------------


async def current(conn: asyncpg.Connection, schedule_id: str) -> ScheduleState | None:
    """The schedule in the tenant the transaction acts in (deleted ones too; None: never)."""
    row = await conn.fetchrow(Q["schedules_get"], schedule_id)
    return None if row is None else from_row(row)


async def live(conn: asyncpg.Connection, schedule_id: str) -> ScheduleState:
    """The schedule, not deleted (UnknownSchedule otherwise)."""
    state = await current(conn, schedule_id)
    if state is None or state.deleted:
        raise UnknownSchedule(schedule_id)
    return state


async def listed(conn: asyncpg.Connection) -> list[ScheduleState]:
    """The tenant's live schedules, by id."""
    async with acting.in_a_tenant(conn):
        rows = await conn.fetch(Q["schedules_list"], MAX_LISTED)
    return [from_row(r) for r in rows]


async def get(conn: asyncpg.Connection, schedule_id: str) -> ScheduleState:
    async with acting.in_a_tenant(conn):
        return await live(conn, schedule_id)


async def slots_between(
    conn: asyncpg.Connection, schedule_id: str, start: datetime, end: datetime
) -> list[SlotOut]:
    """Each slot in [start, end] with what happened to it (at most 1,000)."""
    async with acting.in_a_tenant(conn):
        state = await live(conn, schedule_id)
        rows = await conn.fetch(Q["schedule_slots_between"], schedule_id, start, end)
    rule = state.spec.rule()
    known: dict[datetime, SlotOut] = {}
    skipped: list[tuple[datetime, datetime | None, str]] = []
    for row in rows:
        if row["outcome"] == "skipped":
            skipped.append((row["slot"], row["until"], row["reason"]))
        if row["slot"] >= start:
            known[row["slot"]] = SlotOut(
                slot=row["slot"],
                outcome=row["outcome"],
                job_id=row["job_id"],
                status=row["status"],
                reason=row["reason"],
            )
    out: dict[datetime, SlotOut] = dict(known)
    for slot in rule.between(start - slots.TINY, end, MAX_LISTED):
        if slot in out:
            continue
        for first, until, reason in skipped:
            if first <= slot and (until is None or slot < until):
                out[slot] = SlotOut(slot=slot, outcome="skipped", reason=reason)
                break
        else:
            if state.next_slot is not None and slot >= state.next_slot:
                out[slot] = SlotOut(slot=slot, outcome="pending")
    return [out[s] for s in sorted(out)][:MAX_LISTED]


async def recent(conn: asyncpg.Connection, schedule_id: str, limit: int = 10) -> list[SlotOut]:
    """The schedule's last `limit` recorded slot outcomes, newest first (a skipped run of
    slots is one, at its first slot)."""
    async with acting.in_a_tenant(conn):
        await live(conn, schedule_id)
        rows = await conn.fetch(Q["schedule_slots_recent"], schedule_id, min(limit, MAX_LISTED))
    return [
        SlotOut(
            slot=r["slot"],
            outcome=r["outcome"],
            job_id=r["job_id"],
            status=r["status"],
            reason=r["reason"],
        )
        for r in rows
    ]


# -- changing ----------------------------------------------------------------------


class Schedules:
    """Changes schedules and records their slots with one Submitter (its job types, its
    event store): every event through its store's append, every job through it."""

    def __init__(self, submitter: submission.Submitter | None = None) -> None:
        self.submitter = submitter or submission.DEFAULT
        self.store = self.submitter.store

    async def create(
        self, conn: asyncpg.Connection, body: ScheduleIn, *, actor: str
    ) -> ScheduleState:
        spec = body.spec()
        now = self.store.clock()
        rule = checked_spec(spec, self.submitter, now)
        first = rule.at_or_after(spec.start_at) if spec.start_at is not None else rule.after(now)
        async with conn.transaction():
            tenant = await acting.named(conn)
            state = await current(conn, body.id)
            if state is not None and not state.deleted:
                raise ScheduleExists(body.id)
            if state is not None and state.last_slot is not None and first is not None:
                # Created again: its slots start after those its last life recorded.
                first = rule.after(max(first, state.last_slot))
            event = ev.ScheduleCreated(
                job_id=stream_id(body.id, tenant),
                version=(state.version if state else 0) + 1,
                actor=actor,
                occurred_at=now,
                schedule_id=body.id,
                spec=spec_data(spec),
                paused=body.paused,
                note=body.note,
                next_slot=first,
            )
            await self._append(conn, body.id, [event])
            return await live(conn, body.id)

    async def update(
        self, conn: asyncpg.Connection, schedule_id: str, spec: Spec, *, actor: str
    ) -> ScheduleState:
        """Replace the spec; the slots from now on (or from a next slot already due) follow it."""
        now = self.store.clock()
        rule = checked_spec(spec, self.submitter, now)

        def decide(state: ScheduleState) -> list[ev.JobEvent]:
            # A next slot already due stays to be accounted for (fired or skipped) under
            # the new rule; a future one does not hold the new rule back: an hourly
            # schedule made every minute fires within the minute, not at the old hour.
            due = state.next_slot is not None and state.next_slot <= now
            cursor = state.next_slot if due and state.next_slot is not None else now
            if spec.start_at is not None and spec.start_at > cursor:
                cursor = spec.start_at
            return [
                ev.ScheduleUpdated(
                    **self._envelope(state, actor, now),
                    spec=spec_data(spec),
                    next_slot=rule.at_or_after(cursor),
                )
            ]

        return await self._change(conn, schedule_id, decide)

    async def pause(
        self, conn: asyncpg.Connection, schedule_id: str, *, note: str | None, actor: str
    ) -> ScheduleState:
        now = self.store.clock()
        return await self._change(
            conn,
            schedule_id,
            lambda s: (
                [] if s.paused else [ev.SchedulePaused(**self._envelope(s, actor, now), note=note)]
            ),
        )

    async def resume(
        self, conn: asyncpg.Connection, schedule_id: str, *, note: str | None, actor: str
    ) -> ScheduleState:
        """Fire again; the slots due while paused are recorded skipped (`paused`) first."""
        now = self.store.clock()

        def decide(state: ScheduleState) -> list[ev.JobEvent]:
            if not state.paused:
                return []
            decided: list[ev.JobEvent] = []
            if state.next_slot is not None and state.next_slot <= now:
                decided.append(
                    ev.ScheduleSlotSkipped(
                        **self._envelope(state, ACTOR, now),
                        slot=state.next_slot,
                        reason="paused",
                        next_slot=state.spec.rule().after(now),
                    )
                )
            decided.append(
                ev.ScheduleResumed(**self._envelope(state, actor, now, len(decided)), note=note)
            )
            return decided

        return await self._change(conn, schedule_id, decide)

    async def delete(
        self, conn: asyncpg.Connection, schedule_id: str, *, note: str | None, actor: str
    ) -> ScheduleState:
        now = self.store.clock()
        return await self._change(
            conn,
            schedule_id,
            lambda s: [ev.ScheduleDeleted(**self._envelope(s, actor, now), note=note)],
            deleted_ok=True,
        )

    async def trigger(
        self, conn: asyncpg.Connection, schedule_id: str, *, actor: str
    ) -> tuple[ScheduleState, wire.Job]:
        """Fire the schedule's job now, outside its slots (whatever its overlap policy)."""

        async def attempt() -> tuple[ScheduleState, wire.Job]:
            async with conn.transaction():
                state = await live(conn, schedule_id)
                now = self.store.clock()
                job = await self._submit(
                    conn, state, None, now, f"schedule:{schedule_id}@trigger/{state.version + 1}"
                )
                await self._append(
                    conn,
                    schedule_id,
                    [ev.ScheduleTriggered(**self._envelope(state, actor, now), job=job.job_id)],
                )
                return await live(conn, schedule_id), job

        async with acting.in_a_tenant(conn):
            return await _retrying(attempt)

    async def backfill(
        self,
        conn: asyncpg.Connection,
        schedule_id: str,
        start: datetime,
        end: datetime,
        *,
        overlap: Overlap | None,
        actor: str,
    ) -> tuple[ScheduleState, list[ev.BackfilledSlot]]:
        """Fire the slots in (start, end] again. `allow_all` fires each; any other policy
        fires the first (`skip`: none while the schedule's last job is still active) and
        records the others skipped, as they would overlap it."""
        if end <= start:
            raise errors.InvalidInput.at("end", "end is after start")

        async def attempt() -> tuple[ScheduleState, list[ev.BackfilledSlot]]:
            async with conn.transaction():
                state = await live(conn, schedule_id)
                policy = overlap or state.spec.overlap
                wanted = list(state.spec.rule().between(start, end, MAX_BACKFILL + 1))
                if len(wanted) > MAX_BACKFILL:
                    raise errors.InvalidInput.at(
                        "end", f"a backfill fires at most {MAX_BACKFILL} slots"
                    )
                now = self.store.clock()
                busy = policy == "skip" and await self._active(conn, state.last_job_id)
                done: list[ev.BackfilledSlot] = []
                last: uuid.UUID | None = None
                for index, slot in enumerate(wanted):
                    if busy or (index > 0 and policy != "allow_all"):
                        done.append(ev.BackfilledSlot(slot=slot))
                        continue
                    key = f"{slot_key(schedule_id, slot)}/backfill/{state.version + 1}"
                    job = await self._submit(conn, state, slot, now, key)
                    last = job.job_id
                    done.append(ev.BackfilledSlot(slot=slot, job=job.job_id))
                event = ev.ScheduleBackfilled(
                    **self._envelope(state, actor, now),
                    start=start,
                    end=end,
                    overlap=policy,
                    slots=done,
                    last_job=last,
                )
                await self._append(conn, schedule_id, [event])
                return await live(conn, schedule_id), done

        async with acting.in_a_tenant(conn):
            return await _retrying(attempt)

    # -- recording slots ---------------------------------------------------------------

    async def record_due(
        self, conn: asyncpg.Connection, tenant: str, schedule_id: str, now: datetime
    ) -> list[ev.JobEvent]:
        """Record every slot of the schedule due at `now`, in order, in one transaction
        acting in its tenant; the slot events appended ([]: nothing was due). Raises
        ScheduleChanged when another process recorded them first."""
        async with conn.transaction():
            await acting.act_in(conn, tenant)
            state = await current(conn, schedule_id)
            if state is None or state.deleted:
                return []
            decided = await self._decide_due(conn, state, now)
            if decided:
                await self._append(conn, schedule_id, decided)
            return decided

    async def _decide_due(
        self, conn: asyncpg.Connection, state: ScheduleState, now: datetime
    ) -> list[ev.JobEvent]:
        spec = state.spec
        rule = spec.rule()
        window = timedelta(seconds=spec.catchup_window_seconds)
        decided: list[ev.JobEvent] = []
        buffered = list(state.buffered)
        last_active = await self._active(conn, state.last_job_id)
        next_slot = state.next_slot

        def envelope() -> dict[str, Any]:
            return self._envelope(state, ACTOR, now, len(decided))

        if buffered and not last_active and not state.paused:
            # A buffered slot waits out a pause too: it fires once the schedule is resumed.
            slot = buffered.pop(0)
            job = await self._submit(conn, state, slot, now, slot_key(state.schedule_id, slot))
            decided.append(
                ev.ScheduleSlotFired(
                    **envelope(), slot=slot, job=job.job_id, next_slot=next_slot, buffered=True
                )
            )
            last_active = True
        while (
            not state.paused
            and next_slot is not None
            and next_slot <= now
            and len(decided) < MAX_SLOTS_PER_ROUND
        ):
            slot = next_slot
            if now - slot > window:
                # The run of slots too old to fire: one event up to the first still in time.
                next_slot = rule.at_or_after(now - window)
                if next_slot is not None and next_slot <= slot:
                    next_slot = rule.after(slot)
                decided.append(
                    ev.ScheduleSlotSkipped(
                        **envelope(),
                        slot=slot,
                        reason="outside_catchup_window",
                        next_slot=next_slot,
                    )
                )
                continue
            next_slot = rule.after(slot)
            busy = last_active or bool(buffered)
            policy = spec.overlap
            if busy and policy == "skip":
                decided.append(
                    ev.ScheduleSlotSkipped(
                        **envelope(), slot=slot, reason="overlap", next_slot=next_slot
                    )
                )
            elif busy and (policy == "buffer_all" or (policy == "buffer_one" and not buffered)):
                buffered.append(slot)
                decided.append(
                    ev.ScheduleSlotBuffered(**envelope(), slot=slot, next_slot=next_slot)
                )
            elif busy and policy == "buffer_one":
                decided.append(
                    ev.ScheduleSlotSkipped(
                        **envelope(), slot=slot, reason="overlap", next_slot=next_slot
                    )
                )
            else:
                if busy and policy == "cancel_other" and state.last_job_id is not None:
                    await self._cancel(conn, state.last_job_id, state.schedule_id, slot)
                job = await self._submit(conn, state, slot, now, slot_key(state.schedule_id, slot))
                decided.append(
                    ev.ScheduleSlotFired(
                        **envelope(), slot=slot, job=job.job_id, next_slot=next_slot
                    )
                )
                state = msgspec.structs.replace(state, last_job_id=job.job_id)
                last_active = True
        return decided

    async def _active(self, conn: asyncpg.Connection, job_id: uuid.UUID | None) -> bool:
        if job_id is None:
            return False
        status = await conn.fetchval(Q["schedule_job_status"], job_id)
        return status in ACTIVE

    async def _cancel(
        self, conn: asyncpg.Connection, job_id: uuid.UUID, schedule_id: str, slot: datetime
    ) -> None:
        reason = f"schedule {schedule_id} slot {slot.isoformat()} (overlap cancel_other)"
        with contextlib.suppress(errors.InvalidTransition):  # it ended meanwhile
            await self.submitter.cancel(conn, job_id, reason=reason, actor=ACTOR)

    async def _submit(
        self,
        conn: asyncpg.Connection,
        state: ScheduleState,
        slot: datetime | None,
        now: datetime,
        key: str,
    ) -> wire.Job:
        run_at = None
        if slot is not None:
            run_at = slot + slots.jitter(state.schedule_id, slot, state.spec.jitter_seconds)
        return await self.submitter.submit_scheduled(
            conn,
            state.spec.job,
            schedule_id=state.schedule_id,
            slot=slot,
            run_at=run_at,
            idempotency_key=key,
            actor=ACTOR,
        )

    def _envelope(
        self, state: ScheduleState, actor: str, now: datetime, offset: int = 0
    ) -> dict[str, Any]:
        return {
            "job_id": stream_id(state.schedule_id, state.tenant),
            "version": state.version + 1 + offset,
            "actor": actor,
            "occurred_at": now,
            "schedule_id": state.schedule_id,
        }

    async def _append(
        self, conn: asyncpg.Connection, schedule_id: str, events: Sequence[ev.JobEvent]
    ) -> None:
        try:
            await self.store.append(conn, events)
        except errors.VersionConflict as conflict:
            raise ScheduleChanged(schedule_id, conflict) from conflict

    async def _change(
        self,
        conn: asyncpg.Connection,
        schedule_id: str,
        decide: Any,
        *,
        deleted_ok: bool = False,
    ) -> ScheduleState:

        async def attempt() -> ScheduleState:
            async with conn.transaction():
                state = await live(conn, schedule_id)
                decided = decide(state)
                if decided:
                    await self._append(conn, schedule_id, decided)
                after = await current(conn, schedule_id)
                assert after is not None
                return after

        async with acting.in_a_tenant(conn):
            return await _retrying(attempt)


async def _retrying[T](attempt: Callable[[], Awaitable[T]]) -> T:
    """`attempt` (one transaction: read the schedule, decide, append), again while another
    writer appended to the schedule first (ScheduleChanged), at most CHANGE_ATTEMPTS times.
    A command carries no version of its own: it is decided on the schedule as it is now,
    so a slot recorded meanwhile by a process is no reason to refuse it."""
    for _ in range(CHANGE_ATTEMPTS - 1):
        try:
            return await attempt()
        except ScheduleChanged:
            continue  # its transaction rolled back; read the schedule again
    return await attempt()
