"""Queues are per tenant (sql/0065): one name in two tenants is two queues, two streams,
two settings, and a job is held only by its own tenant's queue of its name."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import msgspec

from audit import chains
from ledger import acting, queues, store, submission, wire
from ledger import events as ev
from projections import queues as queue_view
from projections import rebuild
from tests import factories
from workers import claims


async def _in[T](conn: asyncpg.Connection, tenant: str, act: Callable[[], Awaitable[T]]) -> T:
    """`act` in a transaction acting in `tenant`."""
    async with conn.transaction():
        await acting.act_in(conn, tenant)
        return await act()


async def _submit(
    event_store: store.EventStore, conn: asyncpg.Connection, tenant: str, n: int, **fields: object
) -> list[uuid.UUID]:
    async def submit() -> list[uuid.UUID]:
        return [await factories.submit(event_store, conn, **fields) for _ in range(n)]

    return await _in(conn, tenant, submit)


async def _configure(
    event_store: store.EventStore,
    conn: asyncpg.Connection,
    tenant: str,
    name: str,
    settings: wire.QueueSettings,
) -> queues.QueueState:
    return await _in(
        conn,
        tenant,
        lambda: queues.configure(conn, event_store, name, settings, actor=f"admin@{tenant}"),
    )


async def _claim(
    event_store: store.EventStore, conn: asyncpg.Connection, limit: int
) -> list[uuid.UUID]:
    # A worker names no tenant: it claims every tenant's jobs.
    states = await claims.claim(
        conn, event_store, worker_id="w", lease_seconds=30, types=["noop"], limit=limit
    )
    return [s.job_id for s in states]


async def test_one_queue_name_in_two_tenants_is_two_streams_with_two_settings(
    conn: asyncpg.Connection, admin_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    acme = await _configure(event_store, conn, "acme", "mail", wire.QueueSettings(concurrency=1))
    beta = await _configure(event_store, conn, "beta", "mail", wire.QueueSettings(concurrency=5))
    plain = await queues.configure(
        conn, event_store, "mail", wire.QueueSettings(concurrency=9), actor="admin"
    )
    assert (acme.version, acme.concurrency) == (1, 1)
    assert (beta.version, beta.concurrency) == (1, 5)
    assert (plain.version, plain.concurrency) == (1, 9)
    # Default's stream id is the one it had before tenants; the others differ.
    ids = {t: queues.stream_id("mail", t) for t in ("default", "acme", "beta")}
    assert ids["default"] == queues.stream_id("mail") == uuid.uuid5(queues.NAMESPACE, "mail")
    assert len(set(ids.values())) == 3
    # Every tenant's rows and events (the owner bypasses row-level security).
    rows = await admin_conn.fetch(
        "SELECT tenant, stream_id, concurrency FROM queues WHERE name = 'mail'"
    )
    assert {(r["tenant"], r["stream_id"], r["concurrency"]) for r in rows} == {
        ("default", ids["default"], 9),
        ("acme", ids["acme"], 1),
        ("beta", ids["beta"], 5),
    }
    events = await admin_conn.fetch("SELECT tenant, job_id FROM events WHERE type LIKE 'queue.%'")
    assert {(r["tenant"], r["job_id"]) for r in events} == {(t, i) for t, i in ids.items()}

    # Each tenant reads and changes its own: acme's pause is acme's version 2 only.
    paused = await _in(conn, "acme", lambda: queues.pause(conn, event_store, "mail", actor="ops"))
    assert (paused.version, paused.paused, paused.concurrency) == (2, True, 1)
    assert await _in(conn, "beta", lambda: queues.current(conn, "mail")) == beta
    assert await queues.current(conn, "mail") == plain
    assert (await chains.verify(admin_conn)).ok


async def test_the_public_submission_api_changes_the_queue_of_the_tenant_it_acts_in(
    conn: asyncpg.Connection, admin_conn: asyncpg.Connection
) -> None:
    submitter = submission.Submitter()
    settings = wire.QueueSettings(concurrency=2)
    await _in(conn, "acme", lambda: submitter.configure_queue(conn, "py", settings, actor="app"))
    await _in(conn, "acme", lambda: submitter.pause_queue(conn, "py", actor="app"))
    history = await _in(
        conn, "acme", lambda: submitter.store.history(conn, queues.stream_id("py", "acme"))
    )
    assert [ev.type_tag(r.event) for r in history] == ["queue.configured.v1", "queue.paused.v1"]
    assert {r.tenant for r in history} == {"acme"}
    # Default's stream of that name has no event in any tenant.
    assert await submitter.store.history(admin_conn, queues.stream_id("py")) == []
    assert await queues.current(conn, "py") is None


async def test_a_limit_of_one_tenants_queue_does_not_hold_another_tenants_jobs_of_that_name(
    conn: asyncpg.Connection, worker_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    running = await _submit(event_store, conn, "beta", 3, queue="mail")
    assert sorted(await _claim(event_store, worker_conn, 10)) == sorted(running)
    await _configure(event_store, conn, "acme", "mail", wire.QueueSettings(concurrency=1))
    acme = await _submit(event_store, conn, "acme", 3, queue="mail")
    # Beta's three running jobs of "mail" are not acme's: acme's limit has room for one.
    [first] = await _claim(event_store, worker_conn, 10)
    assert first in acme
    # Acme's "mail" is full; beta's is not limited.
    beta = await _submit(event_store, conn, "beta", 2, queue="mail")
    assert sorted(await _claim(event_store, worker_conn, 10)) == sorted(beta)
    assert await _claim(event_store, worker_conn, 10) == []


async def test_a_rate_limit_spends_its_own_tenants_tokens_only(
    conn: asyncpg.Connection,
    worker_conn: asyncpg.Connection,
    admin_conn: asyncpg.Connection,
    event_store: store.EventStore,
) -> None:
    acme = await _submit(event_store, conn, "acme", 5, queue="slow")
    beta = await _submit(event_store, conn, "beta", 5, queue="slow")
    for tenant, burst in (("acme", 1), ("beta", 2)):
        rate = wire.RateLimitIn(limit=1, period_seconds=3600, burst=burst)
        await _configure(event_store, conn, tenant, "slow", wire.QueueSettings(rate_limit=rate))
    claimed = set(await _claim(event_store, worker_conn, 10))
    assert (len(claimed & set(acme)), len(claimed & set(beta))) == (1, 2)
    assert await _claim(event_store, worker_conn, 10) == []
    buckets = await admin_conn.fetch("SELECT tenant, queue FROM queue_buckets ORDER BY tenant")
    assert [(r["tenant"], r["queue"]) for r in buckets] == [("acme", "slow"), ("beta", "slow")]


async def test_pausing_one_tenants_queue_leaves_another_tenants_queue_of_that_name_running(
    conn: asyncpg.Connection, worker_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    acme = await _submit(event_store, conn, "acme", 2, queue="mail")
    beta = await _submit(event_store, conn, "beta", 2, queue="mail")
    plain = await _submit(event_store, conn, "default", 1, queue="mail")
    await _in(conn, "acme", lambda: queues.pause(conn, event_store, "mail", actor="ops"))
    assert sorted(await _claim(event_store, worker_conn, 10)) == sorted(beta + plain)
    await _in(conn, "acme", lambda: queues.resume(conn, event_store, "mail", actor="ops"))
    assert sorted(await _claim(event_store, worker_conn, 10)) == sorted(acme)


async def test_round_robin_turns_are_kept_per_tenant(
    conn: asyncpg.Connection,
    worker_conn: asyncpg.Connection,
    admin_conn: asyncpg.Connection,
    event_store: store.EventStore,
) -> None:
    """Acme serving its key "b" does not make beta's key "b" recently served."""
    fair = wire.QueueSettings(fairness="round_robin")
    await _configure(event_store, conn, "acme", "rr", fair)
    await _configure(event_store, conn, "beta", "rr", fair)
    [a1] = await _submit(event_store, conn, "beta", 1, queue="rr", concurrency_key="a")
    [b1] = await _submit(event_store, conn, "beta", 1, queue="rr", concurrency_key="b")
    assert await _claim(event_store, worker_conn, 1) == [a1]  # neither served yet: key order
    [acme_b] = await _submit(event_store, conn, "acme", 1, queue="rr", concurrency_key="b")
    assert await _claim(event_store, worker_conn, 1) == [acme_b]
    await _submit(event_store, conn, "beta", 1, queue="rr", concurrency_key="a")
    # Beta served "a", never "b": b's job goes first, whatever acme served since.
    assert await _claim(event_store, worker_conn, 1) == [b1]
    turns = await admin_conn.fetch("SELECT tenant, concurrency_key FROM queue_key_turns")
    assert {(r["tenant"], r["concurrency_key"]) for r in turns} == {
        ("beta", "a"),
        ("beta", "b"),
        ("acme", "b"),
    }


