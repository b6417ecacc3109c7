"""A worker through a database outage, on a PostgreSQL of the test's own that it stops and starts.

Invariant 7: a worker that still holds its lease keeps trying to record an
outcome through an outage, and gives up only when the attempt is really lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from audit import chains
from ledger import commands, database, embedded, jobtypes, metrics, store
from ledger import events as ev
from projections import current
from tests import factories
from tests.conftest import IN_DEFAULT
from tests.workers.conftest import eventually
from workers import pool

pytestmark = pytest.mark.slow

LEASE_SECONDS = 2.0
# The worker used to give up recording after 7 failed tries; the outage outlasts more.
TRIES_OUTLASTED = 8


@pytest_asyncio.fixture(loop_scope="session")
async def own_server(tmp_path: Path) -> AsyncIterator[embedded.EmbeddedPostgres]:
    """A migrated embedded PostgreSQL that only this test uses, so it may stop it."""
    pg = embedded.EmbeddedPostgres(tmp_path / "pg", embedded.free_port(), durable=False)
    await asyncio.to_thread(pg.start)
    try:
        await database.provision_embedded(pg)
        yield pg
    finally:
        await asyncio.to_thread(pg.stop)


@contextlib.asynccontextmanager
async def running(*pools: pool.Pool) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(p.run()) for p in pools]
    try:
        for p, task in zip(pools, tasks, strict=True):
            started = asyncio.ensure_future(p.started.wait())
            await asyncio.wait({task, started}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                task.result()
            assert started.done()
        yield
    finally:
        for p in pools:
            p.request_stop()
        for task in tasks:
            await asyncio.wait_for(task, timeout=30)


def _settings(tmp_path: Path) -> pool.PoolSettings:
    return pool.PoolSettings(
        slots=2,
        lease_seconds=LEASE_SECONDS,
        poll_seconds=3600.0,
        grace_seconds=5.0,
        storage_root=tmp_path,
    )


@contextlib.asynccontextmanager
async def _looking(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """The test's own connection, naming tenant `default` for its session (see the
    `conn` fixture): it reads the jobs it submitted."""
    conn = await asyncpg.connect(dsn, server_settings=IN_DEFAULT)
    try:
        yield conn
    finally:
        await conn.close()


async def _history(conn: asyncpg.Connection, job_id: uuid.UUID) -> list[ev.JobEvent]:
    return [r.event for r in await store.EventStore().history(conn, job_id)]


async def test_an_outcome_finished_during_an_outage_is_recorded_once_and_the_job_runs_once(
    own_server: embedded.EmbeddedPostgres, registry: jobtypes.Registry, tmp_path: Path
) -> None:
    pg = own_server
    meters = metrics.Metrics(process=False)
    holder = pool.Pool(
        pg.dsn(), settings=_settings(tmp_path), registry=registry, process_metrics=meters
    )
    # Runs no job type, only its recovery, which races the holder when the database is back.
    rival = pool.Pool(pg.dsn(), settings=_settings(tmp_path), registry=jobtypes.Registry())
    gate = tmp_path / "gate"
    async with running(holder, rival), _looking(pg.dsn()) as conn:
        job_id = await factories.submit(
            store.EventStore(), conn, job_type="test.gated", payload={"gate": str(gate)}
        )
        await eventually(lambda: asyncio.to_thread(Path(f"{gate}.started").exists))
        claimed = await current.get(conn, job_id)
        assert claimed is not None and claimed.lease_until is not None

        await asyncio.to_thread(pg.stop)
        await asyncio.to_thread(gate.write_text, "open")  # the job finishes during the outage

        def retries() -> float:
            value = meters.registry.get_sample_value("ledger_outcome_record_retries_total")
            return value or 0.0

        async def outlasted() -> bool:
            if job_id not in holder.running:  # the holder gave up
                return True
            lapsed = datetime.now(UTC) > claimed.lease_until + timedelta(seconds=LEASE_SECONDS)
            return lapsed and retries() >= TRIES_OUTLASTED

        await eventually(outlasted, within=30)
        await asyncio.to_thread(pg.start)

    async with _looking(pg.dsn()) as conn:
        history = await _history(conn, job_id)
        assert [ev.type_tag(e) for e in history] == [
            "job.submitted.v1",
            "job.claimed.v1",
            "job.completed.v1",
        ]
        done = history[-1]
        assert isinstance(done, ev.JobCompleted) and done.actor == holder.worker_id
        assert done.result == {"attempt": 1}
        assert await asyncio.to_thread(Path(f"{gate}.started").read_text) == "1"
        assert (await chains.verify(conn)).ok
    assert meters.registry.get_sample_value(
        "ledger_outcomes_abandoned_total", {"job_type": "test.gated", "queue": "default"}
    ) in (None, 0.0)


async def test_an_outcome_of_an_attempt_taken_over_is_given_up_and_counted(
    own_server: embedded.EmbeddedPostgres, registry: jobtypes.Registry, tmp_path: Path
) -> None:
    pg = own_server
    meters = metrics.Metrics(process=False)
    holder = pool.Pool(
        pg.dsn(), settings=_settings(tmp_path), registry=registry, process_metrics=meters
    )
    gate = tmp_path / "gate"
    event_store = store.EventStore()
    async with running(holder), _looking(pg.dsn()) as conn:
        job_id = await factories.submit(
            event_store,
            conn,
            job_type="test.gated",
            payload={"gate": str(gate)},
            max_attempts=1,
        )
        await eventually(lambda: asyncio.to_thread(Path(f"{gate}.started").exists))
        # Recovery elsewhere recorded the lease expired (as when this worker was cut off alone).
        await event_store.execute(
            conn, job_id, commands.ExpireLease(retry_delay=timedelta(0)), actor="recovery:other"
        )
        await asyncio.to_thread(gate.write_text, "open")

        def abandoned() -> float:
            labels = {"job_type": "test.gated", "queue": "default"}
            value = meters.registry.get_sample_value("ledger_outcomes_abandoned_total", labels)
            return value or 0.0

        async def given_up() -> bool:
            return abandoned() == 1 and job_id not in holder.running

        await eventually(given_up)
        history = await _history(conn, job_id)
        assert [ev.type_tag(e) for e in history] == [
            "job.submitted.v1",
            "job.claimed.v1",
            "job.lease_expired.v1",
        ]
