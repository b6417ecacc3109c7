"""Invariant 6: per-job hash chains, recomputed from the table, name the first broken link."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import UTC, datetime

import asyncpg
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit import chains
from ledger import commands, store
from ledger import events as ev
from tests import factories
from tests.conftest import Databases


async def _three_event_job(event_store: store.EventStore, conn: asyncpg.Connection) -> object:
    job_id = await factories.submit(event_store, conn, payload={"k": "v", "n": 1.5})
    await event_store.execute(
        conn, job_id, commands.ClaimJob(worker_id="w", lease_seconds=9), actor="w"
    )
    await event_store.execute(
        conn, job_id, commands.CompleteJob(worker_id="w", result={"ok": True}), actor="w"
    )
    return job_id


async def test_untouched_chains_verify(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    for _ in range(3):
        await _three_event_job(event_store, conn)
    report = await chains.verify(conn)
    assert report.ok
    assert (report.jobs, report.events) == (3, 9)


async def test_python_recomputes_the_hash_the_database_stored(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    job_id = await factories.submit(
        event_store,
        conn,
        actor="a\nb:7",
        payload={"ü": 'ß\t"x"', "f": 1e-7, "big": 2**62, "l": [None, True]},
    )
    row = await conn.fetchrow("SELECT * FROM events WHERE job_id = $1", job_id)
    canonical = ev.canonical_bytes(
        type=row["type"],
        job_id=row["job_id"],
        version=row["version"],
        actor=row["actor"],
        occurred_at=row["occurred_at"],
        data=row["data"],
    )
    assert hashlib.sha256(bytes(row["prev_hash"]) + canonical).digest() == bytes(row["hash"])
    assert bytes(row["prev_hash"]) == ev.GENESIS_HASH


@pytest.mark.parametrize(
    ("tamper", "version", "reason"),
    [
        (
            "UPDATE events SET data = jsonb_set(data, '{result,ok}', 'false') WHERE job_id = $1 AND version = 3",
            3,
            "content",
        ),
        ("UPDATE events SET actor = 'mallory' WHERE job_id = $1 AND version = 1", 1, "content"),
        (
            "UPDATE events SET occurred_at = occurred_at + interval '1 second' WHERE job_id = $1 AND version = 2",
            2,
            "content",
        ),
        ("DELETE FROM events WHERE job_id = $1 AND version = 2", 2, "missing"),
        (
            "UPDATE events SET prev_hash = sha256('x') WHERE job_id = $1 AND version = 2",
            2,
            "previous-hash",
        ),
    ],
)
async def test_tampering_as_superuser_is_caught_at_the_first_broken_link(
    conn: asyncpg.Connection,
    admin_conn: asyncpg.Connection,
    event_store: store.EventStore,
    tamper: str,
    version: int,
    reason: str,
) -> None:
    intact = await _three_event_job(event_store, conn)
    job_id = await _three_event_job(event_store, conn)
    await admin_conn.execute("SET session_replication_role = replica")  # lifts the trigger
    await admin_conn.execute(tamper, job_id)

    report = await chains.verify(conn)
    assert len(report.broken) == 1
    link = report.broken[0]
    assert (link.job_id, link.version) == (job_id, version)
    assert reason in link.reason
    assert str(job_id) in link.describe()
    assert (await chains.verify(conn, intact)).ok  # type: ignore[arg-type]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    actor=st.text(
        st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1, max_size=20
    ),
    tenant=st.one_of(
        st.just("default"),
        st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,20}", fullmatch=True),
    ),
    payload=st.dictionaries(
        st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=8),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(-(2**63), 2**63 - 1),
            st.floats(allow_nan=False, allow_infinity=False),
            st.text(
                st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=12
            ),
        ),
        max_size=6,
    ),
)
def test_database_and_python_agree_on_canonical_bytes(
    dbs: Databases, actor: str, tenant: str, payload: dict[str, object]
) -> None:
    """Offline verification depends on Python hashing exactly what PostgreSQL hashed, in
    the default tenant's form and the tenant-prefixed one (sql/0086: inlined, not STRICT;
    a NULL argument still gives NULL)."""
    job_id = uuid.UUID(int=7)
    when = datetime(2026, 11, 27, 12, 0, 0, 123456, tzinfo=UTC)

    async def check() -> None:
        conn = await asyncpg.connect(dbs.app)
        try:
            row = await conn.fetchrow(
                "SELECT event_canonical($1, $2, $3, $4, $5, $6::jsonb) AS c, $6::jsonb::text AS d,"
                " event_canonical($7, $1, $2, $3, $4, $5, $6::jsonb) AS t,"
                " event_canonical(NULL::text, $1, $2, $3, $4, $5, $6::jsonb) AS n",
                "job.submitted.v1",
                job_id,
                7,
                actor,
                when,
                msgspec.json.encode(payload).decode(),
                tenant,
            )
        finally:
            await conn.close()
        fields = {
            "type": "job.submitted.v1",
            "job_id": job_id,
            "version": 7,
            "actor": actor,
            "occurred_at": when,
            "data": row["d"],
        }
        assert bytes(row["c"]) == ev.canonical_bytes(**fields)
        assert bytes(row["t"]) == ev.canonical_bytes(**fields, tenant=tenant)
        assert row["n"] is None

    asyncio.run(check())
