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

Priority = Literal["high", "normal", "low"]
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


class JobFailed(Event, frozen=True, tag="job.failed.v1"):
    error: str


class JobLeaseExpired(Event, frozen=True, tag="job.lease_expired.v1"):
    """The worker holding the job stopped renewing its lease; counts as a failed attempt."""

    worker_id: str
    error: str
    next_attempt_at: datetime | None


class JobCancelled(Event, frozen=True, tag="job.cancelled.v1"):
    reason: str | None = None


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
    | JobReplayed
    | QueueConfigured
    | QueuePaused
    | QueueResumed
    | TenantConfigured
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
    JobReplayed,
    QueueConfigured,
    QueuePaused,
    QueueResumed,
    TenantConfigured,
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


# Fields added to a shipped event type, left out of its data when unset: an event that
# does not use one is stored exactly as before the field existed.
_ADDED_LATER: Final[dict[type[Event], tuple[str, ...]]] = {
    JobSubmitted: ("concurrency_key", "webhook"),
    JobClaimed: ("queue_version", "tenant_version"),
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
