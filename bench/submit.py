"""Submission through the library: `ledger.submission`, the path every caller takes.

One at a time: `submit`, each job its own transaction (one durable commit per job),
from one caller. In batches: `submit_many` of 1,000 jobs, one transaction per
batch. Validation against the job type, its defaults and deciding are included.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg

from bench import noop
from ledger import db, submission

NOOP = noop.NAME
ACTOR = "bench"
SUBMITTER = submission.Submitter()  # the process's registry: bench.noop is registered in it


async def submit_one(conn: asyncpg.Connection, n: int) -> submission.Job:
    return await SUBMITTER.submit(conn, NOOP, {"n": n}, max_attempts=1, actor=ACTOR)


def batch_of(n: int, *, start: int = 0) -> list[submission.Submission]:
    return [
        submission.Submission(job_type=NOOP, payload={"n": i}, max_attempts=1)
        for i in range(start, start + n)
    ]


async def one_at_a_time(dsn: str, count: int) -> float:
    """jobs/s: `count` submissions in a row, each in its own transaction."""
    async with db.connect(dsn) as conn:
        started = time.perf_counter()
        for i in range(count):
            await submit_one(conn, i)
        elapsed = time.perf_counter() - started
    return count / elapsed


async def in_batches(dsn: str, count: int, batch: int = 1000) -> float:
    """jobs/s: `count` submissions, `batch` per call and transaction (validating included)."""
    async with db.connect(dsn) as conn:
        started = time.perf_counter()
        for start in range(0, count, batch):
            items = batch_of(min(batch, count - start), start=start)
            await SUBMITTER.submit_many(conn, items, actor=ACTOR)
        elapsed = time.perf_counter() - started
    return count / elapsed


async def in_batches_concurrently(
    dsn: str, count: int, *, callers: int, batch: int = 1000
) -> float:
    """jobs/s: `callers` submitters at once, each on its own connection, `batch` per call."""
    per = count // callers
    started = time.perf_counter()
    await asyncio.gather(*(in_batches(dsn, per, batch) for _ in range(callers)))
    return per * callers / (time.perf_counter() - started)
