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
    """Job slots across all live worker processes (a heartbeat younger than its lease).

    Dead processes drop out on their own once their heartbeat is older than their
    lease; this is the `workers` figure of `/health`.
    """
    slots: int = await conn.fetchval(Q["worker_processes_count_live_slots"])
    return int(slots)


async def counts(conn: asyncpg.Connection) -> Counts:
    """Live job slots, and the jobs waiting to run summed over every tenant (/health is
    the operator's, whatever tenant the transaction acts in)."""
    depth = await conn.fetchval(Q["job_counts_runnable"])
    return Counts(workers=await workers_alive(conn), queue_depth=int(depth))
