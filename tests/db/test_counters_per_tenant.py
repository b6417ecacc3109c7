"""The job counters are kept per tenant (sql/0064): a tenant's stats and queue counts
are its own, the operator's sums cover every tenant, and rebuild and verify work tenant
by tenant."""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec
import pytest

from ledger import acting, commands, migrations, queues, sqlfile, store, wire
from projections import queues as queue_view
from projections import rebuild, stats, status
from tests import factories, pg

Q = sqlfile.load("projections")
PER_TENANT = """
    SELECT tenant, queue, status, sum(n)::bigint AS n
    FROM (SELECT tenant, queue, status, n FROM job_counts
          UNION ALL
          SELECT tenant, queue, status, n FROM job_count_deltas) AS c
    GROUP BY tenant, queue, status
    HAVING sum(n) <> 0
    ORDER BY tenant, queue, status
"""


async def _in[T](
    conn: asyncpg.Connection, tenant: str | None, read: Callable[[], Awaitable[T]]
) -> T:
    """`read` in a transaction acting in `tenant` (None: one that names no tenant)."""
    async with conn.transaction():
        if tenant is not None:
            await acting.act_in(conn, tenant)
        return await read()


async def _submit_in(
    event_store: store.EventStore,
    conn: asyncpg.Connection,
    tenant: str,
    n: int,
    queue: str,
) -> list[uuid.UUID]:
    async with conn.transaction():
        await acting.act_in(conn, tenant)
        return await factories.submit_many(event_store, conn, n, queue=queue)


