"""/health and /metrics count live worker slots across worker processes; a killed one drops out.

Two real `ledger worker` processes register and heartbeat; the API (in this process)
sums their slots. The one running a job is killed with SIGKILL (no goodbye): once its
heartbeat is older than its lease it no longer counts, and the survivor recovers the
job's lease and runs it again, which its own /metrics shows.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from ledger import store
from tests import factories
from tests.conftest import Databases
from tests.process.metrics_scrape import Scrape, scrape
from tests.process.test_worker_metrics import WorkerProcess, start_worker, stop
from tests.workers.conftest import eventually

LEASE_SECONDS = 3.0


@pytest.fixture
def two_workers(dbs: Databases, tmp_path: Path) -> Iterator[tuple[WorkerProcess, WorkerProcess]]:
    env = {"WORKER_LEASE_SECONDS": str(LEASE_SECONDS)}
    first = start_worker(dbs, tmp_path, slots=2, extra=env)
    second = start_worker(dbs, tmp_path, slots=3, extra=env)
    try:
        yield first, second
    finally:
        stop(first)
        stop(second)


async def slots(client: httpx.AsyncClient) -> tuple[int, float | None]:
    health = (await client.get("/health")).json()
    metrics = Scrape((await client.get("/metrics")).text)
    return health["workers"], metrics.value("ledger_worker_slots")


@pytest.mark.slow
async def test_health_counts_slots_of_two_workers_and_drops_a_killed_one(
    client: httpx.AsyncClient,
    two_workers: tuple[WorkerProcess, WorkerProcess],
    conn: asyncpg.Connection,
    event_store: store.EventStore,
) -> None:
    first, second = two_workers
    slots_of = {first.process.pid: 2, second.process.pid: 3}

    async def both_counted() -> bool:
        for worker in two_workers:
            assert worker.process.poll() is None, worker.log.read_text()
        return await slots(client) == (5, 5.0)

    await eventually(both_counted, within=60)

    # A job whose first attempt never ends: kill the worker running it.
    job_id = await factories.submit(
        event_store,
        conn,
        job_type="test.hang_first_attempt",
        backoff_base_seconds=0.05,
        backoff_cap_seconds=0.1,
    )

    async def holder() -> str | None:
        return await conn.fetchval(
            "SELECT worker_id FROM jobs WHERE job_id = $1 AND status = 'processing'", job_id
        )

    pid = int((await eventually(holder, within=60)).split(":")[-2])
    victim, survivor = (first, second) if first.process.pid == pid else (second, first)
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait(timeout=10)
    left = slots_of[survivor.process.pid]

    async def dropped() -> bool:
        return await slots(client) == (left, float(left))

    # Within its heartbeat timeout (the lease) plus a margin for a loaded machine.
    await eventually(dropped, within=LEASE_SECONDS * 5)
    assert (await client.get("/health")).json()["status"] == "ok"

    # The survivor recovers the lapsed lease and runs the job's second attempt.
    async def completed() -> bool:
        status = await conn.fetchval("SELECT status FROM jobs WHERE job_id = $1", job_id)
        return status == "completed"

    await eventually(completed, within=60)
    metrics = await scrape(survivor.url)
    labels = {"job_type": "test.hang_first_attempt", "queue": "default"}
    assert metrics.value("ledger_lease_recoveries_total", **labels) == 1
    assert metrics.value("ledger_jobs_retried_total", **labels) == 1
    assert metrics.value("ledger_jobs_completed_total", **labels) == 1
    assert metrics.value("ledger_events_appended_total", type="job.lease_expired.v1") == 1
