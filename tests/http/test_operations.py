"""Operations routes on the API: /metrics after real work, /ready, the dashboard's page and stats."""

from __future__ import annotations

import asyncpg
import httpx

from tests.conftest import Databases
from tests.http.conftest import Mint
from tests.process.metrics_scrape import Scrape

JOBS = "/api/v1/jobs"


async def scrape(client: httpx.AsyncClient) -> Scrape:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return Scrape(response.text)


async def test_metrics_count_jobs_events_and_requests_after_real_work(
    client: httpx.AsyncClient, bearer: Mint, admin_conn: asyncpg.Connection
) -> None:
    ids = []
    for n in range(3):
        response = await client.post(
            JOBS, json={"type": "noop", "payload": {"n": n}, "queue": "bulk"}, headers=bearer()
        )
        assert response.status_code == 201
        ids.append(response.json()["job_id"])
    assert (await client.post(f"{JOBS}/{ids[0]}/cancel", headers=bearer())).status_code == 200
    assert (await client.get(JOBS, headers={})).status_code == 401
    assert (await client.get(f"{JOBS}/{ids[1]}", headers=bearer())).status_code == 200
    await admin_conn.execute(
        "INSERT INTO worker_processes (worker_id, host, pid, slots, lease_seconds) "
        "VALUES ('w-live', 'h', 1, 4, 30), ('w-dead', 'h', 2, 7, 30)"
    )
    await admin_conn.execute(
        "UPDATE worker_processes SET heartbeat_at = now() - interval '1 hour' "
        "WHERE worker_id = 'w-dead'"
    )

    metrics = await scrape(client)

    bulk = {"job_type": "noop", "queue": "bulk"}
    assert metrics.value("ledger_jobs_submitted_total", **bulk) == 3
    assert metrics.value("ledger_jobs_cancelled_total", **bulk) == 1
    assert metrics.value("ledger_jobs_completed_total", **bulk) is None
    assert metrics.value("ledger_events_appended_total", type="job.submitted.v1") == 3
    assert metrics.value("ledger_events_appended_total", type="job.cancelled.v1") == 1
    assert metrics.value("ledger_queue_depth", queue="bulk", status="pending") == 2
    assert metrics.value("ledger_queue_depth", queue="bulk", status="processing") == 0
    assert metrics.value("ledger_worker_processes") == 1
    assert metrics.value("ledger_worker_slots") == 4
    assert metrics.value("ledger_worker_slots_busy") == 0
    assert metrics.value("ledger_database_reachable") == 1
    http = "ledger_http_requests_total"
    assert metrics.value(http, method="POST", route=JOBS, status="201") == 3
    assert metrics.value(http, method="GET", route=JOBS, status="401") == 1
    read = f"{JOBS}/{{job_id}}"
    assert metrics.value(http, method="GET", route=read, status="200") == 1
    assert (
        metrics.value("ledger_http_request_duration_seconds_count", method="POST", route=JOBS) == 3
    )
    # Raw paths never become label values: the job ids appear nowhere in the page.
    text = (await client.get("/metrics")).text
    assert not any(job_id in text for job_id in ids)


async def test_unknown_routes_share_one_label(client: httpx.AsyncClient) -> None:
    for path in ("/nope", "/nope/again"):
        assert (await client.get(path)).status_code == 404
    metrics = await scrape(client)
    routes = {
        dict(labels).get("route")
        for name, labels in metrics.samples
        if name == "ledger_http_requests_total"
    }
    assert "/nope" not in routes and "/nope/again" not in routes


async def test_ready_answers_200_when_migrated(client: httpx.AsyncClient) -> None:
    response = await client.get("/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "pending_migrations": []}


async def test_ready_answers_503_while_a_migration_is_pending(
    client: httpx.AsyncClient, admin_conn: asyncpg.Connection
) -> None:
    name = await admin_conn.fetchval("SELECT max(name) FROM schema_migrations")
    await admin_conn.execute("DELETE FROM schema_migrations WHERE name = $1", name)

    response = await client.get("/ready")

    assert response.status_code == 503
    assert response.json() == {"status": "migrations_pending", "pending_migrations": [name]}


async def test_ready_answers_503_while_the_database_is_unreachable(
    client: httpx.AsyncClient, dbs: Databases
) -> None:
    assert (await client.get("/ready")).status_code == 200
    server = await asyncpg.connect(dbs.admin.rsplit("/", 1)[0] + "/postgres")
    try:
        await server.execute(f'ALTER DATABASE "{dbs.name}" WITH ALLOW_CONNECTIONS false')
        await server.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            dbs.name,
        )
        response = await client.get("/ready")
        assert response.status_code == 503
        assert response.json()["status"] == "database_unreachable"
        metrics = await scrape(client)
        assert metrics.value("ledger_database_reachable") == 0
        await server.execute(f'ALTER DATABASE "{dbs.name}" WITH ALLOW_CONNECTIONS true')
        assert (await client.get("/ready")).status_code == 200
    finally:
        await server.execute(f'ALTER DATABASE "{dbs.name}" WITH ALLOW_CONNECTIONS true')
        await server.close()


async def test_stats_count_jobs_by_status_and_queue_with_throughput(
    client: httpx.AsyncClient, bearer: Mint
) -> None:
    for queue in ("default", "default", "bulk"):
        body = {"type": "noop", "payload": {}, "queue": queue}
        assert (await client.post(JOBS, json=body, headers=bearer())).status_code == 201
    listed = (await client.get(JOBS, headers=bearer())).json()["jobs"]
    await client.post(f"{JOBS}/{listed[0]['job_id']}/cancel", headers=bearer())

    response = await client.get("/api/v1/stats", headers=bearer("jobs:read"))

    assert response.status_code == 200
    stats = response.json()
    assert stats["by_status"] == {
        "pending": 2,
        "processing": 0,
        "completed": 0,
        "failed": 0,
        "retrying": 0,
        "cancelled": 1,
        "blocked": 0,
        "skipped": 0,
    }
    queues = {q["queue"]: q for q in stats["by_queue"]}
    assert queues["default"]["total"] == 2 and queues["bulk"]["total"] == 1
    assert len(stats["throughput"]) == 60
    assert sum(m["submitted"] for m in stats["throughput"]) == 3
    assert stats["throughput"][-1]["submitted"] + stats["throughput"][-2]["submitted"] == 3


async def test_stats_need_the_read_scope(client: httpx.AsyncClient, bearer: Mint) -> None:
    assert (await client.get("/api/v1/stats")).status_code == 401
    assert (await client.get("/api/v1/stats", headers=bearer("jobs:write"))).status_code == 403


async def test_the_dashboard_page_and_assets_are_served_with_a_strict_policy(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/ui")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert '<script src="/ui/static/app.js"' in page.text
    script = await client.get("/ui/static/app.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert (await client.get("/ui/static/app.css")).status_code == 200
    assert (await client.get("/ui/static/../dashboard.py")).status_code == 404
