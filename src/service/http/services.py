"""What the HTTP routes work with, built once at start by the app's lifespan (`wiring`).

A route works with its request's tenant (`services_of`): every connection it takes
is inside a transaction acting in that tenant (`acting.act_in`), so every statement
it runs reads and appends as that tenant, and its submissions without an idempotency
key share a group commit with that tenant's only.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal, cast

import asyncpg
import msgspec
from litestar import Request

from ledger import acting, db, groupcommit, jobtypes, store, submission, tenancy
from ledger import events as ev
from ledger.store import Recorded

Isolation = Literal["read_committed", "repeatable_read", "serializable"]


class Services(msgspec.Struct, frozen=True, kw_only=True):
    """What the routes work with, built once by the app factory; `acting_in` binds a tenant."""

    pool: asyncpg.Pool
    store: store.EventStore
    registry: jobtypes.Registry
    submitter: submission.Submitter
    committer: groupcommit.GroupCommit  # concurrent submissions share a durable commit
    # READ_DATABASE_URL's pool (a streaming replica), for the reads that may lag: None
    # reads on `pool`. Writes and claims never use it.
    read_pool: asyncpg.Pool | None = None
    # The tenant a request acts in (None: the app's own work, not a request's).
    tenant: str | None = None

    def acting_in(self, tenant: str) -> Services:
        """These services for a request acting in `tenant`."""
        return msgspec.structs.replace(self, tenant=tenancy.checked(tenant))

    @asynccontextmanager
    async def connection(
        self, wait_seconds: float | None = None, *, isolation: Isolation | None = None
    ) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection, typed as the plain connection the core functions take;
        inside a transaction acting in the tenant (of `isolation`), when one is bound."""
        async with self.pool.acquire(timeout=wait_seconds) as proxy:
            async with self._acting(cast(asyncpg.Connection, proxy), isolation) as conn:
                yield conn

    @asynccontextmanager
    async def reading(self, wait_seconds: float | None = None) -> AsyncIterator[asyncpg.Connection]:
        """A read-only connection for a read that may see the ledger a little behind (the
        replica's, when READ_DATABASE_URL is set): job lists, histories, as-of reads, feed
        pages and stats, never a write."""
        pool = self.read_pool or self.pool
        async with pool.acquire(timeout=wait_seconds) as proxy:
            async with self._acting(cast(asyncpg.Connection, proxy), None) as conn:
                yield conn

    async def append(self, events: Sequence[ev.JobEvent]) -> list[Recorded]:
        """Append new jobs' events through the group commit, in the bound tenant."""
        return await self.committer.append(events, tenant=self.tenant or tenancy.DEFAULT)

    @asynccontextmanager
    async def _acting(
        self, conn: asyncpg.Connection, isolation: Isolation | None
    ) -> AsyncIterator[asyncpg.Connection]:
        if self.tenant is None:
            yield conn
            return
        transaction = conn.transaction(isolation=isolation)
        try:
            await transaction.start()
            await acting.act_in(conn, self.tenant)
            yield conn
        except BaseException:
            # The route's own error is what the client hears: a connection that broke
            # under it (a 503) has nothing to roll back, and no rollback error replaces it.
            # A read cancelled mid-statement (a client of the event stream went away, a
            # shutdown) leaves a connection that cannot roll back now: it is closed, and
            # the pool opens another, rather than taking back an open transaction.
            try:
                await transaction.rollback()
            except _CANNOT_ROLL_BACK:
                # (A connection the server closed went back to the pool already.)
                with contextlib.suppress(asyncpg.InterfaceError):
                    conn.terminate()
            raise
        await transaction.commit()


# What a rollback after a cancelled or broken statement may raise instead of rolling back.
_CANNOT_ROLL_BACK: tuple[type[BaseException], ...] = (asyncio.CancelledError, *db.UNREACHABLE)


def services_of(request: Request[Any, Any, Any]) -> Services:
    """The services for this request, acting in the tenant its guard resolved."""
    services: Services = request.app.state.services
    return services.acting_in(request.state.tenant)


def services_of_any_tenant(request: Request[Any, Any, Any]) -> Services:
    """The services bound to no tenant, for the `tenants:admin` routes that name the
    tenant they act in themselves (each opens its own transaction acting in it)."""
    services: Services = request.app.state.services
    return services
