"""`--tenant T` on every command that reads or writes tenant data: each runs in a
transaction acting in T (default `default`). The database here isolates tenants by
row-level security (sql/0068): a command that read outside
a transaction acting in its tenant would see nothing, and one acting in the wrong
tenant would see another's data."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import asyncpg
import pytest

import workers.handlers  # noqa: F401 - the built-in job types, for `seed`
from ledger import acting, errors, queues, store
from tests import factories
from tests.conftest import Databases
from tests.db.test_cli_audit import ledger_cli, settings_for


async def submit_in(
    event_store: store.EventStore, conn: asyncpg.Connection, tenant: str
) -> uuid.UUID:
    async with conn.transaction():
        await acting.act_in(conn, tenant)
        return await factories.submit(event_store, conn)


async def test_queue_commands_act_in_the_tenant_given(
    dbs: Databases,
    admin_conn: asyncpg.Connection,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = settings_for(dbs, tmp_path)
    assert (
        await ledger_cli(
            settings, "queues", "set", "mail", "--concurrency", "3", "--tenant", "beta"
        )
        == 0
    )
    assert await ledger_cli(settings, "queues", "pause", "mail", "--tenant", "beta") == 0
    capsys.readouterr()
    assert await ledger_cli(settings, "queues", "list", "--json", "--tenant", "beta") == 0
    (listed,) = json.loads(capsys.readouterr().out)["queues"]
    assert (listed["name"], listed["concurrency"], listed["paused"]) == ("mail", 3, True)
    assert await ledger_cli(settings, "queues", "show", "mail", "--json", "--tenant", "beta") == 0
    assert json.loads(capsys.readouterr().out)["version"] == 2
    assert await ledger_cli(settings, "queues", "resume", "mail", "--tenant", "beta") == 0
    capsys.readouterr()

    assert await ledger_cli(settings, "queues", "list", "--json") == 0  # default's: none
    assert json.loads(capsys.readouterr().out)["queues"] == []
    with pytest.raises(queues.UnknownQueue):
        await ledger_cli(settings, "queues", "show", "mail")
    rows = await admin_conn.fetch("SELECT tenant, version, paused FROM queues")
    assert [tuple(r) for r in rows] == [("beta", 3, False)]


async def test_seed_submits_in_the_tenant_given(
    dbs: Databases, admin_conn: asyncpg.Connection, tmp_path: Path
) -> None:
    settings = settings_for(dbs, tmp_path)
    assert await ledger_cli(settings, "seed", "--tenant", "acme") == 0
    tenants = await admin_conn.fetch("SELECT DISTINCT tenant FROM jobs")
    assert [r["tenant"] for r in tenants] == ["acme"]


async def test_replay_reads_the_job_in_the_tenant_given(
    dbs: Databases,
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = settings_for(dbs, tmp_path)
    job_id = await submit_in(event_store, conn, "acme")
    assert await ledger_cli(settings, "replay", str(job_id), "--tenant", "acme", "--json") == 0
    assert json.loads(capsys.readouterr().out)["job_id"] == str(job_id)
    for other in ((), ("--tenant", "beta")):  # like a job that does not exist
        with pytest.raises(errors.UnknownJob):
            await ledger_cli(settings, "replay", str(job_id), *other)


async def test_verify_commands_check_the_tenant_given(
    dbs: Databases,
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = settings_for(dbs, tmp_path)
    for tenant in ("acme", "acme", "beta"):
        await submit_in(event_store, conn, tenant)
    capsys.readouterr()

    assert await ledger_cli(settings, "verify", "--tenant", "acme") == 0
    assert "2 jobs, 2 events, 0 broken chains" in capsys.readouterr().out
    assert await ledger_cli(settings, "verify") == 0
    assert "0 jobs, 0 events, 0 broken chains" in capsys.readouterr().out
    assert await ledger_cli(settings, "projections", "verify", "--tenant", "beta") == 0
    assert "projection matches the events" in capsys.readouterr().out

    assert await ledger_cli(settings, "audit", "checkpoint", "--tenant", "acme") == 0
    assert await ledger_cli(settings, "audit", "verify", "--tenant", "acme") == 0
    out = capsys.readouterr().out
    assert "2 events, 1 checkpoint" in out and "ledger OK" in out
    assert (settings.data_dir / "verified-acme.json").exists()
    assert not (settings.data_dir / "verified.json").exists()
    assert await ledger_cli(settings, "audit", "verify", "--tenant", "beta") == 0
    assert "1 event, 0 checkpoints" in capsys.readouterr().out


async def test_a_tenant_that_is_not_a_tenant_id_is_refused(
    dbs: Databases, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        await ledger_cli(settings_for(dbs, tmp_path), "queues", "list", "--tenant", "not a tenant")
    assert "--tenant" in capsys.readouterr().err
