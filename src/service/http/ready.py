"""GET /ready (no auth): 200 once the database answers and every migration is applied, else 503.

For load balancers and orchestrators: /health says the process is alive and how the
queue looks; /ready says whether it can serve requests now. A process started before
`ledger migrate` finished answers 503 until it has.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response, get
from litestar.openapi.datastructures import ResponseSpec

from ledger import db, migrations
from service.http.services import Services

log = logging.getLogger(__name__)
# InternalClientError: a pooled connection whose server went away mid-protocol.


class Readiness(msgspec.Struct, frozen=True, kw_only=True):
    status: str  # "ready", "database_unreachable" or "migrations_pending"
    pending_migrations: list[str] = msgspec.field(default_factory=list)


@get(
    "/ready",
    tags=["operations"],
    summary="Readiness: the database answers and is fully migrated",
    responses={503: ResponseSpec(data_container=Readiness, description="Not ready yet")},
)
async def ready(request: Request[Any, Any, Any]) -> Response[Readiness]:
    services: Services = request.app.state.services
    try:
        async with services.connection(wait_seconds=2) as conn:
            pending = await migrations.pending(conn)
    except db.UNREACHABLE as exc:
        log.warning("ready: database unreachable: %s", exc)
        return Response(Readiness(status="database_unreachable"), status_code=503)
    if pending:
        return Response(
            Readiness(status="migrations_pending", pending_migrations=pending), status_code=503
        )
    return Response(Readiness(status="ready"), status_code=200)
