"""A transaction acting in one tenant: what it appends is that tenant's (sql/0063).

The tenant is a per-transaction setting (`ledger.tenant`), never a session one, so a
pooled connection (or a transaction-pooling PgBouncer) never carries it over to
another transaction. Inside it, a job's first event is stored in that tenant, and an
event for another tenant's job is refused as a version conflict, as for a job that
does not exist. A transaction that names no tenant acts in `default` for new jobs and
appends to each existing job in that job's own tenant (the worker's way), but reads no
tenant's rows at all (row-level security, sql/0068): `named` names `default` for it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from ledger import sqlfile, tenancy

Q = sqlfile.load("ledger")


async def act_in(conn: asyncpg.Connection, tenant: str) -> None:
    """Act in `tenant` until the current transaction ends (call inside one)."""
    if not conn.is_in_transaction():
        raise RuntimeError("a tenant is set for a transaction: open one first")
    await conn.execute(Q["tenant_act_in"], tenancy.checked(tenant))


async def named(conn: asyncpg.Connection) -> str:
    """The tenant the current transaction acts in, named for the rest of it: `default`
    when it named none, so its reads see what its appends write (call inside one)."""
    if not conn.is_in_transaction():
        raise RuntimeError("a tenant is named for a transaction: open one first")
    tenant: str = await conn.fetchval(Q["tenant_named"])
    return tenant


@asynccontextmanager
async def in_a_tenant(conn: asyncpg.Connection) -> AsyncIterator[str]:
    """Inside a transaction that names a tenant: the caller's, naming `default` when it
    names none, or else one of its own; the tenant."""
    if conn.is_in_transaction():
        yield await named(conn)
        return
    async with conn.transaction():
        yield await named(conn)
