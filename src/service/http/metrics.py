"""GET /metrics (Prometheus text format) and the middleware that measures every HTTP request.

The scrape reads queue depth, the queues' limits and worker slots from the database first (they are the
whole service's figures, so only the API exposes them); if the database does not
answer, the scrape still succeeds, with `ledger_database_reachable` 0 and those
gauges as last read. Requests are labelled by route *template*
(`/api/v1/jobs/{job_id:uuid}`), never by raw path, so the label stays bounded.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from litestar import Request, Response, get
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from ledger import db, metrics, sqlfile
from projections import queues as queue_view
from service.http.services import Services
from workers import leases

log = logging.getLogger(__name__)
Q = sqlfile.load("projections")


def of(app_state: Any) -> metrics.Metrics:
    registry: metrics.Metrics = app_state.metrics
    return registry


async def refresh(services: Services, registry: metrics.Metrics) -> bool:
    """Read queue depth and worker slots into the cluster gauges; False if the database failed."""
    try:
        async with services.connection(wait_seconds=2) as conn:
            rows = await conn.fetch(Q["job_counts_unfinished"])
            held = await queue_view.limits_now(conn)
            tenants_held = await conn.fetch(Q["tenants_at_max_running"])
            usage = await leases.slot_usage(conn)
    except db.UNREACHABLE as exc:
        log.warning("metrics: database unreachable: %s", exc)
        registry.set_database_reachable(False)
        return False
    registry.set_queue_depth((r["tenant"], r["queue"], r["status"], int(r["jobs"])) for r in rows)
    registry.set_queue_limits((h.tenant, h.queue, h.paused, h.held_by, h.runnable) for h in held)
    registry.set_tenant_limits(
        (r["tenant"], r["max_running"], r["running"], r["runnable"]) for r in tenants_held
    )
    registry.set_worker_slots(processes=usage.processes, slots=usage.slots, busy=usage.busy)
    registry.set_database_reachable(True)
    return True


@get(
    "/metrics",
    tags=["operations"],
    summary="Prometheus metrics",
    description="The process's metrics in the Prometheus text format (no authentication: "
    "expose it to your monitoring network only).",
    include_in_schema=True,
    media_type=metrics.CONTENT_TYPE,
)
async def metrics_route(request: Request[Any, Any, Any]) -> Response[bytes]:
    registry = of(request.app.state)
    await refresh(request.app.state.services, registry)
    return Response(registry.exposition(), media_type=metrics.CONTENT_TYPE)


class RequestMetrics(ASGIMiddleware):
    """Counts HTTP requests by method, route template and status, and times them."""

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        started = time.perf_counter()
        status = 500  # an exception that escapes every handler becomes a 500

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await next_app(scope, receive, send_and_watch)
        finally:
            of(scope["litestar_app"].state).observe_http(
                str(scope.get("method", "GET")),
                str(scope.get("path_template") or "unmatched"),
                str(status),
                time.perf_counter() - started,
            )
