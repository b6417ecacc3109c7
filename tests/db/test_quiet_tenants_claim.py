"""The claim into a worker's reserve (sql/0079) takes only quiet tenants' jobs: a tenant
whose due jobs outnumber the reserve (a backlog) never gets a reserve slot, whether or
not its jobs are running, and a quiet tenant's `max_running` still holds. Room freed in
a restricted queue rings with its own payload, so it does not set off reserve claims."""

from __future__ import annotations

import uuid

import asyncpg

from ledger import acting, commands, queues, store, tenants, wire
from tests import factories
from workers import claims, listener


async def _submit(
    event_store: store.EventStore, conn: asyncpg.Connection, tenant: str, n: int
) -> list[uuid.UUID]:
    async with conn.transaction():
        await acting.act_in(conn, tenant)
        return await factories.submit_many(event_store, conn, n)


async def _claim(
    event_store: store.EventStore,
    conn: asyncpg.Connection,
    limit: int,
    quiet: int | None,
    tenant: str | None = None,
) -> list[str]:
    states = await factories.claim(event_store, conn, limit, quiet=quiet, tenant=tenant)
    return sorted(s.tenant for s in states)


async def test_a_tenant_with_a_backlog_never_gets_a_reserve_slot(
    conn: asyncpg.Connection, worker_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await _submit(event_store, conn, "big", 5)
    await _submit(event_store, conn, "small", 1)

    assert await _claim(event_store, worker_conn, 2, quiet=2) == ["small"]
    assert await _claim(event_store, worker_conn, 2, quiet=2) == []  # big: 5 due > 2
    # Nor between two of its claims: with some of its jobs running, the rest is a backlog still.
    assert await _claim(event_store, worker_conn, 2, quiet=None) == ["big", "big"]
    assert await _claim(event_store, worker_conn, 2, quiet=2) == []
    # Once what is left of it fits in the reserve, it is quiet too.
    assert await _claim(event_store, worker_conn, 1, quiet=None) == ["big"]
    assert await _claim(event_store, worker_conn, 2, quiet=2) == ["big", "big"]


async def test_a_quiet_tenants_burst_larger_than_the_reserve_waits_for_the_bulk_claim(
    conn: asyncpg.Connection, worker_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await _submit(event_store, conn, "small", 3)

    assert await _claim(event_store, worker_conn, 2, quiet=2) == []
    assert await _claim(event_store, worker_conn, 3, quiet=None) == ["small"] * 3


async def test_the_reserve_claim_for_a_named_tenant_takes_its_jobs_only_while_it_is_quiet(
    conn: asyncpg.Connection,
    worker_conn: asyncpg.Connection,
    admin_conn: asyncpg.Connection,
    event_store: store.EventStore,
) -> None:
    notified: list[str] = []
    await admin_conn.add_listener(listener.JOBS_CHANNEL, lambda *args: notified.append(args[3]))
    await _submit(event_store, conn, "big", 3)
    await _submit(event_store, conn, "small", 1)
    await _submit(event_store, conn, "other", 1)
    await admin_conn.execute("SELECT 1")  # deliver pending notifications
    assert notified == ["tenant:big", "tenant:small", "tenant:other"]  # the doorbell names them

    assert await _claim(event_store, worker_conn, 2, quiet=2, tenant="big") == []  # a backlog
    assert await _claim(event_store, worker_conn, 2, quiet=2, tenant="small") == ["small"]
    assert await _claim(event_store, worker_conn, 2, quiet=2, tenant="small") == []  # none due
    assert await _claim(event_store, worker_conn, 2, quiet=2) == ["other"]  # no name: any quiet


async def test_the_reserve_keeps_a_quiet_tenants_max_running(
    conn: asyncpg.Connection, worker_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await tenants.configure(conn, event_store, "small", {"max_running": 1}, actor="ops")
    await _submit(event_store, conn, "small", 1)
    assert await _claim(event_store, worker_conn, 2, quiet=2) == ["small"]

    await _submit(event_store, conn, "small", 1)
    assert await _claim(event_store, worker_conn, 2, quiet=2) == []  # its one slot is taken
    assert await _claim(event_store, worker_conn, 2, quiet=2, tenant="small") == []


async def test_room_freed_in_a_restricted_queue_rings_as_room_and_new_work_as_before(
    conn: asyncpg.Connection,
    worker_conn: asyncpg.Connection,
    admin_conn: asyncpg.Connection,
    event_store: store.EventStore,
) -> None:
    await queues.configure(conn, event_store, "lim", wire.QueueSettings(concurrency=1), actor="a")
    notified: list[str] = []
    await admin_conn.add_listener(listener.JOBS_CHANNEL, lambda *args: notified.append(args[3]))
    await factories.submit(event_store, conn, queue="lim")
    await factories.submit(event_store, conn, queue="lim")
    [running] = await claims.claim(
        worker_conn, event_store, worker_id="w", lease_seconds=30, types=["noop"], limit=5
    )
    await admin_conn.execute("SELECT 1")  # deliver pending notifications
    assert notified == ["tenant:default", "tenant:default"]  # each submission: new work

    await event_store.execute(
        conn, running.job_id, commands.CompleteJob(worker_id="w", result=None), actor="w"
    )
    await admin_conn.execute("SELECT 1")
    assert notified == ["tenant:default", "tenant:default", listener.ROOM_PAYLOAD]
