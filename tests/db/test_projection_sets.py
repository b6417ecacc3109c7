"""The set-based inline projection: rounds of at most one event per job, same rows as the fold."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from ledger import commands, lifecycle, store
from ledger import events as ev
from projections import current, rebuild
from tests import factories


def _submitted(n: int, now: datetime) -> list[ev.JobEvent]:
    out: list[ev.JobEvent] = []
    for _ in range(n):
        out += commands.decide(
            None, factories.submit_command(), job_id=uuid.uuid4(), actor="bulk", now=now
        )
    return out


def _claims(submitted: list[ev.JobEvent], now: datetime) -> list[ev.JobEvent]:
    out: list[ev.JobEvent] = []
    for event in submitted:
        state = lifecycle.fold([event])
        out += commands.decide(
            state,
            commands.ClaimJob(worker_id="w", lease_seconds=30),
            job_id=event.job_id,
            actor="w",
            now=now,
        )
    return out


async def test_later_events_of_many_jobs_apply_in_one_append(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    now = datetime.now(UTC)
    submitted = _submitted(20, now)
    await event_store.append(conn, submitted)
    await event_store.append(conn, _claims(submitted, now))
    assert await conn.fetchval("SELECT count(*) FROM jobs WHERE status = 'processing'") == 20
    assert await rebuild.verify(conn) == []


async def test_mixed_rounds_of_many_jobs_fold_like_python(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    now = datetime.now(UTC)
    submitted = _submitted(5, now)
    # Submissions and their claims in one append: two rounds, each job once per round.
    await event_store.append(conn, [*submitted, *_claims(submitted, now)])
    for event in submitted:
        live = await current.get(conn, event.job_id)
        folded = lifecycle.fold(r.event for r in await event_store.history(conn, event.job_id))
        assert live == folded
        assert live is not None and live.status == "processing"


async def test_later_event_whose_row_is_gone_is_refused_and_rolled_back(
    conn: asyncpg.Connection, admin_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    now = datetime.now(UTC)
    submitted = _submitted(3, now)
    await event_store.append(conn, submitted)
    await admin_conn.execute("DELETE FROM jobs WHERE job_id = $1", submitted[1].job_id)
    with pytest.raises(asyncpg.RaiseError, match="before its submission"):
        await event_store.append(conn, _claims(submitted, now))
    assert await conn.fetchval("SELECT count(*) FROM events") == 3
    assert await conn.fetchval("SELECT count(*) FROM jobs WHERE status = 'pending'") == 2
