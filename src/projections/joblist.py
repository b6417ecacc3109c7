"""Reading many jobs from the current-state view: filtered, newest first, keyset-paged.

The cursor is opaque to clients (URL-safe base64 of the last row's `created_at`
and `job_id`); a page continues strictly after it in `(created_at DESC, job_id
DESC)` order, so pages never repeat or skip a row and never use OFFSET.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import UTC, datetime
from typing import Final

import asyncpg
import msgspec

from ledger import errors, lifecycle, sqlfile
from projections import current

Q = sqlfile.load("projections")
MAX_LIMIT: Final = 200


class ListCursor(msgspec.Struct, frozen=True):
    """A place in a job list (not the feed's `feed.Cursor`): the last row's sort key."""

    created_at: datetime
    job_id: uuid.UUID

    def encode(self) -> str:
        raw = f"{self.created_at.isoformat()}|{self.job_id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")


FIRST: Final = ListCursor(datetime.max.replace(tzinfo=UTC), uuid.UUID(int=(1 << 128) - 1))
"""Before every row: the first page starts here."""


def parse_cursor(text: str | None) -> ListCursor | None:
    """The cursor a previous page returned (None: start from the newest job)."""
    if not text:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        stamp, _, job_id = raw.partition("|")
        created_at = datetime.fromisoformat(stamp)
        if created_at.tzinfo is None:
            raise ValueError("naive time")
        created_at.astimezone(UTC)  # an instant past year 1 or 9999 in UTC cannot be queried
        return ListCursor(created_at, uuid.UUID(job_id))
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise errors.BadCursor(f"malformed list cursor {text!r}") from None


class JobPage(msgspec.Struct, frozen=True):
    """A page of jobs and the cursor of the next one."""

    jobs: list[lifecycle.JobState]
    next_cursor: ListCursor | None  # None: this was the last page


async def page(
    conn: asyncpg.Connection,
    *,
    status: str | None = None,
    job_type: str | None = None,
    queue: str | None = None,
    after: ListCursor | None = None,
    limit: int = 50,
) -> JobPage:
    """Up to `limit` (capped at MAX_LIMIT) jobs matching the filters, newest first, after `after`."""
    limit = max(1, min(limit, MAX_LIMIT))
    start = after or FIRST
    args: list[object] = [job_type, queue, start.created_at, start.job_id, limit + 1]
    if status is None:
        rows = await conn.fetch(Q["jobs_list_page"], *args)
    else:
        rows = await conn.fetch(Q["jobs_list_page_by_status"], *args, status)
    jobs = [current.state_from_row(r) for r in rows[:limit]]
    more = len(rows) > limit
    last = jobs[-1] if jobs else None
    return JobPage(jobs, ListCursor(last.created_at, last.job_id) if more and last else None)


async def get_many(conn: asyncpg.Connection, job_ids: list[uuid.UUID]) -> list[lifecycle.JobState]:
    """The jobs with these ids, in the order asked (missing ones left out)."""
    rows = {r["job_id"]: r for r in await conn.fetch(Q["jobs_get_many"], job_ids)}
    return [current.state_from_row(rows[j]) for j in job_ids if j in rows]
