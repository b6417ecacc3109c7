"""Transactional enqueue end to end: a job submitted in the caller's transaction runs once
the transaction commits, woken by the commit (the pool's poll is an hour)."""

from __future__ import annotations

import asyncpg

from ledger import jobtypes, submission
from projections import current
from tests.workers.conftest import PoolStarter, eventually


async def test_a_job_submitted_in_a_committed_transaction_is_run_by_a_worker(
    conn: asyncpg.Connection, registry: jobtypes.Registry, start_pool: PoolStarter
) -> None:
    await start_pool()
    submitter = submission.Submitter(registry)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(42)")  # the application's own work
        job = await submitter.submit(conn, "test.noop", {"n": 3}, actor="app")

    async def completed() -> bool:
        state = await current.get(conn, job.job_id)
        return state is not None and state.status == "completed"

    await eventually(completed)
