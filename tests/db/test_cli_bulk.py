"""`ledger jobs retry|cancel`, run as the CLI parses them, on a real database."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
import pytest

from ledger import acting, errors, store
from ledger import events as ev
from projections import current
from tests import factories
from tests.conftest import Databases
from tests.db.test_bulk import _failed
from tests.db.test_cli_audit import ledger_cli, settings_for


async def test_retry_by_filter_changes_the_matching_jobs_and_a_repeat_nothing_more(
    dbs: Databases,
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = settings_for(dbs, tmp_path)
    hit = [await _failed(event_store, conn, job_type="mail", error="SMTP 451") for _ in range(2)]
    miss = await _failed(event_store, conn, job_type="mail", error="SMTP 550")
    argv = ["jobs", "retry", "--status", "failed", "--type", "mail", "--error-contains", "451"]

    code = await ledger_cli(settings, *argv, "--request-id", "r1", "--actor", "ops")

    assert code == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "retried 2 of 2 matching jobs (request r1)"
    assert out[1:] == [str(j) for j in hit]
    for job_id in hit:
        last = (await event_store.history(conn, job_id))[-1].event
        assert isinstance(last, ev.JobRetried)
        assert (last.bulk_request_id, last.actor) == ("r1", "ops")
    state = await current.get(conn, miss)
    assert state is not None and state.status == "failed"

    assert await ledger_cli(settings, *argv, "--request-id", "r1", "--json") == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["changed"], again["repeated"]) == (0, True)


async def test_cancel_acts_in_the_tenant_given(
    dbs: Databases,
    worker_conn: asyncpg.Connection,
    event_store: store.EventStore,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = settings_for(dbs, tmp_path)
    jobs = {}
    for tenant in ("acme", "globex"):
        async with worker_conn.transaction():
            await acting.act_in(worker_conn, tenant)
            jobs[tenant] = await factories.submit(event_store, worker_conn, queue="mail")

    argv = ["jobs", "cancel", "--status", "pending", "--queue", "mail", "--tenant", "acme"]
    assert await ledger_cli(settings, *argv, "--reason", "tidy") == 0

    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("cancelled 1 of 1 matching jobs (request ")
    assert out[1:] == [str(jobs["acme"])]
    for tenant, status in (("acme", "cancelled"), ("globex", "pending")):
        async with worker_conn.transaction():
            await acting.act_in(worker_conn, tenant)
            state = await current.get(worker_conn, jobs[tenant])
        assert state is not None and state.status == status


async def test_a_filter_the_action_cannot_carry_out_is_refused(
    dbs: Databases, tmp_path: Path
) -> None:
    settings = settings_for(dbs, tmp_path)
    with pytest.raises(errors.InvalidInput, match="retry takes jobs that are failed"):
        await ledger_cli(settings, "jobs", "retry", "--status", "pending")
    with pytest.raises(errors.InvalidInput, match="limit must be 1 to 1000"):
        await ledger_cli(settings, "jobs", "cancel", "--status", "pending", "--limit", "5000")
