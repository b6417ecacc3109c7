"""Every job and event belongs to a tenant, decided by the database (sql/0063)."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from audit import chains
from ledger import acting, commands, errors, jobtypes, store, submission
from ledger import events as ev
from tests import factories
from workers import claims


async def _submit_in(
    event_store: store.EventStore, conn: asyncpg.Connection, tenant: str, **fields: object
) -> uuid.UUID:
    async with conn.transaction():
        await acting.act_in(conn, tenant)
        return await factories.submit(event_store, conn, **fields)


async def test_a_job_and_its_events_take_the_tenant_its_submission_acted_in(
    conn: asyncpg.Connection,
    worker_conn: asyncpg.Connection,
    admin_conn: asyncpg.Connection,
    event_store: store.EventStore,
) -> None:
    acme = await _submit_in(event_store, conn, "acme")
    plain = await factories.submit(event_store, conn)
    # A worker names no tenant: the claim is stored in each job's own tenant.
    claimed = await claims.claim(
        worker_conn, event_store, worker_id="w", lease_seconds=30, types=["noop"], limit=10
    )
    assert {s.job_id for s in claimed} == {acme, plain}
    rows = await admin_conn.fetch(
        "SELECT job_id, version, tenant FROM events ORDER BY job_id, version"
    )
    assert {(r["job_id"], r["version"]): r["tenant"] for r in rows} == {
        (acme, 1): "acme",
        (acme, 2): "acme",
        (plain, 1): "default",
        (plain, 2): "default",
    }
    jobs = dict(await admin_conn.fetch("SELECT job_id, tenant FROM jobs"))
    assert jobs == {acme: "acme", plain: "default"}
    async with conn.transaction():
        await acting.act_in(conn, "acme")
        loaded = await event_store.load(conn, acme)
    assert loaded is not None and loaded.tenant == "acme"
    assert (await chains.verify(admin_conn)).ok  # every tenant's chains (the owner's view)


async def test_a_transaction_acting_in_one_tenant_cannot_append_to_another_tenants_job(
    conn: asyncpg.Connection, admin_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    acme = await _submit_in(event_store, conn, "acme")
    state = await event_store.load(admin_conn, acme)
    assert state is not None
    cancel = commands.decide(
        state, commands.CancelJob(), job_id=acme, actor="mallory", now=datetime.now(UTC)
    )
    async with conn.transaction():
        await acting.act_in(conn, "beta")
        with pytest.raises(errors.VersionConflict):
            await event_store.append(conn, cancel, before={acme: state})
    assert await admin_conn.fetchval("SELECT count(*) FROM events WHERE job_id = $1", acme) == 1
    async with conn.transaction():
        await acting.act_in(conn, "acme")
        await event_store.append(conn, cancel, before={acme: state})
    assert await admin_conn.fetchval("SELECT status FROM jobs WHERE job_id = $1", acme) == (
        "cancelled"
    )


async def test_the_hash_covers_the_tenant_and_the_default_tenants_bytes_are_unchanged(
    conn: asyncpg.Connection, admin_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    acme = await _submit_in(event_store, conn, "acme")
    plain = await factories.submit(event_store, conn)
    for job_id, tenant in ((acme, "acme"), (plain, "default")):
        row = await admin_conn.fetchrow("SELECT * FROM events WHERE job_id = $1", job_id)
        fields = {
            "type": row["type"],
            "job_id": job_id,
            "version": 1,
            "actor": row["actor"],
            "occurred_at": row["occurred_at"],
            "data": row["data"],
        }
        canonical = ev.canonical_bytes(**fields, tenant=tenant)
        assert hashlib.sha256(ev.GENESIS_HASH + canonical).digest() == bytes(row["hash"])
        untenanted = ev.canonical_bytes(**fields)  # the form of events stored before 0063
        assert (canonical == untenanted) == (tenant == "default")
        assert canonical.startswith(b"4:acme\n" if tenant == "acme" else b"job.submitted.v1\n")
    # Moving an event to another tenant, even as superuser, breaks its chain.
    await admin_conn.execute("SET session_replication_role = replica")
    await admin_conn.execute("UPDATE events SET tenant = 'beta' WHERE job_id = $1", acme)
    report = await chains.verify(admin_conn)
    assert [(b.job_id, b.version) for b in report.broken] == [(acme, 1)]


async def test_the_database_and_python_agree_on_a_tenants_canonical_bytes(
    conn: asyncpg.Connection,
) -> None:
    when = datetime(2026, 11, 30, 12, 0, 0, 1, tzinfo=UTC)
    for tenant in ("default", "a", "acme:eu-1.prod", "9" * 128):
        row = await conn.fetchrow(
            "SELECT event_canonical($1, 'job.submitted.v1', $2, 3, 'x:y', $3, '{\"a\": 1}') AS c",
            tenant,
            uuid.UUID(int=1),
            when,
        )
        python = ev.canonical_bytes(
            type="job.submitted.v1",
            job_id=uuid.UUID(int=1),
            version=3,
            actor="x:y",
            occurred_at=when,
            data='{"a": 1}',
            tenant=tenant,
        )
        assert bytes(row["c"]) == python


async def test_one_idempotency_key_in_two_tenants_names_two_jobs(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    first = await _submit_in(event_store, conn, "acme", idempotency_key="order-1")
    second = await _submit_in(event_store, conn, "beta", idempotency_key="order-1")
    assert first != second
    with pytest.raises(errors.IdempotencyKeyTaken):
        await _submit_in(event_store, conn, "acme", idempotency_key="order-1")


async def test_a_tenant_id_that_breaks_the_rule_is_refused_before_the_database(
    conn: asyncpg.Connection,
) -> None:
    async with conn.transaction():
        with pytest.raises(errors.InvalidTenant):
            await acting.act_in(conn, "no spaces")


async def test_the_submission_api_finds_an_idempotency_key_only_in_its_own_tenant(
    conn: asyncpg.Connection, admin_conn: asyncpg.Connection
) -> None:
    registry = jobtypes.Registry()

    async def noop(payload: dict[str, object], ctx: jobtypes.JobContext) -> None:
        return None

    jobtypes.job_type("noop", dict[str, object], registry=registry)(noop)
    submitter = submission.Submitter(registry)

    async def submit_in(tenant: str) -> submission.Job:
        async with conn.transaction():
            await acting.act_in(conn, tenant)
            return await submitter.submit(
                conn, "noop", {}, idempotency_key="order-1", actor="alice"
            )

    acme = await submit_in("acme")
    beta = await submit_in("beta")
    assert acme.job_id != beta.job_id
    assert (await submit_in("acme")).job_id == acme.job_id  # a repeat within acme
    tenants = dict(await admin_conn.fetch("SELECT job_id, tenant FROM jobs"))
    assert tenants == {acme.job_id: "acme", beta.job_id: "beta"}
