"""The queues read model: settings from the `queues` projection, counts from the counters."""

from __future__ import annotations

import asyncpg
import pytest

from ledger import commands, errors, queues, store, wire
from ledger import events as ev
from projections import queues as queue_view
from tests import factories
from workers import claims


async def test_every_queue_with_settings_or_jobs_is_listed_with_its_counts(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    for _ in range(3):
        await factories.submit(event_store, conn, queue="mail")
    cancelled = await factories.submit(event_store, conn, queue="mail")
    await event_store.execute(conn, cancelled, commands.CancelJob(), actor="ops")
    await factories.submit(event_store, conn, queue="plain")
    await queues.configure(
        conn,
        event_store,
        "mail",
        wire.QueueSettings(
            concurrency=2, rate_limit=wire.RateLimitIn(limit=10, period_seconds=60, burst=4)
        ),
        actor="admin",
    )
    await queues.pause(conn, event_store, "idle", actor="ops", reason="not yet")
    await claims.claim(
        conn, event_store, worker_id="w", lease_seconds=30, types=["noop"], limit=1
    )  # restricted queues are claimed from first: one of `mail`'s jobs runs

    listed = {q.name: q for q in (await queue_view.list_all(conn)).queues}

    assert list(listed) == ["idle", "mail", "plain"]
    mail = listed["mail"]
    assert (mail.concurrency, mail.per_key_concurrency, mail.fairness) == (2, None, "fifo")
    assert mail.rate_limit == ev.RateLimit(limit=10, period_seconds=60.0, burst=4)
    assert (mail.version, mail.updated_by, mail.paused) == (1, "admin", False)
    assert mail.counts == {
        "pending": 2,
        "processing": 1,
        "retrying": 0,
        "completed": 0,
        "failed": 0,
        "cancelled": 1,
        "blocked": 0,
        "skipped": 0,
    }
    idle = listed["idle"]
    assert (idle.paused, idle.version, idle.updated_by, sum(idle.counts.values())) == (
        True,
        1,
        "ops",
        0,
    )
    plain = listed["plain"]
    assert (plain.version, plain.updated_by, plain.updated_at, plain.concurrency) == (
        0,
        None,
        None,
        None,
    )
    assert (mail.running, plain.running, plain.counts["pending"]) == (1, 0, 1)
    assert await queue_view.get(conn, "mail") == mail
    assert await queue_view.get(conn, "plain") == plain
    assert await queue_view.get(conn, "idle") == idle


async def test_a_queue_with_neither_settings_nor_jobs_is_unknown(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await factories.submit(event_store, conn, queue="other")
    with pytest.raises(queues.UnknownQueue):
        await queue_view.get(conn, "nowhere")
    with pytest.raises(errors.InvalidInput):
        await queue_view.get(conn, "no spaces")
