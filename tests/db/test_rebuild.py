"""Invariant 3: the jobs view is disposable; rebuilt from events it comes back the same."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import asyncpg
import pytest

from ledger import commands, jobtypes, schedules, store, submission, webhooks
from ledger import events as ev
from projections import rebuild
from tests import factories
from tests.db import test_schedules, test_workflows


async def _workload(event_store: store.EventStore, conn: asyncpg.Connection) -> list[object]:
    ids = []
    for i in range(12):
        job_id = await factories.submit(event_store, conn, payload={"i": i}, max_attempts=2)
        ids.append(job_id)
        if i % 4 == 0:
            continue
        await event_store.execute(
            conn, job_id, commands.ClaimJob(worker_id="w", lease_seconds=5), actor="w"
        )
        if i % 4 == 1:
            await event_store.execute(
                conn, job_id, commands.CompleteJob(worker_id="w", result=[i]), actor="w"
            )
        elif i % 4 == 2:
            await event_store.execute(
                conn,
                job_id,
                commands.FailAttempt(
                    worker_id="w", error="x", permanent=False, retry_delay=timedelta(minutes=5)
                ),
                actor="w",
            )
        else:
            await event_store.execute(conn, job_id, commands.CancelJob(reason="stop"), actor="bob")
    return ids


async def test_rebuild_of_an_untouched_view_has_no_diff(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await _workload(event_store, conn)
    assert await rebuild.verify(conn) == []


async def test_a_drifted_row_is_reported_and_rebuild_restores_it(
    conn: asyncpg.Connection, admin_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    ids = await _workload(event_store, conn)
    # Only the owner can make the view drift (the application's role writes no row).
    await admin_conn.execute("UPDATE jobs SET status = 'completed' WHERE job_id = $1", ids[0])
    await admin_conn.execute("DELETE FROM jobs WHERE job_id = $1", ids[1])

    diffs = await rebuild.verify(conn)
    assert {d.job_id for d in diffs} == {ids[0], ids[1]}
    drifted = next(d for d in diffs if d.job_id == ids[0])
    assert drifted.live is not None and drifted.live["status"] == "completed"
    assert drifted.rebuilt is not None and drifted.rebuilt["status"] == "pending"
    missing = next(d for d in diffs if d.job_id == ids[1])
    assert missing.live is None and missing.rebuilt is not None

    before = await conn.fetch("SELECT * FROM jobs ORDER BY job_id")
    assert await rebuild.rebuild(admin_conn) == 12
    assert await rebuild.verify(conn) == []
    after = {r["job_id"]: dict(r) for r in await conn.fetch("SELECT * FROM jobs ORDER BY job_id")}
    untouched = [dict(r) for r in before if r["job_id"] not in (ids[0], ids[1])]
    assert all(after[r["job_id"]] == r for r in untouched)


async def test_dropping_the_view_and_rebuilding_gives_back_the_same_rows(
    conn: asyncpg.Connection, admin_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await _workload(event_store, conn)
    before = [dict(r) for r in await conn.fetch("SELECT * FROM jobs ORDER BY job_id")]
    await admin_conn.execute("DELETE FROM jobs")
    await rebuild.rebuild(admin_conn)
    after = [dict(r) for r in await conn.fetch("SELECT * FROM jobs ORDER BY job_id")]
    assert after == before


async def test_only_the_owner_rebuilds_the_view(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await _workload(event_store, conn)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await rebuild.rebuild(conn)
    assert await rebuild.verify(conn) == []


async def _schedule_workload(conn: asyncpg.Connection) -> None:
    """Two schedules with every kind of slot outcome, a pause, a delete and a re-creation."""
    s = test_schedules._schedules()
    t0 = test_schedules.T0
    await s.create(
        conn, test_schedules._body(cron="* * * * * *", start_at=t0, overlap="buffer_one"), actor="o"
    )
    await s.create(
        conn, test_schedules._body(id="hourly", interval_seconds=3600, start_at=t0), actor="o"
    )
    for second in (0, 1, 2, 120):  # fired, buffered, skipped (overlap), outside the window
        await s.record_due(conn, "default", "tick", t0 + timedelta(seconds=second))
        await s.record_due(conn, "default", "hourly", t0 + timedelta(seconds=second))
    await s.pause(conn, "hourly", note="maintenance", actor="o")
    await s.trigger(conn, "tick", actor="o")
    await s.delete(conn, "tick", note=None, actor="o")
    await s.create(conn, test_schedules._body(cron="0 * * * * *", start_at=t0), actor="o")


async def test_the_schedules_and_their_slots_rebuild_from_their_events(
    conn: asyncpg.Connection, admin_conn: asyncpg.Connection
) -> None:
    await _schedule_workload(conn)
    outcomes = await conn.fetch("SELECT DISTINCT outcome FROM schedule_slots")
    assert {r["outcome"] for r in outcomes} == {"fired", "skipped", "buffered"}
    assert await rebuild.verify(conn) == []

    tick = schedules.stream_id("tick", "default")
    await admin_conn.execute("UPDATE schedules SET paused = true WHERE schedule_id = 'tick'")
    await admin_conn.execute(
        "DELETE FROM schedule_slots WHERE schedule_id = 'hourly' AND outcome = 'fired'"
    )
    diffs = await rebuild.verify(conn)
    assert {d.job_id for d in diffs} == {tick, schedules.stream_id("hourly", "default")}
    drifted = next(d for d in diffs if d.job_id == tick)
    assert drifted.live is not None and drifted.live["paused"] is True
    assert drifted.rebuilt is not None and drifted.rebuilt["paused"] is False
    missing = next(d for d in diffs if d.job_id != tick)
    assert missing.live is None and missing.rebuilt is not None
    assert missing.rebuilt["outcome"] == "fired"

    await rebuild.rebuild(admin_conn)
    assert await rebuild.verify(conn) == []


async def test_dropping_the_schedules_and_rebuilding_gives_back_the_same_rows(
    conn: asyncpg.Connection, admin_conn: asyncpg.Connection
) -> None:
    await _schedule_workload(conn)
    tables = {
        "schedules": "SELECT * FROM schedules ORDER BY tenant, schedule_id",
        "schedule_slots": "SELECT * FROM schedule_slots ORDER BY tenant, schedule_id, slot",
    }
    before = {t: [dict(r) for r in await conn.fetch(q)] for t, q in tables.items()}
    await admin_conn.execute("DELETE FROM schedule_slots")
    await admin_conn.execute("DELETE FROM schedules")
    await rebuild.rebuild(admin_conn)
    after = {t: [dict(r) for r in await conn.fetch(q)] for t, q in tables.items()}
    assert after == before
    assert len(before["schedule_slots"]) >= 5


def workflow_submitter() -> submission.Submitter:
    """A submitter that knows the workflow tests' `step` job type."""
    registry = jobtypes.Registry()

    async def step(payload: test_workflows.Step, ctx: jobtypes.JobContext) -> int:
        return payload.x

    jobtypes.job_type("step", test_workflows.Step, max_attempts=1, registry=registry)(step)
    return submission.Submitter(registry)


