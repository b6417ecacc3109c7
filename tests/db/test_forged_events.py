"""Invariant 1: the database decides every stored event's position, link, hash, txid and time.

Each way the application's role could write an event is tried as that role: every
one is refused, or stores an event whose chosen columns the database overrode, and
which then stands in the feed, the chain and the next checkpoint.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from audit import chains, checkpoints
from ledger import commands, events, store
from projections import feed
from tests import factories, ledgers

FAR_FUTURE_TXID = "9223372036854775000"  # an xid8 no transaction will reach: hid from the feed
CHOSEN_TIME = datetime(2001, 1, 1, tzinfo=UTC)
ZEROS = b"\x00" * 32


async def _completed_job(event_store: store.EventStore, conn: asyncpg.Connection) -> uuid.UUID:
    """A job that ran to completion: the forger wants it run again."""
    return await ledgers.run_job(event_store, conn, 1)


def _forged_retry(job_id: uuid.UUID, version: int) -> dict[str, object]:
    """The forger's row: a job.retried.v1 with a hash computed as the append would."""
    data = '{"max_attempts": 3}'
    canonical = (
        f"job.retried.v1\n{job_id}\n{version}\n7:mallory\n2001-01-01T00:00:00.000000Z\n{data}"
    ).encode()
    return {
        "job_id": job_id,
        "version": version,
        "type": "job.retried.v1",
        "data": data,
        "actor": "mallory",
        "occurred_at": CHOSEN_TIME,
        "prev_hash": ZEROS,
        "hash": hashlib.sha256(ZEROS + canonical).digest(),
    }


# Every column the database decides, each chosen by the forger in turn, and all together.
CHOSEN_COLUMNS = {
    "position": ("position", "9000000"),
    "txid": ("txid", f"'{FAR_FUTURE_TXID}'::xid8"),
    "occurred_at": ("occurred_at", "'2001-01-01T00:00:00Z'"),
    "prev_hash": ("prev_hash", "'\\x" + "00" * 32 + "'::bytea"),
    "hash": ("hash", "'\\x" + "11" * 32 + "'::bytea"),
}


def _insert(job_id: uuid.UUID, version: int, chosen: list[str], *, overriding: bool) -> str:
    columns = ["job_id", "version", "type", "data", "actor"]
    values = [f"'{job_id}'", str(version), "'job.retried.v1'", "'{}'", "'mallory'"]
    for name in chosen:
        column, value = CHOSEN_COLUMNS[name]
        columns.append(column)
        values.append(value)
    for required in ("occurred_at", "prev_hash", "hash"):
        if required not in chosen:
            columns.append(required)
            values.append(CHOSEN_COLUMNS[required][1])
    override = " OVERRIDING SYSTEM VALUE" if overriding else ""
    # The forger's own statement, from the constants above.
    return f"INSERT INTO events ({', '.join(columns)}){override} VALUES ({', '.join(values)})"  # noqa: S608


@pytest.mark.parametrize("chosen", [*([name] for name in CHOSEN_COLUMNS), list(CHOSEN_COLUMNS)])
async def test_the_application_role_cannot_insert_an_event_with_a_column_it_chose(
    conn: asyncpg.Connection, event_store: store.EventStore, chosen: list[str]
) -> None:
    job_id = await _completed_job(event_store, conn)
    statement = _insert(job_id, 4, chosen, overriding="position" in chosen)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
        await conn.execute(statement)
    assert await conn.fetchval("SELECT status FROM jobs WHERE job_id = $1", job_id) == "completed"


@pytest.mark.parametrize(
    "statement",
    [
        # a writable CTE
        "WITH forged AS ({insert} RETURNING position) SELECT * FROM forged",
        # an upsert
        "{insert} ON CONFLICT DO NOTHING",
        # a temporary function (runs with the caller's rights)
        "CREATE FUNCTION pg_temp.forge() RETURNS void LANGUAGE sql AS $f$ {insert} $f$;"
        " SELECT pg_temp.forge()",
        # a temporary view over events
        "CREATE TEMPORARY VIEW forge AS SELECT * FROM events;"
        " INSERT INTO forge (job_id, version, type, data, actor, occurred_at, txid, prev_hash, hash)"
        " SELECT job_id, version + 10, type, data, actor, occurred_at, txid, prev_hash, hash"
        " FROM events LIMIT 1",
    ],
    ids=["writable-cte", "upsert", "temporary-function", "temporary-view"],
)
async def test_no_statement_of_the_application_role_inserts_into_events(
    conn: asyncpg.Connection, event_store: store.EventStore, statement: str
) -> None:
    job_id = await _completed_job(event_store, conn)
    insert = _insert(job_id, 4, list(CHOSEN_COLUMNS), overriding=True)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
        await conn.execute(statement.format(insert=insert))
    assert await conn.fetchval("SELECT count(*) FROM events WHERE job_id = $1", job_id) == 3