async def _two_tenants_and_default(
    conn: asyncpg.Connection, worker_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    """acme: 3 jobs in `mail`, one cancelled; beta: 2 in `video`; default: 1 in `default`."""
    acme = await _submit_in(event_store, conn, "acme", 3, "mail")
    await _submit_in(event_store, conn, "beta", 2, "video")
    await factories.submit(event_store, conn)
    # Decided against the job as acme reads it, appended naming no tenant (a worker's
    # way): counted in the job's own tenant.
    state = await _in(conn, "acme", lambda: event_store.load(conn, acme[0]))
    assert state is not None
    cancel = commands.decide(
        state, commands.CancelJob(reason="x"), job_id=acme[0], actor="bob", now=datetime.now(UTC)
    )
    await event_store.append(worker_conn, cancel, before={acme[0]: state})


async def test_each_tenant_reads_its_own_counts_and_the_operator_reads_every_tenants(
    conn: asyncpg.Connection, worker_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await _two_tenants_and_default(conn, worker_conn, event_store)
    now = datetime.now(UTC)

    def seen(overview: stats.Overview) -> tuple[dict[str, int], dict[str, int], int]:
        by_status = {s: n for s, n in overview.by_status.items() if n}
        by_queue = {q.queue: q.total for q in overview.by_queue}
        return by_status, by_queue, sum(m.submitted for m in overview.throughput)

    acme = await _in(conn, "acme", lambda: stats.overview(conn, now))
    beta = await _in(conn, "beta", lambda: stats.overview(conn, now))
    plain = await _in(conn, "default", lambda: stats.overview(conn, now))
    assert seen(acme) == ({"pending": 2, "cancelled": 1}, {"mail": 3}, 3)
    assert seen(beta) == ({"pending": 2}, {"video": 2}, 2)
    assert seen(plain) == ({"pending": 1}, {"default": 1}, 1)
    # No transaction: the tenant `conn`'s session names (default).
    assert seen(await stats.overview(conn, now)) == seen(plain)
    assert seen(await _in(conn, "nobody", lambda: stats.overview(conn, now))) == ({}, {}, 0)
    # Naming no tenant, a read sees no tenant's counts (row-level security, sql/0068).
    unnamed = await _in(worker_conn, None, lambda: stats.overview(worker_conn, now))
    assert seen(unnamed) == ({}, {}, 0)

    # The queues read model counts the tenant's jobs too.
    listed = await _in(conn, "acme", lambda: queue_view.list_all(conn))
    assert {q.name: q.counts["pending"] for q in listed.queues} == {"mail": 2}
    mail = await _in(conn, "acme", lambda: queue_view.get(conn, "mail"))
    assert (mail.counts["pending"], mail.counts["cancelled"]) == (2, 1)
    with pytest.raises(queues.UnknownQueue):
        await _in(conn, "beta", lambda: queue_view.get(conn, "mail"))

    # The operator's reads sum over every tenant, whichever the transaction acts in.
    # /health's depth: every tenant's runnable jobs.
    for reader, tenant in ((worker_conn, None), (conn, "acme"), (conn, "beta")):
        depth = await _in(reader, tenant, functools.partial(status.counts, reader))
        assert depth.queue_depth == 5
    # /metrics' queue depth gauge: every tenant's unfinished jobs by queue and status.
    unfinished = await _in(conn, "acme", lambda: conn.fetch(Q["job_counts_unfinished"]))
    assert {(r["queue"], r["status"]): r["jobs"] for r in unfinished} == {
        ("default", "pending"): 1,
        ("mail", "pending"): 2,
        ("video", "pending"): 2,
    }
    # /metrics' limits: every tenant's configured queues, each with its own tenant's jobs,
    # read whatever tenant the scrape's transaction acts in (queues per tenant: sql/0065).
    async with conn.transaction():
        await acting.act_in(conn, "beta")
        await queues.configure(
            conn, event_store, "video", wire.QueueSettings(concurrency=9), actor="o"
        )
    held = await _in(conn, "acme", lambda: queue_view.limits_now(conn))
    assert [(h.queue, h.runnable) for h in held] == [("video", 2)]


async def test_rebuild_gives_back_each_tenants_counters_and_verify_names_the_tenant(
    conn: asyncpg.Connection,
    worker_conn: asyncpg.Connection,
    admin_conn: asyncpg.Connection,
    event_store: store.EventStore,
) -> None:
    await _two_tenants_and_default(conn, worker_conn, event_store)
    # Every tenant's counters, read and verified by the owner (no row-level security).
    before = [tuple(r) for r in await admin_conn.fetch(PER_TENANT)]
    assert before == [
        ("acme", "mail", "cancelled", 1),
        ("acme", "mail", "pending", 2),
        ("beta", "video", "pending", 2),
        ("default", "default", "pending", 1),
    ]
    assert await rebuild.verify_counters(admin_conn, datetime.now(UTC)) == []

    # The owner moves one of beta's jobs into acme's counters: each tenant's total is
    # off by one, and the sum over tenants is not.
    await admin_conn.execute(
        "INSERT INTO job_count_deltas (tenant, queue, status, n)"
        " VALUES ('acme', 'video', 'pending', 1), ('beta', 'video', 'pending', -1)"
    )
    await admin_conn.execute(
        "INSERT INTO job_throughput_deltas (tenant, minute, submitted, completed, failed)"
        " VALUES ('beta', date_trunc('minute', now()), 1, 0, 0)"
    )
    diffs = await rebuild.verify_counters(admin_conn, datetime.now(UTC))
    assert [(d.tenant, d.key[0], d.key[1], d.key[2], d.counter, d.counted) for d in diffs][:2] == [
        ("acme", "jobs", "video", "pending", 1, 0),
        ("beta", "jobs", "video", "pending", 1, 2),
    ]
    assert [(d.tenant, d.key[0], d.key[2], d.counter - d.counted) for d in diffs[2:]] == [
        ("beta", "throughput", "submitted", 1)
    ]

    assert await rebuild.rebuild(admin_conn) == 6
    assert [tuple(r) for r in await admin_conn.fetch(PER_TENANT)] == before
    assert await rebuild.verify_counters(admin_conn, datetime.now(UTC)) == []
    acme = await _in(conn, "acme", lambda: stats.overview(conn, datetime.now(UTC)))
    assert sum(m.submitted for m in acme.throughput) == 3


async def _read_buffers(conn: asyncpg.Connection, sql: str, *args: object) -> int:
    """Shared buffers one read takes, by EXPLAIN (its nested statements included)."""
    plan = await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", *args)
    node = msgspec.json.decode(plan)[0]["Plan"]
    return int(node["Shared Hit Blocks"]) + int(node["Shared Read Blocks"])


async def test_a_tenants_counts_read_none_of_another_tenants_rows(
    conn: asyncpg.Connection, admin_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    """Busy tenants' counters (20 tenants with a day of minutes each, one with 2,000
    queues) are not read by another tenant's stats: its reads stay a handful of pages."""
    await _submit_in(event_store, conn, "small", 2, "mail")
    await admin_conn.execute(
        """
        INSERT INTO job_throughput (tenant, minute, submitted, completed, failed)
        SELECT 'big' || b, date_trunc('minute', now()) - make_interval(mins => m), 50, 40, 1
        FROM generate_series(1, 20) AS b, generate_series(0, 1439) AS m;
        INSERT INTO job_counts (tenant, queue, status, n)
        SELECT 'big', 'q' || q, s, 10
        FROM generate_series(1, 2000) AS q,
             unnest(ARRAY['pending', 'processing', 'completed']) AS s;
        ANALYZE job_counts, job_throughput;
        """
    )
    since = datetime.now(UTC).replace(second=0, microsecond=0)
    reads = {
        "counts": ("SELECT * FROM job_counts", ()),
        "throughput": ("SELECT * FROM job_throughput", ()),
    }
    # Read whole by the owner (no row-level security): the busy tenants' rows take this
    # many pages.
    whole = {k: await _read_buffers(admin_conn, sql, *a) for k, (sql, a) in reads.items()}
    assert min(whole.values()) > 40

    async def small_reads() -> dict[str, int]:
        return {
            "counts": await _read_buffers(conn, Q["job_counts_by_queue_status"]),
            "throughput": await _read_buffers(
                conn, Q["job_throughput_since"], since - timedelta(days=1)
            ),
        }

    small = await _in(conn, "small", small_reads)
    assert max(small.values()) < 10, small
    overview = await _in(conn, "small", lambda: stats.overview(conn, datetime.now(UTC)))
    assert overview.by_status["pending"] == 2
    assert sum(m.submitted for m in overview.throughput) == 2


@asynccontextmanager
async def _database_at(server_dsn: str, last: str) -> AsyncIterator[asyncpg.Connection]:
    """A fresh database migrated up to migration number `last` (included), as the owner."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    server = await asyncpg.connect(server_dsn)
    try:
        await server.execute(f'CREATE DATABASE "{name}"')
        owner = await asyncpg.connect(
            pg.with_database(server_dsn, name), server_settings={"timezone": "UTC"}
        )
        try:
            upto = [m for m in migrations.discover() if m.name[:4] <= last]
            await migrations.migrate(owner, upto)
            yield owner
        finally:
            await owner.close()
    finally:
        await server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await server.close()


async def test_the_migration_counts_jobs_stored_in_other_tenants_before_it_as_theirs(
    server_dsn: str, event_store: store.EventStore
) -> None:
    async with _database_at(server_dsn, "0063") as owner:
        await _submit_in(event_store, owner, "acme", 2, "mail")
        await factories.submit(event_store, owner)
        assert await migrations.migrate(owner) != []
        rows = [tuple(r) for r in await owner.fetch(PER_TENANT)]
        assert rows == [("acme", "mail", "pending", 2), ("default", "default", "pending", 1)]
        assert await rebuild.verify_counters(owner, datetime.now(UTC)) == []
