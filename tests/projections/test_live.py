"""The live feed follows the ledger on NOTIFY wake-ups, never skipping, with polling only a fallback.

Every reader here polls once an hour at most (`poll_seconds=3600`): what arrives within
the tests' timeouts arrived because a wake-up (or a held-back re-read) fetched it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager

import asyncpg
import pytest_asyncio

from ledger import acting, store
from projections import feed, live
from tests import factories, racing
from tests.conftest import IN_DEFAULT, Databases
from tests.workers.conftest import eventually

NEVER = 3600.0


class Reads:
    """`connect` for `live.follow`: connections from a pool, each read counted, each in a
    transaction acting in tenant `default` like the event stream's."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.count = 0
        self._changed = asyncio.Condition()

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[asyncpg.Connection]:
        async with self._pool.acquire() as conn, conn.transaction():
            await acting.act_in(conn, "default")  # as a route's read does (sql/0068)
            yield conn
        async with self._changed:
            self.count += 1
            self._changed.notify_all()

    async def wait_past(self, count: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.count > count)


@pytest_asyncio.fixture(loop_scope="session")
async def wakeups(dbs: Databases) -> AsyncIterator[live.Wakeups]:
    """The feed's listener, connected; readers poll once an hour while it is."""
    hub = live.Wakeups(dbs.app, poll_seconds=NEVER)
    hub.start()
    try:
        await asyncio.wait_for(hub.listener.connected.wait(), timeout=20)
        yield hub
    finally:
        await hub.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def reads(dbs: Databases) -> AsyncIterator[Reads]:
    pool = await asyncpg.create_pool(dbs.app, min_size=1, max_size=4)
    try:
        yield Reads(pool)
    finally:
        await pool.close()


def _follow(
    reads: Reads, wakeups: live.Wakeups, after: feed.Cursor = feed.START, limit: int = 100
) -> AsyncGenerator[list[store.Recorded], None]:
    return live.follow(reads, wakeups, after, limit=limit, heartbeat_seconds=NEVER)


async def test_an_event_held_back_by_an_older_open_transaction_arrives_when_it_ends(
    dbs: Databases,
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    wakeups: live.Wakeups,
    reads: Reads,
) -> None:
    """The append's NOTIFY comes while an older transaction holds the snapshot's xmin
    below it, and that transaction ends without a NOTIFY of its own (it wrote no
    event): the reader must read again on its own, not wait for the hourly poll."""
    first = await factories.submit(event_store, conn)
    blocker = await asyncpg.connect(dbs.admin)
    try:
        async with asyncio.timeout(20), aclosing(_follow(reads, wakeups)) as pages:
            assert [r.event.job_id for r in await anext(pages)] == [first]
            waiting = asyncio.ensure_future(anext(pages))
            holding = blocker.transaction()
            await holding.start()
            await blocker.fetchval("SELECT pg_current_xact_id()")  # an older transaction id
            before = reads.count
            held = await factories.submit(event_store, conn)  # commits, rings the feed

            await reads.wait_past(before)  # the wake-up's read found it held back
            behind = await feed.read(conn, (await feed.read(conn)).cursor)
            assert (behind.events, behind.held_back) == ([], True)
            assert not waiting.done()
            await holding.commit()  # ends without a NOTIFY

            assert [r.event.job_id for r in await waiting] == [held]
    finally:
        await blocker.close()


async def test_every_subscriber_is_woken_and_a_closed_one_is_removed(
    conn: asyncpg.Connection, event_store: store.EventStore, wakeups: live.Wakeups, reads: Reads
) -> None:
    first = await factories.submit(event_store, conn)
    readers = [_follow(reads, wakeups) for _ in range(20)]
    async with asyncio.timeout(20):
        for pages in readers:
            assert [r.event.job_id for r in await anext(pages)] == [first]
        assert wakeups.subscribers == 20
        waiting = [asyncio.ensure_future(anext(pages)) for pages in readers]
        second = await factories.submit(event_store, conn)
        for got in await asyncio.gather(*waiting):
            assert [r.event.job_id for r in got] == [second]
    for pages in readers:
        await pages.aclose()
    assert wakeups.subscribers == 0