async def _workflow_workload(conn: asyncpg.Connection) -> dict[str, object]:
    """A diamond a → b, c → d (d skips on a failed dependency) and e after d: b fails, d is
    skipped, e runs; then the workflow is retried from its failure and runs to the end."""
    job, run = test_workflows.job, test_workflows.run
    flows = workflow_submitter()
    out = await flows.submit_workflow(
        conn,
        [job("a"), job("b", "a"), job("c", "a"), job("d", "b", "c", mode="skip"), job("e", "d")],
        actor="app",
    )
    ids = {j.name: j.job_id for j in out.jobs}
    await run(conn, ids["a"], "A")
    await test_workflows.fail(conn, ids["b"])
    await run(conn, ids["c"], "C")
    await run(conn, ids["e"], "E")  # d was skipped: e ran as if it had completed
    assert {j.name: j.status for j in (await flows.workflow(conn, out.id)).jobs} == {
        "a": "completed",
        "b": "failed",
        "c": "completed",
        "d": "skipped",
        "e": "completed",
    }
    assert await rebuild.verify(conn) == []
    again = await flows.retry_workflow(conn, out.id, actor="ops")
    assert {j.name: j.status for j in again.jobs}["d"] == "blocked"
    assert await rebuild.verify(conn) == []  # the retried dependencies wait again
    for name in ("b", "d", "e"):
        await run(conn, ids[name], name.upper())
    assert (await flows.workflow(conn, out.id)).status == "completed"
    return {"workflow": out.id, **ids}


