"""What workflows cost (issue #18), from the ledger's own times, with real `ledger worker`
processes running no-op jobs:

- hand-off: a chain of no-op jobs (a → b → c → …, one workflow) run by one idle worker
  process; each step's time from its parent's `job.completed.v1` to its own
  `job.claimed.v1` (the unblocking happens in the completion's transaction, the
  worker is woken by the job's NOTIFY), as p50/p99;
- a layered DAG of `jobs` no-op jobs against the same number of independent jobs:
  workflows of 1,000 jobs (the most one may hold) in `layers` layers, each job but the
  first layer's depending on two of the layer above; the rate from the first claim to
  the last completion, and its ratio to the independent jobs' drained by the same pool.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from bench import cluster, procs, stats, submit
from bench import processing as drain_bench
from ledger import db, sqlfile, wire

Q = sqlfile.load("bench")
PER_WORKFLOW = wire.MAX_WORKFLOW


class HandOff(msgspec.Struct, kw_only=True):
    steps: int
    p50_ms: float
    p99_ms: float


class Dag(msgspec.Struct, kw_only=True):
    jobs: int
    layers: int
    dag_rate: float  # jobs/s, first claim to last completion
    independent_rate: float  # the same number of jobs without dependencies, same pool
    ratio: float  # dag_rate / independent_rate


def _job(name: str, deps: list[str]) -> wire.WorkflowJobIn:
    return wire.WorkflowJobIn(
        name=name, job_type=submit.NOOP, payload={}, max_attempts=1, depends_on=deps
    )


def chain(steps: int) -> list[wire.WorkflowJobIn]:
    return [_job(f"s{i}", [f"s{i - 1}"] if i else []) for i in range(steps)]


def layered(jobs: int, layers: int) -> list[wire.WorkflowJobIn]:
    """`layers` layers of jobs/layers jobs each; each job after the first layer depends
    on two of the layer above (its own column and the next)."""
    width = jobs // layers
    out = []
    for layer in range(layers):
        for i in range(width):
            deps = [f"l{layer - 1}_{i}", f"l{layer - 1}_{(i + 1) % width}"] if layer else []
            out.append(_job(f"l{layer}_{i}", list(dict.fromkeys(deps))))
    return out


async def _submit(c: cluster.Cluster, jobs: list[wire.WorkflowJobIn], copies: int) -> None:
    async with db.connect(c.client_dsn) as conn:
        for _ in range(copies):
            await submit.SUBMITTER.submit_workflow(conn, jobs, actor=submit.ACTOR)


async def _drained(c: cluster.Cluster, jobs: int, processes: int, slots: int, logs: Path) -> None:
    env = procs.service_env(c, {"WORKER_COUNT": str(slots)})
    workers = [procs.Service("worker", env, logs / "worker.log") for _ in range(processes)]
    try:
        await drain_bench.wait_for(
            c.client_dsn, "jobs_completed_count", jobs, 600, f"{jobs} completions"
        )
        for w in workers:
            w.check()
    finally:
        for w in workers:
            w.stop()


async def hand_off(c: cluster.Cluster, *, steps: int, slots: int, logs: Path) -> HandOff:
    """A chain of `steps` jobs in one workflow, one worker process: parent end → child claim."""
    await c.reset_jobs()
    await _submit(c, chain(steps), 1)
    await c.checkpoint()
    await _drained(c, steps, 1, slots, logs)
    async with db.connect(c.client_dsn) as conn:
        gaps = [float(r["ms"]) for r in await conn.fetch(Q["workflow_hand_offs"])]
    if len(gaps) != steps - 1:
        raise RuntimeError(f"{len(gaps)} hand-offs recorded for a chain of {steps}")
    return HandOff(
        steps=steps, p50_ms=stats.percentile(gaps, 50), p99_ms=stats.percentile(gaps, 99)
    )


async def dag(
    c: cluster.Cluster, *, jobs: int, layers: int, processes: int, slots: int, logs: Path
) -> Dag:
    """`jobs` jobs as layered workflows, then as independent jobs, each drained by the pool."""
    copies = max(1, jobs // PER_WORKFLOW)
    shape = layered(min(jobs, PER_WORKFLOW), layers)
    total = copies * len(shape)
    await c.reset_jobs()
    await _submit(c, shape, copies)
    await c.checkpoint()
    await _drained(c, total, processes, slots, logs)
    async with db.connect(c.client_dsn) as conn:
        window = await conn.fetchrow(Q["events_processing_window"])
    assert window is not None and window["completed"] == total
    dag_rate = total / (window["last_completion"] - window["first_claim"]).total_seconds()
    plain = await drain_bench.drain(c, jobs=total, processes=processes, slots=slots, logs=logs)
    return Dag(
        jobs=total,
        layers=layers,
        dag_rate=dag_rate,
        independent_rate=plain.rate,
        ratio=dag_rate / plain.rate,
    )
