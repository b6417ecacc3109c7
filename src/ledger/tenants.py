"""Tenants' settings, changed only by events: `max_queued`, `max_running`, `weight`.

A tenant's settings form one event stream in the ledger, like a queue's: its id is
`stream_id` of the tenant (the events' `job_id` column), its versions count from 1,
and each `tenant.configured.v1` is appended in that tenant, so it is hash-chained, in
that tenant's feed and covered by its checkpoints, and its auditor sees it (nobody
else's). The append projects it into the `tenants` table (sql/0069), where the app
role sees only the row of the tenant it acts in; `all` reads every tenant's through
`tenants_all()`. `evolve` is the fold in Python, `tenant_view_step` in SQL.

`max_queued` is enforced by the append itself (sql/0069): a submission that would take
the tenant's queued jobs past it raises `errors.TenantQuotaExceeded` and stores
nothing. `max_running` and `weight` are stored and shown only, for now.

A change that changes nothing appends nothing, and the answer is the same either way.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Final

import asyncpg
import msgspec

from ledger import acting, errors, sqlfile, store, tenancy, wire
from ledger import events as ev

Q = sqlfile.load("ledger")
# The namespace of tenant stream ids (uuid5 of the tenant id under it); fixed forever.
NAMESPACE: Final = uuid.UUID("d653abcb-7329-4c23-be28-0d2a3f180f63")
SETTINGS: Final = ("max_queued", "max_running", "weight")
DEFAULT_WEIGHT: Final = 1


class TenantChanged(errors.VersionConflict):
    """Another writer changed the tenant's settings first (409); read them and decide again."""

    def __init__(self, tenant: str, conflict: errors.VersionConflict) -> None:
        super().__init__(conflict.job_id, conflict.expected_version)
        self.args = (
            f"tenant {tenant!r} settings changed concurrently (expected version "
            f"{conflict.expected_version}); read them and try again",
        )
        self.tenant = tenant


class TenantState(msgspec.Struct, frozen=True, kw_only=True):
    """A tenant's settings after its events (a row of `tenants`; version 0: none yet)."""

    tenant: str
    version: int
    max_queued: int | None = None
    max_running: int | None = None
    weight: int = DEFAULT_WEIGHT
    updated_by: str | None = None
    updated_at: datetime | None = None

    @property
    def settings(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in SETTINGS}

    def shown(self) -> wire.TenantOut:
        """As the API answers it."""
        return wire.TenantOut(
            tenant=self.tenant,
            max_queued=self.max_queued,
            max_running=self.max_running,
            weight=self.weight,
            version=self.version,
            updated_by=self.updated_by,
            updated_at=self.updated_at,
        )


def stream_id(tenant: str) -> uuid.UUID:
    """The id of a tenant's settings stream: uuid5 of the tenant id in a namespace of its own."""
    return uuid.uuid5(NAMESPACE, tenant)


def evolve(state: TenantState | None, event: ev.TenantConfigured) -> TenantState:
    """The settings after `event`; pure."""
    return TenantState(
        tenant=event.tenant,
        version=event.version,
        max_queued=event.max_queued,
        max_running=event.max_running,
        weight=event.weight,
        updated_by=event.actor,
        updated_at=event.occurred_at,
    )


def from_row(row: asyncpg.Record) -> TenantState:
    return TenantState(
        tenant=row["tenant"],
        version=row["version"],
        max_queued=row["max_queued"],
        max_running=row["max_running"],
        weight=row["weight"],
        updated_by=row["updated_by"],
        updated_at=row["updated_at"],
    )


async def current(conn: asyncpg.Connection) -> TenantState:
    """The settings of the tenant the transaction acts in (version 0: never configured)."""
    row = await conn.fetchrow(Q["tenants_get"])
    if row is not None:
        return from_row(row)
    return TenantState(tenant=await conn.fetchval(Q["tenant_current"]), version=0)


async def get(conn: asyncpg.Connection, tenant: str) -> TenantState:
    """`tenant`'s settings, read in a transaction acting in it (`conn` in none)."""
    async with conn.transaction():
        await acting.act_in(conn, tenancy.checked(tenant))
        return await current(conn)


async def all_tenants(conn: asyncpg.Connection) -> list[TenantState]:
    """Every configured tenant's settings, by tenant id (the operator's view)."""
    return [from_row(r) for r in await conn.fetch(Q["tenants_all"])]


def merged(state: TenantState, changes: dict[str, Any]) -> dict[str, Any]:
    """The settings `state` has with `changes` applied (InvalidInput for an unknown or
    invalid one: checked like a PUT body)."""
    try:
        given = msgspec.convert(changes, wire.TenantSettings)
    except msgspec.ValidationError as exc:
        raise errors.InvalidInput(f"invalid tenant settings: {exc}", []) from None
    return state.settings | given.changes()


async def configure(
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    tenant: str,
    changes: dict[str, Any],
    *,
    actor: str,
) -> TenantState:
    """Change the settings named in `changes` (the others keep their values; None clears
    a limit), by a `tenant.configured.v1` appended in `tenant` unless nothing changes;
    the settings after. `conn` must be in no transaction: this one acts in `tenant`.
    Raises InvalidTenant, InvalidInput, or TenantChanged when another writer raced."""
    tenant = tenancy.checked(tenant)
    async with conn.transaction():
        await acting.act_in(conn, tenant)
        state = await current(conn)
        wanted = merged(state, changes)
        if state.version > 0 and wanted == state.settings:
            return state
        event = ev.TenantConfigured(
            job_id=stream_id(tenant),
            version=state.version + 1,
            actor=actor,
            occurred_at=event_store.clock(),
            tenant=tenant,
            **wanted,
        )
        try:
            recorded = await event_store.append(conn, [event])
        except errors.VersionConflict as conflict:
            raise TenantChanged(tenant, conflict) from conflict
    stored = recorded[0].event
    assert isinstance(stored, ev.TenantConfigured)
    return evolve(state, stored)
