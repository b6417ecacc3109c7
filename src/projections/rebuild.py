"""Projections are disposable: rebuild the view from events, diff it, or replace it (invariant 3)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import asyncpg
import msgspec

from ledger import schedules, sqlfile, tenancy

Q = sqlfile.load("projections")
_json = msgspec.json.Decoder()
# The per-minute throughput counters keep this much (sql/0058 prunes older minutes).
THROUGHPUT_KEPT: Final = timedelta(days=1)


class RowDiff(msgspec.Struct, frozen=True):
    """A projection's row that differs from its rebuild (None: absent on that side).

    `table`: the projection the row is in. `job_id`: the job's id in `jobs`; the stream's
    in `queues`, `tenants`, `schedules` and `schedule_slots` (its schedule's); in the
    workflow and webhook tables the row's key (the workflow's, the job's, the endpoint's
    or the delivery's id).
    """

    job_id: uuid.UUID
    live: dict[str, Any] | None
    rebuilt: dict[str, Any] | None
    table: str = "jobs"


# The workflow tables (sql/0077) and the webhook tables (sql/0080), each compared with
# its fold (sql/0082) by its `<table>_rebuilt_diff` query.
FOLDED_TABLES: Final = (
    "workflows",
    "workflow_jobs",
    "job_dependencies",
    "webhook_endpoints",
    "job_webhooks",
    "webhook_deliveries",
)


async def _build_scratch(conn: asyncpg.Connection) -> None:
    await conn.execute(Q["jobs_scratch_create"])
    await conn.execute(Q["jobs_scratch_fill"])


async def verify(conn: asyncpg.Connection) -> list[RowDiff]:
    """Fold every job's events into a scratch table and list the rows that differ from `jobs`;
    then the same for the queues' and the tenants' settings and the schedules (`job_id`: the
    stream id), the schedules' recorded slots (`job_id`: their schedule's stream id), and
    the workflow and webhook tables (FOLDED_TABLES; a delivery's status and attempts)."""
    async with conn.transaction(isolation="repeatable_read", readonly=False):
        await _build_scratch(conn)
        rows = await conn.fetch(Q["jobs_scratch_diff"])
        streams = [
            (table, r)
            for table in ("queues", "tenants", "schedules")
            for r in await conn.fetch(Q[f"{table}_rebuilt_diff"])
        ]
        slots = await conn.fetch(Q["schedule_slots_rebuilt_diff"])
        folded = [(t, await conn.fetch(Q[f"{t}_rebuilt_diff"])) for t in FOLDED_TABLES]
    return (
        [
            RowDiff(
                job_id=r["job_id"],
                live=_json.decode(r["live"]) if r["live"] else None,
                rebuilt=_json.decode(r["rebuilt"]) if r["rebuilt"] else None,
            )
            for r in rows
        ]
        + [_queue_diff(r, table) for table, r in streams]
        + [_slot_diff(r) for r in slots]
        + [
            RowDiff(
                job_id=r["id"],
                live=_json.decode(r["live"]) if r["live"] else None,
                rebuilt=_json.decode(r["rebuilt"]) if r["rebuilt"] else None,
                table=table,
            )
            for table, rows in folded
            for r in rows
        ]
    )


def _queue_diff(row: asyncpg.Record, table: str) -> RowDiff:
    live = _json.decode(row["live"]) if row["live"] else None
    rebuilt = _json.decode(row["rebuilt"]) if row["rebuilt"] else None
    stream = (live or rebuilt or {})["stream_id"]
    return RowDiff(job_id=uuid.UUID(stream), live=live, rebuilt=rebuilt, table=table)


def _slot_diff(row: asyncpg.Record) -> RowDiff:
    return RowDiff(
        job_id=schedules.stream_id(row["schedule_id"], row["tenant"]),
        live=_json.decode(row["live"]) if row["live"] else None,
        rebuilt=_json.decode(row["rebuilt"]) if row["rebuilt"] else None,
        table="schedule_slots",
    )


class CounterDiff(msgspec.Struct, frozen=True):
    """A tenant's counter (sql/0058, per tenant since sql/0064) that differs from a count
    of what it counts.

    `key`: ("jobs", queue, status) or ("throughput", minute ISO 8601, kind).
    """

    key: tuple[str, str, str]
    counter: int
    counted: int
    tenant: str = tenancy.DEFAULT


# A counter's place: (tenant, key).
_Place = tuple[str, tuple[str, str, str]]


async def verify_counters(conn: asyncpg.Connection, now: datetime) -> list[CounterDiff]:
    """Compare each tenant's job counters with a count of its jobs in the view, and its
    throughput counters of the minutes kept (a day before `now`) with a count of its
    events, in one snapshot; the differences by tenant, then key."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        counters = await conn.fetch(Q["job_counts_by_tenant_queue_status"])
        counted = await conn.fetch(Q["jobs_count_by_tenant_queue_status"])
        since = now.replace(second=0, microsecond=0) - THROUGHPUT_KEPT + timedelta(minutes=1)
        minutes = await conn.fetch(Q["job_throughput_by_tenant_since"], since)
        events = await conn.fetch(Q["events_throughput_by_tenant_minute"], since)
    diffs = _differ(_jobs(counters), _jobs(counted))
    diffs += _differ(_minutes(minutes), _minutes(events))
    return diffs


def _jobs(rows: list[asyncpg.Record]) -> dict[_Place, int]:
    return {(r["tenant"], ("jobs", r["queue"], r["status"])): int(r["jobs"]) for r in rows}


def _minutes(rows: list[asyncpg.Record]) -> dict[_Place, int]:
    return {
        (r["tenant"], ("throughput", r["minute"].isoformat(), kind)): int(r[kind])
        for r in rows
        for kind in ("submitted", "completed", "failed")
        if r[kind]
    }


def _differ(counters: dict[_Place, int], counted: dict[_Place, int]) -> list[CounterDiff]:
    return [
        CounterDiff(place[1], counters.get(place, 0), counted.get(place, 0), tenant=place[0])
        for place in sorted(counters.keys() | counted.keys())
        if counters.get(place, 0) != counted.get(place, 0)
    ]


async def rebuild(conn: asyncpg.Connection, now: datetime | None = None) -> int:
    """Replace the live view with the fold of the events, and each tenant's counters
    (sql/0058, sql/0064) with a count of its jobs in the view and of its last day's
    events; then the queues, tenants, schedules, the workflow tables and the webhook
    tables (a delivery's status and attempt columns) from their events; returns the
    number of jobs."""
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
    async with conn.transaction():
        await conn.execute(Q["tenants_lock"])
        await conn.execute(Q["tenants_delete_all"])
        await conn.execute(Q["tenants_fill"])
    async with conn.transaction():
        await conn.execute(Q["schedules_lock"])
        await conn.execute(Q["schedule_slots_delete_all"])
        await conn.execute(Q["schedules_delete_all"])
        await conn.execute(Q["schedules_fill"])
        await conn.execute(Q["schedule_slots_fill"])
    async with conn.transaction():
        await conn.execute(Q["workflow_tables_lock"])
        await conn.execute(Q["job_dependencies_delete_all"])
        await conn.execute(Q["workflow_jobs_delete_all"])
        await conn.execute(Q["workflows_delete_all"])
        await conn.execute(Q["workflows_fill"])
        await conn.execute(Q["workflow_jobs_fill"])
        await conn.execute(Q["job_dependencies_fill"])
    async with conn.transaction():
        await conn.execute(Q["webhook_tables_lock"])
        await conn.execute(Q["job_webhooks_delete_all"])
        await conn.execute(Q["webhook_endpoints_delete_all"])
        await conn.execute(Q["webhook_endpoints_fill"])
        await conn.execute(Q["job_webhooks_fill"])
        await conn.execute(Q["webhook_deliveries_refold"])
    return int(status.split()[-1])
