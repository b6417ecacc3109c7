"""Connections to PostgreSQL: the application pool and one-off connections."""

from __future__ import annotations

import errno
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final, cast

import asyncpg

APPLICATION_NAME = "job-ledger"
# The API's READ_DATABASE_URL pool (reads that may lag, on a replica).
READ_APPLICATION_NAME = "job-ledger-read"

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

# What "the database cannot be reached now, ask again later" looks like: narrower than
# UNREACHABLE, which the probes use, because a statement the server refuses (a bug, a
# constraint) is not an outage. The API answers these with 503 and Retry-After.
UNAVAILABLE: tuple[type[Exception], ...] = (
    ConnectionError,  # refused, reset, aborted, broken pipe
    TimeoutError,  # no pooled connection free in time, or a connect that timed out
    socket.gaierror,  # the host name does not resolve
    asyncpg.PostgresConnectionError,  # class 08, and a connection lost mid-statement
    asyncpg.CannotConnectNowError,  # 57P03: starting up, shutting down, in recovery
    asyncpg.AdminShutdownError,  # 57P01: the server is stopping (fast shutdown)
    asyncpg.CrashShutdownError,  # 57P02: another backend crashed, all were ended
    asyncpg.TooManyConnectionsError,  # 53300: no connection slot left
)
_NETWORK_ERRNOS: Final = frozenset(
    {errno.ENETDOWN, errno.ENETUNREACH, errno.EHOSTDOWN, errno.EHOSTUNREACH}
)


def unavailable(exc: BaseException) -> bool:
    """Whether `exc` says the database cannot be reached now (not that a statement failed)."""
    if isinstance(exc, UNAVAILABLE):
        return True
    return isinstance(exc, OSError) and exc.errno in _NETWORK_ERRNOS


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    name: str = APPLICATION_NAME,
    read_only: bool = False,
    internal: bool = False,
) -> asyncpg.Pool:
    """A pool of connections in UTC, tagged with the application name (`read_only`: no writes).

    `internal`: only the service's own fixed queries use these connections (the
    worker's claims and outcomes, group commit), never a handler's or a user's
    code. They change no session state, so they are not reset on every release
    (asyncpg's reset is a round trip), and they keep one generic plan per prepared
    statement instead of planning the same query again at every call (the append's
    plan is the same every time). An open transaction is still rolled back on release.
    """
    server_settings = {"application_name": name, "timezone": "UTC"}
    if read_only:
        server_settings["default_transaction_read_only"] = "on"
    if internal:
        server_settings["plan_cache_mode"] = "force_generic_plan"
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        server_settings=server_settings,
        reset=_keep_session if internal else None,
    )
    assert pool is not None
    return pool


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """No reset beyond asyncpg's own rollback of an open transaction (see create_pool)."""


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
