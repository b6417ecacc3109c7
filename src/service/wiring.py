"""What the app factory and the command line build alike, built in one place.

The event store with the inline job metrics, the worker pool with its gauges,
the job types a process loads, the audit key and its checkpoint schedule, and
the services the HTTP routes use.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

import asyncpg

from audit import checkpoints, signing
from ledger import config, database, db, groupcommit, jobtypes, metrics, store, submission
from projections import metering
from service.http.services import Services
from workers import pool, scheduler


def event_store(registry: metrics.Metrics) -> store.EventStore:
    """The event store, counting every appended event into `registry` (/metrics)."""
    return store.EventStore([metering.JobMetrics(registry)])


def job_types(settings: config.Settings) -> jobtypes.Registry:
    """The process's job types: the built-ins, LEDGER_HANDLERS and installed plugins."""
    jobtypes.load_handlers(settings.handler_modules)
    return jobtypes.REGISTRY


def worker_pool(
    settings: config.Settings, database_: database.Database, registry: metrics.Metrics
) -> pool.Pool:
    """A worker pool of WORKER_COUNT slots, its metrics and gauges in `registry`."""
    workers = pool.Pool(
        database_.app_dsn,
        listen_dsn=database_.listen_dsn,
        settings=pool.settings_from(settings),
        event_store=event_store(registry),
        process_metrics=registry,
    )
    registry.add_pool_gauges(lambda: workers.settings.slots, lambda: len(workers.running))
    registry.add_reserve_gauges(lambda: workers.settings.reserve, lambda: workers.reserve_busy)
    return workers


def signer(settings: config.Settings) -> signing.Signer:
    """The audit key (LEDGER_AUDIT_KEY), created on first use."""
    return signing.load_or_create(settings.audit_key_path)


def checkpoint_schedule(
    settings: config.Settings, database_: database.Database
) -> AbstractAsyncContextManager[Any]:
    """Signed audit checkpoints every AUDIT_CHECKPOINT_INTERVAL_SECONDS while the API runs, and
    new events integrated into the stored tree every AUDIT_INTEGRATE_INTERVAL_SECONDS."""
    return checkpoints.scheduled(
        database_.app_dsn,
        signer(settings),
        settings.audit_checkpoint_interval_seconds,
        settings.audit_integrate_interval_seconds,
    )


def schedule_runner(
    settings: config.Settings, database_: database.Database, registry: metrics.Metrics
) -> AbstractAsyncContextManager[Any]:
    """The scheduler (workers.scheduler) recording schedules' due slots while inside:
    every `serve`, `api` and `worker` process runs one; the ledger decides each slot once."""
    from ledger import schedules

    runner = scheduler.Scheduler(
        database_.app_dsn,
        listen_dsn=database_.listen_dsn,
        schedules_=schedules.Schedules(
            submission.Submitter(job_types(settings), event_store(registry))
        ),
    )
    registry.add_scheduler_gauge(lambda: len(runner.failing))
    return scheduler.running(runner)


async def http_services(
    dsn: str,
    registry: jobtypes.Registry,
    process_metrics: metrics.Metrics,
    pool_size: int,
    read_dsn: str | None = None,
) -> Services:
    """What the routes work with: a pool, the event store, the submission API, group commit,
    and with `read_dsn` (READ_DATABASE_URL) a read-only pool on the replica."""
    connections: asyncpg.Pool = await db.create_pool(dsn, max_size=pool_size)
    readers: asyncpg.Pool | None = None
    if read_dsn is not None:
        try:
            readers = await db.create_pool(
                read_dsn, max_size=pool_size, name=db.READ_APPLICATION_NAME, read_only=True
            )
        except BaseException:
            await connections.close()
            raise
    appender = event_store(process_metrics)
    return Services(
        pool=connections,
        read_pool=readers,
        store=appender,
        registry=registry,
        submitter=submission.Submitter(registry, appender, process_metrics=process_metrics),
        committer=groupcommit.GroupCommit(connections, appender),
    )
