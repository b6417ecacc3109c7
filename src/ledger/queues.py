"""Queues' settings, changed only by events: configure (the limits), pause, resume.

A queue's events form one stream in the ledger, like a job's: its id is `stream_id`
of the queue's name (the events' `job_id` column), its versions count from 1, and
each event is hash-chained, in the feed and covered by checkpoints. The append
projects them into the `queues` table (sql/0059), which the claim reads: a change
takes effect at the next claim, in every worker process. `evolve` is the fold in
Python; `queue_view_step` in SQL is the same rule (a test holds the two equal).

A command that changes nothing (pausing a paused queue, setting the limits it has)
appends nothing: the ledger records changes, and the answer is the same either way.

Queues are per tenant (sql/0065): tenant A's "mail" and B's "mail" are two queues, two
streams (`stream_id` is salted with the tenant, except `default`'s, unchanged) and two
settings, and a job is held only by its own tenant's queue of its name. Every function
here acts in the tenant the caller's transaction acts in (`acting.act_in`; it names
`default` when the transaction names none, `acting.named`), the one the append stores a new stream's first event in: there is
no tenant argument that could disagree with it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

import asyncpg
import msgspec

from ledger import acting, errors, retrypolicy, sqlfile, store, tenancy, wire
from ledger import events as ev

Q = sqlfile.load("ledger")
# The namespace of queue stream ids (uuid5 of the queue's name under it); fixed forever.
NAMESPACE: Final = uuid.UUID("6f1d4a52-2c61-4e8e-9c1e-5b0f3a8d7e41")


class UnknownQueue(errors.LedgerError):
    """No queue of that name has settings or jobs (404)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"queue {name!r} has no settings and no jobs")
        self.name = name


class QueueChanged(errors.VersionConflict):
    """Another writer changed the queue's settings first (409); read them and decide again."""

    def __init__(self, name: str, conflict: errors.VersionConflict) -> None:
        super().__init__(conflict.job_id, conflict.expected_version)
        self.args = (
            f"queue {name!r} changed concurrently (expected version "
            f"{conflict.expected_version}); read it and try again",
        )
        self.name = name


class QueueState(msgspec.Struct, frozen=True, kw_only=True):
    """A queue's settings after its events (a row of `queues`)."""

    name: str
    version: int
    concurrency: int | None = None
    rate_limit: ev.RateLimit | None = None
    per_key_concurrency: int | None = None
    fairness: ev.Fairness = "fifo"
    paused: bool = False
    retry_policy: retrypolicy.RetryPolicy | None = None
    updated_by: str | None = None
    updated_at: datetime | None = None

    @property
    def settings(self) -> tuple[Any, ...]:
        return (
            self.concurrency,
            self.rate_limit,
            self.per_key_concurrency,
            self.fairness,
            self.retry_policy,
        )


def stream_id(name: str, tenant: str = tenancy.DEFAULT) -> uuid.UUID:
    """The id of a tenant's queue's event stream: default's is uuid5 of the name (as
    before tenants), another tenant's of the tenant and the name (no tenant id or queue
    name holds a newline, so two pairs never share one)."""
    if tenant == tenancy.DEFAULT:
        return uuid.uuid5(NAMESPACE, name)
    return uuid.uuid5(NAMESPACE, f"{tenant}\n{name}")


def checked_name(name: str) -> str:
    """`name` when it can name a queue (the submission's rule); InvalidInput otherwise."""
    try:
        return msgspec.convert(name, wire.QueueName)
    except msgspec.ValidationError:
        raise errors.InvalidInput.at(
            "name", f"a queue name matches {wire.QUEUE_PATTERN} (letters, digits, _ . : -)"
        ) from None


def evolve(state: QueueState | None, event: ev.QueueEvent) -> QueueState:
    """The settings after `event`; pure."""
    base = state or QueueState(name=event.queue, version=0)
    common: dict[str, Any] = {
        "version": event.version,
        "updated_by": event.actor,
        "updated_at": event.occurred_at,
    }
    match event:
        case ev.QueueConfigured():
            common |= {
                "concurrency": event.concurrency,
                "rate_limit": event.rate_limit,
                "per_key_concurrency": event.per_key_concurrency,
                "fairness": event.fairness,
                "retry_policy": event.retry_policy,
            }
        case ev.QueuePaused():
            common["paused"] = True
        case ev.QueueResumed():
            common["paused"] = False
    return msgspec.structs.replace(base, **common)


