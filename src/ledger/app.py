"""Composition root for HTTP: builds the Litestar app and wires the ledger, projections and workers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, Router
from litestar.openapi import OpenAPIConfig

from ledger import auth, config, db, groupcommit, jobtypes, metrics, store
from ledger.http import audit, dashboard, health, jobs, problems, ready, security
from ledger.http import metrics as http_metrics
from projections import metering, signing
from workers import pool as worker_pool

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
        worker_pool.load_handlers(settings.handler_modules)  # built-ins, LEDGER_HANDLERS, plugins
        registry = jobtypes.REGISTRY
    limit = max_body_bytes or settings.max_body_bytes or DEFAULT_MAX_BODY_BYTES
    process_metrics = registry_metrics or metrics.Metrics()
    process_metrics.add_cluster_gauges()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        pool = await db.create_pool(dsn, max_size=pool_size)
        event_store = store.EventStore([metering.JobMetrics(process_metrics)])
        app.state.services = jobs.Services(
            pool=pool,
            store=event_store,
            registry=registry,
            committer=groupcommit.GroupCommit(pool, event_store),
        )
        try:
            yield
        finally:
            await pool.close()

    api = Router(
        path="/",
        route_handlers=[jobs.JobsController, audit.AuditController, dashboard.overview],
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
        middleware=[http_metrics.RequestMetrics()],
        # Our own handler (ledger.logs) formats every line; Litestar must not install its own.
        logging_config=None,
        lifespan=[
            lifespan,
            audit.live_feed(settings.listen_database_url or dsn, settings.feed_poll_seconds),
        ],
        exception_handlers=problems.EXCEPTION_HANDLERS,
        request_max_body_size=limit,
        openapi_config=OpenAPIConfig(
            title="Job Ledger",
            version="1.0.0",
            description="Submit, read, list, cancel and retry jobs; every change is an event "
            "in an append-only, hash-chained ledger.",
            components=security.COMPONENTS,
        ),
    )
    app.state.auth = auth.TokenVerifier(auth_config)
    app.state.audit_key = audit.AuditKey(settings.audit_key_path, audit_signer)
    app.state.metrics = process_metrics
    _document_closed_objects(app)
    return app


def _document_closed_objects(app: Litestar) -> None:
    """Say `additionalProperties: false` for request bodies that refuse unknown fields
    (Litestar's schema generation leaves it out), so clients and fuzzers know."""
    schemas = app.openapi_schema.components.schemas or {}
    for struct in jobs.CLOSED_REQUESTS:
        schema = schemas.get(struct.__name__)
        if schema is not None:
            schema.additional_properties = False
