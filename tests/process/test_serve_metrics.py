"""`ledger serve` (API and worker pool in one process) exposes one /metrics covering both."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ledger import auth, embedded
from tests.conftest import Databases
from tests.process.metrics_scrape import scrape
from tests.workers.conftest import eventually

SECRET = "serve-metrics-test-secret-long-enough-for-hs256"


class Served:
    def __init__(self, process: subprocess.Popen[bytes], base: str, log: Path) -> None:
        self.process = process
        self.base = base
        self.log = log


@pytest.fixture
def served(dbs: Databases, tmp_path: Path) -> Iterator[Served]:
    port = embedded.free_port()
    env = {
        **os.environ,
        "DATABASE_URL": dbs.app,
        "MIGRATE_DATABASE_URL": dbs.admin,
        "SERVER_PORT": str(port),
        "SERVER_HOST": "127.0.0.1",
        "JWT_SECRET": SECRET,
        "WORKER_COUNT": "2",
        "WORKER_POLL_SECONDS": "3600",
        "AUDIT_CHECKPOINT_INTERVAL_SECONDS": "0",
        "LEDGER_DATA_DIR": str(tmp_path),
        "LEDGER_HANDLERS": "tests.workers.plugin_jobs",
        "LOG_FORMAT": "json",
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve"], env=env, stdout=out, stderr=out
        )
    try:
        yield Served(process, f"http://127.0.0.1:{port}", log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.slow
async def test_serve_counts_the_pools_work_on_the_apis_metrics(served: Served) -> None:
    base = served.base
    token = auth.AuthConfig(algorithms=("HS256",), secret=SECRET).mint(
        "ops", ("jobs:write", "jobs:read")
    )

    async def ready() -> bool:
        assert served.process.poll() is None, served.log.read_text()
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                return (await client.get(f"{base}/ready")).status_code == 200
        except httpx.TransportError:
            return False

    await eventually(ready, within=60)
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