async def test_a_claim_records_its_own_tenants_queue_settings_version(
    conn: asyncpg.Connection,
    worker_conn: asyncpg.Connection,
    admin_conn: asyncpg.Connection,
    event_store: store.EventStore,
) -> None:
    [acme] = await _submit(event_store, conn, "acme", 1, queue="lim")
    [plain] = await _submit(event_store, conn, "default", 1, queue="lim")
    await _configure(event_store, conn, "acme", "lim", wire.QueueSettings(concurrency=5))
    await _configure(event_store, conn, "acme", "lim", wire.QueueSettings(concurrency=6))
    assert sorted(await _claim(event_store, worker_conn, 10)) == sorted([acme, plain])
    data = dict(
        await admin_conn.fetch(
            "SELECT job_id, data FROM events WHERE type = 'job.claimed.v1' AND job_id = ANY($1)",
            [acme, plain],
        )
    )
    assert msgspec.json.decode(data[acme])["queue_version"] == 2
    assert "queue_version" not in msgspec.json.decode(data[plain])  # default's has none


async def test_listing_queues_in_a_tenant_shows_only_its_own(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await _configure(event_store, conn, "acme", "mail", wire.QueueSettings(concurrency=1))
    await _configure(event_store, conn, "beta", "mail", wire.QueueSettings(concurrency=7))
    await _in(conn, "beta", lambda: queues.pause(conn, event_store, "beta-only", actor="ops"))

    listed = await _in(conn, "acme", lambda: queue_view.list_all(conn))
    assert [(q.name, q.concurrency, q.version) for q in listed.queues] == [("mail", 1, 1)]
    mail = await _in(conn, "beta", lambda: queue_view.get(conn, "mail"))
    assert (mail.concurrency, mail.paused) == (7, False)
    assert (await queue_view.list_all(conn)).queues == []  # default has none


async def test_rebuilding_gives_back_every_tenants_queues(
    conn: asyncpg.Connection, admin_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await _configure(event_store, conn, "acme", "mail", wire.QueueSettings(concurrency=1))
    await _configure(event_store, conn, "beta", "mail", wire.QueueSettings(fairness="round_robin"))
    await _in(conn, "beta", lambda: queues.pause(conn, event_store, "mail", actor="ops"))
    await queues.pause(conn, event_store, "mail", actor="ops")
    before = await admin_conn.fetch("SELECT * FROM queues ORDER BY tenant, name")
    assert [r["tenant"] for r in before] == ["acme", "beta", "default"]
    await rebuild.rebuild(admin_conn)
    assert await admin_conn.fetch("SELECT * FROM queues ORDER BY tenant, name") == before
    assert await rebuild.verify(admin_conn) == []


async def test_a_claim_reads_no_other_tenants_backlog_of_the_same_queue_name(
    admin_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    """Acme's paused "mail" holds 5,000 jobs; beta's "mail" jobs (unrestricted) are
    claimed by walking beta's group only: a few dozen pages."""
    conn = admin_conn  # EXPLAIN ANALYZE of the SECURITY DEFINER claim, as its owner
    await _in(conn, "acme", lambda: queues.pause(conn, event_store, "mail", actor="ops"))

    async def backlog() -> None:
        await factories.submit_many(event_store, conn, 5000, queue="mail")

    await _in(conn, "acme", backlog)
    first, beta = await _submit(event_store, conn, "beta", 2, queue="mail")
    await conn.execute("ANALYZE jobs")
    assert await _claim(event_store, conn, 1) == [first]  # as the next one will
    plan = await conn.fetchval(
        "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT * FROM jobs_claim_next(1, ARRAY['noop'])"
    )
    node = msgspec.json.decode(plan)[0]["Plan"]
    assert int(node["Shared Hit Blocks"]) + int(node["Shared Read Blocks"]) < 100
    assert await _claim(event_store, conn, 10) == [beta]
