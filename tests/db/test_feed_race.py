"""Invariant 5 under load: a consumer racing concurrent writers ends with exactly the committed set."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg

from ledger import commands, store
from ledger import events as ev
from projections import feed
from tests import factories
from tests.conftest import Databases

BATCH = 30


def _batch(actor: str) -> list[ev.JobEvent]:
    now = datetime.now(UTC)
    events: list[ev.JobEvent] = []
    for _ in range(BATCH):
        events += commands.decide(
            None, factories.submit_command(), job_id=uuid.uuid4(), actor=actor, now=now
        )
    return events


async def test_feed_consumer_racing_writers_sees_every_committed_event_once(
    dbs: Databases, event_store: store.EventStore
) -> None:
    fast_writers, fast_rounds, slow_rounds = 3, 20, 10
    conns = [await asyncpg.connect(dbs.app) for _ in range(fast_writers + 2)]
    *fast_conns, slow_conn, reader = conns
    fast_commits = 0
    progressed = asyncio.Condition()
    writers_done = asyncio.Event()
    seen: list[int] = []

    async def fast(conn: asyncpg.Connection, name: str) -> None:
        nonlocal fast_commits
        for _ in range(fast_rounds):
            await event_store.append(conn, _batch(name))
            async with progressed:
                fast_commits += 1
                progressed.notify_all()

    async def slow() -> None:
        # Takes its transaction id first, then commits only after others committed after it.
        for _ in range(slow_rounds):
            async with slow_conn.transaction():
                await slow_conn.fetchval("SELECT pg_current_xact_id()")
                await event_store.append(slow_conn, _batch("slow"))
                async with progressed:
                    target = min(fast_commits + 2, fast_writers * fast_rounds)
                    while fast_commits < target:
                        await progressed.wait()

    async def consume() -> None:
        cursor = feed.START
        quiet_after_done = 0
        while quiet_after_done < 2:
            page = await feed.read(reader, cursor, limit=97)
            seen.extend(r.position for r in page.events)
            assert (page.cursor.txid, page.cursor.position) >= (cursor.txid, cursor.position)
            cursor = page.cursor
            if writers_done.is_set() and not page.events:
                quiet_after_done += 1

    try:
        consumer = asyncio.create_task(consume())
        await asyncio.gather(*(fast(c, f"fast{i}") for i, c in enumerate(fast_conns)), slow())
        writers_done.set()
        seen_while_writing = len(seen)
        await asyncio.wait_for(consumer, timeout=60)
        committed = [r["position"] for r in await reader.fetch("SELECT position FROM events")]
    finally:
        for c in conns:
            await c.close()

    assert len(committed) == (fast_writers * fast_rounds + slow_rounds) * BATCH
    assert len(seen) == len(set(seen)), "no event seen twice"
    assert sorted(seen) == sorted(committed), "every committed event seen, none skipped"
    assert seen != sorted(seen), "commits really were out of position order"
    assert seen_while_writing > 0, "the consumer paged while the writers were committing"


async def test_filters_select_events_and_the_cursor_still_moves_past_the_rest(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    wanted = await factories.submit(event_store, conn, job_type="report", actor="alice")
    other = await factories.submit(event_store, conn, job_type="noop", actor="bob")
    await event_store.execute(conn, other, commands.CancelJob(), actor="bob")

    by_type = await feed.read(conn, filters=feed.Filters(job_type="report"))
    assert [r.event.job_id for r in by_type.events] == [wanted]
    assert await feed.read(conn, by_type.cursor, filters=feed.Filters(job_type="report")) == (
        feed.EventPage([], by_type.cursor)
    )
    cancels = await feed.read(conn, filters=feed.Filters(event_type="job.cancelled.v1"))
    assert [(r.event.job_id, r.event.version) for r in cancels.events] == [(other, 2)]
    by_actor = await feed.read(conn, filters=feed.Filters(actor="bob"))
    assert len(by_actor.events) == 2
    first = (await feed.read(conn)).events[0].event.occurred_at
    late = await feed.read(conn, filters=feed.Filters(since=first, until=first))
    assert late.events == []
    window = await feed.read(conn, filters=feed.Filters(until=first))
    assert window.events == []
    assert len((await feed.read(conn, filters=feed.Filters(since=first))).events) == 3

    # Past the filtered-out events, later matches still arrive from the advanced cursor.
    again = await factories.submit(event_store, conn, job_type="report")
    more = await feed.read(conn, by_type.cursor, filters=feed.Filters(job_type="report"))
    assert [r.event.job_id for r in more.events] == [again]
