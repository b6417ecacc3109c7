"""`ledger tenants list|show|set`, run as the CLI parses them, on a real database."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import asyncpg
import pytest

from ledger import errors, tenants
from tests.conftest import Databases
from tests.db.test_cli_audit import ledger_cli, settings_for


async def test_set_changes_only_the_settings_given_by_events_in_the_tenant(
    dbs: Databases,
    conn: asyncpg.Connection,
    admin_conn: asyncpg.Connection,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = settings_for(dbs, tmp_path)

    assert await ledger_cli(settings, "tenants", "set", "acme", "--max-queued", "100") == 0
    assert "max queued   100" in capsys.readouterr().out
    assert (
        await ledger_cli(
            settings,
            "tenants",
            "set",
            "acme",
            "--max-running",
            "4",
            "--weight",
            "3",
            "--actor",
            "ops",
        )
        == 0
    )
    assert await ledger_cli(settings, "tenants", "set", "acme", "--max-queued", "none") == 0
    assert await ledger_cli(settings, "tenants", "set", "beta", "--weight", "2", "--json") == 0
    capsys.readouterr()

    acme = await tenants.get(conn, "acme")
    assert (acme.max_queued, acme.max_running, acme.weight, acme.version) == (None, 4, 3, 3)
    # Every tenant's events (the owner bypasses row-level security): acme's stream only.
    rows = await admin_conn.fetch(
        "SELECT type, actor, tenant FROM events WHERE job_id = $1 ORDER BY version",
        tenants.stream_id("acme"),
    )
    me = f"cli:{getpass.getuser()}"
    assert [tuple(r) for r in rows] == [
        ("tenant.configured.v1", me, "acme"),
        ("tenant.configured.v1", "ops", "acme"),
        ("tenant.configured.v1", me, "acme"),
    ]

    assert await ledger_cli(settings, "tenants", "list") == 0
    assert capsys.readouterr().out.splitlines() == [
        "TENANT  MAX_QUEUED  MAX_RUNNING  WEIGHT  VERSION",
        "acme    -           4            3       3",
        "beta    -           -            2       1",
    ]
    assert await ledger_cli(settings, "tenants", "show", "beta", "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["tenant"], shown["weight"], shown["version"]) == ("beta", 2, 1)
    assert await ledger_cli(settings, "tenants", "show", "gamma") == 0
    assert "version 0 (never configured)" in capsys.readouterr().out


async def test_bad_settings_and_tenant_ids_are_refused_and_write_nothing(
    dbs: Databases,
    admin_conn: asyncpg.Connection,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = settings_for(dbs, tmp_path)
    with pytest.raises(errors.InvalidInput, match="weight"):
        await ledger_cli(settings, "tenants", "set", "acme", "--weight", "0")
    with pytest.raises(errors.InvalidTenant):
        await ledger_cli(settings, "tenants", "set", "a b", "--weight", "2")
    with pytest.raises(errors.ConfigError, match="nothing to set"):
        await ledger_cli(settings, "tenants", "set", "acme")
    # Nothing in any tenant (the owner reads every tenant's events).
    assert await admin_conn.fetchval("SELECT count(*) FROM events") == 0
