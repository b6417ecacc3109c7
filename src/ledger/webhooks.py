"""Webhook endpoints and their deliveries (issue #19), changed only by events.

An endpoint is a stream of `webhook.endpoint_*.v1` events (its id is the stream's, the
events' `job_id` column), projected by the append into `webhook_endpoints` (sql/0080).
Its signing secret (`whsec_<base64>`, shown once at creation and rotation) is kept in
`webhook_secrets`, never in an event: events leave in audit bundles. The events name
the secret by its id, a fingerprint (`secret_id`).

Deliveries are created by the append itself, in the transaction of the job event they
report (the outbox); the senders (workers.webhooks) record each attempt as an event on
the delivery's own stream. Redelivering appends `webhook.delivery_redelivered.v1`: the
same webhook-id and body go out again, the retry schedule anew.

Every function here acts in the tenant the caller's transaction acts in (`acting.named`).
The URL of an endpoint is checked against server-side request forgery by the caller
(a composition root: the guard is the workers'), given as `vet`.
"""

from __future__ import annotations

import base64
import hashlib
import secrets as random
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Annotated, Final

import asyncpg
import msgspec

from ledger import acting, errors, sqlfile, store, wire
from ledger import events as ev

Q = sqlfile.load("ledger")
SECRET_PREFIX: Final = "whsec_"
# How long a rotated-out secret still signs, beside the new one, unless asked otherwise.
ROTATION_GRACE_SECONDS: Final = 24 * 3600
KINDS: Final[tuple[ev.WebhookKind, ...]] = (
    "job.completed",
    "job.failed",
    "job.cancelled",
    "job.retrying",
)
URL_PATTERN: Final = r"^https?://[^\s\x00]+$"
Url = Annotated[str, msgspec.Meta(max_length=2000, pattern=URL_PATTERN)]
Names = Annotated[
    list[Annotated[str, msgspec.Meta(min_length=1, max_length=100)]], msgspec.Meta(max_length=100)
]
Description = Annotated[str, msgspec.Meta(max_length=500, pattern=r"^[^\x00]*$")]
DeliveryStatus = wire.WebhookDeliveryStatus

# Checks an endpoint's URL (scheme, host, addresses) or raises InvalidInput.
Vet = Callable[[str], Awaitable[None]]


class UnknownWebhook(errors.LedgerError):
    """No endpoint (or delivery) of this id in the tenant (404)."""

    def __init__(self, what: str, ident: uuid.UUID) -> None:
        super().__init__(f"webhook {what} {ident} does not exist")
        self.ident = ident


class WebhookChanged(errors.VersionConflict):
    """Another writer changed the endpoint or delivery first (409); read it and try again."""


class EndpointIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of `POST /api/v1/webhooks`."""

    url: Url
    events: Annotated[list[ev.WebhookKind], msgspec.Meta(min_length=1)]
    queues: Names | None = None
    types: Names | None = None
    description: Description | None = None


class EndpointPatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of `PATCH /api/v1/webhooks/{id}`: the fields to change (`disabled: false`
    enables a disabled endpoint again)."""

    url: Url | None = None
    events: Annotated[list[ev.WebhookKind], msgspec.Meta(min_length=1)] | None = None
    queues: Names | None = None
    types: Names | None = None
    description: Description | None = None
    disabled: bool | None = None


class Endpoint(msgspec.Struct, frozen=True, kw_only=True):
    """An endpoint as it is now (a row of `webhook_endpoints`)."""

    endpoint_id: uuid.UUID
    url: str
    events: list[str]
    queues: list[str] | None
    types: list[str] | None
    description: str | None
    secret_id: str
    disabled: bool
    disabled_reason: str | None
    version: int
    created_by: str
    created_at: datetime
    updated_by: str
    updated_at: datetime


class EndpointCreated(msgspec.Struct, frozen=True, kw_only=True):
    """An endpoint and its new secret: the only time the secret is shown."""

    endpoint: Endpoint
    secret: str


class EndpointList(msgspec.Struct, frozen=True, kw_only=True):
    endpoints: list[Endpoint]


# A delivery as it is now: the API's struct, in `wire` since the job read carries it too.
Delivery = wire.WebhookDelivery


class DeliveryList(msgspec.Struct, frozen=True, kw_only=True):
    deliveries: list[Delivery]


class Attempt(msgspec.Struct, frozen=True, kw_only=True):
    """One attempt to send a delivery, as its `webhook.delivery_attempted.v1` event says."""

    attempt: int
    at: datetime
    outcome: ev.DeliveryOutcome
    status_code: int | None
    duration_ms: float
    error: str | None
    next_attempt_at: datetime | None
    actor: str  # the sender (worker) that made it


