"""The claim into a worker's reserve for one concurrency key (sql/0087): in a round-robin
queue, a key without a backlog gets a reserve slot beside another key's backlog in the
same tenant, within every limit the bulk claim keeps; a key with a backlog, or a key
of a FIFO queue, does not. The doorbell names the key so the reserve can look at it
alone."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import asyncpg

from ledger import commands, queues, store, tenants, wire
from tests import factories
from workers import claims, listener

RR = wire.QueueSettings(fairness="round_robin")


def _key(key: str, queue: str = "rr", tenant: str = "default") -> claims.QuietKey:
    return claims.QuietKey(tenant, queue, key)


async def _claim(
    event_store: store.EventStore,
    conn: asyncpg.Connection,
    limit: int,
    quiet: int | None,
    key: claims.QuietKey | None = None,
) -> list[str]:
    states = await factories.claim(event_store, conn, limit, quiet=quiet, key=key)
    return sorted(s.concurrency_key or "-" for s in states)


async def _submit(
    event_store: store.EventStore, conn: asyncpg.Connection, key: str, n: int, queue: str = "rr"
) -> list[uuid.UUID]:
    return await factories.submit_many(event_store, conn, n, queue=queue, concurrency_key=key)


def _payload(key: str, queue: str = "rr", tenant: str = "default") -> str:
    return listener.KEY_PREFIX + json.dumps([tenant, queue, key])


def _read(payload: str) -> str:
    """A `key:` payload in `_payload`'s spelling (the JSON the database wrote, read)."""
    if not payload.startswith(listener.KEY_PREFIX):
        return payload
    return _payload(*reversed(json.loads(payload.removeprefix(listener.KEY_PREFIX))))


