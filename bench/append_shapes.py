"""What the append's trigger functions cost, per call, for the processing drain's append
shapes (100 submissions, the claim of those 100 through `jobs_claim`, their 100
completions) and the idle path's (one job submitted, claimed, completed), on the bench's
durable cluster with `track_functions = 'pl'`: the shapes' medians (ms) and each trigger
function's calls and self time from pg_stat_user_functions. Used for BENCHMARKS.md
"Append overhead"; the figures swing on a shared machine, so run it back to back with
the tree to compare.

    python -m bench.append_shapes
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime

import asyncpg

from bench import cluster
from ledger import commands, db, store
from workers import claims, outcomes

TYPE = "bench.noop"
SUBMIT = commands.SubmitJob(job_type=TYPE, payload={"n": 1}, max_attempts=1)


async def _cycle(
    conn: asyncpg.Connection, events: store.EventStore, batch: int, rounds: int
) -> tuple[float, float, float]:
    """Median ms of submitting, claiming and completing `batch` jobs, over `rounds`."""
    submit: list[float] = []
    claim: list[float] = []
    complete: list[float] = []
    for _ in range(rounds):
        now = datetime.now(UTC)
        decided = [
            e
            for _ in range(batch)
            for e in commands.decide(None, SUBMIT, job_id=uuid.uuid4(), actor="b", now=now)
        ]
        started = time.perf_counter()
        await events.append(conn, decided)
        submit.append(time.perf_counter() - started)
        started = time.perf_counter()
        states = await claims.claim(
            conn, events, worker_id="w1", lease_seconds=30, types=[TYPE], limit=batch
        )
        claim.append(time.perf_counter() - started)
        done = commands.CompleteJob(worker_id="w1", result=None)
        started = time.perf_counter()
        await outcomes.record_as_claimed(
            conn, events, "w1", [outcomes.Outcome(s, done) for s in states]
        )
        complete.append(time.perf_counter() - started)

    def median_ms(xs: list[float]) -> float:
        return statistics.median(xs[len(xs) // 5 :]) * 1000

    return median_ms(submit), median_ms(claim), median_ms(complete)


async def main() -> None:
    async with cluster.durable_cluster() as c, db.connect(c.admin_dsn) as conn:
        await conn.execute("SET ledger.tenant = 'default'")
        await conn.execute("SET track_functions = 'pl'")
        events = store.EventStore()
        await _cycle(conn, events, 100, 5)  # warm the plans
        for batch, rounds in ((100, 20), (1, 300)):
            await conn.execute("SELECT pg_stat_force_next_flush()")  # then reset it all
            await conn.execute("SELECT pg_stat_reset()")
            sub, cl, co = await _cycle(conn, events, batch, rounds)
            await conn.execute("SELECT pg_stat_force_next_flush()")
            rows = await conn.fetch(
                "SELECT funcname, calls, self_time FROM pg_stat_user_functions"
                " WHERE funcname LIKE '%appended' ORDER BY self_time DESC"
            )
            print(
                f"{batch} job(s) a round x {rounds}: submit {sub:.3f} ms, claim {cl:.3f} ms,"
                f" complete {co:.3f} ms",
                flush=True,
            )
            for r in rows:
                per_call = r["self_time"] / max(r["calls"], 1) * 1000
                print(f"  {r['funcname']:32s} {r['calls']:6d} calls  {per_call:8.1f} µs a call")


if __name__ == "__main__":
    asyncio.run(main())
