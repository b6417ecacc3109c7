"""What the client sends and receives, as the API's wire format: frozen msgspec structs.

`Job`, `RecordedEvent` and `History` have the API's field names (a test decodes the
API's real answers into them); the statuses and priorities are the core's own types.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, NotRequired, TypedDict

import msgspec

from ledger import events as ev
from ledger import lifecycle


class Job(msgspec.Struct, frozen=True, kw_only=True):
    """A job as it is now, as the API answers it (field for field its `Job`)."""

    job_id: uuid.UUID
    status: lifecycle.Status
    type: str
    queue: str
    priority: ev.Priority
    attempt: int
    max_attempts: int
    payload: dict[str, Any]
    result: Any
    error: str | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    next_attempt_at: datetime | None  # when a pending or retrying job becomes due

    @property
    def finished(self) -> bool:
        """Whether the job reached a terminal status (completed, failed, cancelled)."""
        return self.status in lifecycle.TERMINAL


class RecordedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One recorded event as the API answers it: its feed cursor, what happened, who did it."""

    cursor: str  # its place in the global feed
    position: int
    job_id: uuid.UUID
    version: int
    type: str  # the versioned tag, e.g. job.completed.v1
    data: dict[str, Any]
    actor: str
    occurred_at: datetime
    prev_hash: str  # hex
    hash: str  # hex

    def event(self) -> ev.JobEvent:
        """The typed event (`ledger.events`) this record holds."""
        return ev.from_row(msgspec.structs.asdict(self))


class History(msgspec.Struct, frozen=True, kw_only=True):
    """A job's whole history, oldest first."""

    job_id: uuid.UUID
    events: list[RecordedEvent]


class Submission(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A job to submit: what `submit` sends, and one item of `submit_many`."""

    job_type: str = msgspec.field(name="type")
    payload: Mapping[str, Any]
    priority: ev.Priority | None = None
    queue: str | None = None
    run_at: datetime | None = None
    delay_seconds: float | None = None
    max_attempts: int | None = None
    timeout_seconds: float | None = None
    backoff_base_seconds: float | None = None
    backoff_cap_seconds: float | None = None


class SubmitOptions(TypedDict):
    """How to run a submitted job; each defaults to the API's (or the job type's) default."""

    priority: NotRequired[ev.Priority]
    queue: NotRequired[str]
    run_at: NotRequired[datetime]
    delay_seconds: NotRequired[float]
    max_attempts: NotRequired[int]
    timeout_seconds: NotRequired[float]
    backoff_base_seconds: NotRequired[float]
    backoff_cap_seconds: NotRequired[float]


class FieldError(msgspec.Struct, frozen=True, kw_only=True):
    """One invalid field: where (`payload.width`, `jobs[3].type`) and why."""

    path: str
    message: str


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    """RFC 9457 problem details, as the API answers every error."""

    type: str = "about:blank"
    title: str = ""
    status: int = 0
    detail: str | None = None
    errors: list[FieldError] | None = None


class JobList(msgspec.Struct, frozen=True, kw_only=True):
    jobs: list[Job]
    next_cursor: str | None


class Batch(msgspec.Struct, frozen=True, kw_only=True):
    jobs: list[Submission]


class BatchResult(msgspec.Struct, frozen=True, kw_only=True):
    jobs: list[Job]