async def test_the_doorbell_names_a_round_robin_queues_keys_and_the_tenant_for_the_rest(
    conn: asyncpg.Connection, admin_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await queues.configure(conn, event_store, "rr", RR, actor="ops")
    notified: list[str] = []
    await admin_conn.add_listener(listener.JOBS_CHANNEL, lambda *args: notified.append(args[3]))

    async def rung_by(*submissions: tuple[str | None, str]) -> list[str]:
        notified.clear()
        async with conn.transaction():
            for key, queue in submissions:
                await factories.submit(event_store, conn, queue=queue, concurrency_key=key)
        await admin_conn.execute("SELECT 1")  # deliver pending notifications
        return sorted(_read(p) for p in notified)

    async def rung_one_statement(keys: int) -> list[str]:
        notified.clear()
        now = datetime.now(UTC)
        await event_store.append(
            conn,
            [
                e
                for i in range(keys)
                for e in commands.decide(
                    None,
                    factories.submit_command(queue="rr", concurrency_key=f"m{i}"),
                    job_id=uuid.uuid4(),
                    actor="alice",
                    now=now,
                )
            ],
        )
        await admin_conn.execute("SELECT 1")
        return sorted(_read(p) for p in notified)

    assert await rung_by(("b", "rr")) == [_payload("b")]
    assert await rung_by(('a "quoted" \\ key', "rr")) == [_payload('a "quoted" \\ key')]
    assert await rung_by(("b", "fifo")) == ["tenant:default"]  # FIFO: no key's turn
    assert await rung_by((None, "rr")) == ["tenant:default"]
    assert await rung_by(("b", "rr"), (None, "rr")) == [_payload("b"), "tenant:default"]
    # Eight keys in one statement ring each; more (a bulk submission), the tenant once.
    assert await rung_one_statement(8) == sorted(_payload(f"m{i}") for i in range(8))
    assert await rung_one_statement(9) == ["tenant:default"]


async def test_a_key_without_a_backlog_is_claimed_beside_another_keys_backlog(
    conn: asyncpg.Connection, worker_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await queues.configure(conn, event_store, "rr", RR, actor="ops")
    await _submit(event_store, conn, "a", 5)
    await _submit(event_store, conn, "b", 1)

    # The tenant has a backlog (6 due > 2): its own quiet claim takes nothing.
    assert await _claim(event_store, worker_conn, 2, quiet=2) == []
    assert await _claim(event_store, worker_conn, 2, quiet=2, key=_key("a")) == []  # a backlog
    assert await _claim(event_store, worker_conn, 2, quiet=2, key=_key("b")) == ["b"]
    assert await _claim(event_store, worker_conn, 2, quiet=2, key=_key("b")) == []  # none due
    assert await _claim(event_store, worker_conn, 2, quiet=2, key=_key("nope")) == []
    # Once what is left of `a` fits in the reserve, it is quiet too.
    assert await _claim(event_store, worker_conn, 3, quiet=None) == ["a", "a", "a"]
    assert await _claim(event_store, worker_conn, 2, quiet=2, key=_key("a")) == ["a", "a"]


async def test_a_key_of_a_fifo_queue_gets_no_reserve_slot_of_its_own(
    conn: asyncpg.Connection, worker_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await queues.configure(conn, event_store, "lim", wire.QueueSettings(concurrency=50), actor="o")
    await _submit(event_store, conn, "a", 5, queue="lim")
    await _submit(event_store, conn, "b", 1, queue="lim")
    await _submit(event_store, conn, "c", 1, queue="plain")

    # Its tenant's quiet claim instead: the tenant has a backlog, so nothing jumps the line.
    assert await _claim(event_store, worker_conn, 2, quiet=2, key=_key("b", "lim")) == []
    assert await _claim(event_store, worker_conn, 2, quiet=2, key=_key("c", "plain")) == []
    assert await _claim(event_store, worker_conn, 7, quiet=None) == sorted(["a"] * 5 + ["b", "c"])


async def test_the_key_claim_keeps_every_limit_of_the_queue_and_the_tenant(
    conn: asyncpg.Connection, worker_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    b = _key("b")
    await queues.configure(conn, event_store, "rr", RR, actor="ops")
    await _submit(event_store, conn, "b", 1)
    await queues.pause(conn, event_store, "rr", actor="ops")
    assert await _claim(event_store, worker_conn, 2, quiet=2, key=b) == []
    await queues.resume(conn, event_store, "rr", actor="ops")

    # The queue's concurrency, taken by another key's running job.
    await queues.configure(
        conn,
        event_store,
        "rr",
        wire.QueueSettings(fairness="round_robin", concurrency=1),
        actor="o",
    )
    await _submit(event_store, conn, "a", 1)
    [a] = await factories.claim(event_store, worker_conn, 1, quiet=2, key=_key("a"))
    assert a.concurrency_key == "a"
    assert await _claim(event_store, worker_conn, 2, quiet=2, key=b) == []

    # The key's own concurrency: b running, b's next waits.
    await queues.configure(
        conn,
        event_store,
        "rr",
        wire.QueueSettings(fairness="round_robin", per_key_concurrency=1),
        actor="o",
    )
    assert await _claim(event_store, worker_conn, 2, quiet=2, key=b) == ["b"]
    await _submit(event_store, conn, "b", 1)
    assert await _claim(event_store, worker_conn, 2, quiet=2, key=b) == []

    # The queue's rate: a burst of one, spent.
    await queues.configure(
        conn,
        event_store,
        "rr",
        wire.QueueSettings(
            fairness="round_robin",
            rate_limit=wire.RateLimitIn(limit=1, period_seconds=3600, burst=1),
        ),
        actor="o",
    )
    assert await _claim(event_store, worker_conn, 2, quiet=2, key=b) == ["b"]
    await _submit(event_store, conn, "b", 1)
    assert await _claim(event_store, worker_conn, 2, quiet=2, key=b) == []

    # The tenant's max_running.
    await queues.configure(conn, event_store, "rr", RR, actor="o")
    await tenants.configure(conn, event_store, "default", {"max_running": 3}, actor="ops")
    assert await _claim(event_store, worker_conn, 2, quiet=2, key=b) == []
    await tenants.configure(conn, event_store, "default", {"max_running": 4}, actor="ops")
    assert await _claim(event_store, worker_conn, 2, quiet=2, key=b) == ["b"]