def from_row(row: asyncpg.Record) -> QueueState:
    rate = None
    if row["rate_limit"] is not None:
        rate = ev.RateLimit(
            limit=row["rate_limit"],
            period_seconds=row["rate_period_seconds"],
            burst=row["rate_burst"],
        )
    return QueueState(
        name=row["name"],
        version=row["version"],
        concurrency=row["concurrency"],
        rate_limit=rate,
        per_key_concurrency=row["per_key_concurrency"],
        fairness=row["fairness"],
        paused=row["paused"],
        retry_policy=retrypolicy.stored(row["retry_policy"]),
        updated_by=row["updated_by"],
        updated_at=row["updated_at"],
    )


async def current(conn: asyncpg.Connection, name: str) -> QueueState | None:
    """The queue's settings now in the tenant the transaction acts in (None: no event
    ever changed them there)."""
    row = await conn.fetchrow(Q["queues_get"], name)
    return None if row is None else from_row(row)


def configured(settings: wire.QueueSettings) -> dict[str, Any]:
    """The fields of a queue.configured.v1 event for `settings` (a burst defaults to the limit)."""
    rate = settings.rate_limit
    return {
        "concurrency": settings.concurrency,
        "rate_limit": None
        if rate is None
        else ev.RateLimit(
            limit=rate.limit,
            period_seconds=float(rate.period_seconds),
            burst=rate.limit if rate.burst is None else rate.burst,
        ),
        "per_key_concurrency": settings.per_key_concurrency,
        "fairness": settings.fairness,
        "retry_policy": None
        if settings.retry_policy is None or not settings.retry_policy.given()
        else settings.retry_policy.checked("retry_policy"),
    }


async def configure(
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    name: str,
    settings: wire.QueueSettings,
    *,
    actor: str,
) -> QueueState:
    """Set the queue's limits, all of them; the settings after (VersionConflict: raced)."""
    fields = configured(settings)

    def unchanged(state: QueueState) -> bool:
        # A queue never configured records its first settings, even the defaults.
        names = ("concurrency", "rate_limit", "per_key_concurrency", "fairness", "retry_policy")
        return state.version > 0 and state.settings == tuple(fields[f] for f in names)

    return await _change(conn, event_store, name, actor, ev.QueueConfigured, fields, unchanged)


async def pause(
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    name: str,
    *,
    actor: str,
    reason: str | None = None,
) -> QueueState:
    """Stop claiming the queue's jobs (running ones finish); the settings after."""
    return await _change(
        conn, event_store, name, actor, ev.QueuePaused, {"reason": reason}, lambda s: s.paused
    )


async def resume(
    conn: asyncpg.Connection, event_store: store.EventStore, name: str, *, actor: str
) -> QueueState:
    """Claim the queue's jobs again; the settings after."""
    return await _change(
        conn, event_store, name, actor, ev.QueueResumed, {}, lambda s: not s.paused
    )


async def _change(
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    name: str,
    actor: str,
    kind: type[ev.QueueConfigured | ev.QueuePaused | ev.QueueResumed],
    fields: dict[str, Any],
    unchanged: Callable[[QueueState], bool],
) -> QueueState:
    name = checked_name(name)
    async with conn.transaction():
        tenant = await acting.named(conn)
        state = await current(conn, name)
        if unchanged(state or QueueState(name=name, version=0)):
            return state or QueueState(name=name, version=0)
        event = kind(
            job_id=stream_id(name, tenant),
            version=(state.version if state else 0) + 1,
            actor=actor,
            occurred_at=event_store.clock(),
            queue=name,
            **fields,
        )
        try:
            recorded = await event_store.append(conn, [event])
        except errors.VersionConflict as conflict:
            raise QueueChanged(name, conflict) from conflict
    stored = recorded[0].event
    assert isinstance(stored, ev.QueueConfigured | ev.QueuePaused | ev.QueueResumed)
    return evolve(state, stored)
