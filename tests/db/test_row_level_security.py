"""Tenants are isolated by PostgreSQL itself (sql/0068): row-level security, FORCEd, on
every table holding a tenant's data. These tests connect as the application's role, as
the service does, and check what it can see and write; the superuser that owns the
tables bypasses row security and is used only to look behind it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import msgspec
import pytest

from audit import checkpoints
from ledger import (
    acting,
    commands,
    errors,
    jobtypes,
    queues,
    schedules,
    store,
    submission,
    tenants,
    webhooks,
    wire,
)
from ledger import events as ev
from tests import factories, ledgers
from workers import claims

# Tables with no tenant column: what each holds, and why the application may see it.
GLOBAL = {
    "schema_migrations": "the migrations applied (no tenant data)",
    "worker_processes": "worker hosts, pids and slots (no tenant data)",
}
# Tables the application's role has no privilege on: only ledger_dispatch functions.
DISPATCH_ONLY = {"job_leases"}

TABLES = """
SELECT c.relname AS name, c.relrowsecurity AS enabled, c.relforcerowsecurity AS forced,
       EXISTS (SELECT FROM pg_attribute AS a
               WHERE a.attrelid = c.oid AND a.attname = 'tenant' AND NOT a.attisdropped)
           AS has_tenant
FROM pg_class AS c
WHERE c.relnamespace = 'public'::regnamespace
  AND c.relkind IN ('r', 'p')
