"""The service's vital signs for /health: live workers and queue depth."""

from __future__ import annotations

import asyncpg
import msgspec

from ledger import sqlfile

Q = sqlfile.load("projections")


class Counts(msgspec.Struct, frozen=True, kw_only=True):
    workers: int
    queue_depth: int


async def workers_alive(conn: asyncpg.Connection) -> int:
    """Worker processes with a recent heartbeat (0 until the worker heartbeat table exists)."""
    return 0


async def counts(conn: asyncpg.Connection) -> Counts:
    depth = await conn.fetchval(Q["jobs_count_runnable"])
    return Counts(workers=await workers_alive(conn), queue_depth=int(depth))
