"""Jobs a bulk retry sends back run again on a real worker pool (woken by the retry's
NOTIFY: the pool polls once an hour)."""

from __future__ import annotations

import uuid

import asyncpg

from ledger import events as ev
from ledger import lifecycle, store, submission, wire
from projections import current
from tests import factories
from tests.workers.conftest import PoolStarter, eventually


async def _all(
    conn: asyncpg.Connection, job_ids: list[uuid.UUID], status: str
) -> list[lifecycle.JobState] | None:
    states = [await current.get(conn, j) for j in job_ids]
    if all(s is not None and s.status == status for s in states):
        return [s for s in states if s is not None]
    return None


async def test_bulk_retried_jobs_run_again_on_a_worker(
    start_pool: PoolStarter, conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await start_pool()
    failing = [
        await factories.submit(event_store, conn, job_type="test.permanent", payload={"n": n})
        for n in range(3)
    ]
    await eventually(lambda: _all(conn, failing, "failed"))

    done = await submission.retry_matching(
        conn,
        wire.BulkFilter(status="failed", type="test.permanent", error_contains="never succeed"),
        request_id="rerun-1",
        actor="ops",
    )
    assert (done.matched, done.changed) == (3, 3)

    async def ran_twice() -> bool:
        for job_id in failing:
            types = [ev.type_tag(r.event) for r in await event_store.history(conn, job_id)]
            if types.count("job.claimed.v1") != 2 or types[-1] != "job.failed.v1":
                return False
        return True

    await eventually(ran_twice)
    for job_id in failing:
        history = [r.event for r in await event_store.history(conn, job_id)]
        retried = [e for e in history if isinstance(e, ev.JobRetried)]
        assert [e.bulk_request_id for e in retried] == ["rerun-1"]