class AttemptList(msgspec.Struct, frozen=True, kw_only=True):
    """A delivery as it is now and each of its attempts, oldest first."""

    delivery: Delivery
    attempts: list[Attempt]


class Recovered(msgspec.Struct, frozen=True, kw_only=True):
    """How many deliveries `recover` sent again."""

    redelivered: int


class RecoverIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of `POST /api/v1/webhooks/{id}/recover`: deliveries created in [since, until)."""

    since: Annotated[datetime, msgspec.Meta(tz=True)]
    until: Annotated[datetime, msgspec.Meta(tz=True)] | None = None


def webhook_id(delivery_id: uuid.UUID) -> str:
    """The `webhook-id` of a delivery (the receiver's idempotency key)."""
    return f"msg_{delivery_id.hex}"


def new_secret() -> str:
    """A signing secret in the Standard Webhooks form, `whsec_` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(random.token_bytes(32)).decode()


def secret_id(secret: str) -> str:
    """The fingerprint that names a secret in events (not the secret: SHA-256, cut short)."""
    return "sec_" + hashlib.sha256(secret.encode()).hexdigest()[:16]


def _endpoint(row: asyncpg.Record) -> Endpoint:
    return Endpoint(
        endpoint_id=row["endpoint_id"],
        url=row["url"],
        events=list(row["events"]),
        queues=None if row["queues"] is None else list(row["queues"]),
        types=None if row["types"] is None else list(row["types"]),
        description=row["description"],
        secret_id=row["secret_id"],
        disabled=row["disabled"],
        disabled_reason=row["disabled_reason"],
        version=row["version"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        updated_by=row["updated_by"],
        updated_at=row["updated_at"],
    )


def delivery_of(row: asyncpg.Record) -> Delivery:
    """A delivery from its row of `webhook_deliveries`."""
    return Delivery(
        delivery_id=row["delivery_id"],
        webhook_id=webhook_id(row["delivery_id"]),
        endpoint_id=row["endpoint_id"],
        url=row["url"],
        job_id=row["job_id"],
        event_type=row["event_type"],
        status=row["status"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"] if row["status"] == "pending" else None,
        last_status_code=row["last_status_code"],
        last_error=row["last_error"],
        last_attempt_at=row["last_attempt_at"],
        created_at=row["created_at"],
    )


def describe(delivery: Delivery) -> str:
    """A delivery in one line, for a person: what it reports, to where, how it stands."""
    target = delivery.url if delivery.url is not None else f"endpoint {delivery.endpoint_id}"
    text = f"{delivery.event_type} to {target}: {delivery.status}"
    if delivery.attempts:
        plural = "s" if delivery.attempts != 1 else ""
        text += f" after {delivery.attempts} attempt{plural}"
        if delivery.last_status_code is not None:
            text += f" (last HTTP {delivery.last_status_code})"
        elif delivery.last_error:
            text += f" (last error: {delivery.last_error})"
    if delivery.next_attempt_at is not None:
        due = delivery.next_attempt_at.strftime("%Y-%m-%d %H:%M:%S")
        text += f"; {'next' if delivery.attempts else 'first'} attempt due {due}"
    return f"{text}  [{delivery.webhook_id}]"


async def get(conn: asyncpg.Connection, endpoint_id: uuid.UUID) -> Endpoint:
    """The endpoint (UnknownWebhook: none of that id in the tenant, or deleted)."""
    async with acting.in_a_tenant(conn):
        row = await conn.fetchrow(Q["webhook_endpoints_get"], endpoint_id)
    if row is None:
        raise UnknownWebhook("endpoint", endpoint_id)
    return _endpoint(row)


async def list_all(conn: asyncpg.Connection) -> EndpointList:
    """The tenant's endpoints, oldest first."""
    async with acting.in_a_tenant(conn):
        rows = await conn.fetch(Q["webhook_endpoints_list"])
    return EndpointList(endpoints=[_endpoint(r) for r in rows])


async def create(
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    spec: EndpointIn,
    *,
    actor: str,
    vet: Vet,
) -> EndpointCreated:
    """A new endpoint and its secret (shown once)."""
    await vet(spec.url)
    secret = new_secret()
    endpoint_id = uuid.uuid4()
    async with conn.transaction():
        tenant = await acting.named(conn)
        await conn.execute(
            Q["webhook_secrets_insert"], endpoint_id, tenant, secret_id(secret), secret, None
        )
        event = ev.WebhookEndpointCreated(
            job_id=endpoint_id,
            version=1,
            actor=actor,
            occurred_at=event_store.clock(),
            url=spec.url,
            events=tuple(dict.fromkeys(spec.events)),
            queues=None if spec.queues is None else tuple(spec.queues),
            types=None if spec.types is None else tuple(spec.types),
            description=spec.description,
            secret_id=secret_id(secret),
        )
        await event_store.append(conn, [event])
        endpoint = await get(conn, endpoint_id)
    return EndpointCreated(endpoint=endpoint, secret=secret)


async def update(
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    endpoint_id: uuid.UUID,
    patch: EndpointPatch,
    *,
    actor: str,
    vet: Vet,
) -> Endpoint:
    """The endpoint with `patch`'s fields changed (nothing appended when none changes)."""
    if patch.url is not None:
        await vet(patch.url)
    async with conn.transaction():
        now = await get(conn, endpoint_id)
        fields = {
            "url": now.url if patch.url is None else patch.url,
            "events": tuple(now.events if patch.events is None else dict.fromkeys(patch.events)),
            "queues": _names(now.queues if patch.queues is None else patch.queues),
            "types": _names(now.types if patch.types is None else patch.types),
            "description": now.description if patch.description is None else patch.description,
            "disabled": now.disabled if patch.disabled is None else patch.disabled,
        }
        before = {
            "url": now.url,
            "events": tuple(now.events),
            "queues": _names(now.queues),
            "types": _names(now.types),
            "description": now.description,
            "disabled": now.disabled,
        }
        if fields == before:
            return now
        event = ev.WebhookEndpointUpdated(
            job_id=endpoint_id,
            version=now.version + 1,
            actor=actor,
            occurred_at=event_store.clock(),
            **fields,  # type: ignore[arg-type]
        )
        await _append(conn, event_store, event)
        return await get(conn, endpoint_id)


def _names(names: list[str] | None) -> tuple[str, ...] | None:
    return None if names is None else tuple(names)


async def delete(
    conn: asyncpg.Connection, event_store: store.EventStore, endpoint_id: uuid.UUID, *, actor: str
) -> None:
    """Delete the endpoint: nothing more is sent to it."""
    async with conn.transaction():
        now = await get(conn, endpoint_id)
        event = ev.WebhookEndpointDeleted(
            job_id=endpoint_id,
            version=now.version + 1,
            actor=actor,
            occurred_at=event_store.clock(),
        )
        await _append(conn, event_store, event)


async def rotate_secret(
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    endpoint_id: uuid.UUID,
    *,
    actor: str,
    grace_seconds: float = ROTATION_GRACE_SECONDS,
) -> EndpointCreated:
    """A new secret for the endpoint (shown once); the previous one signs too, beside
    it, for `grace_seconds`, and the secrets before it stop signing now."""
    secret = new_secret()
    async with conn.transaction():
        tenant = await acting.named(conn)
        now = await get(conn, endpoint_id)
        clock = event_store.clock()
        until = clock + timedelta(seconds=grace_seconds)
        await conn.execute(Q["webhook_secrets_retire"], endpoint_id, now.secret_id, until)
        await conn.execute(
            Q["webhook_secrets_insert"], endpoint_id, tenant, secret_id(secret), secret, None
        )
        event = ev.WebhookEndpointSecretRotated(
            job_id=endpoint_id,
            version=now.version + 1,
            actor=actor,
            occurred_at=clock,
            secret_id=secret_id(secret),
            previous_secret_id=now.secret_id,
            previous_until=until,
        )
        await _append(conn, event_store, event)
        return EndpointCreated(endpoint=await get(conn, endpoint_id), secret=secret)


async def test(
    conn: asyncpg.Connection, event_store: store.EventStore, endpoint_id: uuid.UUID, *, actor: str
) -> Delivery:
    """Send the endpoint a `webhook.test` delivery; the delivery, pending."""
    async with conn.transaction():
        now = await get(conn, endpoint_id)
        event = ev.WebhookEndpointTested(
            job_id=endpoint_id,
            version=now.version + 1,
            actor=actor,
            occurred_at=event_store.clock(),
        )
        await _append(conn, event_store, event)
        row = await conn.fetchrow(Q["webhook_deliveries_latest_test"], endpoint_id)
    assert row is not None  # the append created it
    return delivery_of(row)


async def deliveries(
    conn: asyncpg.Connection, endpoint_id: uuid.UUID, *, limit: int = 50
) -> DeliveryList:
    """The endpoint's deliveries, newest first."""
    async with acting.in_a_tenant(conn):
        await get(conn, endpoint_id)
        rows = await conn.fetch(Q["webhook_deliveries_of_endpoint"], endpoint_id, limit)
    return DeliveryList(deliveries=[delivery_of(r) for r in rows])


async def deliveries_of_job(conn: asyncpg.Connection, job_id: uuid.UUID) -> list[Delivery]:
    """The deliveries that report the job's events, oldest first."""
    async with acting.in_a_tenant(conn):
        return await deliveries_reporting(conn, job_id)


async def deliveries_reporting(conn: asyncpg.Connection, job_id: uuid.UUID) -> list[Delivery]:
    """The deliveries that report the job's events, oldest first, as the caller's
    transaction sees them: one statement on the index `webhook_deliveries_of_job`, what
    `GET /api/v1/jobs/{id}` adds to a job. Row security shows the tenant the transaction
    acts in; none, outside a transaction that names one."""
    rows = await conn.fetch(Q["webhook_deliveries_of_job"], job_id)
    return [delivery_of(r) for r in rows]


async def attempts(conn: asyncpg.Connection, delivery_id: uuid.UUID) -> AttemptList:
    """The delivery and each attempt to send it, from its events (UnknownWebhook: no
    delivery of that id in the tenant)."""
    async with acting.in_a_tenant(conn):
        row = await conn.fetchrow(Q["webhook_deliveries_get"], delivery_id)
        if row is None:
            raise UnknownWebhook("delivery", delivery_id)
        rows = await conn.fetch(Q["webhook_attempts_of_delivery"], delivery_id)
    made = [ev.from_row(r) for r in rows]
    return AttemptList(
        delivery=delivery_of(row),
        attempts=[
            Attempt(
                attempt=e.attempt,
                at=e.occurred_at,
                outcome=e.outcome,
                status_code=e.status_code,
                duration_ms=e.duration_ms,
                error=e.error,
                next_attempt_at=e.next_attempt_at,
                actor=e.actor,
            )
            for e in made
            if isinstance(e, ev.WebhookDeliveryAttempted)
        ],
    )


async def delivery(conn: asyncpg.Connection, delivery_id: uuid.UUID) -> Delivery:
    """The delivery (UnknownWebhook: none of that id in the tenant)."""
    async with acting.in_a_tenant(conn):
        row = await conn.fetchrow(Q["webhook_deliveries_get"], delivery_id)
    if row is None:
        raise UnknownWebhook("delivery", delivery_id)
    return delivery_of(row)


async def redeliver(
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    delivery_id: uuid.UUID,
    *,
    actor: str,
    reason: str | None = None,
) -> Delivery:
    """Send the delivery again (same webhook-id and body, a new timestamp and signature)."""
    async with conn.transaction():
        row = await conn.fetchrow(Q["webhook_deliveries_get"], delivery_id)
        if row is None:
            raise UnknownWebhook("delivery", delivery_id)
        await _append(conn, event_store, _redelivered(row, actor, event_store.clock(), reason))
        return await delivery(conn, delivery_id)


async def recover(
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    endpoint_id: uuid.UUID,
    window: RecoverIn,
    *,
    actor: str,
) -> Recovered:
    """Send again the endpoint's deliveries created in [since, until) that are not
    pending (delivered ones too: the receiver deduplicates by webhook-id)."""
    async with conn.transaction():
        await get(conn, endpoint_id)
        rows = await conn.fetch(
            Q["webhook_deliveries_to_recover"], endpoint_id, window.since, window.until
        )
        clock = event_store.clock()
        events = [_redelivered(r, actor, clock, "recover") for r in rows]
        if events:
            await _append_many(conn, event_store, events)
    return Recovered(redelivered=len(events))


def _redelivered(
    row: asyncpg.Record, actor: str, clock: datetime, reason: str | None
) -> ev.WebhookDeliveryRedelivered:
    return ev.WebhookDeliveryRedelivered(
        job_id=row["delivery_id"],
        version=row["version"] + 1,
        actor=actor,
        occurred_at=clock,
        reason=reason,
    )


async def _append(
    conn: asyncpg.Connection, event_store: store.EventStore, event: ev.WebhookEvent
) -> None:
    await _append_many(conn, event_store, [event])


async def _append_many(
    conn: asyncpg.Connection, event_store: store.EventStore, events: Sequence[ev.WebhookEvent]
) -> None:
    try:
        await event_store.append(conn, events)  # type: ignore[arg-type]
    except errors.VersionConflict as conflict:
        raise WebhookChanged(conflict.job_id, conflict.expected_version) from conflict
