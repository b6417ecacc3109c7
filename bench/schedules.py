"""Lateness of an every-second schedule (issue #17): for each slot, the time its
`schedule.slot_fired.v1` event and its job were appended (the database's clock) minus
the slot's time, and the time its no-op handler started (`BENCH_NOOP_STARTS`, the
system clock both processes read) minus the slot's time; p50, p99 and max over the
slots, with one `ledger worker` process running the scheduler and the jobs.

The scheduler is woken by an alarm set for the next slot (APScheduler), so lateness is
that alarm's delay, the round (read the schedule, submit the job, append the slot event:
one durable commit), and for the handler start the job's NOTIFY and claim on top.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec

from bench import cluster, procs, stats, submit
from bench.processing import wait_for
from ledger import acting, db, schedules, sqlfile, wire

Q = sqlfile.load("bench")
SCHEDULE = "bench-every-second"


class Lateness(msgspec.Struct, kw_only=True):
    slots: int  # slots fired (every one of them: a slot not fired fails the measurement)
    fired_p50_ms: float  # slot_fired appended − slot
    fired_p99_ms: float
    fired_max_ms: float
    started_p50_ms: float  # handler started − slot
    started_p99_ms: float
    started_max_ms: float


async def _last_slot(dsn: str) -> datetime | None:
    async with db.connect(dsn) as conn:
        found: datetime | None = await conn.fetchval(Q["schedule_last_slot"], SCHEDULE)
        return found


async def measure_once(c: cluster.Cluster, *, slots: int, logs: Path) -> Lateness:
    """An every-second schedule of `slots` slots from a few seconds on, with one worker."""
    await c.reset_jobs()
    await c.checkpoint()
    starts = c.data_dir / f"noop-starts-{uuid.uuid4().hex[:8]}.txt"
    env = procs.service_env(c, {"WORKER_COUNT": "10", "BENCH_NOOP_STARTS": str(starts)})
    worker = procs.Service("worker", env, logs / "worker-schedules.log")
    try:
        await wait_for(c.client_dsn, "worker_processes_count", 1, 60, "the worker to register")
        first = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
        last = first + timedelta(seconds=slots - 1)
        body = schedules.ScheduleIn(
            id=SCHEDULE,
            cron="* * * * * *",
            overlap="allow_all",
            start_at=first,
            end_at=last,
            job=wire.Submission(job_type=submit.NOOP, payload={}, max_attempts=1),
        )
        async with db.connect(c.client_dsn) as conn:
            await schedules.Schedules(submit.SUBMITTER).create(conn, body, actor=submit.ACTOR)
        deadline = time.monotonic() + slots + 60
        while await _last_slot(c.client_dsn) != last:
            worker.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the schedule's {slots} slots were not recorded in time")
            await asyncio.sleep(0.5)
        await wait_for(c.client_dsn, "jobs_completed_count", slots, 60, "the fired jobs")
        worker.check()
    finally:
        worker.stop()
    async with db.connect(c.client_dsn) as conn, conn.transaction():
        await acting.act_in(conn, "default")
        fired = await conn.fetch(Q["schedule_slots_fired"], SCHEDULE)
        missed = await conn.fetchval(Q["schedule_slots_not_fired"], SCHEDULE)
    if len(fired) != slots or missed:
        raise RuntimeError(f"{len(fired)} of {slots} slots fired, {missed} not")
    started: dict[str, int] = {}
    for line in starts.read_text().splitlines():
        job, ns = line.split()
        started[job] = int(ns)
    appended = [(r["recorded_at"] - r["slot"]).total_seconds() * 1e3 for r in fired]
    ran = [(started[str(r["job_id"])] / 1e6 - r["slot"].timestamp() * 1e3) for r in fired]
    return Lateness(
        slots=len(fired),
        fired_p50_ms=stats.percentile(appended, 50),
        fired_p99_ms=stats.percentile(appended, 99),
        fired_max_ms=max(appended),
        started_p50_ms=stats.percentile(ran, 50),
        started_p99_ms=stats.percentile(ran, 99),
        started_max_ms=max(ran),
    )
