"""Composition root for HTTP: builds the Litestar app and wires the ledger, projections and workers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, Router
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import OpenAPIHeader, OpenAPIResponse, OpenAPIType, Schema

from audit import signing
from ledger import auth, config, jobtypes, metrics
from service import wiring
from service.http import (
    audit,
    bodies,
    dashboard,
    draining,
    health,
    jobs,
    problems,
    queues,
    ready,
    schedules,
    security,
    tenants,
    webhooks,
    workflows,
)
from service.http import metrics as http_metrics
from workers import webhooks as webhook_sender

DEFAULT_MAX_BODY_BYTES = 1024 * 1024


def create_app(
    dsn: str,
    *,
    auth_config: auth.AuthConfig | None = None,
    registry: jobtypes.Registry | None = None,
    settings: config.Settings | None = None,
    max_body_bytes: int | None = None,
    pool_size: int = 10,
    audit_signer: signing.Signer | None = None,
    registry_metrics: metrics.Metrics | None = None,
) -> Litestar:
    """The HTTP app over the database at `dsn` (already migrated).

    Tokens are verified with `auth_config` (default: from `settings`, itself from the
    environment); payloads against `registry` (default: the process-wide one, with the
    built-in job types and the LEDGER_HANDLERS modules loaded into it).
    """
    settings = settings or config.from_env()
    auth_config = auth_config or auth.from_settings(settings)
    if registry is None:
        registry = wiring.job_types(settings)
    limit = max_body_bytes or settings.max_body_bytes or DEFAULT_MAX_BODY_BYTES
    process_metrics = registry_metrics or metrics.Metrics()
    process_metrics.add_cluster_gauges(tenant_label=settings.metrics_tenant_label)
    in_flight = draining.InFlight()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        services = await wiring.http_services(
            dsn, registry, process_metrics, pool_size, settings.read_database_url
        )
        app.state.services = services
        try:
            yield
        finally:
            # uvicorn stopped accepting and waited for the requests in flight (up to the
            # grace); writes it could not wait for still run: the pool outlives them.
            await in_flight.finished()
            await services.pool.close()
            if services.read_pool is not None:
                await services.read_pool.close()

    api = Router(
        path="/",
        route_handlers=[
            jobs.JobsController,
            workflows.WorkflowsController,
            queues.QueuesController,
            tenants.TenantsController,
            schedules.SchedulesController,
            webhooks.WebhooksController,
            audit.AuditController,
            dashboard.overview,
        ],
        guards=[security.authenticate],
        security=security.SECURITY,
    )
    app = Litestar(
        route_handlers=[
            health.health,
            ready.ready,
            http_metrics.metrics_route,
            dashboard.page,
            dashboard.assets,
            api,
        ],
        middleware=[http_metrics.RequestMetrics(), in_flight],
        # Our own handler (ledger.logs) formats every line; Litestar must not install its own.
        logging_config=None,
        lifespan=[
            lifespan,
            audit.live_feed(settings.listen_database_url or dsn, settings.feed_poll_seconds),
        ],
        exception_handlers=problems.EXCEPTION_HANDLERS,
        request_max_body_size=limit,
        request_class=bodies.JSONRequest,  # JSON bodies only, decoded strictly
        openapi_config=OpenAPIConfig(
            title="Job Ledger",
            version="1.0.0",
            description="Submit, read, list, cancel and retry jobs; every change is an event "
            "in an append-only, hash-chained ledger.",
            components=security.COMPONENTS,
        ),
    )
    app.state.auth = auth.TokenVerifier(auth_config)
    app.state.tenancy = settings.tenancy_mode
    app.state.audit_key = audit.AuditKey(settings.audit_key_path, audit_signer)
    app.state.metrics = process_metrics
    app.state.in_flight = in_flight
    app.state.webhook_vet = webhook_sender.vetter(
        webhook_sender.networks(settings.webhook_allowed_networks)
    )
    _document_closed_objects(app)
    _type_response_headers(app)
    return app


def _document_closed_objects(app: Litestar) -> None:
    """Say `additionalProperties: false` for request bodies that refuse unknown fields
    (Litestar's schema generation leaves it out), so clients and fuzzers know."""
    schemas = app.openapi_schema.components.schemas or {}
    for struct in (
        *jobs.CLOSED_REQUESTS,
        *queues.CLOSED_REQUESTS,
        *tenants.CLOSED_REQUESTS,
        *schedules.CLOSED_REQUESTS,
        *workflows.CLOSED_REQUESTS,
        *webhooks.CLOSED_REQUESTS,
    ):
        schema = schemas.get(struct.__name__)
        if schema is not None:
            schema.additional_properties = False


def _type_response_headers(app: Litestar) -> None:
    """Give each documented response header a schema (a string): Litestar leaves them
    untyped, which OpenAPI does not allow and client generators refuse."""
    for item in (app.openapi_schema.paths or {}).values():
        for operation in (item.get, item.put, item.post, item.delete, item.patch):
            for response in (operation.responses or {}).values() if operation else ():
                if not isinstance(response, OpenAPIResponse):
                    continue
                for spec in (response.headers or {}).values():
                    if isinstance(spec, OpenAPIHeader) and spec.schema is None:
                        spec.schema = Schema(type=OpenAPIType.STRING)