async def test_the_workflow_tables_rebuild_from_their_events(
    conn: asyncpg.Connection, admin_conn: asyncpg.Connection
) -> None:
    ids = await _workflow_workload(conn)
    ended = await conn.fetch("SELECT upstream_status FROM job_dependencies")
    assert sorted(r["upstream_status"] for r in ended) == ["completed"] * 5
    assert await rebuild.verify(conn) == []

    # Only the owner can make them drift (the application's role writes no row).
    await admin_conn.execute(
        "UPDATE job_dependencies SET upstream_status = NULL, cause = NULL"
        " WHERE job_id = $1 AND depends_on = $2",
        ids["d"],
        ids["b"],
    )
    await admin_conn.execute(
        "UPDATE workflow_jobs SET on_upstream_failure = 'run' WHERE job_id = $1", ids["e"]
    )
    await admin_conn.execute("DELETE FROM workflows WHERE workflow_id = $1", ids["workflow"])
    diffs = await rebuild.verify(conn)
    assert {(d.table, d.job_id) for d in diffs} == {
        ("job_dependencies", ids["d"]),
        ("workflow_jobs", ids["e"]),
        ("workflows", ids["workflow"]),
    }
    dep = next(d for d in diffs if d.table == "job_dependencies")
    assert dep.live is not None and dep.live["upstream_status"] is None
    assert dep.rebuilt is not None and dep.rebuilt["upstream_status"] == "completed"
    flow = next(d for d in diffs if d.table == "workflows")
    assert flow.live is None and flow.rebuilt is not None and flow.rebuilt["jobs"] == 5

    tables = {
        "workflows": "SELECT * FROM workflows ORDER BY workflow_id",
        "workflow_jobs": "SELECT * FROM workflow_jobs ORDER BY job_id",
        "job_dependencies": "SELECT * FROM job_dependencies ORDER BY job_id, depends_on",
    }
    await rebuild.rebuild(admin_conn)
    assert await rebuild.verify(conn) == []
    before = {t: [dict(r) for r in await conn.fetch(q)] for t, q in tables.items()}
    for emptying in (
        "DELETE FROM job_dependencies",
        "DELETE FROM workflow_jobs",
        "DELETE FROM workflows",
    ):
        await admin_conn.execute(emptying)
    await rebuild.rebuild(admin_conn)
    assert {t: [dict(r) for r in await conn.fetch(q)] for t, q in tables.items()} == before


async def _anywhere(url: str) -> None:
    """Every address is allowed (nothing is sent in these tests)."""


async def _attempt(
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    delivery_id: uuid.UUID,
    outcome: ev.DeliveryOutcome,
    status_code: int | None,
    next_at: datetime | None = None,
) -> None:
    """Record an attempt of the delivery as a sender does."""
    row = await conn.fetchrow(
        "SELECT * FROM webhook_deliveries WHERE delivery_id = $1", delivery_id
    )
    assert row is not None
    attempted = ev.WebhookDeliveryAttempted(
        job_id=row["delivery_id"],
        version=row["version"] + 1,
        actor="sender",
        occurred_at=event_store.clock(),
        endpoint_id=row["endpoint_id"],
        about_job=row["job_id"],
        attempt=row["attempts"] + 1,
        outcome=outcome,
        status_code=status_code,
        duration_ms=1.5,
        error=None if status_code == 200 else "HTTP 500" if status_code else "refused",
        response_body=None,
        next_attempt_at=next_at,
    )
    await event_store.append(conn, [attempted])


