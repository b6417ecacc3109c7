"""READ_DATABASE_URL: lists, histories, as-of reads, feed pages and stats read the replica;
writes and current job reads the primary.

The "replica" here is a second database on the same server, migrated but empty: a
standby that has not replayed the new job yet. What the API answers shows which
database each route read.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
import pytest_asyncio

from ledger import auth, config, db, jobtypes
from service import app as app_module
from service.http.services import Services
from tests import pg
from tests.conftest import APP_PASSWORD, APP_ROLE, Databases
from tests.http.conftest import Mint, running


@pytest_asyncio.fixture(loop_scope="session")
async def replica_dsn(server_dsn: str, template_db: str) -> AsyncIterator[str]:
    name = f"r_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
        yield pg.with_database(server_dsn, name, user=APP_ROLE, password=APP_PASSWORD)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_feed_pages_and_stats_read_the_replica_while_writes_use_the_primary(
    dbs: Databases,
    replica_dsn: str,
    auth_config: auth.AuthConfig,
    registry: jobtypes.Registry,
    bearer: Mint,
) -> None:
    app = app_module.create_app(
        dbs.app,
        auth_config=auth_config,
        registry=registry,
        settings=config.Settings(read_database_url=replica_dsn),
        max_body_bytes=64 * 1024,
        pool_size=2,
    )
    async with running(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            submitted = await http.post(
                "/api/v1/jobs", json={"type": "noop", "payload": {"n": 1}}, headers=bearer()
            )
            assert submitted.status_code == 201  # written to the primary
            job_id = submitted.json()["job_id"]
            assert (await http.get(f"/api/v1/jobs/{job_id}", headers=bearer())).status_code == 200

            # The replica has not seen it: the feed and the stats read the replica.
            stats = await http.get("/api/v1/stats", headers=bearer("jobs:read"))
            assert stats.status_code == 200
            assert sum(stats.json()["by_status"].values()) == 0
            page = await http.get("/api/v1/events", headers=bearer("audit:read"))
            assert page.status_code == 200
            assert page.json()["events"] == []
            listed = await http.get("/api/v1/jobs", headers=bearer("jobs:read"))
            assert listed.status_code == 200
            assert listed.json()["jobs"] == []
            history = await http.get(f"/api/v1/jobs/{job_id}/events", headers=bearer("audit:read"))
            assert history.status_code == 404
            then = await http.get(
                f"/api/v1/jobs/{job_id}",
                params={"as_of": "2999-01-01T00:00:00Z"},
                headers=bearer("jobs:read"),
            )
            assert then.status_code == 404

            # Writes go to the primary, which has the job: the cancel finds it.
            cancelled = await http.post(f"/api/v1/jobs/{job_id}/cancel", json={}, headers=bearer())
            assert cancelled.status_code == 200, cancelled.text

        services: Services = app.state.services
        async with services.reading() as conn:
            assert await conn.fetchval("SHOW application_name") == db.READ_APPLICATION_NAME
            with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
                await conn.execute("DELETE FROM worker_processes")
        async with services.connection() as conn:
            assert await conn.fetchval("SHOW application_name") == db.APPLICATION_NAME


async def test_without_a_read_url_reads_use_the_primary(
    client: httpx.AsyncClient, bearer: Mint
) -> None:
    submitted = await client.post(
        "/api/v1/jobs", json={"type": "noop", "payload": {"n": 1}}, headers=bearer()
    )
    assert submitted.status_code == 201
    stats = await client.get("/api/v1/stats", headers=bearer("jobs:read"))
    assert sum(stats.json()["by_status"].values()) == 1
    page = await client.get("/api/v1/events", headers=bearer("audit:read"))
    assert [e["type"] for e in page.json()["events"]] == ["job.submitted.v1"]
    job_id = submitted.json()["job_id"]
    listed = await client.get("/api/v1/jobs", headers=bearer("jobs:read"))
    assert [j["job_id"] for j in listed.json()["jobs"]] == [job_id]
    history = await client.get(f"/api/v1/jobs/{job_id}/events", headers=bearer("audit:read"))
    assert [e["type"] for e in history.json()["events"]] == ["job.submitted.v1"]
    then = await client.get(
        f"/api/v1/jobs/{job_id}",
        params={"as_of": "2999-01-01T00:00:00Z"},
        headers=bearer("jobs:read"),
    )
    assert then.json()["status"] == "pending"
