"""The ledger's event types: one frozen, tagged msgspec struct per job transition, one
per change of a queue's settings (`queue.*`, a stream per queue; see ledger.queues), and
one for a tenant's settings (`tenant.*`, a stream per tenant; see ledger.tenants).

An event's envelope (job, version, actor, time) is stored in columns of its own;
the rest of its fields are its `data`. The per-job hash chain covers the stored
columns (see `canonical_bytes`). Never edit a shipped
event: a new shape gets a new tag (`.v2`) and an upcaster in `from_row`.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal, Protocol

import msgspec

from ledger import retrypolicy

Priority = Literal["high", "normal", "low"]
# What a workflow job does when a dependency ends failed or cancelled (sql/0077).
UpstreamFailure = Literal["cancel", "run", "skip"]
PRIORITY_RANK: Final[dict[str, int]] = {"high": 0, "normal": 1, "low": 2}

# The tenant of a deployment that names none, and of every event stored before tenants.
DEFAULT_TENANT: Final = "default"
ENVELOPE: Final = frozenset({"type", "job_id", "version", "actor", "occurred_at"})
GENESIS_HASH: Final = bytes(32)


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """What happened to which job, its per-job version, who caused it and when."""

    job_id: uuid.UUID
    version: Annotated[int, msgspec.Meta(ge=1)]
    actor: Annotated[str, msgspec.Meta(min_length=1)]
    occurred_at: datetime


UNIQUE_STATES_REQUIRED: Final = ("pending", "retrying", "processing")
"""Every unique job holds its key in these states (the workers move a job between them on
their own, where no duplicate could be refused); a submission may add finished ones."""


class UniqueKey(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What made a job unique (ledger.uniqueness): `key` is the sha256 hex digest of its
    `by` fields' values (and of its period's start, when it has a period); the job holds
    the key, within its tenant, while its status is one of `states`."""

    key: str
    by: tuple[str, ...]
    states: tuple[str, ...]
    on_conflict: str
    period_seconds: int | None = None
    period_start: datetime | None = None


class JobSubmitted(Event, frozen=True, tag="job.submitted.v1"):
    job_type: str
    queue: str
    priority: Priority
    payload: dict[str, Any]
    max_attempts: int
    timeout_seconds: float
    backoff_base_seconds: float
    backoff_cap_seconds: float
    run_at: datetime
    idempotency_key: str | None = None
    replay_of: uuid.UUID | None = None
    # Added with queues (sql/0059); left out of the stored data when None, so a
    # submission without one is stored exactly as before the field existed.
    concurrency_key: str | None = None
    # Added with schedules (sql/0074): the schedule and slot that fired the job; left
    # out of the stored data when None, like concurrency_key.
    schedule_id: str | None = None
    schedule_slot: datetime | None = None
    # Added with retry policies (sql/0075): the policy the submission gave, left out when
    # it gave none (the queue's, the job type's and the defaults then decide).
    retry_policy: retrypolicy.RetryPolicy | None = None
    # Added with unique jobs (sql/0076); left out of the stored data when None.
    unique: UniqueKey | None = None
    # Added with workflows (sql/0077), left out when None: the workflow the job belongs
    # to, its name there, the jobs it waits for (it starts `blocked` when there are any)
    # and what it does when one of them ends failed or cancelled.
    workflow_id: uuid.UUID | None = None
    name: str | None = None
    depends_on: list[uuid.UUID] | None = None
    on_upstream_failure: UpstreamFailure | None = None
    # Added with webhooks (sql/0080): the job's own result webhook; left out when None.
    webhook: JobWebhook | None = None


