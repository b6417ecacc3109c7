"""What queue limits cost: a drain under a queue's settings, and round-robin latency.

`drain_with`: the processing drain (bench.processing) with the jobs' queue given
settings (limited to 50 running at once; round-robin with one key); its ratio to the
unlimited drain of the same run is what those settings cost in the claim.

`round_robin`: key A holds a backlog of 50,000 queued jobs in a round-robin queue
while key B submits one job every 20 ms: B's latency (submit return to handler
start, as bench.latency measures it) against the idle latency, and A's drain rate
while B submits. B's first `WARMUP` jobs are submitted the same way and not measured:
the figure is the worker's steady state beside A's drain, not its first second (a
worker that just started, its connections' plans not yet made, A's first claims
on pages the checkpoint before it left cold); B alone is measured the same way.

`worker_env`: the worker's settings for the run (the bulk's yield to quiet work).

`spinners`: B alone beside that many processes spinning on the CPU, which touch
neither the database nor the worker: what any neighbour that keeps the cores busy
costs B's latency on this machine, the floor under B's latency beside A's drain.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

import msgspec

from bench import cluster, procs, stats, submit
from bench.processing import Drain, drain, wait_for
from ledger import db, queues, store, wire

ADMIN = "bench"
# B's jobs submitted before the measured ones (one second at 20 ms apart).
WARMUP = 50


async def _configure(c: cluster.Cluster, settings: wire.QueueSettings) -> None:
    async with db.connect(c.client_dsn) as conn:
        await queues.configure(conn, store.EventStore(), "default", settings, actor=ADMIN)


async def drain_with(
    c: cluster.Cluster,
    *,
    jobs: int,
    processes: int,
    slots: int,
    settings: wire.QueueSettings,
    logs: Path,
) -> Drain:
    """The processing drain with the queue's `settings` (a limit, or round-robin)."""

    async def limit() -> None:
        await _configure(c, settings)

    return await drain(c, jobs=jobs, processes=processes, slots=slots, logs=logs, after_reset=limit)


class RoundRobin(msgspec.Struct, kw_only=True):
    backlog: int
    jobs: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    backlog_rate: float  # jobs/s of key A completed while B submitted
    claim_p50_ms: float  # B's submitted → claimed, both recorded by the database
    claim_p99_ms: float


async def round_robin(
    c: cluster.Cluster,
    *,
    backlog: int,
    jobs: int,
    gap: float,
    slots: int,
    logs: Path,
    per_key: int | None = None,
    backlog_wait: float = 0.0,
    spinners: int = 0,
    worker_env: Mapping[str, str] | None = None,
) -> RoundRobin:
    await c.reset_jobs()
    await _configure(c, wire.QueueSettings(fairness="round_robin", per_key_concurrency=per_key))
    async with db.connect(c.client_dsn) as conn:
        for start in range(0, backlog, 1000):
            items = [
                msgspec.structs.replace(
                    s, concurrency_key="A", payload={**s.payload, "wait_seconds": backlog_wait}
                )
                for s in submit.batch_of(min(1000, backlog - start), start=start)
            ]
            await submit.SUBMITTER.submit_many(conn, items, actor=ADMIN)
    await c.checkpoint()
    starts = c.data_dir / f"noop-starts-{uuid.uuid4().hex[:8]}.txt"
    env = procs.service_env(
        c, {"WORKER_COUNT": str(slots), "BENCH_NOOP_STARTS": str(starts), **(worker_env or {})}
    )
    worker = procs.Service("worker", env, logs / "worker-round-robin.log")
    returned: dict[str, int] = {}
    spinning = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", "while True: pass")
        for _ in range(spinners)
    ]
    try:
        await wait_for(c.client_dsn, "worker_processes_count", 1, 60, "the worker to register")
        async with db.connect(c.client_dsn) as conn:
            for i in range(-WARMUP, jobs):
                if i == 0:
                    done_before = await conn.fetchval(
                        "SELECT count(*) FROM jobs WHERE status = 'completed' "
                        "AND concurrency_key = 'A'"
                    )
                    began = time.perf_counter()
                job = await submit.SUBMITTER.submit(
                    conn, submit.NOOP, {"n": i}, max_attempts=1, concurrency_key="B", actor=ADMIN
                )
                if i >= 0:
                    returned[str(job.job_id)] = time.time_ns()
                await asyncio.sleep(gap)
            took = time.perf_counter() - began
            done_after = await conn.fetchval(
                "SELECT count(*) FROM jobs WHERE status = 'completed' AND concurrency_key = 'A'"
            )
            claim_ms = [
                float(r["ms"])
                for r in await conn.fetch(
                    "SELECT extract(epoch FROM c.occurred_at - s.occurred_at) * 1000 AS ms "
                    "FROM jobs AS j JOIN events AS s ON s.job_id = j.job_id AND s.version = 1 "
                    "JOIN events AS c ON c.job_id = j.job_id AND c.version = 2 "
                    "WHERE j.concurrency_key = 'B' AND (j.payload->>'n')::integer >= 0"
                )
            ]
        await wait_for(
            c.client_dsn, "jobs_completed_count", backlog + WARMUP + jobs, 600, "the drain"
        )
        worker.check()
    finally:
        for spinner in spinning:
            spinner.kill()
            await spinner.wait()
        worker.stop()
    started: dict[str, int] = {}
    for line in starts.read_text().splitlines():
        job, ns = line.split()
        started[job] = int(ns)
    millis = [(started[j] - t) / 1e6 for j, t in returned.items()]
    return RoundRobin(
        backlog=backlog,
        jobs=len(millis),
        p50_ms=stats.percentile(millis, 50),
        p99_ms=stats.percentile(millis, 99),
        max_ms=max(millis),
        backlog_rate=max(0, int(done_after) - int(done_before)) / took,
        claim_p50_ms=stats.percentile(claim_ms, 50) if claim_ms else float("nan"),
        claim_p99_ms=stats.percentile(claim_ms, 99) if claim_ms else float("nan"),
    )