ORDER BY c.relname
"""


async def _tenant_tables(admin: asyncpg.Connection) -> list[str]:
    return [r["name"] for r in await admin.fetch(TABLES) if r["has_tenant"]]


async def _in(conn: asyncpg.Connection, tenant: str) -> None:
    await acting.act_in(conn, tenant)


async def _run_in(conn: asyncpg.Connection, tenant: str, statement: str) -> None:
    """`statement` in a transaction acting in `tenant`."""
    async with conn.transaction():
        await _in(conn, tenant)
        await conn.execute(statement)


async def _populate(
    conn: asyncpg.Connection,
    worker: asyncpg.Connection,
    event_store: store.EventStore,
    tenant: str,
    tmp_path: Path,
) -> uuid.UUID:
    """Rows of `tenant` in every tenant table: jobs and events, a limited round-robin
    queue with claims (buckets, turns), counters, tenant settings, a checkpoint, its
    tree and an integrated head, a webhook endpoint (its secret) and deliveries."""
    limited = wire.QueueSettings(
        fairness="round_robin",
        rate_limit=wire.RateLimitIn(limit=1000, period_seconds=1, burst=1000),
    )
    async with conn.transaction():
        await _in(conn, tenant)
        await queues.configure(conn, event_store, "q", limited, actor=f"admin@{tenant}")
        job = await factories.submit(event_store, conn, queue="q", concurrency_key="k")
        await factories.submit(event_store, conn)
        # A workflow job waiting for `job` (workflows, workflow_jobs, job_dependencies).
        waiting = commands.SubmitJob(
            job_type="noop",
            payload={},
            workflow_id=uuid.uuid4(),
            name="after",
            depends_on=[job],
        )
        await event_store.append(
            conn,
            commands.decide(
                None, waiting, job_id=uuid.uuid4(), actor="app", now=event_store.clock()
            ),
        )
    async with conn.transaction():
        await _in(conn, tenant)
        await webhooks.create(
            conn,
            event_store,
            webhooks.EndpointIn(url="https://example.com/hook", events=["job.cancelled"]),
            actor="ops",
            vet=_any_url,
        )
        hooked = await factories.submit(
            event_store, conn, webhook=ev.JobWebhook(url="https://example.com/job")
        )
        await event_store.execute(conn, hooked, commands.CancelJob(), actor="ops")
    await tenants.configure(conn, event_store, tenant, {"max_queued": 1000}, actor="ops")
    # Every due job claimed: the claim shares its slots across tenants (sql/0070), so
    # one slot could go to another tenant's job, leaving this tenant's queue unclaimed.
    await claims.claim(
        worker, event_store, worker_id="w", lease_seconds=30, types=["noop"], limit=100
    )
    async with conn.transaction():
        await _in(conn, tenant)
        await ledgers.bulk_events(conn, 70)  # past a stored subtree (64 leaves) and mark
    signer = ledgers.signer(tmp_path)
    await checkpoints.create(conn, signer, tenant=tenant)
    async with conn.transaction():
        await _in(conn, tenant)
        await factories.submit(event_store, conn)
    assert await checkpoints.integrate(conn, signer, tenant=tenant) is not None
    # A schedule (sql/0073) and one recorded slot (schedules, schedule_slots).
    registry = jobtypes.Registry()
    jobtypes.job_type("noop", dict[str, object], registry=registry)(_noop)
    scheduled = schedules.Schedules(submission.Submitter(registry, event_store))
    body = msgspec.convert(
        {
            "id": "s",
            "cron": "* * * * * *",
            "start_at": "2026-01-01T00:00:00Z",
            "job": {"type": "noop", "payload": {}},
        },
        schedules.ScheduleIn,
    )
    async with conn.transaction():
        await _in(conn, tenant)
        await scheduled.create(conn, body, actor="ops")
    await scheduled.record_due(conn, tenant, "s", datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=UTC))
    return job


async def _noop(payload: dict[str, object], ctx: object) -> None:
    return None


async def _any_url(url: str) -> None:
    """No SSRF check: these endpoints are never sent to."""


async def test_every_table_holding_tenant_data_is_isolated_or_named_global(
    admin_conn: asyncpg.Connection, worker_conn: asyncpg.Connection
) -> None:
    for table in await admin_conn.fetch(TABLES):
        name = table["name"]
        if table["has_tenant"]:
            assert (table["enabled"], table["forced"]) == (True, True), name
            policies = await admin_conn.fetch(
                "SELECT roles::text[] AS roles, qual, with_check FROM pg_policies "
                "WHERE tablename = $1 AND 'ledger_app' = ANY(roles)",
                name,
            )
            assert [(p["qual"], p["with_check"]) for p in policies] == [
                ("(tenant = ledger_tenant_named())", "(tenant = ledger_tenant_named())")
            ], name
        elif name in DISPATCH_ONLY:
            for privilege in ("SELECT", "INSERT", "UPDATE", "DELETE"):
                assert not await worker_conn.fetchval(
                    "SELECT has_table_privilege($1, $2)", name, privilege
                ), (name, privilege)
        else:
            assert name in GLOBAL, f"{name}: no tenant column, not isolated, not listed"


async def test_the_app_role_in_a_tenant_sees_none_of_anothers_rows_and_without_one_sees_nothing(
    conn: asyncpg.Connection,
    worker_conn: asyncpg.Connection,
    admin_conn: asyncpg.Connection,
    event_store: store.EventStore,
    tmp_path: Path,
) -> None:
    await _populate(conn, worker_conn, event_store, "acme", tmp_path)
    await _populate(conn, worker_conn, event_store, "beta", tmp_path)
    await admin_conn.execute("SELECT job_counters_fold()")  # counters folded, and deltas:
    for tenant in ("acme", "beta"):
        async with conn.transaction():
            await _in(conn, tenant)
            await factories.submit(event_store, conn)
    for table in await _tenant_tables(admin_conn):
        behind = await admin_conn.fetch(
            f'SELECT tenant, count(*) AS n FROM "{table}" GROUP BY tenant'  # noqa: S608
        )
        assert {r["tenant"] for r in behind} >= {"acme", "beta"}, table
        seen = f'SELECT tenant, count(*) AS n FROM "{table}" GROUP BY tenant'  # noqa: S608
        async with worker_conn.transaction():
            await _in(worker_conn, "acme")
            in_acme = {r["tenant"]: r["n"] for r in await worker_conn.fetch(seen)}
        assert set(in_acme) == {"acme"}, table
        assert in_acme["acme"] == next(r["n"] for r in behind if r["tenant"] == "acme"), table
        assert await worker_conn.fetch(seen) == [], table


async def test_the_app_role_in_a_tenant_writes_nothing_for_another(
    conn: asyncpg.Connection,
    worker_conn: asyncpg.Connection,
    admin_conn: asyncpg.Connection,
    event_store: store.EventStore,
    tmp_path: Path,
) -> None:
    beta_job = await _populate(conn, worker_conn, event_store, "beta", tmp_path)
    await _populate(conn, worker_conn, event_store, "acme", tmp_path)
    before = await admin_conn.fetchval("SELECT count(*) FROM audit_tree_heads")

    # What the role may insert (the audit tables), it may not insert for another tenant.
    for statement in (
        "INSERT INTO audit_tree_nodes (tenant, level, index, hash) "
        "VALUES ('beta', 9, 9, sha256(''::bytea))",
        "INSERT INTO audit_tree_marks (tenant, leaf_index, txid, position) "
        "VALUES ('beta', 992, 1, 1)",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            await _run_in(worker_conn, "acme", statement)
    # What it may update or delete, it finds none of another tenant's.
    async with worker_conn.transaction():
        await _in(worker_conn, "acme")
        assert await worker_conn.execute("DELETE FROM audit_tree_heads WHERE tenant = 'beta'") == (
            "DELETE 0"
        )
        assert await worker_conn.execute(
            "UPDATE audit_tree_heads SET tree_size = 0 WHERE tenant = 'beta'"
        ) == ("UPDATE 0")
    assert await admin_conn.fetchval("SELECT count(*) FROM audit_tree_heads") == before
    # The projections and the queue tables it may not write at all.
    for statement in (
        "DELETE FROM jobs",
        "UPDATE queues SET paused = true",
        "DELETE FROM queue_key_turns",
        "DELETE FROM queue_buckets",
        "INSERT INTO events (job_id) VALUES (gen_random_uuid())",
        "DELETE FROM job_leases",
        "DELETE FROM job_dependencies",
        "UPDATE workflow_jobs SET name = 'x'",
        "DELETE FROM workflows",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await _run_in(worker_conn, "acme", statement)
    # An event for another tenant's job is refused, as for a job that does not exist.
    async with worker_conn.transaction():
        await _in(worker_conn, "acme")
        with pytest.raises(errors.UnknownJob):
            await event_store.execute(worker_conn, beta_job, commands.CancelJob(), actor="x")


async def test_the_dispatch_role_reads_no_event_and_changes_no_job(
    admin_conn: asyncpg.Connection, conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    async with conn.transaction():
        await _in(conn, "acme")
        await factories.submit(event_store, conn)
    async with admin_conn.transaction():
        await admin_conn.execute("SET LOCAL ROLE ledger_dispatch")
        assert await admin_conn.fetchval("SELECT count(DISTINCT tenant) FROM events") == 1
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await admin_conn.fetch("SELECT data FROM events")
    async with admin_conn.transaction():
        await admin_conn.execute("SET LOCAL ROLE ledger_dispatch")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            await admin_conn.execute("UPDATE jobs SET status = 'cancelled'")
    assert await admin_conn.fetchval("SELECT status FROM jobs") == "pending"


async def test_workers_claim_and_record_every_tenants_jobs_acting_in_none(
    worker_conn: asyncpg.Connection, conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    ids = {}
    for tenant in ("acme", "beta"):
        async with conn.transaction():
            await _in(conn, tenant)
            ids[tenant] = await factories.submit(event_store, conn)
    claimed = await claims.claim(
        worker_conn, event_store, worker_id="w", lease_seconds=30, types=["noop"], limit=10
    )
    assert {s.job_id for s in claimed} == set(ids.values())
    assert {s.tenant for s in claimed} == {"acme", "beta"}