async def test_a_reader_racing_concurrent_writers_sees_every_committed_event_once(
    dbs: Databases, event_store: store.EventStore, wakeups: live.Wakeups, reads: Reads
) -> None:
    """Writers commit out of position order (a slow one takes its transaction id first
    and commits after others); the reader follows on wake-ups alone."""
    fast_writers = 3
    writers = racing.Writers(event_store, fast_rounds=10, slow_rounds=5)
    total = writers.total(fast_writers)
    conns = [
        await asyncpg.connect(dbs.app, server_settings=IN_DEFAULT) for _ in range(fast_writers + 1)
    ]
    *fast_conns, slow_conn = conns
    seen: list[int] = []

    async def consume() -> None:
        async with aclosing(_follow(reads, wakeups, limit=97)) as pages:
            async for page in pages:
                seen.extend(r.position for r in page)
                if len(seen) >= total:
                    return

    try:
        async with asyncio.timeout(60):
            consumer = asyncio.create_task(consume())
            await writers.run(fast_conns, slow_conn)
            await consumer
        committed = [r["position"] for r in await conns[0].fetch("SELECT position FROM events")]
    finally:
        for c in conns:
            await c.close()

    assert len(seen) == len(set(seen)) == total, "no event seen twice"
    assert sorted(seen) == sorted(committed), "every committed event seen, none skipped"
    assert seen != sorted(seen), "commits really were out of position order"


async def test_a_reader_polls_at_the_outage_rate_while_the_listener_is_down(
    dbs: Databases, conn: asyncpg.Connection, event_store: store.EventStore, reads: Reads
) -> None:
    """A listener that cannot connect (no such database) wakes no one: the reader polls."""
    hub = live.Wakeups(
        dbs.app.rsplit("/", 1)[0] + f"/missing_{uuid.uuid4().hex[:8]}",
        poll_seconds=NEVER,
        outage_poll_seconds=0.05,
    )
    hub.start()
    try:
        first = await factories.submit(event_store, conn)
        async with asyncio.timeout(20), aclosing(_follow(reads, hub)) as pages:
            assert [r.event.job_id for r in await anext(pages)] == [first]
            waiting = asyncio.ensure_future(anext(pages))
            second = await factories.submit(event_store, conn)
            assert [r.event.job_id for r in await waiting] == [second]
        assert not hub.listening
    finally:
        await hub.stop()


async def test_a_quiet_feed_sends_a_heartbeat_without_waiting_for_the_poll(
    wakeups: live.Wakeups, reads: Reads
) -> None:
    pages = live.follow(reads, wakeups, feed.START, heartbeat_seconds=0.05)
    async with asyncio.timeout(20), aclosing(pages):
        assert await anext(pages) == []
        assert await anext(pages) == []


class Heard:
    """A raw LISTEN on the feed's channel, counting notifications."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.count = 0

    def __call__(self, *_args: object) -> None:
        self.count += 1

    async def settled(self) -> int:
        await self.conn.fetchval("SELECT 1")  # any pending notification arrives before this
        return self.count


async def test_appends_notify_the_feed_only_while_it_has_readers(
    dbs: Databases,
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    wakeups: live.Wakeups,
    reads: Reads,
) -> None:
    raw = await asyncpg.connect(dbs.app)
    heard = Heard(raw)
    await raw.add_listener(live.FEED_CHANNEL, heard)
    try:
        await factories.submit(event_store, conn)
        assert await heard.settled() == 0, "no reader: no NOTIFY"

        async with asyncio.timeout(20), aclosing(_follow(reads, wakeups)) as pages:
            await anext(pages)
            await until(lambda: wakeups.listening)
            await factories.submit(event_store, conn)
            assert await heard.settled() == 1, "a reader: one NOTIFY per appending transaction"

        await until(lambda: wakeups.gate_opened_at is None)
        await factories.submit(event_store, conn)
        assert await heard.settled() == 1, "the last reader left: no NOTIFY again"
    finally:
        await raw.close()


async def test_an_append_that_skipped_its_notify_before_the_gate_opened_still_arrives(
    dbs: Databases,
    event_store: store.EventStore,
    wakeups: live.Wakeups,
    reads: Reads,
) -> None:
    """Its trigger ran while no one was reading (no NOTIFY); a reader came and read
    before it committed: the reader must read again on its own, not wait for the poll."""
    writer = await asyncpg.connect(dbs.app)
    try:
        open_ = writer.transaction()
        await open_.start()
        early = await factories.submit(event_store, writer)  # no reader yet: no NOTIFY
        async with asyncio.timeout(20), aclosing(_follow(reads, wakeups)) as pages:
            waiting = asyncio.ensure_future(anext(pages))
            await until(lambda: wakeups.listening)
            await reads.wait_past(reads.count)  # a read with the gate open, still before it
            assert not waiting.done()
            await open_.commit()  # without a NOTIFY
            assert [r.event.job_id for r in await waiting] == [early]
    finally:
        await writer.close()


async def until(predicate: Callable[[], bool]) -> None:
    async def probe() -> bool:
        return predicate()

    await eventually(probe)
