"""data_export against the real ledger: jobs and events written by the event store,
exported through a server-side cursor, and the files read back."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest
import pytest_asyncio

from ledger import commands, db, jobtypes, store
from tests import factories
from tests.conftest import Databases
from workers.handlers import data_export


@pytest_asyncio.fixture(loop_scope="session")
async def pool(dbs: Databases) -> AsyncIterator[asyncpg.Pool]:
    app_pool = await db.create_pool(dbs.app, min_size=1, max_size=2)
    try:
        yield app_pool
    finally:
        await app_pool.close()


async def run(payload: dict[str, Any], ctx: jobtypes.JobContext) -> dict[str, Any]:
    typed = jobtypes.REGISTRY.get("data_export").validate(payload)
    result = await data_export.data_export(typed, ctx)  # type: ignore[arg-type]
    assert msgspec.json.decode(msgspec.json.encode(result)) == result  # what the pool records
    return result


def read_back(root: Path, result: dict[str, Any]) -> bytes:
    data = (root / result["path"]).read_bytes()
    assert result["sha256"] == hashlib.sha256(data).hexdigest()
    assert result["bytes"] == len(data)
    return data


def jsonl(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.decode().splitlines()]


async def complete(
    event_store: store.EventStore, conn: asyncpg.Connection, job_id: uuid.UUID, result: Any
) -> None:
    await event_store.execute(
        conn, job_id, commands.ClaimJob(worker_id="w1", lease_seconds=30), actor="w1"
    )
    await event_store.execute(
        conn, job_id, commands.CompleteJob(worker_id="w1", result=result), actor="w1"
    )


async def test_exports_the_jobs_of_one_type_to_json_lines(
    conn: asyncpg.Connection,
    pool: asyncpg.Pool,
    event_store: store.EventStore,
    storage_root: Path,
    make_ctx: Callable[..., jobtypes.JobContext],
) -> None:
    wanted = [
        await factories.submit(event_store, conn, job_type="report", payload={"n": i}, queue="q1")
        for i in range(3)
    ]
    await factories.submit(event_store, conn, job_type="other")
    await complete(event_store, conn, wanted[1], {"rows": 7, "nested": {"ok": True}})
    ctx = make_ctx(pool=pool)

    result = await run({"source": "jobs", "job_type": "report"}, ctx)

    assert result["path"] == f"exports/{ctx.job_id}.jsonl"
    assert result["rows"] == 3
    rows = jsonl(read_back(storage_root, result))
    assert [uuid.UUID(r["job_id"]) for r in rows] == wanted
    assert [r["payload"] for r in rows] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert [r["status"] for r in rows] == ["pending", "completed", "pending"]
    assert rows[1]["result"] == {"rows": 7, "nested": {"ok": True}}
    assert rows[0]["result"] is None
    assert {r["queue"] for r in rows} == {"q1"}
    assert rows[0]["priority"] == "normal"
    assert datetime.fromisoformat(rows[0]["created_at"]).tzinfo is not None


async def test_exports_jobs_by_status_to_csv(
    conn: asyncpg.Connection,
    pool: asyncpg.Pool,
    event_store: store.EventStore,
    storage_root: Path,
    make_ctx: Callable[..., jobtypes.JobContext],
) -> None:
    done = await factories.submit(event_store, conn, payload={"text": 'comma, "quote"\nnewline'})
    await factories.submit(event_store, conn)
    await complete(event_store, conn, done, "fine")

    result = await run(
        {"source": "jobs", "format": "csv", "status": ["completed", "failed"]},
        make_ctx(pool=pool),
    )

    assert result["rows"] == 1
    table = list(csv.DictReader(io.StringIO(read_back(storage_root, result).decode())))
    assert len(table) == 1
    row = table[0]
    assert tuple(row) == data_export.JOB_COLUMNS
    assert (uuid.UUID(row["job_id"]), row["status"], row["error"]) == (done, "completed", "")
    assert json.loads(row["payload"]) == {"text": 'comma, "quote"\nnewline'}
    assert json.loads(row["result"]) == "fine"


async def test_exports_one_jobs_events_in_order(
    conn: asyncpg.Connection,
    pool: asyncpg.Pool,
    event_store: store.EventStore,
    storage_root: Path,
    make_ctx: Callable[..., jobtypes.JobContext],
) -> None:
    job_id = await factories.submit(event_store, conn)
    await factories.submit(event_store, conn)
    await complete(event_store, conn, job_id, {"ok": 1})
    history = await event_store.history(conn, job_id)

    result = await run({"source": "events", "job_id": str(job_id)}, make_ctx(pool=pool))

    rows = jsonl(read_back(storage_root, result))
    assert result["rows"] == len(rows) == 3
    assert [r["type"] for r in rows] == ["job.submitted.v1", "job.claimed.v1", "job.completed.v1"]
    assert [r["position"] for r in rows] == [h.position for h in history]
    assert [r["hash"] for r in rows] == [h.hash.hex() for h in history]
    assert rows[1]["prev_hash"] == rows[0]["hash"]
    assert rows[2]["data"]["result"] == {"ok": 1}
    assert {r["actor"] for r in rows[1:]} == {"w1"}


async def test_exports_events_by_type_and_time_range(
    conn: asyncpg.Connection,
    pool: asyncpg.Pool,
    event_store: store.EventStore,
    storage_root: Path,
    make_ctx: Callable[..., jobtypes.JobContext],
) -> None:
    ids = [await factories.submit(event_store, conn) for _ in range(3)]
    # The database times each submission (one transaction each): the second one's own
    # instant is the range's inclusive start, the third one's its exclusive end.
    times = [(await event_store.history(conn, i))[0].event.occurred_at for i in ids]
    assert times[0] < times[1] < times[2]

    result = await run(
        {
            "source": "events",
            "format": "csv",
            "event_type": "job.submitted.v1",
            "since": times[1].isoformat(),
            "until": times[2].isoformat(),
        },
        make_ctx(pool=pool),
    )

    table = list(csv.DictReader(io.StringIO(read_back(storage_root, result).decode())))
    assert [uuid.UUID(r["job_id"]) for r in table] == [ids[1]]
    assert result["rows"] == 1


async def test_an_empty_export_writes_a_file_with_no_rows(
    pool: asyncpg.Pool, storage_root: Path, make_ctx: Callable[..., jobtypes.JobContext]
) -> None:
    result = await run({"source": "jobs", "format": "csv", "queue": "nothing"}, make_ctx(pool=pool))
    assert result["rows"] == 0
    assert read_back(storage_root, result).decode() == ",".join(data_export.JOB_COLUMNS) + "\n"


async def test_a_large_export_streams_in_chunks_and_honours_the_limit(
    conn: asyncpg.Connection,
    pool: asyncpg.Pool,
    event_store: store.EventStore,
    storage_root: Path,
    make_ctx: Callable[..., jobtypes.JobContext],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(data_export, "_FLUSH_BYTES", 2048)
    monkeypatch.setattr(data_export, "_PREFETCH", 50)
    for start in range(0, 1200, 300):
        submissions = [
            (uuid.uuid4(), factories.submit_command(payload={"i": start + i})) for i in range(300)
        ]
        async with conn.transaction():
            for job_id, command in submissions:
                await event_store.execute(conn, job_id, command, actor="bulk")

    everything = await run({"source": "events"}, make_ctx(pool=pool))
    limited = await run({"source": "events", "limit": 1000}, make_ctx(pool=pool))

    rows = jsonl(read_back(storage_root, everything))
    assert everything["rows"] == len(rows) == 1200
    assert sorted(r["data"]["payload"]["i"] for r in rows) == list(range(1200))
    assert [r["position"] for r in rows] == sorted(r["position"] for r in rows)
    assert limited["rows"] == len(jsonl(read_back(storage_root, limited))) == 1000


async def test_without_a_database_pool_the_export_fails_permanently(
    make_ctx: Callable[..., jobtypes.JobContext],
) -> None:
    with pytest.raises(jobtypes.Permanent, match="no pool"):
        await run({"source": "jobs"}, make_ctx())


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        ({"source": "tables"}, "$.source"),
        ({"source": "jobs", "status": ["done"]}, "$.status[0]"),
        ({"source": "jobs", "format": "xml"}, "$.format"),
        ({"source": "events", "event_type": "DROP TABLE"}, "$.event_type"),
        ({"source": "events", "status": ["pending"]}, "$"),
        ({"source": "jobs", "job_id": str(uuid.uuid4())}, "$"),
        ({"source": "jobs", "since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "$"),
        ({"source": "jobs", "limit": 0}, "$.limit"),
    ],
)
def test_invalid_payloads_name_the_field(payload: dict[str, Any], path: str) -> None:
    with pytest.raises(jobtypes.InvalidPayload) as caught:
        jobtypes.REGISTRY.get("data_export").validate(payload)
    assert caught.value.path == path


async def test_a_failed_export_leaves_no_file_behind(
    dbs: Databases, storage_root: Path, make_ctx: Callable[..., jobtypes.JobContext]
) -> None:
    closed = await db.create_pool(dbs.app, min_size=1, max_size=1)
    await closed.close()
    with pytest.raises(asyncpg.InterfaceError):
        await run({"source": "events"}, make_ctx(pool=closed))
    assert list((storage_root / "exports").iterdir()) == []
