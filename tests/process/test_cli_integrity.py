"""`ledger verify` and `ledger projections verify|rebuild` against a real database, as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys

import asyncpg

from ledger import commands, schema, store
from tests import factories
from tests.conftest import Databases


def _ledger(dbs: Databases, *args: str, owner: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": dbs.app}
    if owner:
        env["MIGRATE_DATABASE_URL"] = dbs.admin
    else:
        env.pop("MIGRATE_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_verify_commands_pass_on_an_untouched_ledger(
    dbs: Databases, conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    job_id = await factories.submit(event_store, conn)
    await event_store.execute(conn, job_id, commands.CancelJob(), actor="bob")

    chains = _ledger(dbs, "verify")
    assert chains.returncode == 0, chains.stderr
    assert "1 jobs, 2 events, 0 broken chains" in chains.stdout
    view = _ledger(dbs, "projections", "verify")
    assert view.returncode == 0, view.stderr
    assert "projection matches the events" in view.stdout


async def test_verify_names_the_broken_link_and_exits_non_zero(
    dbs: Databases,
    conn: asyncpg.Connection,
    admin_conn: asyncpg.Connection,
    event_store: store.EventStore,
) -> None:
    job_id = await factories.submit(event_store, conn)
    await admin_conn.execute("SET session_replication_role = replica")
    await admin_conn.execute(
        "UPDATE events SET data = jsonb_set(data, '{payload,n}', '2') WHERE job_id = $1", job_id
    )

    result = _ledger(dbs, "verify")
    assert result.returncode == 1
    assert f"BROKEN job {job_id} version 1: event content does not match its hash" in result.stdout


async def test_projection_drift_is_shown_then_rebuilt(
    dbs: Databases,
    conn: asyncpg.Connection,
    admin_conn: asyncpg.Connection,
    event_store: store.EventStore,
) -> None:
    job_id = await factories.submit(event_store, conn)
    await admin_conn.execute("UPDATE jobs SET attempt = 9 WHERE job_id = $1", job_id)

    drift = _ledger(dbs, "projections", "verify")
    assert drift.returncode == 1
    assert str(job_id) in drift.stdout
    assert '"attempt":9' in drift.stdout
    assert "1 rows differ" in drift.stdout

    fixed = _ledger(dbs, "projections", "rebuild")
    assert fixed.returncode == 0, fixed.stderr
    assert "rebuilt the jobs view and its counters: 1 jobs" in fixed.stdout
    assert _ledger(dbs, "projections", "verify").returncode == 0


async def test_rebuild_without_the_owner_s_connection_says_what_it_needs(
    dbs: Databases, conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await factories.submit(event_store, conn)
    refused = _ledger(dbs, "projections", "rebuild", owner=False)
    assert refused.returncode != 0
    assert "MIGRATE_DATABASE_URL" in refused.stderr
    assert "Traceback" not in refused.stderr


async def test_schema_dump_prints_the_kept_schema_file(dbs: Databases) -> None:
    dumped = _ledger(dbs, "schema", "dump")
    assert dumped.returncode == 0, dumped.stderr
    assert dumped.stdout == schema.snapshot_path().read_text("utf-8")
