"""The API's JSON shapes, one definition each: the routes answer with them, the Python
client decodes into them, and `ledger.submission` returns them.

Nothing here imports server code (no database driver, no web framework), so the
client shares these structs instead of keeping copies. The names are the OpenAPI
schema names; the client's `RecordedEvent` and `History` are `EventOut` and `JobHistory`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Final

import msgspec

from ledger import errors, lifecycle
from ledger import events as ev

MAX_BATCH: Final = 1000
MAX_DELAY_SECONDS: Final = 366 * 24 * 3600
QUEUE_PATTERN: Final = r"^[A-Za-z0-9_.:-]{1,64}$"
NO_NUL: Final = r"^[^\x00]*$"  # PostgreSQL text and jsonb cannot hold U+0000
QueueName = Annotated[str, msgspec.Meta(pattern=QUEUE_PATTERN)]
ConcurrencyKey = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NO_NUL)]
JobTypeName = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=NO_NUL)]
AwareTime = Annotated[datetime, msgspec.Meta(tz=True)]
_PRIORITY_NAME: Final = {rank: name for name, rank in ev.PRIORITY_RANK.items()}
FieldError = errors.FieldError  # one invalid field of a Problem (defined beside InvalidInput)


class Job(msgspec.Struct, frozen=True, kw_only=True):
    """A job as it is now: what `submit` returns and the API answers with."""

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
    concurrency_key: str | None = None
    snoozes: int = 0  # times its handler snoozed (since submission or the last manual retry)

    @classmethod
    def of(cls, state: lifecycle.JobState) -> Job:
        return cls(
            job_id=state.job_id,
            status=state.status,
            type=state.type,
            queue=state.queue,
            priority=_PRIORITY_NAME[state.priority],  # type: ignore[arg-type]
            attempt=state.attempt,
            max_attempts=state.max_attempts,
            payload=state.payload,
            result=state.result,
            error=state.error,
            created_at=state.created_at,
            started_at=state.started_at,
            completed_at=state.completed_at,
            next_attempt_at=state.run_at if state.status in lifecycle.RUNNABLE else None,
            concurrency_key=state.concurrency_key,
            snoozes=state.snoozes,
        )

    @classmethod
    def submitted(cls, event: ev.JobSubmitted) -> Job:
        """The job its submission just created: `of` the fold of that one event, built directly."""
        return cls(
            job_id=event.job_id,
            status="pending",
            type=event.job_type,
            queue=event.queue,
            priority=event.priority,
            attempt=0,
            max_attempts=event.max_attempts,
            payload=event.payload,
            result=None,
            error=None,
            created_at=event.occurred_at,
            started_at=None,
            completed_at=None,
            next_attempt_at=event.run_at,
            concurrency_key=event.concurrency_key,
        )

    @property
    def finished(self) -> bool:
        """Whether the job reached a terminal status (completed, failed, cancelled)."""
        return self.status in lifecycle.TERMINAL


class JobWebhookIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A job's own result webhook: `{"url": "https://…"}`."""

    url: Annotated[str, msgspec.Meta(max_length=2000, pattern=r"^https?://[^\s\x00]+$")]


class Submission(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """A job to run: its type, the payload its type's schema accepts, and how to run it.

    The body of `POST /api/v1/jobs` (where `job_type` is the field `type`); unset
    fields take the job type's defaults. Encoded (by the client), unset fields are left out.
    """

    job_type: JobTypeName = msgspec.field(name="type")
    payload: dict[str, Any]
    priority: ev.Priority = "normal"
    queue: QueueName = "default"
    run_at: AwareTime | None = None
    delay_seconds: Annotated[float, msgspec.Meta(ge=0, le=MAX_DELAY_SECONDS)] | None = None
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=100)] | None = None
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=86400)] | None = None
    # Retry backoff for this job (exponential with jitter): attempt n waits between half
    # and all of min(cap, base * 2^(n-1)) seconds. The job type's defaults otherwise.
    backoff_base_seconds: Annotated[float, msgspec.Meta(ge=0, le=86400)] | None = None
    backoff_cap_seconds: Annotated[float, msgspec.Meta(ge=0, le=7 * 86400)] | None = None
    # Groups the queue's jobs for its per-key concurrency limit and round-robin fairness
    # (e.g. a customer id); jobs without one share one group.
    concurrency_key: ConcurrencyKey | None = None
    # Where the job's end (completed, failed, cancelled) is told, signed with
    # WEBHOOK_SECRET; the address is checked against the SSRF guard at every send.
    webhook: JobWebhookIn | None = None

    @classmethod
    def checked(cls, job_type: str, payload: dict[str, Any], **options: Any) -> Submission:
        """A submission from a Python caller, held to the rules of a request body."""
        fields = {"type": job_type, "payload": payload}
        fields.update({name: value for name, value in options.items() if value is not None})
        return _validated(fields)

    def validated(self) -> Submission:
        """This submission held to the rules of a request body (built in Python, it was not):
        encoded and decoded as the API would, so what could not be sent is refused too."""
        try:
            return _decode_one(_encode(self))
        except msgspec.EncodeError as exc:
            raise errors.InvalidInput.at("payload", f"not JSON: {exc}") from None
        except msgspec.ValidationError as exc:
            raise _invalid(exc) from None


