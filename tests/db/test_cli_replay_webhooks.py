"""`ledger replay JOB` names the webhook deliveries that report the job (issue #19)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from ledger import commands, events, store, webhooks
from tests import factories
from tests.conftest import Databases
from tests.db.test_cli_audit import ledger_cli, settings_for


async def _any_url(url: str) -> None:
    return None


async def test_replay_lists_the_jobs_webhook_deliveries_and_how_they_stand(
    dbs: Databases,
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec = webhooks.EndpointIn(url="https://example.com/hook", events=["job.completed"])
    endpoint = await webhooks.create(conn, event_store, spec, actor="admin", vet=_any_url)
    job_id = await factories.submit(event_store, conn, job_type="test.noop")
    await event_store.execute(
        conn, job_id, commands.ClaimJob(worker_id="w", lease_seconds=30), actor="w"
    )
    await event_store.execute(
        conn, job_id, commands.CompleteJob(worker_id="w", result={}), actor="w"
    )
    [delivery] = await webhooks.deliveries_of_job(conn, job_id)
    retry_at = event_store.clock() + timedelta(minutes=5)
    attempted = events.WebhookDeliveryAttempted(
        job_id=delivery.delivery_id,
        version=1,
        actor="sender-1",
        occurred_at=event_store.clock(),
        endpoint_id=endpoint.endpoint.endpoint_id,
        about_job=job_id,
        attempt=1,
        outcome="retrying",
        status_code=503,
        duration_ms=8.0,
        error="HTTP 503",
        response_body=None,
        next_attempt_at=retry_at,
    )
    await event_store.append(conn, [attempted])
    settings = settings_for(dbs, tmp_path)

    assert await ledger_cli(settings, "replay", str(job_id)) == 0
    printed = capsys.readouterr().out
    assert "webhook deliveries (now):" in printed
    assert (
        f"  job.completed to endpoint {endpoint.endpoint.endpoint_id}: pending after 1 attempt "
        f"(last HTTP 503); next attempt due {retry_at:%Y-%m-%d %H:%M:%S}  "
        f"[{webhooks.webhook_id(delivery.delivery_id)}]"
    ) in printed.splitlines()

    assert await ledger_cli(settings, "replay", str(job_id), "--json") == 0
    [listed] = json.loads(capsys.readouterr().out)["webhook_deliveries"]
    assert (listed["status"], listed["attempts"], listed["last_status_code"]) == ("pending", 1, 503)

    # A job no endpoint hears of prints no such section.
    quiet = await factories.submit(event_store, conn, job_type="test.noop")
    assert await ledger_cli(settings, "replay", str(quiet)) == 0
    assert "webhook deliveries" not in capsys.readouterr().out
