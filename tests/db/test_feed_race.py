"""Invariant 5 under load: a consumer racing concurrent writers ends with exactly the committed set."""

from __future__ import annotations

import asyncio

import asyncpg

from ledger import commands, store
from projections import feed
from tests import factories, racing
from tests.conftest import IN_DEFAULT, Databases


async def test_feed_consumer_racing_writers_sees_every_committed_event_once(
    dbs: Databases, event_store: store.EventStore
) -> None:
    fast_writers = 3
    writers = racing.Writers(event_store, fast_rounds=20, slow_rounds=10)
    conns = [
        await asyncpg.connect(dbs.app, server_settings=IN_DEFAULT) for _ in range(fast_writers + 2)
    ]
    *fast_conns, slow_conn, reader = conns
    writers_done = asyncio.Event()
    seen: list[int] = []

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
        await writers.run(fast_conns, slow_conn)
        writers_done.set()
        seen_while_writing = len(seen)
        await asyncio.wait_for(consumer, timeout=60)
        committed = [r["position"] for r in await reader.fetch("SELECT position FROM events")]
    finally:
        for c in conns:
            await c.close()

    assert len(committed) == writers.total(fast_writers)
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
