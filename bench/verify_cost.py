"""What `ledger projections verify` costs on a large ledger, and what its workflow and
webhook checks (sql/0082) add to it.

    python -m bench.verify_cost [--jobs 100000] [--workflows 500] [--repeat 3]

Builds the scale bench's ledger (bench.scale.grow: `jobs` jobs, every other one claimed
and completed) in a durable embedded cluster, adds `workflows` diamonds (a → b, c → d)
whose root ran (b and c unblocked: dependency rows with an end) and one webhook endpoint
with a delivery per completed root, then times, as the owner (every tenant), the whole
of `projections.rebuild.verify` and each of the `<table>_rebuilt_diff` queries alone
(medians of `repeat` runs, after one to warm the cache). Not a `make bench` target:
run it by hand; the figures go to BENCHMARKS.md with the command.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from bench import cluster, scale
from ledger import commands, db, jobtypes, store, submission, webhooks, wire
from projections import rebuild


async def _median_ms(repeat: int, run: Callable[[], Awaitable[Any]]) -> float:
    await run()
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        await run()
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples)


async def _anywhere(url: str) -> None:
    """Nothing is sent: any address will do."""


class _Step(msgspec.Struct, frozen=True, kw_only=True):
    x: int = 0


def _submitter() -> submission.Submitter:
    registry = jobtypes.Registry()

    async def step(payload: _Step, ctx: jobtypes.JobContext) -> int:
        return payload.x

    jobtypes.job_type("step", _Step, max_attempts=1, registry=registry)(step)
    return submission.Submitter(registry)


async def _workflows(conn: asyncpg.Connection, count: int) -> None:
    s = store.EventStore()
    spec = webhooks.EndpointIn(url="https://hooks.example.com/bench", events=["job.completed"])
    await webhooks.create(conn, s, spec, actor="bench", vet=_anywhere)
    flows = _submitter()

    def job(name: str, *deps: str) -> wire.WorkflowJobIn:
        return wire.WorkflowJobIn(name=name, job_type="step", payload={}, depends_on=list(deps))

    for _ in range(count):
        out = await flows.submit_workflow(
            conn, [job("a"), job("b", "a"), job("c", "a"), job("d", "b", "c")], actor="bench"
        )
        root = out.jobs[0].job_id
        claim = commands.ClaimJob(worker_id="bench", lease_seconds=60)
        await s.execute(conn, root, claim, actor="bench")
        done = commands.CompleteJob(worker_id="bench", result=1)
        await s.execute(conn, root, done, actor="bench")


async def main(jobs: int, workflows: int, repeat: int) -> None:
    async with cluster.durable_cluster() as c:
        base = datetime.now(UTC) - timedelta(seconds=jobs + 3600)
        built = await scale.grow(c, 0, jobs, 10_000, base)
        conn = await asyncpg.connect(c.app_dsn, server_settings={"ledger.tenant": "default"})
        try:
            await _workflows(conn, workflows)
        finally:
            await conn.close()
        async with db.connect(c.admin_dsn) as conn:
            await conn.execute("VACUUM ANALYZE")
            events = await conn.fetchval("SELECT count(*) FROM events")
            print(f"{jobs:,} jobs + {workflows:,} workflows: {events:,} events ({built:.0f} s)")
            whole = await _median_ms(repeat, lambda: rebuild.verify(conn))
            print(f"projections verify, whole: {whole:.0f} ms")
            added = 0.0
            for table in rebuild.FOLDED_TABLES:
                query = rebuild.Q[f"{table}_rebuilt_diff"]
                took = await _median_ms(repeat, lambda q=query: conn.fetch(q))
                added += took
                print(f"  {table}_rebuilt_diff: {took:.1f} ms")
            print(f"  added by the workflow and webhook checks: {added:.0f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--workflows", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.jobs, args.workflows, args.repeat))
