"""`ledger webhooks create|list|enable|deliveries|redeliver`, run as the CLI parses them."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
import msgspec
import pytest

from ledger import errors
from tests.conftest import Databases
from tests.db.test_cli_audit import ledger_cli, settings_for


async def test_create_shows_the_secret_once_and_list_never_in_the_tenant_named(
    dbs: Databases,
    admin_conn: asyncpg.Connection,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = msgspec.structs.replace(
        settings_for(dbs, tmp_path), webhook_allowed_networks="127.0.0.0/8"
    )
    url = "http://127.0.0.1:9/hook"
    argv = ("webhooks", "create", url, "--event", "job.failed", "--tenant", "acme")
    assert await ledger_cli(settings, *argv) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["secret"].startswith("whsec_")
    assert await ledger_cli(settings, "webhooks", "list", "--tenant", "acme") == 0
    listed = json.loads(capsys.readouterr().out)["endpoints"]
    assert [e["url"] for e in listed] == [url]
    assert created["secret"] not in json.dumps(listed)
    assert await ledger_cli(settings, "webhooks", "list") == 0  # tenant default: none
    assert json.loads(capsys.readouterr().out) == {"endpoints": []}
    tenant = await admin_conn.fetchval(
        "SELECT tenant FROM events WHERE job_id = $1::uuid", created["endpoint"]["endpoint_id"]
    )
    assert tenant == "acme"

    refused = ("webhooks", "create", "http://10.0.0.1/x", "--event", "job.failed")
    with pytest.raises(errors.InvalidInput, match="private address"):
        await ledger_cli(settings_for(dbs, tmp_path), *refused)
