"""What the HTTP routes work with, built once at start by the app's lifespan (`wiring`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import asyncpg
import msgspec
from litestar import Request

from ledger import groupcommit, jobtypes, store, submission


class Services(msgspec.Struct, frozen=True, kw_only=True):
    """What the routes work with, built once by the app factory."""

    pool: asyncpg.Pool
    store: store.EventStore
    registry: jobtypes.Registry
    submitter: submission.Submitter
    committer: groupcommit.GroupCommit  # concurrent submissions share a durable commit
    # READ_DATABASE_URL's pool (a streaming replica), for the reads that may lag: None
    # reads on `pool`. Writes and claims never use it.
    read_pool: asyncpg.Pool | None = None

    @asynccontextmanager
    async def connection(
        self, wait_seconds: float | None = None
    ) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection, typed as the plain connection the core functions take."""
        async with self.pool.acquire(timeout=wait_seconds) as proxy:
            yield cast(asyncpg.Connection, proxy)

    @asynccontextmanager
    async def reading(self, wait_seconds: float | None = None) -> AsyncIterator[asyncpg.Connection]:
        """A read-only connection for a read that may see the ledger a little behind (the
        replica's, when READ_DATABASE_URL is set): job lists, histories, as-of reads, feed
        pages and stats, never a write."""
        pool = self.read_pool or self.pool
        async with pool.acquire(timeout=wait_seconds) as proxy:
            yield cast(asyncpg.Connection, proxy)


def services_of(request: Request[Any, Any, Any]) -> Services:
    services: Services = request.app.state.services
    return services
