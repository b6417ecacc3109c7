"""The schedules API under /api/v1/schedules (issue #17): create, list, read, replace,
delete, pause (with a note), resume, trigger, backfill, and each slot's outcome.

Every change is an event of the schedule's stream (`ledger.schedules`) whose actor is
the token's subject; writes need `schedules:write` (granted by `admin`), reads
`jobs:read`. A route acts in its request's tenant: another tenant's schedules are not
found.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final

from litestar import Controller, delete, get, post, put
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, PathParameter, QueryParameter

from ledger import errors, schedule_wire, schedules
from ledger.auth import Principal
from service.http import problems, security
from service.http.services import Services, services_of

PREFIX: Final = "/api/v1/schedules"
ScheduleId = Annotated[str, PathParameter(pattern=schedules.SCHEDULE_ID_PATTERN)]
WRITE: Final = "schedules:write"


NoteRequest = schedule_wire.NoteRequest
BackfillRequest = schedule_wire.BackfillRequest
ScheduleList = schedule_wire.ScheduleList
Triggered = schedule_wire.Triggered
Backfilled = schedule_wire.Backfilled
SlotList = schedule_wire.SlotList


CLOSED_REQUESTS: Final = (schedules.ScheduleIn, schedules.Spec, NoteRequest, BackfillRequest)


def _schedules(services: Services) -> schedules.Schedules:
    return schedules.Schedules(services.submitter)


class SchedulesController(Controller):
    path = PREFIX
    tags = ["schedules"]  # noqa: RUF012 - Litestar reads these as class attributes
    dependencies = {  # noqa: RUF012
        "services": Provide(services_of, sync_to_thread=False),
        "principal": Provide(security.principal_of, sync_to_thread=False),
    }

    @post(
        "/",
        opt=security.scope(WRITE),
        responses=problems.responses(400, 401, 403, 409, 413, 415, 422),
        summary="Create a schedule",
        description="`id`, `cron` (5 fields, or 6 with seconds first) or `interval_seconds`, "
        "`timezone`, `job` (a submission), `overlap`, `catchup_window_seconds`, "
        "`jitter_seconds`, `start_at`, `end_at`, `paused`, `note`.",
    )
    async def create(
        self,
        data: JSONBody[schedules.ScheduleIn],
        services: NamedDependency[Services],
        principal: NamedDependency[Principal],
    ) -> schedules.ScheduleOut:
        async with services.connection() as conn:
            state = await _schedules(services).create(conn, data, actor=principal.subject)
        return schedules.ScheduleOut.of(state)

    @get("/", opt=security.scope("jobs:read"), responses=problems.responses(401, 403))
    async def list_schedules(self, services: NamedDependency[Services]) -> ScheduleList:
        async with services.connection() as conn:
            found = await schedules.listed(conn)
        return ScheduleList(schedules=[schedules.ScheduleOut.of(s) for s in found])

    @get(
        "/{schedule_id:str}",
        opt=security.scope("jobs:read"),
        responses=problems.responses(400, 401, 403, 404),
    )
    async def read(
        self, schedule_id: ScheduleId, services: NamedDependency[Services]
    ) -> schedules.ScheduleOut:
        async with services.connection() as conn:
            return schedules.ScheduleOut.of(await schedules.get(conn, schedule_id))

    @put(
        "/{schedule_id:str}",
        opt=security.scope(WRITE),
        responses=problems.responses(400, 401, 403, 404, 409, 413, 415, 422),
        summary="Replace a schedule's definition; its slots from the next one follow it",
    )
    async def update(
        self,
        schedule_id: ScheduleId,
        data: JSONBody[schedules.Spec],
        services: NamedDependency[Services],
        principal: NamedDependency[Principal],
    ) -> schedules.ScheduleOut:
        async with services.connection() as conn:
            state = await _schedules(services).update(
                conn, schedule_id, data, actor=principal.subject
            )
        return schedules.ScheduleOut.of(state)

    @delete(
        "/{schedule_id:str}",
        status_code=200,
        opt=security.scope(WRITE),
        responses=problems.responses(400, 401, 403, 404, 409),
    )
    async def remove(
        self,
        schedule_id: ScheduleId,
        services: NamedDependency[Services],
        principal: NamedDependency[Principal],
    ) -> schedules.ScheduleOut:
        async with services.connection() as conn:
            state = await _schedules(services).delete(
                conn, schedule_id, note=None, actor=principal.subject
            )
        return schedules.ScheduleOut.of(state)

    @post(
        "/{schedule_id:str}/pause",
        status_code=200,
        opt=security.scope(WRITE),
        responses=problems.responses(400, 401, 403, 404, 409, 413, 415, 422),
        summary="Pause: its slots are recorded skipped (paused) until resumed",
    )
    async def pause(
        self,
        schedule_id: ScheduleId,
        services: NamedDependency[Services],
        principal: NamedDependency[Principal],
        data: JSONBody[NoteRequest | None] = None,
    ) -> schedules.ScheduleOut:
        async with services.connection() as conn:
            state = await _schedules(services).pause(
                conn, schedule_id, note=data.note if data else None, actor=principal.subject
            )
        return schedules.ScheduleOut.of(state)

    @post(
        "/{schedule_id:str}/resume",
        status_code=200,
        opt=security.scope(WRITE),
        responses=problems.responses(400, 401, 403, 404, 409, 413, 415, 422),
    )
    async def resume(
        self,
        schedule_id: ScheduleId,
        services: NamedDependency[Services],
        principal: NamedDependency[Principal],
        data: JSONBody[NoteRequest | None] = None,
    ) -> schedules.ScheduleOut:
        async with services.connection() as conn:
            state = await _schedules(services).resume(
                conn, schedule_id, note=data.note if data else None, actor=principal.subject
            )
        return schedules.ScheduleOut.of(state)

    @post(
        "/{schedule_id:str}/trigger",
        status_code=201,
        opt=security.scope(WRITE),
        responses=problems.responses(400, 401, 403, 404, 409),
        summary="Fire the schedule's job now, outside its slots",
    )
    async def trigger(
        self,
        schedule_id: ScheduleId,
        services: NamedDependency[Services],
        principal: NamedDependency[Principal],
    ) -> Triggered:
        async with services.connection() as conn:
            state, job = await _schedules(services).trigger(
                conn, schedule_id, actor=principal.subject
            )
        return Triggered(schedule=schedules.ScheduleOut.of(state), job=job)

    @post(
        "/{schedule_id:str}/backfill",
        status_code=201,
        opt=security.scope(WRITE),
        responses=problems.responses(400, 401, 403, 404, 409, 413, 415, 422),
        summary="Fire the slots in (start, end] again",
    )
    async def backfill(
        self,
        schedule_id: ScheduleId,
        data: JSONBody[BackfillRequest],
        services: NamedDependency[Services],
        principal: NamedDependency[Principal],
    ) -> Backfilled:
        async with services.connection() as conn:
            state, done = await _schedules(services).backfill(
                conn,
                schedule_id,
                data.start,
                data.end,
                overlap=data.overlap,
                actor=principal.subject,
            )
        shown = [
            schedules.SlotOut(slot=d.slot, outcome="fired", job_id=d.job)
            if d.job is not None
            else schedules.SlotOut(slot=d.slot, outcome="skipped", reason="overlap")
            for d in done
        ]
        return Backfilled(schedule=schedules.ScheduleOut.of(state), slots=shown)

    @get(
        "/{schedule_id:str}/slots",
        opt=security.scope("jobs:read"),
        responses=problems.responses(400, 401, 403, 404),
        summary="Each slot in [from, to] and what happened to it",
    )
    async def slots(
        self,
        schedule_id: ScheduleId,
        services: NamedDependency[Services],
        start: Annotated[datetime, QueryParameter(name="from")],
        end: Annotated[datetime, QueryParameter(name="to")],
    ) -> SlotList:
        for name, value in (("from", start), ("to", end)):
            if value.tzinfo is None:
                raise problems.InvalidParameter(
                    f"{name} needs a timezone",
                    [errors.FieldError(path=name, message="needs a timezone")],
                )
        if end < start:
            raise problems.InvalidParameter(
                "to is before from", [errors.FieldError(path="to", message="is before from")]
            )
        async with services.connection() as conn:
            found = await schedules.slots_between(conn, schedule_id, start, end)
        return SlotList(slots=found)

    @get(
        "/{schedule_id:str}/slots/recent",
        opt=security.scope("jobs:read"),
        responses=problems.responses(400, 401, 403, 404),
        summary="The schedule's last recorded slot outcomes, newest first",
        description="`limit` (1-100, default 10); a skipped run of slots is one, at its "
        "first slot, with its reason.",
    )
    async def recent_slots(
        self,
        schedule_id: ScheduleId,
        services: NamedDependency[Services],
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 10,
    ) -> SlotList:
        async with services.connection() as conn:
            found = await schedules.recent(conn, schedule_id, limit)
        return SlotList(slots=found)
