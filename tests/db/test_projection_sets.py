"""The view projected inside the append (sql/0051): set-based per statement, same rows as the fold."""

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


_RAW_INSERT = """
INSERT INTO events (job_id, version, type, actor, occurred_at, data, prev_hash, hash)
SELECT u.job_id, u.version, u.type, u.actor, u.occurred_at, u.data,
       decode(repeat('00', 32), 'hex'), decode(repeat('11', 32), 'hex')
FROM unnest($1::uuid[], $2::integer[], $3::text[], $4::text[], $5::timestamptz[], $6::jsonb[])
    AS u (job_id, version, type, actor, occurred_at, data)
"""


async def _insert_raw(conn: asyncpg.Connection, events: list[ev.JobEvent]) -> None:
    """Events written by a plain INSERT, past the event store (only the owner still can)."""
    await conn.execute(
        _RAW_INSERT,
        [e.job_id for e in events],
        [e.version for e in events],
        [ev.type_tag(e) for e in events],
        [e.actor for e in events],
        [e.occurred_at for e in events],
        [ev.data_json(e) for e in events],
    )


async def test_events_written_past_the_store_still_get_their_state(
    conn: asyncpg.Connection, admin_conn: asyncpg.Connection
) -> None:
    now = datetime.now(UTC)
    submitted = _submitted(3, now)

    await _insert_raw(admin_conn, submitted)

    for event in submitted:
        row = await current.get(conn, event.job_id)
        assert row is not None and (row.status, row.version) == ("pending", 1)


async def test_several_events_of_one_job_in_one_statement_apply_in_their_order(
    conn: asyncpg.Connection, admin_conn: asyncpg.Connection
) -> None:
    now = datetime.now(UTC)
    submitted = _submitted(1, now)
    claimed = _claims(submitted, now)
    state = lifecycle.fold([*submitted, *claimed])
    completed = commands.decide(
        state,
        commands.CompleteJob(worker_id="w", result={"ok": True}),
        job_id=submitted[0].job_id,
        actor="w",
        now=now,
    )

    await _insert_raw(admin_conn, [*submitted, *claimed, *completed])

    row = await current.get(conn, submitted[0].job_id)
    assert row is not None
    assert (row.status, row.version, row.result) == ("completed", 3, {"ok": True})
    assert row == lifecycle.fold([*submitted, *claimed, *completed])
