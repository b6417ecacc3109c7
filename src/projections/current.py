"""The current-state view (`jobs`): kept inline with every append, read by everyone."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from ledger import lifecycle, sqlfile, store

Q = sqlfile.load("projections")
_json = msgspec.json.Decoder()


class JobView:
    """The InlineProjection that folds each appended event into its job's row (SQL `job_view_apply`)."""

    async def apply(self, conn: asyncpg.Connection, recorded: Sequence[store.Recorded]) -> None:
        await conn.execute(Q["jobs_apply"], [r.position for r in recorded])


def state_from_row(row: asyncpg.Record | dict[str, Any]) -> lifecycle.JobState:
    """A `jobs` row as a JobState (jsonb columns arrive as text)."""
    fields = dict(row)
    for column in ("payload", "result"):
        value = fields[column]
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
