"""/health and /metrics count live worker slots across worker processes; a killed one drops out.

Two real `ledger worker` processes register and heartbeat; the API (in this process)
sums their slots. One is killed with SIGKILL (no goodbye): once its heartbeat is
older than its lease it no longer counts.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Databases
from tests.http.conftest import Mint
from tests.process.metrics_scrape import Scrape
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
    client: httpx.AsyncClient, bearer: Mint, two_workers: tuple[WorkerProcess, WorkerProcess]
) -> None:
    first, second = two_workers

    async def both_counted() -> bool:
        for worker in two_workers:
            assert worker.process.poll() is None, worker.log.read_text()
        return await slots(client) == (5, 5.0)

    await eventually(both_counted, within=60)

    second.process.send_signal(signal.SIGKILL)
    second.process.wait(timeout=10)

    async def dropped() -> bool:
        return await slots(client) == (2, 2.0)

    # Within its heartbeat timeout (the lease) plus a margin for a loaded machine.
    await eventually(dropped, within=LEASE_SECONDS * 5)
    assert first.process.poll() is None
    health = (await client.get("/health")).json()
    assert health["status"] == "ok"