class JobWebhook(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where a job's end is told (signed with the deployment's WEBHOOK_SECRET)."""

    url: str


class JobClaimed(Event, frozen=True, tag="job.claimed.v1"):
    worker_id: str
    attempt: int
    lease_until: datetime
    # Added with queues (sql/0059): the version of the queue's settings the claim was
    # made under, for a queue that has any (its queue.* stream); left out when None.
    queue_version: int | None = None
    # Added with fair shares (sql/0070): the version of the tenant's settings the claim
    # was made under, for a tenant that has any (max_running, weight); left out when None.
    tenant_version: int | None = None


class JobCompleted(Event, frozen=True, tag="job.completed.v1"):
    result: Any


class JobRetryScheduled(Event, frozen=True, tag="job.retry_scheduled.v1"):
    error: str
    next_attempt_at: datetime
    # Added with retry policies (sql/0075), left out when None (events before them have
    # none): why the job waits. The failed attempt, its error's type, the policy in
    # force (each field's source), the wait before and after jitter, and the wait the
    # handler asked for (`Retryable(after=)`), if it did.
    attempt: int | None = None
    error_type: str | None = None
    policy: retrypolicy.PolicyInForce | None = None
    delay_seconds: float | None = None
    jittered_delay_seconds: float | None = None
    requested_delay_seconds: float | None = None


class JobFailed(Event, frozen=True, tag="job.failed.v1"):
    error: str
    # Added with retry policies (sql/0075), left out when None: why retrying stopped
    # (`reason`: max_attempts, max_elapsed, non_retryable or permanent), after which
    # attempt, on what error type, under which policy; for max_elapsed, the wait that
    # would have taken the next attempt past it.
    reason: retrypolicy.StopReason | None = None
    attempt: int | None = None
    error_type: str | None = None
    policy: retrypolicy.PolicyInForce | None = None
    delay_seconds: float | None = None
    jittered_delay_seconds: float | None = None
    requested_delay_seconds: float | None = None


class JobLeaseExpired(Event, frozen=True, tag="job.lease_expired.v1"):
    """The worker holding the job stopped renewing its lease; counts as a failed attempt."""

    worker_id: str
    error: str
    next_attempt_at: datetime | None
    # Added with retry policies (sql/0075), left out when None: as for
    # job.retry_scheduled.v1 (the error type is `LeaseExpired`), and the stop reason when
    # there is no next attempt.
    reason: retrypolicy.StopReason | None = None
    attempt: int | None = None
    error_type: str | None = None
    policy: retrypolicy.PolicyInForce | None = None
    delay_seconds: float | None = None
    jittered_delay_seconds: float | None = None


class JobCancelled(Event, frozen=True, tag="job.cancelled.v1"):
    reason: str | None = None
    # Added with bulk actions: the request id of the bulk cancel that cancelled the job
    # (ledger.bulk); left out of the stored data when None.
    bulk_request_id: str | None = None
    # Added with workflows (sql/0077), left out when None: the dependency whose end
    # cancelled this job, and the hash (hex) of the event that ended it.
    upstream_job_id: uuid.UUID | None = None
    upstream_status: str | None = None
    cause: str | None = None


class JobReleased(Event, frozen=True, tag="job.released.v1"):
    """A worker shutting down handed the job back unfinished; the attempt does not count."""

    worker_id: str


class JobSnoozed(Event, frozen=True, tag="job.snoozed.v1"):
    """The running attempt asked to wait (the handler's Snooze): back to pending until
    `run_at`, the attempt not counted (the next claim runs attempt `attempt` again)."""

    worker_id: str
    attempt: int  # the attempt that snoozed, and the number the next claim gives again
    snooze: int  # this job's snoozes so far, this one included (1 for the first)
    max_snoozes: int  # the most its job type allows; one more fails the job
    seconds: float
    run_at: datetime
    reason: str | None = None


class JobRetried(Event, frozen=True, tag="job.retried.v1"):
    """A failed or cancelled job was sent to run again, attempts reset."""

    max_attempts: int | None = None
    # Added with bulk actions: the request id of the bulk retry that sent the job to run
    # again (ledger.bulk); left out of the stored data when None.
    bulk_request_id: str | None = None
    # Added with workflows (sql/0077), left out when None: a workflow's retry sends a
    # job downstream of the ones it re-runs back to wait for them (`blocked`).
    blocked: bool | None = None


class JobReplaced(Event, frozen=True, tag="job.replaced.v1"):
    """A unique submission that found this job waiting (pending or retrying) under its key,
    with `on_conflict: replace`, replaced the job's payload and run time with its own;
    the actor is its submitter. Status, attempts and the rest stay."""

    payload: dict[str, Any]
    run_at: datetime


class JobUnblocked(Event, frozen=True, tag="job.unblocked.v1"):
    """The database let a blocked workflow job run: its last dependency ended (sql/0077).

    Names that dependency, how it ended and the hash (hex) of the event that ended it;
    `upstream` holds every dependency's result by name (None unless it completed),
    what the handler receives as `context.upstream`."""

    upstream_job_id: uuid.UUID
    upstream_status: str
    cause: str
    upstream: dict[str, Any] = {}


class JobSkipped(Event, frozen=True, tag="job.skipped.v1"):
    """The database ended a blocked workflow job without running it: a dependency ended
    failed or cancelled and the job's `on_upstream_failure` is `skip` (sql/0077). Its
    own dependants treat it as completed."""

    upstream_job_id: uuid.UUID
    upstream_status: str
    cause: str


class JobReplayed(Event, frozen=True, tag="job.replayed.v1"):
    """The job was submitted again as a new job, `replayed_as` (whose submission names this one)."""

    replayed_as: uuid.UUID


class RateLimit(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """At most `limit` claims per `period_seconds` (a token bucket holding up to `burst`)."""

    limit: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
    period_seconds: Annotated[float, msgspec.Meta(gt=0, le=86400)]
    burst: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]


Fairness = Literal["fifo", "round_robin"]


class QueueEvent(Event, frozen=True):
    """A queue's settings changed. A queue's events form one stream: `job_id` holds the
    stream's id (`ledger.queues.stream_id` of the name and the tenant), hash-chained like
    a job's."""

    queue: str


class QueueConfigured(QueueEvent, frozen=True, tag="queue.configured.v1"):
    """The queue's limits, all of them, as they are from now on (None: no such limit)."""

    concurrency: int | None
    rate_limit: RateLimit | None
    per_key_concurrency: int | None
    fairness: Fairness
    # Added with retry policies (sql/0075): its jobs' retry policy, where their
    # submission names none of a field; left out when None.
    retry_policy: retrypolicy.RetryPolicy | None = None


class QueuePaused(QueueEvent, frozen=True, tag="queue.paused.v1"):
    """The queue's jobs stay pending (running ones finish) until it is resumed."""

    reason: str | None = None


class QueueResumed(QueueEvent, frozen=True, tag="queue.resumed.v1"):
    """The queue's jobs are claimed again."""


class TenantEvent(Event, frozen=True):
    """A tenant's settings changed. A tenant's events form one stream, in that tenant:
    `job_id` holds the stream's id (`ledger.tenants.stream_id` of the tenant)."""

    tenant: str


class TenantConfigured(TenantEvent, frozen=True, tag="tenant.configured.v1"):
    """The tenant's settings, all of them, as they are from now on (None: no such limit).

    `max_queued` caps its queued jobs (the append refuses submissions past it);
    `max_running` and `weight` are recorded for the claim's fair shares."""

    max_queued: int | None
    max_running: int | None
    weight: int


class ScheduleEvent(Event, frozen=True):
    """A schedule changed or recorded one of its slots. A schedule's events form one
    stream in its tenant: `job_id` holds the stream's id (`ledger.schedules.stream_id`);
    slot events are appended in the order of their slots (sql/0073)."""

    schedule_id: str


class ScheduleCreated(ScheduleEvent, frozen=True, tag="schedule.created.v1"):
    """The schedule's definition (`ledger.schedules.Spec`, as given) and its first slot."""

    spec: dict[str, Any]
    paused: bool
    next_slot: datetime | None
    note: str | None = None


class ScheduleUpdated(ScheduleEvent, frozen=True, tag="schedule.updated.v1"):
    """The schedule's new definition; its slots from `next_slot` on follow it."""

    spec: dict[str, Any]
    next_slot: datetime | None


class SchedulePaused(ScheduleEvent, frozen=True, tag="schedule.paused.v1"):
    """The schedule's slots are recorded skipped (`paused`) until it is resumed."""

    note: str | None = None


class ScheduleResumed(ScheduleEvent, frozen=True, tag="schedule.resumed.v1"):
    """The schedule fires again (the slots due while paused were recorded skipped first)."""

    note: str | None = None


class ScheduleDeleted(ScheduleEvent, frozen=True, tag="schedule.deleted.v1"):
    """The schedule records no more slots (it may be created again under its id)."""

    note: str | None = None


class ScheduleTriggered(ScheduleEvent, frozen=True, tag="schedule.triggered.v1"):
    """Someone fired the schedule's job now, outside its slots: `job`."""

    job: uuid.UUID


class BackfilledSlot(msgspec.Struct, frozen=True, kw_only=True):
    slot: datetime
    job: uuid.UUID | None = None  # None: skipped (overlap)


class ScheduleBackfilled(ScheduleEvent, frozen=True, tag="schedule.backfilled.v1"):
    """The slots in (start, end] were fired again on request, under `overlap`."""

    start: datetime
    end: datetime
    overlap: str
    slots: list[BackfilledSlot]
    last_job: uuid.UUID | None = None


class ScheduleSlotFired(ScheduleEvent, frozen=True, tag="schedule.slot_fired.v1"):
    """The slot's job was submitted (in the same transaction): `job`."""

    slot: datetime
    job: uuid.UUID
    next_slot: datetime | None
    buffered: bool = False  # a slot buffered behind its previous job, fired now


class ScheduleSlotSkipped(ScheduleEvent, frozen=True, tag="schedule.slot_skipped.v1"):
    """Every slot from `slot` up to (not with) `next_slot` did not fire, for `reason`:
    `overlap`, `outside_catchup_window` or `paused`."""

    slot: datetime
    reason: str
    next_slot: datetime | None


class ScheduleSlotBuffered(ScheduleEvent, frozen=True, tag="schedule.slot_buffered.v1"):
    """The slot waits for the schedule's previous job to finish (overlap buffer_*)."""

    slot: datetime
    next_slot: datetime | None


SCHEDULE_EVENTS: Final = (
    ScheduleCreated,
    ScheduleUpdated,
    SchedulePaused,
    ScheduleResumed,
    ScheduleDeleted,
    ScheduleTriggered,
    ScheduleBackfilled,
    ScheduleSlotFired,
    ScheduleSlotSkipped,
    ScheduleSlotBuffered,
)


WebhookKind = Literal["job.completed", "job.failed", "job.cancelled", "job.retrying"]
DeliveryOutcome = Literal["delivered", "retrying", "exhausted", "disabled"]


class WebhookEvent(Event, frozen=True):
    """A webhook endpoint changed, or a delivery was attempted. An endpoint's events form
    one stream, a delivery's another (`job_id` holds the endpoint's or delivery's id);
    see ledger.webhooks. The endpoint's secret is never in an event, only its id."""


class WebhookEndpointCreated(WebhookEvent, frozen=True, tag="webhook.endpoint_created.v1"):
    """An endpoint that is sent the events it names, of the queues and job types it names
    (None: all), signed with the secret `secret_id` names."""

    url: str
    events: tuple[WebhookKind, ...]
    queues: tuple[str, ...] | None
    types: tuple[str, ...] | None
    description: str | None
    secret_id: str


class WebhookEndpointUpdated(WebhookEvent, frozen=True, tag="webhook.endpoint_updated.v1"):
    """The endpoint's settings, all of them, as they are from now on (`disabled` false
    enables it again)."""

    url: str
    events: tuple[WebhookKind, ...]
    queues: tuple[str, ...] | None
    types: tuple[str, ...] | None
    description: str | None
    disabled: bool


class WebhookEndpointSecretRotated(
    WebhookEvent, frozen=True, tag="webhook.endpoint_secret_rotated.v1"
):
    """A new secret signs from now on; the previous one signs too until `previous_until`."""

    secret_id: str
    previous_secret_id: str
    previous_until: datetime


class WebhookEndpointDisabled(WebhookEvent, frozen=True, tag="webhook.endpoint_disabled.v1"):
    """Nothing more is sent to the endpoint until it is enabled again (a PATCH)."""

    reason: str
    delivery_id: uuid.UUID | None = None


class WebhookEndpointDeleted(WebhookEvent, frozen=True, tag="webhook.endpoint_deleted.v1"):
    """The endpoint is gone; nothing more is sent to it."""


class WebhookEndpointTested(WebhookEvent, frozen=True, tag="webhook.endpoint_tested.v1"):
    """A test delivery (`webhook.test`) was asked for; the append creates it."""


class WebhookDeliveryAttempted(WebhookEvent, frozen=True, tag="webhook.delivery_attempted.v1"):
    """One attempt to send a delivery: what the receiver answered (or the error), how
    long it took, and what follows: delivered, retrying at `next_attempt_at`, exhausted
    (its schedule ran out) or disabled (the endpoint answered 410, or was disabled)."""

    endpoint_id: uuid.UUID | None
    about_job: uuid.UUID | None
    attempt: int
    outcome: DeliveryOutcome
    status_code: int | None
    duration_ms: float
    error: str | None
    response_body: str | None
    next_attempt_at: datetime | None


class WebhookDeliveryRedelivered(WebhookEvent, frozen=True, tag="webhook.delivery_redelivered.v1"):
    """The delivery is to be sent again (same webhook-id and body), its schedule anew."""

    reason: str | None = None


# Every event the ledger stores (the name predates the queue events): what the store
# appends and `from_row` decodes. Only job.* events fold into a job (lifecycle.evolve).
JobEvent = (
    JobSubmitted
    | JobClaimed
    | JobCompleted
    | JobRetryScheduled
    | JobFailed
    | JobLeaseExpired
    | JobCancelled
    | JobReleased
    | JobSnoozed
    | JobRetried
    | JobReplaced
    | JobReplayed
    | JobUnblocked
    | JobSkipped
    | QueueConfigured
    | QueuePaused
    | QueueResumed
    | TenantConfigured
    | ScheduleCreated
    | ScheduleUpdated
    | SchedulePaused
    | ScheduleResumed
    | ScheduleDeleted
    | ScheduleTriggered
    | ScheduleBackfilled
    | ScheduleSlotFired
    | ScheduleSlotSkipped
    | ScheduleSlotBuffered
    | WebhookEndpointCreated
    | WebhookEndpointUpdated
    | WebhookEndpointSecretRotated
    | WebhookEndpointDisabled
    | WebhookEndpointDeleted
    | WebhookEndpointTested
    | WebhookDeliveryAttempted
    | WebhookDeliveryRedelivered
)

EVENT_TYPES: Final[tuple[type[Event], ...]] = (
    JobSubmitted,
    JobClaimed,
    JobCompleted,
    JobRetryScheduled,
    JobFailed,
    JobLeaseExpired,
    JobCancelled,
    JobReleased,
    JobSnoozed,
    JobRetried,
    JobReplaced,
    JobReplayed,
    JobUnblocked,
    JobSkipped,
    QueueConfigured,
    QueuePaused,
    QueueResumed,
    TenantConfigured,
    *SCHEDULE_EVENTS,
    WebhookEndpointCreated,
    WebhookEndpointUpdated,
    WebhookEndpointSecretRotated,
    WebhookEndpointDisabled,
    WebhookEndpointDeleted,
    WebhookEndpointTested,
    WebhookDeliveryAttempted,
    WebhookDeliveryRedelivered,
)

_json = msgspec.json.Encoder()
_any_decoder = msgspec.json.Decoder()


def type_tag(event: Event) -> str:
    """The event's versioned type tag, e.g. ``job.claimed.v1``."""
    tag = type(event).__struct_config__.tag
    assert isinstance(tag, str)
    return tag


def canonical_bytes(
    *,
    type: str,
    job_id: uuid.UUID,
    version: int,
    actor: str,
    occurred_at: datetime,
    data: str,
    tenant: str = DEFAULT_TENANT,
) -> bytes:
    """The bytes an event's hash covers, from its stored columns.

    ``data`` is PostgreSQL's own text of the jsonb value (its canonical form: keys
    ordered, numbers exact), so the hash is recomputable from what is stored, with
    no float or key-order round trip in between. The actor is length-prefixed so no
    two envelopes share bytes. An event of a tenant other than the default one is
    prefixed with its length-prefixed tenant (a digit first, where the default form
    starts with the type's letter), so the default tenant's bytes are those of
    events stored before tenants existed. Mirrors ``event_canonical`` in sql/.
    """
    stamp = occurred_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body = f"{type}\n{job_id}\n{version}\n{len(actor)}:{actor}\n{stamp}\n{data}"
    if tenant != DEFAULT_TENANT:
        body = f"{len(tenant)}:{tenant}\n{body}"
    return body.encode()


def chain_hash(prev_hash: bytes, canonical: bytes) -> bytes:
    """SHA-256 over the previous link's hash and this event's canonical bytes."""
    return hashlib.sha256(prev_hash + canonical).digest()


def stored_hash(
    prev_hash: bytes,
    *,
    type: str,
    job_id: uuid.UUID,
    version: int,
    actor: str,
    occurred_at: datetime,
    data: str,
    tenant: str = DEFAULT_TENANT,
) -> bytes:
    """The hash an event's stored columns and previous link give (what verifiers recompute)."""
    canonical = canonical_bytes(
        type=type,
        job_id=job_id,
        version=version,
        actor=actor,
        occurred_at=occurred_at,
        data=data,
        tenant=tenant,
    )
    return chain_hash(prev_hash, canonical)


_DATA_FIELDS: Final[dict[type[Event], tuple[str, ...]]] = {
    t: tuple(f for f in t.__struct_fields__ if f not in ENVELOPE) for t in EVENT_TYPES
}


_WHY: Final = (
    "attempt",
    "error_type",
    "policy",
    "delay_seconds",
    "jittered_delay_seconds",
    "requested_delay_seconds",
)
# Fields added to a shipped event type, left out of its data when unset: an event that
# does not use one is stored exactly as before the field existed.
_ADDED_LATER: Final[dict[type[Event], tuple[str, ...]]] = {
    JobSubmitted: (
        "concurrency_key",
        "schedule_id",
        "schedule_slot",
        "retry_policy",
        "unique",
        "workflow_id",
        "name",
        "depends_on",
        "on_upstream_failure",
        "webhook",
    ),
    JobClaimed: ("queue_version", "tenant_version"),
    JobCancelled: ("bulk_request_id", "upstream_job_id", "upstream_status", "cause"),
    JobRetried: ("bulk_request_id", "blocked"),
    JobRetryScheduled: _WHY,
    JobFailed: ("reason", *_WHY),
    JobLeaseExpired: ("reason", *_WHY[:-1]),
    QueueConfigured: ("retry_policy",),
}


def data_json(event: Event) -> str:
    """The event's own fields (everything but the envelope) as JSON for the data column."""
    # Encoded straight from the attributes (msgspec converts datetimes and UUIDs itself):
    # the same text as via to_builtins, in half the time, on the append hot path.
    fields = _DATA_FIELDS[type(event)]
    data = {f: getattr(event, f) for f in fields}
    for field in _ADDED_LATER.get(type(event), ()):
        if data[field] is None:
            del data[field]
    return _json.encode(data).decode()


class Row(Protocol):
    """A stored event's columns by name: a database row, or a dict of them."""

    def __getitem__(self, column: str, /) -> Any: ...


_ROW_ENVELOPE: Final = ("type", "job_id", "version", "actor", "occurred_at")


def from_row(row: Row) -> JobEvent:
    """The typed event a stored row holds: its columns type, job_id, version, actor,
    occurred_at and data (jsonb text or decoded); raises msgspec.ValidationError."""
    data = row["data"]
    fields = _any_decoder.decode(data) if isinstance(data, str | bytes) else dict(data)
    if not isinstance(fields, dict):
        raise msgspec.ValidationError("event data is not a JSON object")
    fields.update({column: row[column] for column in _ROW_ENVELOPE})
    event: JobEvent = msgspec.convert(fields, JobEvent, strict=False)
    return event
