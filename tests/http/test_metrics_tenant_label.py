"""/metrics sums the queue gauges over tenants by default, with no tenant label;
METRICS_TENANT_LABEL=1 labels them by tenant instead."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from ledger import acting, config, jobtypes, queues, store, tenants
from service import app as app_module
from tests import factories
from tests.conftest import Databases
from tests.http.conftest import SECRET, running
from tests.http.test_operations import scrape
from workers import claims

QUEUE_GAUGES = ("ledger_queue_depth", "ledger_queue_paused", "ledger_queue_jobs_waiting_on_limit")


@contextlib.asynccontextmanager
async def serving(
    dbs: Databases, registry: jobtypes.Registry, env: dict[str, str]
) -> AsyncIterator[httpx.AsyncClient]:
    settings = config.from_env({"JWT_SECRET": SECRET, **env})
    app = app_module.create_app(dbs.app, registry=registry, settings=settings, pool_size=2)
    async with running(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@pytest.fixture
async def two_tenants(conn: asyncpg.Connection, event_store: store.EventStore) -> None:
    """Queue `emails`: acme's paused with 2 pending jobs, beta's running with 3."""
    for tenant, jobs in (("acme", 2), ("beta", 3)):
        async with conn.transaction():
            await acting.act_in(conn, tenant)
            for _ in range(jobs):
                await factories.submit(event_store, conn, queue="emails")
            if tenant == "acme":
                await queues.pause(conn, event_store, "emails", actor="ops")


async def test_queue_gauges_sum_over_tenants_without_a_tenant_label_by_default(
    dbs: Databases, registry: jobtypes.Registry, two_tenants: None
) -> None:
    async with serving(dbs, registry, {}) as http:
        scraped = await scrape(http)
    assert scraped.value("ledger_queue_depth", queue="emails", status="pending") == 5
    assert scraped.value("ledger_queue_paused", queue="emails") == 1  # paused in a tenant
    held = scraped.value("ledger_queue_jobs_waiting_on_limit", queue="emails", limit="paused")
    assert held == 2
    labelled = {labels for name, labels in scraped.samples if name in QUEUE_GAUGES and dict(labels)}
    assert labelled and not any("tenant" in dict(labels) for labels in labelled)


async def test_metrics_tenant_label_labels_the_queue_gauges_by_tenant(
    dbs: Databases, registry: jobtypes.Registry, two_tenants: None
) -> None:
    async with serving(dbs, registry, {"METRICS_TENANT_LABEL": "1"}) as http:
        scraped = await scrape(http)
    depth = {
        tenant: scraped.value("ledger_queue_depth", tenant=tenant, queue="emails", status="pending")
        for tenant in ("acme", "beta")
    }
    assert depth == {"acme": 2, "beta": 3}
    assert scraped.value("ledger_queue_paused", tenant="acme", queue="emails") == 1
    assert scraped.value("ledger_queue_depth", queue="emails", status="pending") is None
    waiting = scraped.value(
        "ledger_queue_jobs_waiting_on_limit", tenant="acme", queue="emails", limit="paused"
    )
    assert waiting == 2


@pytest.fixture
async def held_tenant(
    conn: asyncpg.Connection, worker_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    """acme: max_running 1, one job running and 3 runnable; beta: max_running 5, one job
    running and 2 runnable (room left: not held)."""
    for tenant, limit, jobs in (("acme", 1, 4), ("beta", 5, 3)):
        await tenants.configure(conn, event_store, tenant, {"max_running": limit}, actor="ops")
        async with conn.transaction():
            await acting.act_in(conn, tenant)
            for _ in range(jobs):
                await factories.submit(event_store, conn)
    for _ in range(2):  # one job of each tenant
        await claims.claim(
            worker_conn, event_store, worker_id="w", lease_seconds=30, types=["noop"], limit=1
        )


async def test_jobs_held_by_a_tenants_max_running_are_a_gauge_summed_or_by_tenant(
    dbs: Databases, registry: jobtypes.Registry, held_tenant: None, admin_conn: asyncpg.Connection
) -> None:
    running = dict(
        await admin_conn.fetch(
            "SELECT tenant, count(*) FROM jobs WHERE status = 'processing' GROUP BY tenant"
        )
    )
    assert running == {"acme": 1, "beta": 1}
    async with serving(dbs, registry, {}) as http:
        scraped = await scrape(http)
    assert scraped.value("ledger_tenant_jobs_waiting_on_max_running") == 3
    async with serving(dbs, registry, {"METRICS_TENANT_LABEL": "1"}) as http:
        scraped = await scrape(http)
    gauge = "ledger_tenant_jobs_waiting_on_max_running"
    assert scraped.value(gauge, tenant="acme") == 3
    assert scraped.value(gauge, tenant="beta") == 0
