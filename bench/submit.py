"""Submission through the library: `decide(SubmitJob)` then `EventStore.append`, the API's path.

One at a time: each job its own transaction (one durable commit per job), from
one caller. In batches: 1,000 jobs decided together and appended in one call,
one transaction per batch.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg

from ledger import commands, db, store
from ledger import events as ev

NOOP = "bench.noop"
ACTOR = "bench"


def noop_command(n: int) -> commands.SubmitJob:
    return commands.SubmitJob(job_type=NOOP, payload={"n": n}, max_attempts=1)


def decided(n: int, *, start: int = 0) -> list[ev.JobEvent]:
    """The submitted events of `n` no-op jobs (decided now, not yet appended)."""
    now = datetime.now(UTC)
    out: list[ev.JobEvent] = []
    for i in range(start, start + n):
        out.extend(
            commands.decide(None, noop_command(i), job_id=uuid.uuid4(), actor=ACTOR, now=now)
        )
    return out


def event_store() -> store.EventStore:
    return store.EventStore()


async def one_at_a_time(dsn: str, count: int) -> float:
    """jobs/s: `count` submissions in a row, each decided and appended in its own transaction."""
    es = event_store()
    async with db.connect(dsn) as conn:
        started = time.perf_counter()
        for i in range(count):
            job_id = uuid.uuid4()
            events = commands.decide(
                None, noop_command(i), job_id=job_id, actor=ACTOR, now=es.clock()
            )
            await es.append(conn, events)
        elapsed = time.perf_counter() - started
    return count / elapsed


async def in_batches(dsn: str, count: int, batch: int = 1000) -> float:
    """jobs/s: `count` submissions, `batch` per call and transaction (deciding included)."""
    es = event_store()
    async with db.connect(dsn) as conn:
        started = time.perf_counter()
        for start in range(0, count, batch):
            await es.append(conn, decided(min(batch, count - start), start=start))
        elapsed = time.perf_counter() - started
    return count / elapsed


async def append_all(conn: asyncpg.Connection, events: Sequence[ev.JobEvent]) -> None:
    await event_store().append(conn, events)


async def in_batches_concurrently(
    dsn: str, count: int, *, callers: int, batch: int = 1000
) -> float:
    """jobs/s: `callers` submitters at once, each on its own connection, `batch` per call."""
    import asyncio

    per = count // callers
    started = time.perf_counter()
    await asyncio.gather(*(in_batches(dsn, per, batch) for _ in range(callers)))
    return per * callers / (time.perf_counter() - started)
