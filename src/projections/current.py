"""The current-state view (`jobs`), read by everyone.

The database keeps it: the INSERT that appends events folds them into their jobs'
rows in the same statement (trigger `events_project_jobs`, sql/0051, by the same
fold step, `job_view_step`, the rebuilds and as-of queries use), so a row is never
without its events nor behind them.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from ledger import lifecycle, sqlfile

Q = sqlfile.load("projections")
_json = msgspec.json.Decoder()


def state_from_row(row: asyncpg.Record | dict[str, Any]) -> lifecycle.JobState:
    """A `jobs` row as a JobState (jsonb columns arrive as text)."""
    fields = dict(row)
    for column in ("payload", "result", "retry_policy"):
        value = fields.get(column)
        fields[column] = _json.decode(value) if isinstance(value, str) else value
    return msgspec.convert(fields, lifecycle.JobState, strict=False)


async def get(conn: asyncpg.Connection, job_id: uuid.UUID) -> lifecycle.JobState | None:
    row = await conn.fetchrow(Q["jobs_get"], job_id)
    return None if row is None else state_from_row(row)


async def as_of(
    conn: asyncpg.Connection, job_id: uuid.UUID, instant: datetime
) -> lifecycle.JobState | None:
    """The job as it was at `instant`: its events up to then, folded (None: not yet submitted)."""
    row = await conn.fetchrow(Q["jobs_fold_as_of"], job_id, instant)
    return None if row is None else state_from_row(row)
