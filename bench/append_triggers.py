"""What each statement trigger on `events` costs an append: one-event and 1,000-event
appends on a scratch database (embedded PostgreSQL), with every trigger, with each of the
newer feature triggers disabled in turn, and with all of them disabled. The appends run as
the application's role in tenant `default` (row-level security on), on the bench's durable
cluster, each in a transaction rolled back after it. Medians of the timed appends, in milliseconds; each round runs twice, the rounds
swing on a shared machine.

    python -m bench.append_triggers
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
from ledger import events as ev

FEATURE_TRIGGERS = (
    "events_project_schedules",
    "events_project_webhooks",
    "events_resolve_workflows",
    "events_lock_workflow_job",
    "events_project_queues",
    "events_project_tenants",
)
SUBMIT = commands.SubmitJob(job_type="bench.noop", payload={"n": 1}, max_attempts=1)


async def _timed(
    conn: asyncpg.Connection, events: store.EventStore, appended: list[ev.Event]
) -> float:
    """Seconds the append statement takes (its triggers included), rolled back after: the
    commit's flush is left out and the tables stay the same size from round to round."""
    transaction = conn.transaction()
    await transaction.start()
    try:
        started = time.perf_counter()
        await events.append(conn, appended)
        return time.perf_counter() - started
    finally:
        await transaction.rollback()


async def _measure(conn: asyncpg.Connection, events: store.EventStore, label: str) -> None:
    batches: list[float] = []
    singles: list[float] = []
    for _ in range(25):
        now = datetime.now(UTC)
        batch = [
            e
            for _ in range(1000)
            for e in commands.decide(None, SUBMIT, job_id=uuid.uuid4(), actor="b", now=now)
        ]
        batches.append(await _timed(conn, events, batch))
    for _ in range(1000):
        one = commands.decide(None, SUBMIT, job_id=uuid.uuid4(), actor="b", now=datetime.now(UTC))
        singles.append(await _timed(conn, events, one))
    print(
        f"{label:40s} 1,000 events {statistics.median(batches[5:]) * 1000:8.2f} ms"
        f"   1 event {statistics.median(singles[100:]) * 1000:7.3f} ms",
        flush=True,
    )


async def _toggle(c: cluster.Cluster, triggers: tuple[str, ...], *, enable: bool) -> None:
    async with db.connect(c.admin_dsn) as admin:
        for trigger in triggers:
            state = "ENABLE" if enable else "DISABLE"
            await admin.execute(f"ALTER TABLE events {state} TRIGGER {trigger}")


async def main() -> None:
    async with cluster.durable_cluster() as c, db.connect(c.client_dsn) as conn:
        events = store.EventStore()
        for _ in range(2):
            await _measure(conn, events, "every trigger")
            for trigger in FEATURE_TRIGGERS:
                await _toggle(c, (trigger,), enable=False)
                await _measure(conn, events, f"without {trigger}")
                await _toggle(c, (trigger,), enable=True)
            await _toggle(c, FEATURE_TRIGGERS, enable=False)
            await _measure(conn, events, "without all six")
            await _toggle(c, FEATURE_TRIGGERS, enable=True)


if __name__ == "__main__":
    asyncio.run(main())