async def test_the_application_role_cannot_copy_rows_into_events(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    job_id = await _completed_job(event_store, conn)
    row = _forged_retry(job_id, 4)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
        await conn.copy_records_to_table(
            "events", records=[tuple(row.values())], columns=list(row.keys())
        )
    assert await conn.fetchval("SELECT count(*) FROM events WHERE job_id = $1", job_id) == 3


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE jobs SET status = 'pending' WHERE job_id = $1",
        "DELETE FROM jobs WHERE job_id = $1",
        "INSERT INTO jobs SELECT * FROM jobs WHERE job_id = $1",
        "SELECT job_id FROM jobs WHERE job_id = $1 FOR UPDATE",
        "SELECT job_view_apply(e) FROM events AS e WHERE e.job_id = $1 AND e.version = 1",
    ],
    ids=["update", "delete", "insert", "lock", "apply-an-event-again"],
)
async def test_the_application_role_writes_nothing_into_the_jobs_view(
    conn: asyncpg.Connection, event_store: store.EventStore, statement: str
) -> None:
    job_id = await _completed_job(event_store, conn)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
        await conn.execute(statement, job_id)
    assert await conn.fetchval("SELECT status FROM jobs WHERE job_id = $1", job_id) == "completed"


async def test_the_append_function_decides_time_txid_position_and_chain(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    """A decider's clock only proposes a time: the database stores its own."""
    job_id = uuid.uuid4()
    decided = commands.decide(
        None, factories.submit_command(), job_id=job_id, actor="alice", now=CHOSEN_TIME
    )
    async with conn.transaction():
        before = await conn.fetchval("SELECT statement_timestamp()")
        txid = await conn.fetchval("SELECT pg_current_xact_id()::text::bigint")
        (recorded,) = await event_store.append(conn, decided)
    row = await conn.fetchrow("SELECT * FROM events WHERE job_id = $1", job_id)
    assert row["occurred_at"] == recorded.event.occurred_at
    assert row["occurred_at"] >= before
    assert recorded.txid == txid == int(str(row["txid"]))
    assert row["prev_hash"] == ZEROS
    canonical = events.canonical_bytes(
        type=row["type"],
        job_id=job_id,
        version=1,
        actor="alice",
        occurred_at=row["occurred_at"],
        data=await conn.fetchval("SELECT data::text FROM events WHERE job_id = $1", job_id),
    )
    assert row["hash"] == hashlib.sha256(ZEROS + canonical).digest()
    created = await conn.fetchval("SELECT created_at FROM jobs WHERE job_id = $1", job_id)
    assert created == row["occurred_at"]


async def test_a_job_s_history_never_runs_backwards_in_time(
    conn: asyncpg.Connection, admin_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    """An event is never timed before its predecessor, even when the clock stepped back."""
    job_id = uuid.uuid4()
    (submitted,) = commands.decide(
        None, factories.submit_command(), job_id=job_id, actor="alice", now=CHOSEN_TIME
    )
    # The predecessor as a clock an hour ahead would have stamped it (written by the owner).
    ahead = await admin_conn.fetchval("SELECT statement_timestamp() + interval '1 hour'")
    await admin_conn.execute(
        """
        INSERT INTO events (job_id, version, type, actor, occurred_at, data, prev_hash, hash)
        SELECT $1, 1, 'job.submitted.v1', 'alice', $2, $3::jsonb, $4,
               sha256($4 || event_canonical('job.submitted.v1', $1, 1, 'alice', $2, $3::jsonb))
        """,
        job_id,
        ahead,
        events.data_json(submitted),
        ZEROS,
    )
    claimed = await event_store.execute(
        conn, job_id, commands.ClaimJob(worker_id="w", lease_seconds=30), actor="w"
    )
    assert claimed.started_at == ahead
    assert (await chains.verify(conn)).ok


async def test_an_event_the_application_role_appends_is_in_the_feed_the_chain_and_the_checkpoint(
    conn: asyncpg.Connection,
    admin_conn: asyncpg.Connection,
    event_store: store.EventStore,
    tmp_path: Path,
) -> None:
    """The one way left to write: the database's own append, in plain sight."""
    job_id = await _completed_job(event_store, conn)
    signer = ledgers.signer(tmp_path)
    await checkpoints.create(conn, signer)
    forged = _forged_retry(job_id, 4)
    rows = await conn.fetch(
        "SELECT * FROM events_append($1::uuid[], $2::integer[], $3::text[], $4::text[], $5::jsonb[])",
        [job_id],
        [4],
        ["job.retried.v1"],
        ["mallory"],
        [forged["data"]],
    )
    (row,) = rows
    assert row["occurred_at"] != CHOSEN_TIME
    assert row["hash"] != forged["hash"]
    assert await conn.fetchval("SELECT status FROM jobs WHERE job_id = $1", job_id) == "pending"

    stored = {r["position"] for r in await admin_conn.fetch("SELECT position FROM events")}
    seen: set[int] = set()
    cursor = feed.START
    while True:
        page = await feed.read(conn, cursor, limit=2)
        seen |= {r.position for r in page.events}
        if not page.events:
            break
        cursor = page.cursor
    assert seen == stored
    assert (await chains.verify(conn)).ok
    checkpoint, created = await checkpoints.create(conn, signer)
    assert created and checkpoint is not None
    assert checkpoint.event_count == len(stored)
    assert checkpoint.key == (row["txid"], row["position"])
