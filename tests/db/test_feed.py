"""Invariant 5: the global feed never skips an event committed late by a lower transaction."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from ledger import commands, errors, store
from ledger import events as ev
from projections import feed
from tests import factories
from tests.conftest import IN_DEFAULT, Databases


def _submitted(actor: str) -> list[ev.JobEvent]:
    return commands.decide(
        None, factories.submit_command(), job_id=uuid.uuid4(), actor=actor, now=datetime.now(UTC)
    )


async def _drain(
    conn: asyncpg.Connection, cursor: feed.Cursor, limit: int = 2
) -> tuple[list[str], feed.Cursor]:
    seen: list[str] = []
    while True:
        page = await feed.read(conn, cursor, limit=limit)
        if not page.events:
            return seen, cursor
        seen += [r.event.actor for r in page.events]
        cursor = page.cursor


async def test_late_commit_of_an_earlier_transaction_is_not_skipped(
    dbs: Databases, event_store: store.EventStore
) -> None:
    early, late, reader = [
        await asyncpg.connect(dbs.app, server_settings=IN_DEFAULT) for _ in range(3)
    ]
    try:
        # `early` takes its transaction id and position first, but commits last.
        tx_early = early.transaction()
        await tx_early.start()
        await event_store.append(early, _submitted("early"))
        await event_store.append(late, _submitted("late"))  # commits at once

        seen, cursor = await _drain(reader, feed.START)
        # A position cursor would hand out "late" now and skip "early" forever;
        # the feed holds back everything above the oldest running transaction.
        assert seen == []

        await tx_early.commit()
        seen, cursor = await _drain(reader, cursor)
        assert seen == ["early", "late"]

        again, _ = await _drain(reader, cursor)
        assert again == []
        replay, _ = await _drain(reader, feed.START)
        assert replay == ["early", "late"], "the order is stable across reads"
    finally:
        for c in (early, late, reader):
            await c.close()


async def test_higher_position_in_a_lower_transaction_is_ordered_by_transaction(
    dbs: Databases, event_store: store.EventStore
) -> None:
    first, second, reader = [
        await asyncpg.connect(dbs.app, server_settings=IN_DEFAULT) for _ in range(3)
    ]
    try:
        tx_first = first.transaction()
        await tx_first.start()
        await first.fetchval("SELECT pg_current_xact_id()")  # lower txid, no row yet
        tx_second = second.transaction()
        await tx_second.start()
        await event_store.append(second, _submitted("second"))  # lower position
        await event_store.append(first, _submitted("first"))  # higher position
        await tx_second.commit()
        seen, cursor = await _drain(reader, feed.START)
        assert seen == []
        await tx_first.commit()
        seen, _ = await _drain(reader, cursor)
        assert seen == ["first", "second"]
    finally:
        for c in (first, second, reader):
            await c.close()


async def test_paging_sees_every_event_once(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    for i in range(7):
        await event_store.append(conn, _submitted(f"a{i}"))
    seen, _ = await _drain(conn, feed.START, limit=3)
    assert seen == [f"a{i}" for i in range(7)]


def test_cursor_round_trips_and_rejects_garbage() -> None:
    cursor = feed.Cursor(123, 456)
    assert feed.parse_cursor(cursor.encode()) == cursor
    assert feed.parse_cursor(None) == feed.START
    for bad in ("abc", "1", "1.2.3", "-1.2", "1.x"):
        try:
            feed.parse_cursor(bad)
        except errors.BadCursor:
            continue
        raise AssertionError(f"{bad!r} was accepted")


async def test_a_filter_matching_nothing_looks_at_a_bounded_number_of_events(
    conn: asyncpg.Connection, event_store: store.EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feed, "SCAN_LIMIT", 10)
    for i in range(25):
        await event_store.append(conn, _submitted(f"a{i}"))
    every = await feed.read(conn, feed.START, limit=100)
    nobody = feed.Filters(actor="nobody")

    first = await feed.read(conn, feed.START, limit=5, filters=nobody)
    # Ten events looked at, none matched: an empty page, to be continued past the tenth.
    assert first.events == [] and first.more
    tenth = every.events[9]
    assert first.cursor == feed.Cursor(tenth.txid, tenth.position)

    second = await feed.read(conn, first.cursor, limit=5, filters=nobody)
    assert second.events == [] and second.more
    last = await feed.read(conn, second.cursor, limit=5, filters=nobody)
    assert last.events == [] and not last.more  # the last five: caught up
    assert last.cursor == every.cursor


async def test_a_filtered_reader_paging_on_more_sees_every_match_once(
    conn: asyncpg.Connection, event_store: store.EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feed, "SCAN_LIMIT", 4)
    wanted = []
    for i in range(30):
        actor = "bob" if i % 7 == 3 else f"a{i}"
        await event_store.append(conn, _submitted(actor))
        if actor == "bob":
            wanted.append(i)
    seen, cursor, reads = 0, feed.START, 0
    while True:
        page = await feed.read(conn, cursor, limit=2, filters=feed.Filters(actor="bob"))
        reads += 1
        seen += len(page.events)
        assert all(r.event.actor == "bob" for r in page.events)
        cursor = page.cursor
        if not page.more:
            break
    assert seen == len(wanted)
    assert reads >= 30 // 4  # each read looked at four events at most
    # Unfiltered reads are not bounded by the scan limit: a page fills at once.
    assert len((await feed.read(conn, feed.START, limit=20)).events) == 20


async def test_a_time_range_no_event_falls_in_reads_no_window(
    conn: asyncpg.Connection, event_store: store.EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feed, "SCAN_LIMIT", 10)
    for i in range(25):
        await event_store.append(conn, _submitted(f"a{i}"))
    every = await feed.read(conn, feed.START, limit=100)
    newest = max(r.event.occurred_at for r in every.events)
    oldest = min(r.event.occurred_at for r in every.events)
    for nothing in (
        feed.Filters(since=newest + timedelta(microseconds=1)),
        feed.Filters(until=oldest),
    ):
        # No event in range: caught up to the horizon in one read, not 10 at a time.
        page = await feed.read(conn, feed.START, limit=5, filters=nothing)
        assert page.events == [] and not page.more
        assert page.cursor == every.cursor
    # A range that holds events still pages through the window.
    page = await feed.read(conn, feed.START, limit=5, filters=feed.Filters(since=newest))
    assert page.events == [] and page.more


async def test_the_job_type_filter_matches_the_jobs_of_that_type_only(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    for kind in ("alpha", "beta", "alpha"):
        await event_store.append(
            conn,
            commands.decide(
                None,
                factories.submit_command(job_type=kind),
                job_id=uuid.uuid4(),
                actor=kind,
                now=datetime.now(UTC),
            ),
        )
    page = await feed.read(conn, feed.START, limit=10, filters=feed.Filters(job_type="alpha"))
    assert [r.event.actor for r in page.events] == ["alpha", "alpha"]
    assert not page.more
