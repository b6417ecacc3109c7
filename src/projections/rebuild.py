"""Projections are disposable: rebuild the view from events, diff it, or replace it (invariant 3)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import asyncpg
import msgspec

from ledger import sqlfile

Q = sqlfile.load("projections")
_json = msgspec.json.Decoder()
# The per-minute throughput counters keep this much (sql/0058 prunes older minutes).
THROUGHPUT_KEPT: Final = timedelta(days=1)


class RowDiff(msgspec.Struct, frozen=True):
    """A job whose live row differs from its rebuild (None: absent on that side)."""

    job_id: uuid.UUID
    live: dict[str, Any] | None
    rebuilt: dict[str, Any] | None


async def _build_scratch(conn: asyncpg.Connection) -> None:
    await conn.execute(Q["jobs_scratch_create"])
    await conn.execute(Q["jobs_scratch_fill"])


async def verify(conn: asyncpg.Connection) -> list[RowDiff]:
    """Fold every job's events into a scratch table and list the rows that differ from `jobs`;
    then the same for the queues' settings (`job_id`: the queue's stream id)."""
    async with conn.transaction(isolation="repeatable_read", readonly=False):
        await _build_scratch(conn)
        rows = await conn.fetch(Q["jobs_scratch_diff"])
        queues = await conn.fetch(Q["queues_rebuilt_diff"])
    return [
        RowDiff(
            job_id=r["job_id"],
            live=_json.decode(r["live"]) if r["live"] else None,
            rebuilt=_json.decode(r["rebuilt"]) if r["rebuilt"] else None,
        )
        for r in rows
    ] + [_queue_diff(r) for r in queues]


def _queue_diff(row: asyncpg.Record) -> RowDiff:
    live = _json.decode(row["live"]) if row["live"] else None
    rebuilt = _json.decode(row["rebuilt"]) if row["rebuilt"] else None
    stream = (live or rebuilt or {})["stream_id"]
    return RowDiff(job_id=uuid.UUID(stream), live=live, rebuilt=rebuilt)


class CounterDiff(msgspec.Struct, frozen=True):
    """A counter (sql/0058) that differs from a count of what it counts.

    `key`: ("jobs", queue, status) or ("throughput", minute ISO 8601, kind).
    """

    key: tuple[str, str, str]
    counter: int
    counted: int


async def verify_counters(conn: asyncpg.Connection, now: datetime) -> list[CounterDiff]:
    """Compare the job counters with a count of the view, and the throughput counters of
    the minutes kept (a day before `now`) with a count of the events, in one snapshot."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        counters = await conn.fetch(Q["job_counts_by_queue_status"])
        counted = await conn.fetch(Q["jobs_count_by_queue_status"])
        since = now.replace(second=0, microsecond=0) - THROUGHPUT_KEPT + timedelta(minutes=1)
        minutes = await conn.fetch(Q["job_throughput_since"], since)
        events = await conn.fetch(Q["events_throughput_by_minute"], since)
    diffs = _differ(
        {("jobs", r["queue"], r["status"]): int(r["jobs"]) for r in counters},
        {("jobs", r["queue"], r["status"]): int(r["jobs"]) for r in counted},
    )
    diffs += _differ(_minutes(minutes), _minutes(events))
    return diffs


def _minutes(rows: list[asyncpg.Record]) -> dict[tuple[str, str, str], int]:
    return {
        ("throughput", r["minute"].isoformat(), kind): int(r[kind])
        for r in rows
        for kind in ("submitted", "completed", "failed")
        if r[kind]
    }


def _differ(
    counters: dict[tuple[str, str, str], int], counted: dict[tuple[str, str, str], int]
) -> list[CounterDiff]:
    return [
        CounterDiff(key, counters.get(key, 0), counted.get(key, 0))
        for key in sorted(counters.keys() | counted.keys())
        if counters.get(key, 0) != counted.get(key, 0)
    ]


async def rebuild(conn: asyncpg.Connection, now: datetime | None = None) -> int:
    """Replace the live view with the fold of the events, and the counters (sql/0058) with
    a count of the view and of the last day's events; returns the number of jobs."""
    async with conn.transaction():
        # Locked in the order every append takes them: the rebuild waits, never deadlocks.
        await conn.execute(Q["job_counters_lock"])
        await _build_scratch(conn)
        await conn.execute(Q["jobs_delete_all"])
        status = await conn.execute(Q["jobs_fill_from_scratch"])
        await conn.execute(Q["job_count_deltas_delete_all"])
        await conn.execute(Q["job_counts_delete_all"])
        await conn.execute(Q["job_counts_fill"])
        since = (now or datetime.now(UTC)) - THROUGHPUT_KEPT
        await conn.execute(Q["job_throughput_deltas_delete_all"])
        await conn.execute(Q["job_throughput_delete_all"])
        await conn.execute(Q["job_throughput_fill"], since)
    # Apart: a claim row-locks its queue before it touches `jobs`, and the jobs'
    # rebuild above holds `jobs` exclusively, so the two in one transaction could deadlock.
    async with conn.transaction():
        await conn.execute(Q["queues_lock"])
        await conn.execute(Q["queues_delete_all"])
        await conn.execute(Q["queues_fill"])
    return int(status.split()[-1])
