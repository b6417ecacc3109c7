"""A schedule as the API takes and answers it (issue #17): its spec, its state, its
slots' outcomes, and the bodies of the schedule routes. Plain structs, shared by the
server (`ledger.schedules`, the routes) and the HTTP client, which imports no server code."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Final, Literal

import msgspec

from ledger import errors, slots, wire

SCHEDULE_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"

Overlap = Literal["skip", "buffer_one", "buffer_all", "cancel_other", "allow_all"]
SkipReason = Literal["overlap", "outside_catchup_window", "paused"]
ScheduleId = Annotated[str, msgspec.Meta(pattern=SCHEDULE_ID_PATTERN)]


class Spec(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """What a schedule fires and when (the body of POST /api/v1/schedules without `id`)."""

    job: wire.Submission
    cron: str | None = None
    interval_seconds: Annotated[float, msgspec.Meta(ge=1, le=366 * 86400)] | None = None
    timezone: str = "UTC"
    overlap: Overlap = "skip"
    catchup_window_seconds: Annotated[float, msgspec.Meta(ge=0, le=366 * 86400)] = 60
    jitter_seconds: Annotated[float, msgspec.Meta(ge=0, le=86400)] = 0
    start_at: wire.AwareTime | None = None
    end_at: wire.AwareTime | None = None

    def rule(self) -> slots.Rule:
        """The slots this spec names; InvalidInput when it names none."""
        try:
            return slots.Rule(
                cron=self.cron,
                interval_seconds=self.interval_seconds,
                timezone=self.timezone,
                start_at=self.start_at,
                end_at=self.end_at,
            )
        except slots.BadRule as exc:
            field = "timezone" if "timezone" in str(exc) else "cron"
            if "interval" in str(exc) or "end_at" in str(exc):
                field = "end_at" if "end_at" in str(exc) else "interval_seconds"
            raise errors.InvalidInput.at(field, str(exc)) from None


class ScheduleIn(Spec, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """POST /api/v1/schedules: the id, the spec, and whether it starts paused."""

    id: ScheduleId
    paused: bool = False
    note: str | None = None

    def spec(self) -> Spec:
        fields = {f: getattr(self, f) for f in Spec.__struct_fields__}
        return Spec(**fields)


class ScheduleState(msgspec.Struct, frozen=True, kw_only=True):
    """A schedule after its events (a row of `schedules`)."""

    schedule_id: str
    tenant: str
    version: int
    spec: Spec
    paused: bool
    deleted: bool
    next_slot: datetime | None
    last_slot: datetime | None
    last_job_id: uuid.UUID | None
    buffered: tuple[datetime, ...]
    note: str | None
    created_by: str
    created_at: datetime
    updated_by: str
    updated_at: datetime


class ScheduleOut(msgspec.Struct, frozen=True, kw_only=True):
    """A schedule as the API answers it."""

    id: str
    spec: Spec
    paused: bool
    note: str | None
    next_slot: datetime | None
    last_slot: datetime | None
    last_job_id: uuid.UUID | None
    buffered: list[datetime]
    version: int
    created_by: str
    created_at: datetime
    updated_by: str
    updated_at: datetime

    @classmethod
    def of(cls, s: ScheduleState) -> ScheduleOut:
        return cls(
            id=s.schedule_id,
            spec=s.spec,
            paused=s.paused,
            note=s.note,
            next_slot=s.next_slot,
            last_slot=s.last_slot,
            last_job_id=s.last_job_id,
            buffered=list(s.buffered),
            version=s.version,
            created_by=s.created_by,
            created_at=s.created_at,
            updated_by=s.updated_by,
            updated_at=s.updated_at,
        )


class SlotOut(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One slot and what happened: fired (job, status), skipped (reason), buffered, pending."""

    slot: datetime
    outcome: Literal["fired", "skipped", "buffered", "pending"]
    job_id: uuid.UUID | None = None
    status: str | None = None
    reason: str | None = None


class NoteRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """POST .../pause and .../resume: an optional note recorded on the event."""

    note: Annotated[str, msgspec.Meta(max_length=500, pattern=wire.NO_NUL)] | None = None


class BackfillRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """POST .../backfill: fire the slots in (start, end] again, under `overlap`."""

    start: wire.AwareTime
    end: wire.AwareTime
    overlap: Overlap | None = None


class ScheduleList(msgspec.Struct, frozen=True, kw_only=True):
    schedules: list[ScheduleOut]


class Triggered(msgspec.Struct, frozen=True, kw_only=True):
    schedule: ScheduleOut
    job: wire.Job


class Backfilled(msgspec.Struct, frozen=True, kw_only=True):
    schedule: ScheduleOut
    slots: list[SlotOut]


class SlotList(msgspec.Struct, frozen=True, kw_only=True):
    slots: list[SlotOut]
