"""The claim shares workers fairly across tenants (sql/0070): each tenant's `max_running`
holds across claimers, slots follow `weight` under contention, a small tenant's job does
not wait behind a big tenant's backlog, and a lone tenant drains as before."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import msgspec
import pytest_asyncio

from ledger import acting, db, store, tenants
from tests import factories
from tests.conftest import Databases
from workers import claims


@pytest_asyncio.fixture(loop_scope="session")
async def other_worker_conn(dbs: Databases) -> AsyncIterator[asyncpg.Connection]:
    async with db.connect(dbs.app) as c:
        yield c


async def _submit(
    event_store: store.EventStore, conn: asyncpg.Connection, tenant: str, n: int
) -> list[uuid.UUID]:
    async with conn.transaction():
        await acting.act_in(conn, tenant)
        return await factories.submit_many(event_store, conn, n)


async def _claim(
    event_store: store.EventStore, conn: asyncpg.Connection, limit: int, worker: str = "w"
) -> list[tuple[str, uuid.UUID]]:
    states = await claims.claim(
        conn, event_store, worker_id=worker, lease_seconds=30, types=["noop"], limit=limit
    )
    return [(s.tenant, s.job_id) for s in states]


def _of(claimed: list[tuple[str, uuid.UUID]], tenant: str) -> int:
    return sum(1 for t, _ in claimed if t == tenant)


async def test_a_tenants_max_running_holds_across_concurrent_claimers(
    conn: asyncpg.Connection,
    worker_conn: asyncpg.Connection,
    other_worker_conn: asyncpg.Connection,
    event_store: store.EventStore,
) -> None:
    await tenants.configure(conn, event_store, "acme", {"max_running": 3}, actor="ops")
    await _submit(event_store, conn, "acme", 10)

    first, second = await asyncio.gather(
        _claim(event_store, worker_conn, 10, "w1"),
        _claim(event_store, other_worker_conn, 10, "w2"),
    )
    assert len(first) + len(second) == 3
    assert await _claim(event_store, worker_conn, 10) == []  # no room until one ends


async def test_a_claim_takes_no_more_than_the_tenants_room(
    conn: asyncpg.Connection, worker_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await tenants.configure(conn, event_store, "acme", {"max_running": 4}, actor="ops")
    await _submit(event_store, conn, "acme", 10)
    await _submit(event_store, conn, "default", 10)

    assert _of(await _claim(event_store, worker_conn, 3), "acme") <= 3
    claimed = await _claim(event_store, worker_conn, 20)
    running = await conn.fetchval(
        "SELECT n FROM job_counts_all() AS c (t, q, s, n) WHERE t = 'acme' AND s = 'processing'"
    )
    assert running == 4
    assert _of(claimed, "default") >= 10 - 3


async def test_a_small_tenants_job_is_claimed_before_a_big_tenants_backlog_drains(
    conn: asyncpg.Connection, worker_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await _submit(event_store, conn, "big", 500)
    [small] = await _submit(event_store, conn, "small", 1)

    claimed = await _claim(event_store, worker_conn, 10)
    assert ("small", small) in claimed
    assert _of(claimed, "big") == 9  # the rest of the slots still go to the backlog


async def test_weights_share_the_slots_under_contention(
    conn: asyncpg.Connection, worker_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await tenants.configure(conn, event_store, "heavy", {"weight": 3}, actor="ops")
    await _submit(event_store, conn, "light", 20)  # older: first in plain claim order
    await _submit(event_store, conn, "heavy", 20)

    claimed = await _claim(event_store, worker_conn, 8)
    assert (_of(claimed, "heavy"), _of(claimed, "light")) == (6, 2)
    claimed = await _claim(event_store, worker_conn, 8)
    assert (_of(claimed, "heavy"), _of(claimed, "light")) == (6, 2)


async def test_a_tenant_back_from_idle_gets_no_burst_of_credit(
    conn: asyncpg.Connection,
    worker_conn: asyncpg.Connection,
    admin_conn: asyncpg.Connection,
    event_store: store.EventStore,
) -> None:
    await _submit(event_store, conn, "a", 20)
    await _submit(event_store, conn, "b", 20)
    # b was served long ago, a ever since: b's old pass is far behind.
    await admin_conn.execute("INSERT INTO tenant_turns (tenant, pass) VALUES ('a', 100), ('b', 0)")

    claimed = await _claim(event_store, worker_conn, 8)
    assert (_of(claimed, "a"), _of(claimed, "b")) == (4, 4)


async def test_a_lone_tenant_drains_and_keeps_no_turns(
    conn: asyncpg.Connection,
    worker_conn: asyncpg.Connection,
    admin_conn: asyncpg.Connection,
    event_store: store.EventStore,
) -> None:
    ids = await _submit(event_store, conn, "default", 30)

    claimed = [job for _ in range(3) for _, job in await _claim(event_store, worker_conn, 10)]
    assert sorted(claimed) == sorted(ids)  # every one, none twice
    assert await admin_conn.fetchval("SELECT count(*) FROM tenant_turns") == 0


async def test_a_claim_records_its_tenants_settings_version(
    conn: asyncpg.Connection,
    worker_conn: asyncpg.Connection,
    admin_conn: asyncpg.Connection,
    event_store: store.EventStore,
) -> None:
    await tenants.configure(conn, event_store, "acme", {"max_running": 5}, actor="ops")
    await tenants.configure(conn, event_store, "acme", {"weight": 2}, actor="ops")
    [acme] = await _submit(event_store, conn, "acme", 1)
    [plain] = await _submit(event_store, conn, "default", 1)

    assert sorted(j for _, j in await _claim(event_store, worker_conn, 10)) == sorted([acme, plain])
    data = dict(
        await admin_conn.fetch(
            "SELECT job_id, data FROM events WHERE type = 'job.claimed.v1' AND job_id = ANY($1)",
            [acme, plain],
        )
    )
    assert msgspec.json.decode(data[acme])["tenant_version"] == 2
    assert "tenant_version" not in msgspec.json.decode(data[plain])  # default has no settings
