"""Composition root for the command line: `ledger serve | migrate | verify | projections ...`."""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec

from ledger import (
    config,
    database,
    db,
    embedded,
    errors,
    logs,
    metrics,
    migrations,
    probe,
    store,
)
from projections import chains, current, metering, rebuild

log = logging.getLogger("ledger")


def _setup_logging(settings: config.Settings) -> None:
    logs.configure(settings.log_level, settings.log_format)


async def _serve(settings: config.Settings) -> int:
    import uvicorn

    from ledger import app as app_module

    async with database.open_database(settings) as database_:
        application = app_module.create_app(database_.app_dsn)
        server = uvicorn.Server(
            uvicorn.Config(
                application,
                host=settings.server_host,
                port=settings.server_port,
                log_level=settings.log_level,
                log_config=None,
                lifespan="on",
            )
        )
        log.info("serving on http://%s:%s", settings.server_host, settings.server_port)
        await server.serve()
    return 0


async def _worker(settings: config.Settings) -> int:
    from workers import pool, shutdown

    if settings.worker_count < 1:
        raise errors.ConfigError("ledger worker needs WORKER_COUNT of 1 or more")
    loaded = pool.load_handlers(settings.handler_modules)
    log.info("handler modules: %s", ", ".join(loaded) or "(none)")
    async with database.open_database(settings) as database_:
        registry = metrics.Metrics()
        workers = pool.Pool(
            database_.app_dsn,
            listen_dsn=database_.listen_dsn,
            settings=pool.settings_from(settings),
            event_store=store.EventStore([metering.JobMetrics(registry), current.JobView()]),
        )
        registry.add_pool_gauges(lambda: workers.settings.slots, lambda: len(workers.running))
        stop_metrics = _serve_worker_metrics(registry, settings)
        try:
            with shutdown.graceful(workers.request_stop):
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


async def _migrate(settings: config.Settings) -> int:
    async with database.open_database(settings, migrate=False) as database_:
        async with db.connect(database_.admin_dsn) as conn:
            applied = await migrations.migrate(conn)
    print("applied: " + ", ".join(applied) if applied else "up to date")
    return 0


async def _verify(settings: config.Settings) -> int:
    async with database.open_database(settings) as database_:
        async with db.connect(database_.app_dsn) as conn:
            report = await chains.verify(conn)
    for link in report.broken:
        print(f"BROKEN {link.describe()}")
    print(f"{report.jobs} jobs, {report.events} events, {len(report.broken)} broken chains")
    return 0 if report.ok else 1


async def _projections_verify(settings: config.Settings) -> int:
    async with database.open_database(settings) as database_:
        async with db.connect(database_.app_dsn) as conn:
            diffs = await rebuild.verify(conn)
    encoder = msgspec.json.Encoder()
    for diff in diffs:
        print(encoder.encode(diff).decode())
    print("projection matches the events" if not diffs else f"{len(diffs)} rows differ")
    return 0 if not diffs else 1


async def _projections_rebuild(settings: config.Settings) -> int:
    async with database.open_database(settings) as database_:
        async with db.connect(database_.app_dsn) as conn:
            count = await rebuild.rebuild(conn)
    print(f"rebuilt the jobs view: {count} jobs")
    return 0


async def _db_reset(settings: config.Settings, *, confirmed: bool) -> int:
    """Delete the ledger's database and start it afresh (asks first; external servers need --yes)."""
    if settings.database_url is not None:
        if not confirmed:
            print(
                "ledger: refusing to reset the database at DATABASE_URL without confirmation; "
                "run `make db-reset CONFIRM=yes` (or `ledger db-reset --yes`)",
                file=sys.stderr,
            )
            return 2
        applied = await database.reset_server(
            settings.migrate_database_url or settings.database_url
        )
        print(f"database reset; applied: {', '.join(applied)}")
        return 0
    pg = embedded.EmbeddedPostgres(settings.data_dir, settings.pg_port)
    if not confirmed:
        if not sys.stdin.isatty():
            print("ledger: not resetting without confirmation: pass --yes", file=sys.stderr)
            return 2
        question = f"Delete the embedded database in {pg.cluster_dir}? Type 'yes': "
        answer = await asyncio.to_thread(input, question)
        if answer.strip() != "yes":
            print("not reset")
            return 1
    existed = pg.destroy()
    print(f"deleted {pg.cluster_dir}" if existed else f"no database in {pg.cluster_dir}")
    return 0


async def _seed(settings: config.Settings, *, per_type: int) -> int:
    import workers.handlers  # noqa: F401 - registers the built-in job types
    from ledger import jobtypes
    from workers import seed

    async with database.open_database(settings) as database_:
        async with db.connect(database_.app_dsn) as conn:
            event_store = store.EventStore([current.JobView()])
            seeded = await seed.seed(
                conn, event_store, jobtypes.REGISTRY, settings.storage, per_type=per_type
            )
    for name, job_id in seeded.submitted:
        print(f"submitted {name} {job_id}")
    for name, reason in seeded.skipped:
        print(f"skipped {name}: {reason}", file=sys.stderr)
    return 0


async def _probe(settings: config.Settings, *, port: int | None, path: str) -> int:
    return probe.probe(port or settings.server_port, path)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ledger", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the API, workers and scheduler in one process")
    sub.add_parser("worker", help="run a worker pool of WORKER_COUNT job slots")
    sub.add_parser("migrate", help="apply pending migrations")
    sub.add_parser("verify", help="recompute every job's hash chain")
    proj = sub.add_parser("projections", help="check or rebuild the current-state view")
    proj_sub = proj.add_subparsers(dest="action", required=True)
    proj_sub.add_parser("verify", help="rebuild into a scratch table and diff with the live view")
    proj_sub.add_parser("rebuild", help="replace the live view with the fold of the events")
    reset = sub.add_parser(
        "db-reset", help="delete the database and start afresh (destroys history)"
    )
    reset.add_argument("--yes", action="store_true", help="do not ask (required off embedded)")
    sample = sub.add_parser("seed", help="submit sample jobs of every registered job type")
    sample.add_argument("--count", type=int, default=1, help="jobs of each type (default 1)")
    check = sub.add_parser("probe", help="health check: GET a local URL, exit 0 on 2xx")
    check.add_argument("--port", type=int, default=None, help="default: SERVER_PORT")
    check.add_argument("--path", default="/health")
    return parser


Runner = Callable[[config.Settings], Coroutine[Any, Any, int]]


def _runner(args: argparse.Namespace) -> Runner:
    if args.command == "projections":
        return _projections_verify if args.action == "verify" else _projections_rebuild
    if args.command == "db-reset":
        return functools.partial(_db_reset, confirmed=args.yes)
    if args.command == "seed":
        return functools.partial(_seed, per_type=args.count)
    if args.command == "probe":
        return functools.partial(_probe, port=args.port, path=args.path)
    runners: dict[str, Runner] = {
        "serve": _serve,
        "worker": _worker,
        "migrate": _migrate,
        "verify": _verify,
    }
    return runners[args.command]


async def _run_until_signalled(coro: Coroutine[Any, Any, int]) -> int:
    """Run `coro`; SIGTERM is treated like Ctrl-C (cancel, clean up, exit)."""
    task = asyncio.ensure_future(coro)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        return 0
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = config.from_env()
        _setup_logging(settings)
        return asyncio.run(_run_until_signalled(_runner(args)(settings)))
    except errors.LedgerError as exc:
        print(f"ledger: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
