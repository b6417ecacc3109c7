"""Latency on an idle pool: submit-call return to handler start, one job every 20 ms.

The start of each interval is `time.time_ns()` taken right after the library's
submit call (decide + append, committed) returns in this process; the end is
`time.time_ns()` taken by the no-op handler as its first statement inside the
`ledger worker` process (written to a file, see bench.noop). Both read the same
system clock. What lies between: the commit's NOTIFY reaching the worker's
listener, the claim transaction (durable commit), and starting the handler task.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import msgspec

from bench import cluster, procs, stats, submit
from bench.processing import wait_for
from ledger import db


class Latency(msgspec.Struct, kw_only=True):
    jobs: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float


async def measure_once(
    c: cluster.Cluster, *, jobs: int, gap: float, slots: int, logs: Path
) -> Latency:
    await c.reset_jobs()
    await c.checkpoint()
    starts = c.data_dir / f"noop-starts-{uuid.uuid4().hex[:8]}.txt"
    env = procs.service_env(c, {"WORKER_COUNT": str(slots), "BENCH_NOOP_STARTS": str(starts)})
    worker = procs.Service("worker", env, logs / "worker-latency.log")
    returned: dict[str, int] = {}
    try:
        await wait_for(c.app_dsn, "worker_processes_count", 1, 60, "the worker to register")
        async with db.connect(c.app_dsn) as conn:
            warmup = 10
            for i in range(warmup + jobs):
                job = await submit.submit_one(conn, i)
                if i >= warmup:
                    returned[str(job.job_id)] = time.time_ns()
                await asyncio.sleep(gap)
        await wait_for(
            c.admin_dsn, "jobs_completed_count", warmup + jobs, 60, "the latency jobs to finish"
        )
        worker.check()
    finally:
        worker.stop()
    started: dict[str, int] = {}
    for line in starts.read_text().splitlines():
        job, ns = line.split()
        started[job] = int(ns)
    millis = [(started[j] - t) / 1e6 for j, t in returned.items()]
    return Latency(
        jobs=len(millis),
        p50_ms=stats.percentile(millis, 50),
        p95_ms=stats.percentile(millis, 95),
        p99_ms=stats.percentile(millis, 99),
        max_ms=max(millis),
    )
