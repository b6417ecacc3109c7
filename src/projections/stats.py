"""The dashboard's overview: jobs by status and queue, and throughput per minute over an hour."""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg
import msgspec

from ledger import lifecycle, sqlfile

Q = sqlfile.load("projections")


class QueueCounts(msgspec.Struct, frozen=True, kw_only=True):
    queue: str
    counts: dict[str, int]  # every status, zero included
    total: int


class Minute(msgspec.Struct, frozen=True, kw_only=True):
    minute: datetime
    submitted: int
    completed: int
    failed: int


class Overview(msgspec.Struct, frozen=True, kw_only=True):
    by_status: dict[str, int]  # every status, zero included
    by_queue: list[QueueCounts]
    throughput: list[Minute]  # one entry per minute of the window, oldest first
    window_start: datetime
    now: datetime  # the server's clock when counted (the dashboard follows events from here)


def _zero() -> dict[str, int]:
    return dict.fromkeys(lifecycle.STATUSES, 0)


async def overview(
    conn: asyncpg.Connection, now: datetime, window: timedelta = timedelta(hours=1)
) -> Overview:
    """The counts now, and the per-minute throughput of the `window` before `now`, of the
    tenant the transaction acts in (none when it names none: row security, sql/0068)."""
    by_status = _zero()
    queues: dict[str, dict[str, int]] = {}
    for row in await conn.fetch(Q["job_counts_by_queue_status"]):
        count = int(row["jobs"])
        by_status[row["status"]] += count
        queues.setdefault(row["queue"], _zero())[row["status"]] = count
    minutes = int(window.total_seconds() // 60)
    last = now.replace(second=0, microsecond=0)
    start = last - timedelta(minutes=minutes - 1)
    seen = {row["minute"]: row for row in await conn.fetch(Q["job_throughput_since"], start)}
    throughput = []
    for n in range(minutes):
        minute = start + timedelta(minutes=n)
        found = seen.get(minute)
        throughput.append(
            Minute(
                minute=minute,
                submitted=int(found["submitted"]) if found else 0,
                completed=int(found["completed"]) if found else 0,
                failed=int(found["failed"]) if found else 0,
            )
        )
    return Overview(
        by_status=by_status,
        by_queue=[
            QueueCounts(queue=q, counts=c, total=sum(c.values())) for q, c in sorted(queues.items())
        ],
        throughput=throughput,
        window_start=start,
        now=now,
    )
