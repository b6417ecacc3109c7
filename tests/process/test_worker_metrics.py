"""A `ledger worker` process serves its own /metrics; after real work the values are right."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from ledger import embedded, store
from tests import factories
from tests.conftest import Databases
from tests.process.metrics_scrape import scrape
from tests.workers.conftest import eventually


class WorkerProcess:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.log = log


def start_worker(
    dbs: Databases, tmp_path: Path, *, slots: int = 3, extra: dict[str, str] | None = None
) -> WorkerProcess:
    port = embedded.free_port()
    env = {
        **os.environ,
        "DATABASE_URL": dbs.app,
        "MIGRATE_DATABASE_URL": dbs.admin,
        "WORKER_COUNT": str(slots),
        "WORKER_METRICS_PORT": str(port),
        "WORKER_POLL_SECONDS": "3600",
        "SERVER_HOST": "127.0.0.1",
        "LEDGER_HANDLERS": "tests.workers.plugin_jobs",
        "STORAGE_ROOT": str(tmp_path / "storage"),
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "info",
        **(extra or {}),
    }
    log = tmp_path / f"worker-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return WorkerProcess(process, port, log)


def stop(worker: WorkerProcess) -> None:
    if worker.process.poll() is None:
        worker.process.terminate()
        try:
            worker.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()


@pytest.fixture
def worker(dbs: Databases, tmp_path: Path) -> Iterator[WorkerProcess]:
    started = start_worker(dbs, tmp_path)
    try:
        yield started
    finally:
        stop(started)


async def answering(worker: WorkerProcess) -> bool:
    assert worker.process.poll() is None, worker.log.read_text()
    try:
        await scrape(worker.url)
    except httpx.TransportError:
        return False
    return True


async def status(conn: asyncpg.Connection, job_id: uuid.UUID) -> str:
    return str(await conn.fetchval("SELECT status FROM jobs WHERE job_id = $1", job_id))


@pytest.mark.slow
async def test_worker_metrics_count_the_jobs_it_ran(
    worker: WorkerProcess, conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await eventually(lambda: answering(worker), within=60)
    fast = {"backoff_base_seconds": 0.05, "backoff_cap_seconds": 0.1}
    done = [await factories.submit(event_store, conn, job_type="test.noop", **fast) for _ in "ab"]
    flaky = await factories.submit(
        event_store,
        conn,
        job_type="test.fail_times",
        payload={"failures": 5},
        max_attempts=2,
        **fast,
    )
    for job_id in done:
        await eventually(lambda job_id=job_id: _is(conn, job_id, "completed"), within=60)
    await eventually(lambda: _is(conn, flaky, "failed"), within=60)

    metrics = await scrape(worker.url)
    noop = {"job_type": "test.noop", "queue": "default"}
    failing = {"job_type": "test.fail_times", "queue": "default"}
    assert metrics.value("ledger_jobs_completed_total", **noop) == 2
    assert metrics.value("ledger_jobs_retried_total", **failing) == 1
    assert metrics.value("ledger_jobs_failed_total", **failing) == 1
    assert metrics.value("ledger_job_run_duration_seconds_count", job_type="test.noop") == 2
    assert metrics.value("ledger_job_run_duration_seconds_count", job_type="test.fail_times") == 2
    assert metrics.value("ledger_job_queue_wait_seconds_count", job_type="test.noop") == 2
    # The worker appended the claims and outcomes; the submissions were appended here.
    assert metrics.value("ledger_events_appended_total", type="job.claimed.v1") == 4
    assert metrics.value("ledger_events_appended_total", type="job.completed.v1") == 2
    assert metrics.value("ledger_events_appended_total", type="job.submitted.v1") is None
    assert metrics.value("ledger_pool_slots") == 3
    assert metrics.value("ledger_pool_slots_busy") == 0
    assert metrics.value("ledger_pool_reserve_slots") == 0  # 3 slots keep none
    assert metrics.value("ledger_pool_reserve_slots_busy") == 0
    assert "process_cpu_seconds_total" in metrics.names()

    lines = [json.loads(line) for line in worker.log.read_text().splitlines()]
    about_jobs = [line for line in lines if "job_id" in line]
    assert {line["job_id"] for line in about_jobs} == {str(j) for j in [*done, flaky]}
    for line in about_jobs:
        assert line["job_type"] in ("test.noop", "test.fail_times"), line
        assert line["attempt"] in (1, 2), line


async def _is(conn: asyncpg.Connection, job_id: uuid.UUID, wanted: str) -> bool:
    return await status(conn, job_id) == wanted
