"""Tenants' settings change by events in their own tenant, and the append holds each
tenant's `max_queued` (sql/0069)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
import pytest_asyncio

from audit import chains
from ledger import acting, commands, db, errors, groupcommit, store, submission, tenants
from ledger import events as ev
from projections import feed, rebuild
from tests import factories
from tests.conftest import Databases
from tests.workers.conftest import eventually


@pytest_asyncio.fixture(loop_scope="session")
async def pool(dbs: Databases) -> AsyncIterator[asyncpg.Pool]:
    p = await db.create_pool(dbs.app, max_size=6)
    try:
        yield p
    finally:
        await p.close()


async def _submit_in(
    event_store: store.EventStore, conn: asyncpg.Connection, tenant: str, count: int = 1
) -> list[uuid.UUID]:
    async with conn.transaction():
        await acting.act_in(conn, tenant)
        return await factories.submit_many(event_store, conn, count)


def _submissions(count: int) -> list[ev.JobEvent]:
    now = datetime.now(UTC)
    decided: list[ev.JobEvent] = []
    for _ in range(count):
        decided += commands.decide(
            None, factories.submit_command(), job_id=uuid.uuid4(), actor="http", now=now
        )
    return decided


async def _stored(conn: asyncpg.Connection) -> tuple[int, int]:
    jobs = await conn.fetchval("SELECT count(*) FROM jobs")
    events = await conn.fetchval("SELECT count(*) FROM events WHERE type LIKE 'job.%'")
    return jobs, events


async def test_settings_change_by_events_in_the_tenants_own_feed(
    conn: asyncpg.Connection, admin_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    first = await tenants.configure(conn, event_store, "acme", {"max_queued": 10}, actor="ops")
    second = await tenants.configure(
        conn, event_store, "acme", {"max_running": 3, "weight": 2}, actor="root"
    )
    same = await tenants.configure(conn, event_store, "acme", {"weight": 2}, actor="root")

    assert (first.version, first.max_queued, first.max_running, first.weight) == (1, 10, None, 1)
    assert (second.version, second.max_queued, second.max_running, second.weight) == (2, 10, 3, 2)
    assert same == second  # nothing changed: nothing appended
    # Every tenant's events (the owner bypasses row-level security): acme's only.
    rows = await admin_conn.fetch(
        "SELECT * FROM events WHERE type LIKE 'tenant.%' ORDER BY version"
    )
    assert [(r["type"], r["actor"], r["tenant"], r["version"]) for r in rows] == [
        ("tenant.configured.v1", "ops", "acme", 1),
        ("tenant.configured.v1", "root", "acme", 2),
    ]
    assert {r["job_id"] for r in rows} == {tenants.stream_id("acme")}
    assert rows[1]["prev_hash"] == rows[0]["hash"]
    assert (await chains.verify(admin_conn)).ok
    # In acme's feed, and in nobody else's.
    async with conn.transaction():
        await acting.act_in(conn, "acme")
        page = await feed.read(conn)
        assert [r.event for r in page.events] == [
            ev.TenantConfigured(
                job_id=tenants.stream_id("acme"),
                version=v,
                actor=actor,
                occurred_at=r["occurred_at"],
                tenant="acme",
                max_queued=10,
                max_running=running,
                weight=weight,
            )
            for (v, actor, running, weight), r in zip(
                [(1, "ops", None, 1), (2, "root", 3, 2)], rows, strict=True
            )
        ]
        assert await tenants.current(conn) == second
    async with conn.transaction():
        await acting.act_in(conn, "beta")
        assert (await feed.read(conn)).events == []
    # The projection is the fold of the events, in SQL and in Python (every tenant's).
    assert await rebuild.verify(admin_conn) == []
    assert await tenants.get(conn, "acme") == second
    assert await tenants.get(conn, "beta") == tenants.TenantState(tenant="beta", version=0)


async def test_settings_are_checked_and_a_race_is_a_conflict(
    conn: asyncpg.Connection, admin_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    with pytest.raises(errors.InvalidInput):
        await tenants.configure(conn, event_store, "acme", {"weight": 0}, actor="ops")
    with pytest.raises(errors.InvalidInput):
        await tenants.configure(conn, event_store, "acme", {"max_queued": -1}, actor="ops")
    with pytest.raises(errors.InvalidInput):
        await tenants.configure(conn, event_store, "acme", {"quota": 1}, actor="ops")
    with pytest.raises(errors.InvalidTenant):
        await tenants.configure(conn, event_store, "no spaces", {"weight": 2}, actor="ops")
    await tenants.configure(conn, event_store, "acme", {"weight": 2}, actor="ops")
    stale = ev.TenantConfigured(
        job_id=tenants.stream_id("acme"),
        version=1,
        actor="late",
        occurred_at=datetime.now(UTC),
        tenant="acme",
        max_queued=None,
        max_running=None,
        weight=5,
    )
    async with conn.transaction():
        await acting.act_in(conn, "acme")
        with pytest.raises(errors.VersionConflict):
            await event_store.append(conn, [stale])
    assert await admin_conn.fetchval("SELECT count(*) FROM events") == 1


async def test_the_app_role_in_a_tenant_sees_only_that_tenants_row(
    conn: asyncpg.Connection, worker_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await tenants.configure(conn, event_store, "acme", {"max_queued": 1}, actor="ops")
    await tenants.configure(conn, event_store, "beta", {"max_queued": 2}, actor="ops")

    async with conn.transaction():
        await acting.act_in(conn, "acme")
        assert [r["tenant"] for r in await conn.fetch("SELECT * FROM tenants")] == ["acme"]
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("UPDATE tenants SET max_queued = NULL")
    async with conn.transaction():
        await acting.act_in(conn, "beta")
        assert [r["tenant"] for r in await conn.fetch("SELECT * FROM tenants")] == ["beta"]
    # Naming no tenant, the app role sees no row; the operator's function lists them all.
    assert await worker_conn.fetch("SELECT * FROM tenants") == []
    assert [t.tenant for t in await tenants.all_tenants(worker_conn)] == ["acme", "beta"]


async def test_a_submission_past_max_queued_is_refused_and_stores_nothing(
    conn: asyncpg.Connection, admin_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await tenants.configure(conn, event_store, "acme", {"max_queued": 3}, actor="ops")
    jobs = await _submit_in(event_store, conn, "acme", 2)
    before = await _stored(admin_conn)

    # A batch of two with room for one: all or nothing.
    with pytest.raises(errors.TenantQuotaExceeded) as refused:
        await _submit_in(event_store, conn, "acme", 2)
    assert (refused.value.tenant, refused.value.max_queued) == ("acme", 3)
    assert (refused.value.queued, refused.value.submitted) == (2, 2)
    assert await _stored(admin_conn) == before
    await _submit_in(event_store, conn, "acme", 1)
    with pytest.raises(errors.TenantQuotaExceeded):
        await _submit_in(event_store, conn, "acme", 1)

    # Another tenant, and default, are not held by acme's quota.
    await _submit_in(event_store, conn, "beta", 5)
    await factories.submit_many(event_store, conn, 5)
    # A job no longer queued (cancelled here; running too) makes room.
    async with conn.transaction():
        await acting.act_in(conn, "acme")
        await event_store.execute(conn, jobs[0], commands.CancelJob(), actor="ops")
    await _submit_in(event_store, conn, "acme", 1)
    counted = await admin_conn.fetch(
        "SELECT tenant, count(*) AS n FROM jobs GROUP BY tenant ORDER BY tenant"
    )
    assert [(r["tenant"], r["n"]) for r in counted] == [("acme", 4), ("beta", 5), ("default", 5)]


async def test_a_python_submitters_repeat_past_the_quota_answers_the_stored_job(
    conn: asyncpg.Connection, admin_conn: asyncpg.Connection
) -> None:
    submitter = submission.Submitter()
    await tenants.configure(conn, submitter.store, "acme", {"max_queued": 1}, actor="ops")

    async def submit(key: str) -> submission.Submitted:
        async with conn.transaction():
            await acting.act_in(conn, "acme")
            wanted = submission.Submission.checked(
                "email_send", {"to": ["ada@example.com"], "subject": "hi", "body": "hello"}
            )
            return await submitter.place(conn, [wanted], idempotency_key=key, actor="alice")

    first = await submit("order-1")
    again = await submit("order-1")
    assert again.created is False and again.jobs == first.jobs
    with pytest.raises(errors.TenantQuotaExceeded):
        await submit("order-2")
    assert await admin_conn.fetchval("SELECT count(*) FROM jobs") == 1


async def test_a_group_commit_flush_with_one_request_over_quota_admits_the_others(
    pool: asyncpg.Pool,
    conn: asyncpg.Connection,
    admin_conn: asyncpg.Connection,
    event_store: store.EventStore,
) -> None:
    await tenants.configure(conn, event_store, "acme", {"max_queued": 3}, actor="ops")
    committer = groupcommit.GroupCommit(pool, event_store)
    requests = [_submissions(1), _submissions(5), _submissions(1), _submissions(1)]

    outcomes = await asyncio.gather(
        *(committer.append(r, tenant="acme") for r in requests), return_exceptions=True
    )

    assert isinstance(outcomes[1], errors.TenantQuotaExceeded)
    for request, outcome in zip(requests, outcomes, strict=True):
        if request is not requests[1]:
            assert isinstance(outcome, list)
            assert [r.event.job_id for r in outcome] == [e.job_id for e in request]
    stored = {r["job_id"] for r in await admin_conn.fetch("SELECT job_id FROM jobs")}
    assert stored == {requests[i][0].job_id for i in (0, 2, 3)}


async def test_concurrent_submitters_cannot_together_pass_max_queued(
    dbs: Databases,
    conn: asyncpg.Connection,
    admin_conn: asyncpg.Connection,
    event_store: store.EventStore,
) -> None:
    await tenants.configure(conn, event_store, "acme", {"max_queued": 1}, actor="ops")
    first = await asyncpg.connect(dbs.app)
    second = await asyncpg.connect(dbs.app)
    try:
        held = first.transaction()
        await held.start()
        await acting.act_in(first, "acme")
        await event_store.append(first, _submissions(1))  # not committed yet

        async def other() -> None:
            async with second.transaction():
                await acting.act_in(second, "acme")
                await event_store.append(second, _submissions(1))

        racing = asyncio.create_task(other())

        async def waiting() -> bool:
            waits = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'",
                second.get_server_pid(),
            )
            return bool(waits)

        await eventually(waiting, within=10)
        await held.commit()
        with pytest.raises(errors.TenantQuotaExceeded):
            await asyncio.wait_for(racing, timeout=10)
    finally:
        await first.close()
        await second.close()
    assert await admin_conn.fetchval("SELECT count(*) FROM jobs") == 1


async def test_a_racing_repeat_of_a_keyed_submission_at_the_quota_answers_the_stored_job(
    dbs: Databases, conn: asyncpg.Connection, admin_conn: asyncpg.Connection
) -> None:
    submitter = submission.Submitter()
    await tenants.configure(conn, submitter.store, "acme", {"max_queued": 1}, actor="ops")
    wanted = submission.Submission.checked(
        "email_send", {"to": ["ada@example.com"], "subject": "hi", "body": "hello"}
    )
    first = await asyncpg.connect(dbs.app)
    second = await asyncpg.connect(dbs.app)
    try:
        held = first.transaction()
        await held.start()
        await acting.act_in(first, "acme")
        stored = await submitter.place(first, [wanted], idempotency_key="k", actor="alice")

        async def repeat() -> submission.Submitted:
            async with second.transaction():
                await acting.act_in(second, "acme")
                return await submitter.place(second, [wanted], idempotency_key="k", actor="alice")

        racing = asyncio.create_task(repeat())

        async def waiting() -> bool:
            waits = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'",
                second.get_server_pid(),
            )
            return bool(waits)

        await eventually(waiting, within=10)  # the repeat found no job yet: it appends
        await held.commit()
        again = await asyncio.wait_for(racing, timeout=10)
    finally:
        await first.close()
        await second.close()
    assert again.created is False and again.jobs == stored.jobs
    assert await admin_conn.fetchval("SELECT count(*) FROM jobs") == 1
