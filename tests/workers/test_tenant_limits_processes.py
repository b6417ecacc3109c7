"""A tenant's `max_running` holds across real `ledger worker` processes (sql/0070),
checked from the ledger's own claimed and finished events."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
import pytest

from ledger import acting, store, tenants
from tests import factories
from tests.workers.conftest import eventually
from tests.workers.test_queue_limits_processes import _intervals, _most_at_once, _started
from tests.workers.test_worker_processes import Spawn, _all_in, spawn

pytestmark = pytest.mark.slow
__all__ = ["spawn"]  # the fixture, shared with the other worker-process tests


async def _submit_in(
    event_store: store.EventStore, conn: asyncpg.Connection, tenant: str, n: int, **work: object
) -> list[uuid.UUID]:
    async with conn.transaction():
        await acting.act_in(conn, tenant)
        return await factories.submit_many(event_store, conn, n, **work)


async def test_three_processes_never_run_more_of_a_tenants_jobs_than_its_max_running(
    spawn: Spawn,
    conn: asyncpg.Connection,
    admin_conn: asyncpg.Connection,
    event_store: store.EventStore,
    tmp_path: Path,
) -> None:
    await tenants.configure(conn, event_store, "acme", {"max_running": 3}, actor="ops")
    await _started(spawn, admin_conn, 3)  # 15 slots in all
    work = {"job_type": "test.gated", "payload": {"gate": str(tmp_path / "g"), "seconds": 0.03}}
    limited = await _submit_in(event_store, conn, "acme", 45, **work)
    others = await _submit_in(event_store, conn, "beta", 30, **work)
    ids = limited + others
    # As the owner: every tenant's jobs and events (row-level security does not bind it).
    await eventually(lambda: _all_in(admin_conn, ids, "completed"), within=120, every=0.25)

    assert _most_at_once(await _intervals(admin_conn, limited)) == 3
    assert _most_at_once(await _intervals(admin_conn, others)) > 3  # beta has no limit
    actors = await admin_conn.fetchval(
        "SELECT count(DISTINCT actor) FROM events WHERE type = 'job.claimed.v1' AND job_id = ANY($1)",
        limited,
    )
    assert actors > 1  # more than one process took part
