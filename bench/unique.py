"""What `unique` costs a submission (sql/0076): one job per transaction from one caller
through the library, plain against unique (each job a new key: the index entry and the
submission's digest) and against duplicates of one held key (the refused append, the read
of the job holding the key, the answer), as rates and as ratios to plain."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import asyncpg
import msgspec

from bench import cluster, submit
from ledger import db

BY: dict[str, object] = {"by": ["type", "payload.n"]}


class Unique(msgspec.Struct, kw_only=True):
    plain_rate: float  # jobs/s, no `unique`
    unique_rate: float  # jobs/s, `unique`, every key new: each creates its job
    duplicate_rate: float  # submissions/s, `unique`, every one a duplicate of one held job


async def _timed(
    c: cluster.Cluster, count: int, one: Callable[[asyncpg.Connection, int], Awaitable[object]]
) -> float:
    await c.reset_jobs()
    async with db.connect(c.client_dsn) as conn:
        await one(conn, -1)  # the held key of the duplicates; the connection warmed up
        started = time.perf_counter()
        for i in range(count):
            await one(conn, i)
        return count / (time.perf_counter() - started)


async def _plain(conn: asyncpg.Connection, n: int) -> object:
    return await submit.submit_one(conn, n)


async def _unique(conn: asyncpg.Connection, n: int) -> object:
    return await submit.SUBMITTER.submit(
        conn, submit.NOOP, {"n": n}, max_attempts=1, unique=BY, actor=submit.ACTOR
    )


async def _duplicate(conn: asyncpg.Connection, n: int) -> object:
    return await _unique(conn, -1)


async def measure(c: cluster.Cluster, count: int) -> Unique:
    """Each mode over `count` submissions, on a ledger emptied before each."""
    return Unique(
        plain_rate=await _timed(c, count, _plain),
        unique_rate=await _timed(c, count, _unique),
        duplicate_rate=await _timed(c, count, _duplicate),
    )
