"""The current-state view (`jobs`): kept inline with every append, read by everyone."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from ledger import errors, lifecycle, sqlfile, store
from ledger import events as ev

Q = sqlfile.load("projections")
_json = msgspec.json.Decoder()


def _recorded_job(recorded: store.Recorded) -> uuid.UUID:
    return recorded.event.job_id


class JobView:
    """The InlineProjection that folds each appended event into its job's row.

    Set-based: the events are applied in rounds holding at most one event per job
    (a job's events in version order across rounds); in each round the first
    events insert their rows in one statement and the later ones update theirs in
    another, each row folded by the SQL `job_view_evolve`. A batch of 1,000
    submissions is one INSERT rather than 1,000 calls of per-row PL/pgSQL.
    """

    async def apply(
        self,
        conn: asyncpg.Connection,
        recorded: Sequence[store.Recorded],
        before: store.Before | None = None,
    ) -> None:
        try:
            await self._apply(conn, recorded)
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != IDEMPOTENCY_INDEX:
                raise
            raise _key_taken(recorded, exc) from exc

    async def _apply(self, conn: asyncpg.Connection, recorded: Sequence[store.Recorded]) -> None:
        for level in store.one_per_job(recorded, _recorded_job):
            first = [r.position for r in level if r.event.version == 1]
            later = [r.position for r in level if r.event.version > 1]
            if first:
                await conn.execute(Q["jobs_apply_first"], first)
            if later:
                applied = await conn.fetch(Q["jobs_apply_next"], later)
                if len(applied) != len(later):
                    # A later event whose job has no row: the per-row fold refuses it
                    # with the projection's own error ("... before its submission").
                    done = {row["position"] for row in applied}
                    await conn.execute(Q["jobs_apply"], [p for p in later if p not in done])


IDEMPOTENCY_INDEX = "jobs_idempotency_key_idx"


def _key_taken(
    recorded: Sequence[store.Recorded], exc: asyncpg.UniqueViolationError
) -> errors.IdempotencyKeyTaken:
    """The submission whose (submitter, Idempotency-Key) another job already holds."""
    detail = str(getattr(exc, "detail", "") or "")
    submissions = [r.event for r in recorded if isinstance(r.event, ev.JobSubmitted)]
    for event in submissions:
        if event.idempotency_key is not None and event.idempotency_key in detail:
            return errors.IdempotencyKeyTaken(event.actor, event.idempotency_key)
    first = next(e for e in submissions if e.idempotency_key is not None)
    return errors.IdempotencyKeyTaken(first.actor, first.idempotency_key or "")


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
