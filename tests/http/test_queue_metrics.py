"""/metrics tells which queues are paused and how many runnable jobs each kind of limit
holds back, read at scrape time from the queues, the counters and the rate buckets."""

from __future__ import annotations

import asyncpg
import httpx

from ledger import metrics, queues, store, wire
from projections import queues as queue_view
from tests import factories
from tests.http.test_operations import scrape
from workers import claims


async def submit(
    event_store: store.EventStore, conn: asyncpg.Connection, queue: str, n: int
) -> None:
    for _ in range(n):
        await factories.submit(event_store, conn, queue=queue)


async def test_the_scrape_shows_paused_queues_and_jobs_waiting_on_each_limit(
    client: httpx.AsyncClient, conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    for queue, n in (("full", 3), ("slow", 3), ("free", 2), ("held", 2), ("plain", 1)):
        await submit(event_store, conn, queue, n)
    configure = [
        ("full", wire.QueueSettings(concurrency=1)),
        ("slow", wire.QueueSettings(rate_limit=wire.RateLimitIn(limit=1, period_seconds=3600))),
        ("free", wire.QueueSettings(concurrency=10)),
    ]
    for queue, settings in configure:
        await queues.configure(conn, event_store, queue, settings, actor="ops")
    await queues.pause(conn, event_store, "held", actor="ops")
    taken = await claims.claim(
        conn, event_store, worker_id="w", lease_seconds=60, types=["noop"], limit=20
    )
    # full: 1 of its 3 (concurrency 1); slow: its burst of 1; free: both; plain: its one.
    assert sorted(s.queue for s in taken) == ["free", "free", "full", "plain", "slow"]
    await submit(event_store, conn, "free", 1)  # runnable, and nothing holds it back

    scraped = await scrape(client)

    def waiting(queue: str) -> dict[str, float | None]:
        return {
            kind: scraped.value("ledger_queue_jobs_waiting_on_limit", queue=queue, limit=kind)
            for kind in metrics.QUEUE_LIMITS
        }

    assert waiting("held") == {"paused": 2, "concurrency": 0, "rate_limit": 0}
    assert waiting("full") == {"paused": 0, "concurrency": 2, "rate_limit": 0}
    assert waiting("slow") == {"paused": 0, "concurrency": 0, "rate_limit": 2}
    assert waiting("free") == {"paused": 0, "concurrency": 0, "rate_limit": 0}
    assert waiting("plain") == dict.fromkeys(metrics.QUEUE_LIMITS)  # never configured
    paused = {q: scraped.value("ledger_queue_paused", queue=q) for q in ("held", "full", "plain")}
    assert paused == {"held": 1, "full": 0, "plain": None}

    # Resumed and its limit raised, the next scrape says so.
    await queues.resume(conn, event_store, "held", actor="ops")
    await queues.configure(
        conn, event_store, "full", wire.QueueSettings(concurrency=5), actor="ops"
    )
    again = await scrape(client)
    assert again.value("ledger_queue_paused", queue="held") == 0
    assert again.value("ledger_queue_jobs_waiting_on_limit", queue="held", limit="paused") == 0
    assert again.value("ledger_queue_jobs_waiting_on_limit", queue="full", limit="concurrency") == 0


def test_the_limit_holding_a_queue_is_checked_in_the_claims_order() -> None:
    held = queue_view.held_by
    assert held(paused=True, concurrency=0, running=5, tokens=0.0) == "paused"
    assert held(paused=False, concurrency=2, running=2, tokens=0.5) == "concurrency"
    assert held(paused=False, concurrency=2, running=1, tokens=0.99) == "rate_limit"
    assert held(paused=False, concurrency=None, running=9, tokens=1.0) is None
    assert held(paused=False, concurrency=None, running=0, tokens=None) is None
