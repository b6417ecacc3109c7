"""Projections are disposable: rebuild the view from events, diff it, or replace it (invariant 3)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import msgspec

from ledger import sqlfile

Q = sqlfile.load("projections")
_json = msgspec.json.Decoder()


class RowDiff(msgspec.Struct, frozen=True):
    """A job whose live row differs from its rebuild (None: absent on that side)."""

    job_id: uuid.UUID
    live: dict[str, Any] | None
    rebuilt: dict[str, Any] | None


async def _build_scratch(conn: asyncpg.Connection) -> None:
    await conn.execute(Q["jobs_scratch_create"])
    await conn.execute(Q["jobs_scratch_fill"])


async def verify(conn: asyncpg.Connection) -> list[RowDiff]:
    """Fold every job's events into a scratch table and list the rows that differ from `jobs`."""
    async with conn.transaction(isolation="repeatable_read", readonly=False):
        await _build_scratch(conn)
        rows = await conn.fetch(Q["jobs_scratch_diff"])
    return [
        RowDiff(
            job_id=r["job_id"],
            live=_json.decode(r["live"]) if r["live"] else None,
            rebuilt=_json.decode(r["rebuilt"]) if r["rebuilt"] else None,
        )
        for r in rows
    ]


async def rebuild(conn: asyncpg.Connection) -> int:
    """Replace the live view with the fold of the events; returns the number of jobs."""
    async with conn.transaction():
        await conn.execute(Q["jobs_lock"])
        await _build_scratch(conn)
        await conn.execute(Q["jobs_delete_all"])
        status = await conn.execute(Q["jobs_fill_from_scratch"])
    return int(status.split()[-1])