async def _webhook_workload(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> list[uuid.UUID]:
    """Two endpoints (one changed, rotated, disabled, one deleted), a job naming its own
    webhook, and deliveries with attempts of every outcome and a redelivery; the
    delivery ids, oldest first."""
    spec = webhooks.EndpointIn(url="https://hooks.example.com/a", events=["job.completed"])
    first = (await webhooks.create(conn, event_store, spec, actor="o", vet=_anywhere)).endpoint
    other = webhooks.EndpointIn(url="https://hooks.example.com/b", events=["job.completed"])
    second = (await webhooks.create(conn, event_store, other, actor="o", vet=_anywhere)).endpoint
    for n in range(2):
        job_id = await factories.submit(event_store, conn, payload={"n": n})
        await event_store.execute(
            conn, job_id, commands.ClaimJob(worker_id="w", lease_seconds=5), actor="w"
        )
        await event_store.execute(
            conn, job_id, commands.CompleteJob(worker_id="w", result=n), actor="w"
        )
    own = await factories.submit(
        event_store, conn, webhook=ev.JobWebhook(url="https://hooks.example.com/own")
    )
    await event_store.execute(conn, own, commands.CancelJob(reason="stop"), actor="bob")
    rows = await conn.fetch(
        "SELECT delivery_id FROM webhook_deliveries ORDER BY created_at, delivery_id"
    )
    ids = [r["delivery_id"] for r in rows]
    assert len(ids) == 5  # two jobs to two endpoints, and the cancelled job's own webhook
    later = event_store.clock() + timedelta(minutes=5)
    await _attempt(conn, event_store, ids[0], "retrying", 500, later)
    await _attempt(conn, event_store, ids[0], "delivered", 200)
    await _attempt(conn, event_store, ids[1], "retrying", None, later)
    await _attempt(conn, event_store, ids[2], "exhausted", 500)
    await webhooks.redeliver(conn, event_store, ids[2], actor="o")
    await _attempt(conn, event_store, ids[4], "delivered", 200)
    patch = webhooks.EndpointPatch(description="renamed")
    await webhooks.update(conn, event_store, first.endpoint_id, patch, actor="o", vet=_anywhere)
    await webhooks.rotate_secret(conn, event_store, first.endpoint_id, actor="o")
    await webhooks.delete(conn, event_store, second.endpoint_id, actor="o")
    return ids


async def test_the_webhook_tables_rebuild_from_their_events(
    conn: asyncpg.Connection, admin_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    ids = await _webhook_workload(conn, event_store)
    states = await conn.fetch(
        "SELECT status, attempts, tries FROM webhook_deliveries ORDER BY created_at, delivery_id"
    )
    assert [tuple(r) for r in states] == [
        ("delivered", 2, 2),
        ("pending", 1, 1),
        ("pending", 1, 0),  # redelivered after it was exhausted
        ("pending", 0, 0),
        ("delivered", 1, 1),
    ]
    assert await rebuild.verify(conn) == []

    endpoint = await conn.fetchval("SELECT endpoint_id FROM webhook_endpoints WHERE NOT deleted")
    own_job = await conn.fetchval("SELECT job_id FROM job_webhooks")
    await admin_conn.execute(
        "UPDATE webhook_deliveries SET status = 'delivered', attempts = 7,"
        " leased_by = 'sender-1', lease_until = now() WHERE delivery_id = $1",
        ids[1],
    )
    await admin_conn.execute(
        "UPDATE webhook_endpoints SET url = 'https://elsewhere.example.com' WHERE endpoint_id = $1",
        endpoint,
    )
    await admin_conn.execute("DELETE FROM job_webhooks")
    diffs = await rebuild.verify(conn)
    assert {(d.table, d.job_id) for d in diffs} == {
        ("webhook_deliveries", ids[1]),
        ("webhook_endpoints", endpoint),
        ("job_webhooks", own_job),
    }
    drifted = next(d for d in diffs if d.table == "webhook_deliveries")
    assert drifted.live is not None and drifted.rebuilt is not None
    assert (drifted.live["status"], drifted.live["attempts"]) == ("delivered", 7)
    assert (drifted.rebuilt["status"], drifted.rebuilt["attempts"]) == ("pending", 1)

    await rebuild.rebuild(admin_conn)
    assert await rebuild.verify(conn) == []
    leased = await conn.fetchrow("SELECT * FROM webhook_deliveries WHERE delivery_id = $1", ids[1])
    assert leased is not None and leased["leased_by"] == "sender-1"  # a lease is no event
    tables = {
        "webhook_endpoints": "SELECT * FROM webhook_endpoints ORDER BY endpoint_id",
        "job_webhooks": "SELECT * FROM job_webhooks ORDER BY job_id",
    }
    before = {t: [dict(r) for r in await conn.fetch(q)] for t, q in tables.items()}
    for emptying in ("DELETE FROM webhook_endpoints", "DELETE FROM job_webhooks"):
        await admin_conn.execute(emptying)
    await rebuild.rebuild(admin_conn)
    assert {t: [dict(r) for r in await conn.fetch(q)] for t, q in tables.items()} == before
