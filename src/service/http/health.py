"""GET /health (no auth): `{"status", "workers", "queue_depth"}`, 503 when the database is unreachable."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import msgspec
from litestar import Request, Response, get
from litestar.openapi.datastructures import ResponseSpec

from ledger import db
from projections import status
from service.http.services import Services

log = logging.getLogger(__name__)


class Health(msgspec.Struct, frozen=True):
    status: str  # "ok", or "unavailable" when the database does not answer
    workers: int
    queue_depth: int


@get(
    "/health",
    tags=["health"],
    summary="Liveness and queue depth",
    responses={503: ResponseSpec(data_container=Health, description="The database is unreachable")},
)
async def health(request: Request[Any, Any, Any]) -> Response[Health]:
    counts = await read_or_none(request, status.counts, "health")
    if counts is None:
        return Response(Health("unavailable", 0, 0), status_code=503)
    return Response(Health("ok", counts.workers, counts.queue_depth), status_code=200)


async def read_or_none[T](
    request: Request[Any, Any, Any],
    read: Callable[[asyncpg.Connection], Awaitable[T]],
    route: str,
) -> T | None:
    """What `read` answers on a connection had within 2 s; None (logged) when the database
    does not answer, for the probe routes to say so with a 503 of their own shape."""
    services: Services = request.app.state.services
    try:
        async with services.connection(wait_seconds=2) as conn:
            return await read(conn)
    except db.UNREACHABLE as exc:
        log.warning("%s: database unreachable: %s", route, exc)
        return None
