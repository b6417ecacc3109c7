"""GET /ready (no auth): 200 once the database answers and every migration is applied, else 503.

For load balancers and orchestrators: /health says the process is alive and how the
queue looks; /ready says whether it can serve requests now. A process started before
`ledger migrate` finished answers 503 until it has.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get
from litestar.openapi.datastructures import ResponseSpec

from ledger import migrations
from service.http import health


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
    pending = await health.read_or_none(request, migrations.pending, "ready")
    if pending is None:
        return Response(Readiness(status="database_unreachable"), status_code=503)
    if pending:
        return Response(
            Readiness(status="migrations_pending", pending_migrations=pending), status_code=503
        )
    return Response(Readiness(status="ready"), status_code=200)