def validated_all(submissions: Sequence[Submission]) -> list[Submission] | None:
    """All of them held to a request body's rules in one pass; None when any breaks one
    (then `Submission.validated` on each names every field)."""
    try:
        return _decode_many(_encode(submissions))
    except (msgspec.EncodeError, msgspec.ValidationError):
        return None


def _validated(fields: dict[str, Any]) -> Submission:
    try:
        return msgspec.convert(fields, Submission, strict=True)
    except msgspec.ValidationError as exc:
        raise _invalid(exc) from None


def _invalid(exc: msgspec.ValidationError) -> errors.InvalidInput:
    message, _, at = str(exc).partition(" - at `$")
    return errors.InvalidInput.at(at.rstrip("`").lstrip(".") or "$", message)


_encode = msgspec.json.Encoder().encode
_decode_one = msgspec.json.Decoder(Submission).decode
_decode_many = msgspec.json.Decoder(list[Submission]).decode


class BatchRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    jobs: Annotated[list[Submission], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


class BatchResult(msgspec.Struct, frozen=True, kw_only=True):
    jobs: list[Job]


class JobList(msgspec.Struct, frozen=True, kw_only=True):
    jobs: list[Job]
    next_cursor: str | None  # pass as `cursor` for the next page; null on the last page


class RateLimitIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """At most `limit` claims per `period_seconds`; bursts of up to `burst` (default: `limit`)."""

    limit: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
    period_seconds: Annotated[float, msgspec.Meta(gt=0, le=86400)]
    burst: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] | None = None


class QueueSettings(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """The body of `PUT /api/v1/queues/{name}`: the queue's limits, all of them (a field left
    out is no such limit; `fairness` defaults to fifo). Pausing is separate."""

    concurrency: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] | None = None
    rate_limit: RateLimitIn | None = None
    per_key_concurrency: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] | None = None
    fairness: ev.Fairness = "fifo"


class QueueOut(msgspec.Struct, frozen=True, kw_only=True):
    """A queue: its settings, whether it is paused, and its jobs by status now."""

    name: str
    concurrency: int | None
    rate_limit: ev.RateLimit | None
    per_key_concurrency: int | None
    fairness: ev.Fairness
    paused: bool
    counts: dict[str, int]  # every status, zero included
    running: int  # jobs processing now
    version: int  # of the queue's event stream (0: never configured)
    updated_by: str | None
    updated_at: datetime | None


class QueueList(msgspec.Struct, frozen=True, kw_only=True):
    queues: list[QueueOut]


class TenantSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of `PUT /api/v1/tenants/{tenant}`: the settings to change; a field left out
    keeps its value, `null` clears a limit (`weight` has no null: 1 is the default)."""

    max_queued: Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)] | msgspec.UnsetType | None = (
        msgspec.UNSET
    )
    max_running: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] | msgspec.UnsetType | None = (
        msgspec.UNSET
    )
    weight: Annotated[int, msgspec.Meta(ge=1, le=10_000)] | msgspec.UnsetType = msgspec.UNSET

    def changes(self) -> dict[str, int | None]:
        """The fields given, by name."""
        given = {f: getattr(self, f) for f in self.__struct_fields__}
        return {f: v for f, v in given.items() if v is not msgspec.UNSET}


class TenantOut(msgspec.Struct, frozen=True, kw_only=True):
    """A tenant's settings (version 0 and the defaults: never configured)."""

    tenant: str
    max_queued: int | None  # queued (pending and retrying) jobs at most; None: no limit
    max_running: int | None  # recorded only: the claim does not enforce it yet
    weight: int  # recorded only: the claim does not share by it yet
    version: int  # of the tenant's event stream (0: never configured)
    updated_by: str | None
    updated_at: datetime | None


class TenantList(msgspec.Struct, frozen=True, kw_only=True):
    tenants: list[TenantOut]


class EventOut(msgspec.Struct, frozen=True, kw_only=True):
    """One recorded event: where it sits in the feed, what happened, who did it, its chain link."""

    cursor: str  # its place in the global feed: pass as `after` to continue after it
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


class JobHistory(msgspec.Struct, frozen=True, kw_only=True):
    """A job's whole history, oldest first."""

    job_id: uuid.UUID
    events: list[EventOut]


class Problem(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """RFC 9457 problem details, with the invalid fields listed in `errors` when there are any."""

    type: str  # about:blank, or urn:job-ledger:problem:<slug>
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldError] | None = None
