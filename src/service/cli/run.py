"""Running the service: `ledger serve`, `ledger api`, `ledger worker`, and what goes with
running it: `ledger token` (a development token) and `ledger probe` (the health check)."""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

from ledger import auth, config, database, errors, metrics, probe, tenancy

if TYPE_CHECKING:
    from service.http import server as http_server

log = logging.getLogger("ledger")

DEV_TOKEN_SCOPES = ("jobs:write", "jobs:read", "jobs:cancel", "audit:read")


def register(sub: Any) -> None:
    """Add `serve`, `worker`, `api`, `token` and `probe` to the parser."""
    serving = sub.add_parser(
        "serve", help="run the API and a worker pool (WORKER_COUNT slots) in one process"
    )
    serving.set_defaults(runner=lambda _args: serve)
    sub.add_parser("worker", help="run a worker pool of WORKER_COUNT job slots").set_defaults(
        runner=lambda _args: worker
    )
    sub.add_parser("api", help="run the HTTP API only (no workers)").set_defaults(
        runner=lambda _args: api
    )
    minting = sub.add_parser("token", help="mint a bearer token for development")
    minting.add_argument("--sub", required=True, help="the subject: the actor recorded on events")
    minting.add_argument(
        "--scope",
        action="append",
        choices=sorted(auth.SCOPES),
        help="a scope to grant (repeat for more; default jobs:write and jobs:read)",
    )
    minting.add_argument("--ttl", default="1h", help="lifetime, like 90s, 15m, 1h or 7d")
    minting.add_argument(
        "--tenant",
        type=_tenant,
        default=None,
        help="the tenant, put in the tenant claim (JWT_TENANT_CLAIM, default `tenant`); "
        "default: none (the token acts in `default` under TENANCY=optional)",
    )
    minting.set_defaults(now=token)
    check = sub.add_parser("probe", help="health check: GET a local URL, exit 0 on 2xx")
    check.add_argument("--port", type=int, default=None, help="default: SERVER_PORT")
    check.add_argument("--path", default="/health")
    check.set_defaults(
        runner=lambda args: functools.partial(check_health, port=args.port, path=args.path)
    )


def _tenant(value: str) -> str:
    try:
        return tenancy.checked(value)
    except errors.InvalidTenant as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def token(args: argparse.Namespace, settings: config.Settings) -> int:
    """Mint a development token with the configured secret (generated on the embedded database)."""
    auth_config = auth.from_settings(settings)
    scopes = tuple(args.scope or ("jobs:write", "jobs:read"))
    ttl = auth.parse_duration(args.ttl)
    print(auth_config.mint(args.sub, scopes, ttl=ttl, tenant=args.tenant))
    return 0


async def check_health(settings: config.Settings, *, port: int | None, path: str) -> int:
    return probe.probe(port or settings.server_port, path)


def _http_server(
    settings: config.Settings, database_: database.Database, auth_config: auth.AuthConfig
) -> Any:
    """The uvicorn server for the HTTP API; on the embedded database, print a development token."""
    from service import app as app_module
    from service.http import server

    application = app_module.create_app(
        database_.app_dsn, auth_config=auth_config, settings=settings
    )
    if database_.embedded and auth_config.secret is not None:
        minted = auth_config.mint("dev", DEV_TOKEN_SCOPES, ttl=timedelta(hours=24))
        print(
            f"development token (sub=dev, scopes {' '.join(DEV_TOKEN_SCOPES)}, valid 24h):\n"
            f"{minted}",
            flush=True,
        )
    log.info("serving on http://%s:%s", settings.server_host, settings.server_port)
    _freeze_startup_objects()
    return server.build(application, settings)


# The cyclic collector's thresholds in a process that runs a worker pool: every job makes
# short-lived objects (tasks, rows, events, metrics' labels) that reference counting frees,
# and at the default 700 allocations a young collection ran every few jobs, walking the
# 250 slots' live tasks each time. Measured on a 40,000-job drain, 2 workers x 250 slots,
# three alternations: 7,942-8,641 jobs/s at the defaults, 9,106-9,715 with these
# (BENCHMARKS.md, "The claim in one statement").
WORKER_GC_THRESHOLDS: Final = (50_000, 20, 100)


