"""Connections to PostgreSQL: the application pool and one-off connections."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import asyncpg

APPLICATION_NAME = "job-ledger"

# What "the database is unreachable (for now)" looks like from asyncpg: refused or
# dropped sockets, server errors, a closed or broken connection (InternalClientError:
# a pooled connection whose server went away mid-protocol), and timeouts.
UNREACHABLE: tuple[type[Exception], ...] = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    TimeoutError,
)


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    name: str = APPLICATION_NAME,
    read_only: bool = False,
) -> asyncpg.Pool:
    """A pool of connections in UTC, tagged with the application name (`read_only`: no writes)."""
    server_settings = {"application_name": name, "timezone": "UTC"}
    if read_only:
        server_settings["default_transaction_read_only"] = "on"
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, server_settings=server_settings
    )
    assert pool is not None
    return pool


@asynccontextmanager
async def connect(dsn: str, *, name: str = APPLICATION_NAME) -> AsyncIterator[asyncpg.Connection]:
    """One connection, closed on exit."""
    conn = await asyncpg.connect(dsn, server_settings={"application_name": name, "timezone": "UTC"})
    try:
        yield conn
    finally:
        await conn.close()


@asynccontextmanager
async def acquire(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A connection from `pool`, typed as a plain connection (the pool's proxy behaves as one)."""
    async with pool.acquire() as conn:
        yield cast(asyncpg.Connection, conn)
