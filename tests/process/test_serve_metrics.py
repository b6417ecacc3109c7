"""`ledger serve` (API and worker pool in one process) exposes one /metrics covering both."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ledger import auth
from tests import services
from tests.conftest import Databases
from tests.process.metrics_scrape import scrape
from tests.workers.conftest import eventually

SECRET = "serve-metrics-test-secret-long-enough-for-hs256"


@pytest.fixture
def served(dbs: Databases, tmp_path: Path) -> Iterator[services.Running]:
    with services.ledger(
        "serve",
        tmp_path,
        DATABASE_URL=dbs.app,
        MIGRATE_DATABASE_URL=dbs.admin,
        JWT_SECRET=SECRET,
        WORKER_COUNT="2",
        WORKER_POLL_SECONDS="3600",
        LEDGER_HANDLERS="tests.workers.plugin_jobs",
    ) as running:
        yield running


@pytest.mark.slow
async def test_serve_counts_the_pools_work_on_the_apis_metrics(served: services.Running) -> None:
    base = served.base
    token = auth.AuthConfig(algorithms=("HS256",), secret=SECRET).mint(
        "ops", ("jobs:write", "jobs:read")
    )

    await eventually(lambda: served.answers("/ready"), within=60)
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10
    ) as client:
        submitted = await client.post(
            "/api/v1/jobs", json={"type": "test.noop", "payload": {"n": 1}}
        )
        assert submitted.status_code == 201, submitted.text
        job = f"/api/v1/jobs/{submitted.json()['job_id']}"

        async def completed() -> bool:
            return (await client.get(job)).json()["status"] == "completed"

        await eventually(completed, within=60)

    metrics = await scrape(f"{base}/metrics")
    labels = {"job_type": "test.noop", "queue": "default"}
    assert metrics.value("ledger_jobs_submitted_total", **labels) == 1
    assert metrics.value("ledger_jobs_completed_total", **labels) == 1
    assert metrics.value("ledger_job_run_duration_seconds_count", job_type="test.noop") == 1
    assert metrics.value("ledger_pool_slots") == 2
    assert metrics.value("ledger_worker_slots") == 2