def _collect_less_often() -> None:
    """For a process that runs a worker pool: startup's objects frozen, the young
    generation collected every 50,000 allocations instead of 700."""
    _freeze_startup_objects()
    gc.set_threshold(*WORKER_GC_THRESHOLDS)


def _freeze_startup_objects() -> None:
    """Exempt what startup built (modules, the app, its routes and OpenAPI schema) from the
    cyclic garbage collector: the objects stay alive for the whole process, and every
    full collection walked them all, a pause that showed as the HTTP latency tail."""
    gc.collect()
    gc.freeze()


async def serve(settings: config.Settings) -> int:
    """The API and (with WORKER_COUNT of 1 or more) a worker pool in one process."""
    from service import wiring
    from service.http import server as http_server

    auth_config = auth.from_settings(settings)  # refuse to start without a way to verify tokens
    with http_server.Shutdown().handling_signals() as shutdown:
        async with database.open_database(settings) as database_:
            server = _http_server(settings, database_, auth_config)
            shutdown.stop_server(server)
            registry: metrics.Metrics = server.config.app.state.metrics
            async with (
                wiring.checkpoint_schedule(settings, database_),
                wiring.schedule_runner(settings, database_, registry),
            ):
                if settings.worker_count < 1:
                    await server.serve()
                else:
                    await _serve_with_workers(settings, database_, server, shutdown)
    return 0


async def _serve_with_workers(
    settings: config.Settings,
    database_: database.Database,
    server: Any,
    shutdown: http_server.Shutdown,
) -> None:
    """The API and a worker pool in one process; a signal drains both (see `service.http.server`).

    The first SIGTERM or SIGINT stops the API accepting and the pool claiming; the API
    finishes its requests in flight and the pool its running jobs (or hands them back)
    within their grace periods; a second signal exits at once.
    """
    from service import wiring

    wiring.job_types(settings)
    registry: metrics.Metrics = server.config.app.state.metrics  # one /metrics for both
    workers = wiring.worker_pool(settings, database_, registry)
    _collect_less_often()
    shutdown.on_stop(workers.request_stop)
    running = asyncio.create_task(workers.run(), name="ledger-worker-pool")

    def pool_ended(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("the worker pool failed; stopping the API", exc_info=task.exception())
            shutdown.request()

    running.add_done_callback(pool_ended)
    try:
        await server.serve()
    finally:
        workers.request_stop()
        await running


async def worker(settings: config.Settings) -> int:
    """A worker pool alone; its metrics on WORKER_METRICS_PORT."""
    from ledger import jobtypes
    from service import wiring
    from workers import shutdown

    if settings.worker_count < 1:
        raise errors.ConfigError("ledger worker needs WORKER_COUNT of 1 or more")
    loaded = jobtypes.load_handlers(settings.handler_modules)
    log.info("handler modules: %s", ", ".join(loaded) or "(none)")
    async with database.open_database(settings) as database_:
        registry = metrics.Metrics()
        workers = wiring.worker_pool(settings, database_, registry)
        _collect_less_often()
        stop_metrics = _serve_worker_metrics(registry, settings)
        try:
            with shutdown.graceful(workers.request_stop):
                async with wiring.schedule_runner(settings, database_, registry):
                    await workers.run()
        finally:
            stop_metrics()
    return 0


def _serve_worker_metrics(
    registry: metrics.Metrics, settings: config.Settings
) -> Callable[[], None]:
    if settings.worker_metrics_port == 0:
        return lambda: None
    stop = registry.serve(settings.server_host, settings.worker_metrics_port)
    log.info(
        "worker metrics on http://%s:%s/metrics", settings.server_host, settings.worker_metrics_port
    )
    return stop


async def api(settings: config.Settings) -> int:
    """The HTTP API alone (no workers): scale these out behind a load balancer."""
    from service import wiring
    from service.http import server as http_server

    auth_config = auth.from_settings(settings)
    with http_server.Shutdown().handling_signals() as shutdown:
        async with database.open_database(settings) as database_:
            server = _http_server(settings, database_, auth_config)
            shutdown.stop_server(server)
            registry: metrics.Metrics = server.config.app.state.metrics
            async with (
                wiring.checkpoint_schedule(settings, database_),
                wiring.schedule_runner(settings, database_, registry),
            ):
                await server.serve()
    return 0
