"""Composition root for HTTP: builds the Litestar app and wires the ledger, projections and workers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import msgspec
from litestar import Litestar, get
from litestar.datastructures import State
from litestar.response import Response
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from ledger import db, store
from projections import current


class Health(msgspec.Struct, frozen=True):
    status: str
    workers: int
    queue_depth: int


@get("/health", sync_to_thread=False)
async def health(state: State) -> Response[Health]:
    pool: asyncpg.Pool = state.pool
    try:
        async with pool.acquire(timeout=2) as conn:
            depth = await conn.fetchval(
                "SELECT count(*) FROM jobs WHERE status IN ('pending', 'retrying')"
            )
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return Response(Health("unavailable", 0, 0), status_code=HTTP_503_SERVICE_UNAVAILABLE)
    return Response(Health("ok", 0, int(depth)), status_code=HTTP_200_OK)


def create_app(dsn: str) -> Litestar:
    """The HTTP app over the database at `dsn` (already migrated)."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        pool = await db.create_pool(dsn)
        app.state.pool = pool
        app.state.store = store.EventStore([current.JobView()])
        try:
            yield
        finally:
            await pool.close()

    return Litestar(route_handlers=[health], lifespan=[lifespan])
