"""Processing throughput: pre-submitted no-op jobs drained by real `ledger worker` processes.

The figure is completed jobs over the time from the first claim to the last
completion, both as recorded in the ledger (the events' occurred_at), so process
start-up is not counted and nothing but the ledger is trusted. Each job gets its
submitted, claimed and completed events, hash-chained; the run checks that.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec

from audit import chains
from bench import cluster, procs, submit
from ledger import db, sqlfile

Q = sqlfile.load("bench")


class Drain(msgspec.Struct, kw_only=True):
    jobs: int
    processes: int
    slots: int
    submit_rate: float  # jobs/s of the batch submission that queued them
    rate: float  # jobs/s, first claim to last completion
    worker_peak_rss: int  # bytes, the largest VmHWM among the worker processes
    chains_ok: bool | None = None


async def wait_for(dsn: str, query: str, target: int, within: float, what: str) -> None:
    async with db.connect(dsn) as conn:
        deadline = time.monotonic() + within
        while int(await conn.fetchval(Q[query])) < target:
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {within:.0f}s waiting for {what}")
            await asyncio.sleep(0.1)


async def drain(
    c: cluster.Cluster,
    *,
    jobs: int,
    processes: int,
    slots: int,
    logs: Path,
    verify_chains: bool = False,
    after_reset: Callable[[], Awaitable[None]] | None = None,
) -> Drain:
    await c.reset_jobs()
    if after_reset is not None:
        await after_reset()  # a variant of the schema to compare (bench.feed)
    await c.checkpoint()
    submit_rate = await submit.in_batches(c.app_dsn, jobs)
    await c.checkpoint()
    env = procs.service_env(c, {"WORKER_COUNT": str(slots)})
    workers = [procs.Service("worker", env, logs / "worker.log") for _ in range(processes)]
    try:
        await wait_for(c.admin_dsn, "jobs_completed_count", jobs, 600, f"{jobs} completions")
        for w in workers:
            w.check()
        peak = max(w.peak_rss_bytes() for w in workers)
    finally:
        for w in workers:
            w.stop()
    # As the owner: every tenant's rows (row-level security, sql/0068, shows the
    # application's role none outside a tenant).
    async with db.connect(c.admin_dsn) as conn:
        window = await conn.fetchrow(Q["events_processing_window"])
        per_job = await conn.fetchrow(Q["events_per_job_check"])
        chains_ok = None
        if verify_chains:
            chains_ok = (await chains.verify(conn)).ok
    assert window is not None and per_job is not None
    if per_job["wrong"] or per_job["jobs"] != jobs or window["completed"] != jobs:
        raise RuntimeError(f"the ledger does not hold 3 events per job: {dict(per_job)}")
    seconds = (window["last_completion"] - window["first_claim"]).total_seconds()
    return Drain(
        jobs=jobs,
        processes=processes,
        slots=slots,
        submit_rate=submit_rate,
        rate=jobs / seconds,
        worker_peak_rss=peak,
        chains_ok=chains_ok,
    )
