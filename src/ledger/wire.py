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
from typing import Annotated, Any, Final, Literal

import msgspec

from ledger import errors, lifecycle, retrypolicy
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


UniqueBy = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NO_NUL)]
OnConflict = Literal["return_existing", "replace", "error"]


class Unique(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """A submission's `unique` options (ledger.uniqueness): at most one job of the tenant
    with the same values of the `by` fields (within one period of `period_seconds`, when
    given) while it is in one of `states`; a duplicate is answered by `on_conflict`."""

    # "type", "queue", "priority", "concurrency_key", "payload", or "payload.<field>[.<field>…]"
    by: Annotated[list[UniqueBy], msgspec.Meta(min_length=1, max_length=32)] = msgspec.field(
        default_factory=lambda: ["type", "payload"]
    )
    period_seconds: Annotated[int, msgspec.Meta(ge=1, le=MAX_DELAY_SECONDS)] | None = None
    # pending, retrying and processing always (a worker moves a job between them on its
    # own); add completed, failed or cancelled to hold the key once the job ended so.
    states: Annotated[list[lifecycle.Status], msgspec.Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: ["pending", "retrying", "processing"]
    )
    on_conflict: OnConflict = "return_existing"


WebhookDeliveryStatus = Literal["pending", "delivered", "exhausted", "disabled"]


class WebhookDelivery(msgspec.Struct, frozen=True, kw_only=True):
    """A webhook delivery as it is now (`ledger.webhooks`): what it reports and how its
    attempts went."""

    delivery_id: uuid.UUID
    webhook_id: str  # the `webhook-id` header, the same on every attempt
    endpoint_id: uuid.UUID | None
    url: str | None  # a job's own webhook (no endpoint)
    job_id: uuid.UUID | None
    event_type: str
    status: WebhookDeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    last_attempt_at: datetime | None
    created_at: datetime


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
    schedule_id: str | None = None  # the schedule that fired it, and for which slot
    schedule_slot: datetime | None = None
    unique_key: str | None = None  # a unique job's key (sha256 hex), held in its unique states
    # Only in the answer to a unique submission: whether it found its key held by this job
    # (nothing created), and whether it replaced this job's payload and run time.
    deduplicated: bool | msgspec.UnsetType = msgspec.UNSET
    replaced: bool | msgspec.UnsetType = msgspec.UNSET
    # Only in the answer to `GET /api/v1/jobs/{id}` (current state, no `as_of`): the
    # webhook deliveries that report its events, oldest first, each with its last attempt.
    webhook_deliveries: list[WebhookDelivery] | msgspec.UnsetType = msgspec.UNSET

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
            schedule_id=state.schedule_id,
            schedule_slot=state.schedule_slot,
            unique_key=state.unique_key,
        )

    @classmethod
    def submitted(cls, event: ev.JobSubmitted) -> Job:
        """The job its submission just created: `of` the fold of that one event, built directly."""
        return cls(
            job_id=event.job_id,
            status="blocked" if event.depends_on else "pending",
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
            next_attempt_at=None if event.depends_on else event.run_at,
            concurrency_key=event.concurrency_key,
            schedule_id=event.schedule_id,
            schedule_slot=event.schedule_slot,
            unique_key=None if event.unique is None else event.unique.key,
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
    # How a failed attempt is retried (ledger.retrypolicy): the fields given win over the
    # queue's, the job type's and the defaults, field by field. max_attempts,
    # backoff_base_seconds and backoff_cap_seconds are aliases of maximum_attempts,
    # initial_interval_seconds and maximum_interval_seconds (both given must agree).
    retry_policy: retrypolicy.RetryPolicy | None = None
    # At most one such job at a time: see Unique. A duplicate creates nothing.
    unique: Unique | None = None
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
    # Its jobs' retry policy where their submission names none of a field.
    retry_policy: retrypolicy.RetryPolicy | None = None


class QueueOut(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A queue: its settings, whether it is paused, and its jobs by status now (its
    `retry_policy` left out when it has none)."""

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
    retry_policy: retrypolicy.RetryPolicy | None = None


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


class HistoryEvent(EventOut, frozen=True, kw_only=True):
    """One event of a job's history, with why it happened in words."""

    # What `ledger replay` prints as the event's `why:` line (why a retry waits or stopped,
    # a snooze, a unique key or a replacement, a workflow's unblocking, skip or cascade);
    # null when the event has nothing to explain.
    note: str | None = None


class JobHistory(msgspec.Struct, frozen=True, kw_only=True):
    """A job's whole history, oldest first."""

    job_id: uuid.UUID
    events: list[HistoryEvent]


class Problem(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """RFC 9457 problem details, with the invalid fields listed in `errors` when there are any."""

    type: str  # about:blank, or urn:job-ledger:problem:<slug>
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldError] | None = None
    existing_job_id: uuid.UUID | None = None  # a duplicate's: the job holding the unique key


# -- bulk actions (ledger.bulk) ----------------------------------------------------

MAX_BULK: Final = 1000  # jobs one bulk retry or cancel may change
DEFAULT_BULK_LIMIT: Final = 100
BulkAction = Literal["retry", "cancel"]


class BulkFilter(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Which jobs of the tenant a bulk action selects: all the fields given must match.

    `status` is required (ledger.bulk says which each action takes); `failed_before` and
    `failed_after` bound the time a failed or cancelled job ended (its `completed_at`)."""

    status: lifecycle.Status | None = None
    type: JobTypeName | None = None
    queue: QueueName | None = None
    error_contains: (
        Annotated[str, msgspec.Meta(min_length=1, max_length=500, pattern=NO_NUL)] | None
    ) = None
    failed_before: AwareTime | None = None
    failed_after: AwareTime | None = None


class BulkRetryRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /api/v1/jobs/retry`: run again up to `limit` jobs that match `filter`."""

    filter: BulkFilter
    limit: Annotated[int, msgspec.Meta(ge=1)] = DEFAULT_BULK_LIMIT


class BulkCancelRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /api/v1/jobs/cancel`: cancel up to `limit` jobs that match `filter`."""

    filter: BulkFilter
    limit: Annotated[int, msgspec.Meta(ge=1)] = DEFAULT_BULK_LIMIT
    reason: Annotated[str, msgspec.Meta(max_length=500, pattern=NO_NUL)] | None = None


class BulkResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a bulk action did: `matched` jobs were selected, `changed` of them changed by
    this call (the others moved meanwhile and were skipped), and `job_ids` every job the
    request id has changed so far. `repeated`: the request id had been carried out
    before, and this call changed nothing."""

    request_id: str
    action: BulkAction
    matched: int
    changed: int
    job_ids: list[uuid.UUID]
    repeated: bool = False


# -- workflows (ledger.workflows) ---------------------------------------------------

MAX_WORKFLOW: Final = 1000
WorkflowStatus = Literal["running", "completed", "failed", "cancelled"]
JobName = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NO_NUL)]


class WorkflowJobIn(Submission, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One job of a workflow: a submission (`POST /api/v1/jobs`'s body) with a name unique
    in the workflow, the names of the jobs it waits for, and what it does when one of them
    ends failed or cancelled: `cancel` (the default), `run` anyway, or `skip`."""

    name: JobName
    depends_on: list[JobName] = []
    on_upstream_failure: ev.UpstreamFailure = "cancel"


class WorkflowRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of `POST /api/v1/workflows`: its jobs, and optionally the workflow's id."""

    jobs: list[WorkflowJobIn]
    id: uuid.UUID | None = None


class WorkflowJobOut(msgspec.Struct, frozen=True, kw_only=True):
    """A workflow's job as it is now."""

    name: str
    job_id: uuid.UUID
    status: lifecycle.Status
    depends_on: list[str]
    on_upstream_failure: ev.UpstreamFailure
    result: Any
    error: str | None


class WorkflowOut(msgspec.Struct, frozen=True, kw_only=True):
    """A workflow: `running` while any job may still run; else `failed` if any job failed,
    `cancelled` if any was cancelled, `completed` (every job completed or skipped)."""

    id: uuid.UUID
    status: WorkflowStatus
    jobs: list[WorkflowJobOut]


class WorkflowSummary(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    status: WorkflowStatus
    jobs: int
    submitted_by: str
    submitted_at: datetime


class WorkflowList(msgspec.Struct, frozen=True, kw_only=True):
    workflows: list[WorkflowSummary]


class WorkflowRetry(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of `POST /api/v1/workflows/{id}/retry`: re-run the `failed` jobs, or the job
    of this name, and everything downstream of them (completed upstream work is kept)."""

    from_: JobName = msgspec.field(name="from", default="failed")
