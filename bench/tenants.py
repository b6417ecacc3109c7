"""Fair shares across tenants (sql/0070): a small tenant beside a big tenant's backlog.

Tenant A holds a backlog of queued no-op jobs while tenant B submits one job every
20 ms: B's latency (submit return to handler start, as bench.latency measures it)
against B's latency with A idle, measured in the same run, and A's drain rate while B
submits against A's drain rate alone (jobs completed over a window of the same length).
B's first `queues.WARMUP` jobs are not measured, beside A or alone (see bench.queues).
And what a tenant's `max_queued` (sql/0069) costs its submissions (`quota`).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import msgspec

from bench import cluster, procs, queues, stats, submit
from bench.processing import Q, wait_for
from ledger import acting, db, store
from ledger import tenants as tenant_settings

BIG = "tenant-a"
SMALL = "tenant-b"


class Tenants(msgspec.Struct, kw_only=True):
    backlog: int
    jobs: int
    idle_p50_ms: float  # B alone
    idle_p99_ms: float
    p50_ms: float  # B beside A's backlog
    p99_ms: float
    claim_p50_ms: float  # B submitted → claimed beside A's backlog (the database's times)
    claim_p99_ms: float
    alone_rate: float  # jobs/s of A completed over the window, B idle
    shared_rate: float  # jobs/s of A completed over the window while B submits


class Quota(msgspec.Struct, kw_only=True):
    """Submissions one job a transaction, from concurrent callers in one tenant."""

    free_rate: float  # jobs/s, the tenant without settings
    held_rate: float  # jobs/s, the tenant with a max_queued (never reached)


async def _backlog(c: cluster.Cluster, n: int) -> None:
    async with db.connect(c.app_dsn) as conn:
        for start in range(0, n, 1000):
            async with conn.transaction():
                await acting.act_in(conn, BIG)
                await submit.SUBMITTER.submit_many(
                    conn, submit.batch_of(min(1000, n - start), start=start), actor=submit.ACTOR
                )
    await c.checkpoint()


async def _trickle(c: cluster.Cluster, jobs: int, gap: float) -> dict[str, int]:
    """B's jobs one at a time, `gap` apart: each measured job's submit-return time (ns),
    after the `queues.WARMUP` jobs before them."""
    returned: dict[str, int] = {}
    async with db.connect(c.app_dsn) as conn:
        for i in range(-queues.WARMUP, jobs):
            async with conn.transaction():
                await acting.act_in(conn, SMALL)
                job = await submit.SUBMITTER.submit(
                    conn, submit.NOOP, {"n": i}, max_attempts=1, actor=submit.ACTOR
                )
            if i >= 0:
                returned[str(job.job_id)] = time.time_ns()
            await asyncio.sleep(gap)
    return returned


async def _completed(c: cluster.Cluster, tenant: str) -> int:
    async with db.connect(c.admin_dsn) as conn:
        return int(await conn.fetchval(Q["jobs_completed_in_tenant"], tenant))


async def _run(
    c: cluster.Cluster,
    *,
    backlog: int,
    jobs: int,
    gap: float,
    window: float,
    slots: int,
    logs: Path,
    name: str,
) -> tuple[list[float], float, list[float]]:
    """A fresh database with A's `backlog`, one worker; B trickles `jobs` (none: A
    alone over the same window). B's latencies and A's completion rate meanwhile."""
    await c.reset_jobs()
    if backlog:
        await _backlog(c, backlog)
    starts = c.data_dir / f"noop-starts-{uuid.uuid4().hex[:8]}.txt"
    env = procs.service_env(c, {"WORKER_COUNT": str(slots), "BENCH_NOOP_STARTS": str(starts)})
    worker = procs.Service("worker", env, logs / f"worker-tenants-{name}.log")
    try:
        await wait_for(c.admin_dsn, "worker_processes_count", 1, 60, "the worker to register")
        before = await _completed(c, BIG)
        began = time.perf_counter()
        if jobs:
            returned = await _trickle(c, jobs, gap)
        else:
            returned = {}
            await asyncio.sleep(window)
        took = time.perf_counter() - began
        done = await _completed(c, BIG) - before
        if jobs:
            await wait_for(
                c.admin_dsn,
                "jobs_completed_count",
                backlog + queues.WARMUP + jobs,
                600,
                "the drain",
            )
        worker.check()
        async with db.connect(c.admin_dsn) as conn:
            claimed = [float(r["ms"]) for r in await conn.fetch(Q["tenant_claim_delays_ms"], SMALL)]
    finally:
        worker.stop()
    started: dict[str, int] = {}
    if starts.exists():
        for line in starts.read_text().splitlines():
            job, ns = line.split()
            started[job] = int(ns)
    return [(started[j] - t) / 1e6 for j, t in returned.items()], done / took, claimed


async def measure(
    c: cluster.Cluster, *, backlog: int, jobs: int, gap: float, slots: int, logs: Path
) -> Tenants:
    window = (queues.WARMUP + jobs) * gap  # A alone: about as long as B's submissions take

    async def run(backlog: int, jobs: int, name: str) -> tuple[list[float], float, list[float]]:
        return await _run(
            c,
            backlog=backlog,
            jobs=jobs,
            gap=gap,
            window=window,
            slots=slots,
            logs=logs,
            name=name,
        )

    idle, _, _ = await run(0, jobs, "idle")
    _, alone, _ = await run(backlog, 0, "a")
    shared_ms, shared, claimed = await run(backlog, jobs, "ab")
    return Tenants(
        backlog=backlog,
        jobs=jobs,
        idle_p50_ms=stats.percentile(idle, 50),
        idle_p99_ms=stats.percentile(idle, 99),
        p50_ms=stats.percentile(shared_ms, 50),
        p99_ms=stats.percentile(shared_ms, 99),
        claim_p50_ms=stats.percentile(claimed, 50),
        claim_p99_ms=stats.percentile(claimed, 99),
        alone_rate=alone,
        shared_rate=shared,
    )


async def _submit_rate(c: cluster.Cluster, jobs: int, callers: int) -> float:
    """Jobs/s of `callers` connections each submitting its share one job a transaction
    in tenant A (the quota's worst case: every commit takes the tenant's row lock)."""
    per = jobs // callers

    async def caller(k: int) -> None:
        async with db.connect(c.app_dsn) as conn:
            for i in range(per):
                async with conn.transaction():
                    await acting.act_in(conn, BIG)
                    await submit.SUBMITTER.submit(
                        conn, submit.NOOP, {"n": k * per + i}, max_attempts=1, actor=submit.ACTOR
                    )

    began = time.perf_counter()
    await asyncio.gather(*(caller(k) for k in range(callers)))
    return per * callers / (time.perf_counter() - began)


async def quota(c: cluster.Cluster, *, jobs: int, callers: int) -> Quota:
    """What `max_queued` costs a tenant's submissions (sql/0069): the same submissions
    into a fresh database, without settings, then under a `max_queued` they never reach."""
    await c.reset_jobs()
    free = await _submit_rate(c, jobs, callers)
    await c.reset_jobs()
    async with db.connect(c.app_dsn) as conn:
        await tenant_settings.configure(
            conn, store.EventStore(), BIG, {"max_queued": 10 * jobs}, actor=submit.ACTOR
        )
    held = await _submit_rate(c, jobs, callers)
    return Quota(free_rate=free, held_rate=held)
