"""The global feed: every committed event exactly once, in a stable order, by cursor.

Order is (writing transaction id, position), and a page only reaches below the
reader's snapshot xmin: every transaction with a lower id has ended by then, so a
late commit can never land before a cursor a reader already holds (invariant 5).
The cursor is opaque to clients: ``<txid>.<position>``.

Filters cost a bounded scan, not an index per filter: a filtered read looks at no
more than the next `SCAN_LIMIT` events (or `limit`, if larger) after the cursor, so
a filter that matches nothing answers as fast at a billion events as at a thousand.
When the scan stops before the page is full, the page says `more` and its cursor is
the last event looked at: the reader calls again from there.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Final

import asyncpg
import msgspec

from ledger import errors, sqlfile, store

Q = sqlfile.load("projections")
_CURSOR = re.compile(r"^(\d{1,19})\.(\d{1,19})$")


class Cursor(msgspec.Struct, frozen=True):
    """A place in the global feed: (writing transaction id, position)."""

    txid: int
    position: int

    def encode(self) -> str:
        return f"{self.txid}.{self.position}"


START = Cursor(0, 0)


def is_cursor(text: str) -> bool:
    return _CURSOR.match(text) is not None


def parse_cursor(text: str | None) -> Cursor:
    if not text:
        return START
    match = _CURSOR.match(text)
    if not match:
        raise errors.BadCursor(f"malformed feed cursor {text!r}")
    return Cursor(int(match.group(1)), int(match.group(2)))


MAX_POSITION: Final = 2**63 - 1
# The most events one filtered read looks at (sql: events_feed_filtered's $9).
SCAN_LIMIT: Final = 1000


class Filters(msgspec.Struct, frozen=True, kw_only=True):
    """Which events a reader wants; the cursor still walks the whole feed."""

    event_type: str | None = None
    job_type: str | None = None
    actor: str | None = None
    since: datetime | None = None  # occurred_at at or after
    until: datetime | None = None  # occurred_at before

    def any(self) -> bool:
        return any(
            v is not None
            for v in (self.event_type, self.job_type, self.actor, self.since, self.until)
        )


NO_FILTERS: Final = Filters()


class EventPage(msgspec.Struct, frozen=True):
    """A page of the feed and the cursor to resume from."""

    events: list[store.Recorded]
    cursor: Cursor  # resume from here
    # Committed events wait above the cursor's horizon for an older open transaction
    # to end: read again soon, they become readable as soon as it does.
    held_back: bool = False
    # Call again from `cursor` right away: the page is full, or a filtered read stopped
    # at its scan bound with more events below the horizon (False: caught up).
    more: bool = False


async def read(
    conn: asyncpg.Connection,
    after: Cursor = START,
    limit: int = 500,
    filters: Filters = NO_FILTERS,
) -> EventPage:
    """The next committed events after `after` that match `filters`, at most `limit`.

    A short page without `more` means everything below the snapshot's xmin was looked
    at, so the cursor moves up to that horizon even past events the filters left out:
    no transaction below it can still commit, and a filtered reader does not rescan.
    With filters, at most max(SCAN_LIMIT, limit) events are looked at: a short page
    with `more` ends its cursor at the last of them.
    """
    scan = max(SCAN_LIMIT, limit) if filters.any() else limit
    rows = await conn.fetch(
        Q["events_feed_filtered"],
        str(after.txid),
        after.position,
        limit,
        filters.event_type,
        filters.actor,
        filters.since,
        filters.until,
        filters.job_type,
        scan,
    )
    recorded = [store.record_from_row(r) for r in rows if r["position"] is not None]
    cursor = Cursor(recorded[-1].txid, recorded[-1].position) if recorded else after
    first = rows[0]
    if len(recorded) >= limit:
        return EventPage(recorded, cursor, first["held_back"], more=True)
    if first["scanned"] >= scan:  # the scan stopped at its bound, maybe short of the horizon
        reach = Cursor(first["reach_txid"], first["reach_position"])
        return EventPage(recorded, reach, first["held_back"], more=True)
    horizon = Cursor(first["horizon"] - 1, MAX_POSITION)
    cursor = max(cursor, horizon, key=lambda c: (c.txid, c.position))
    return EventPage(recorded, cursor, first["held_back"])
