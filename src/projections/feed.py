"""The global feed: every committed event exactly once, in a stable order, by cursor.

Order is (writing transaction id, position), and a page only reaches below the
reader's snapshot xmin: every transaction with a lower id has ended by then, so a
late commit can never land before a cursor a reader already holds (invariant 5).
The cursor is opaque to clients: ``<txid>.<position>``.
"""

from __future__ import annotations

import re

import asyncpg
import msgspec

from ledger import errors, sqlfile, store

Q = sqlfile.load("projections")
_CURSOR = re.compile(r"^(\d{1,19})\.(\d{1,19})$")


class Cursor(msgspec.Struct, frozen=True):
    txid: int
    position: int

    def encode(self) -> str:
        return f"{self.txid}.{self.position}"


START = Cursor(0, 0)


class BadCursor(errors.LedgerError):
    """The feed cursor is not one this service handed out."""


def is_cursor(text: str) -> bool:
    return _CURSOR.match(text) is not None


def parse_cursor(text: str | None) -> Cursor:
    if not text:
        return START
    match = _CURSOR.match(text)
    if not match:
        raise BadCursor(f"malformed feed cursor {text!r}")
    return Cursor(int(match.group(1)), int(match.group(2)))


class Page(msgspec.Struct, frozen=True):
    events: list[store.Recorded]
    cursor: Cursor  # resume from here; unchanged when the page is empty


async def read(conn: asyncpg.Connection, after: Cursor = START, limit: int = 500) -> Page:
    """The next committed events after `after`, at most `limit`."""
    rows = await conn.fetch(Q["events_feed_page"], str(after.txid), after.position, limit)
    recorded = [store.record_from_row(r) for r in rows]
    cursor = Cursor(recorded[-1].txid, recorded[-1].position) if recorded else after
    return Page(recorded, cursor)
