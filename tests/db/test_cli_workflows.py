"""`ledger workflows submit|show|list|cancel|retry` and `ledger replay --workflow`, run as
the CLI parses them, on a real database."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from ledger import commands, errors, store
from tests.conftest import Databases
from tests.db.test_cli_audit import ledger_cli, settings_for

README_TEXT = (Path(__file__).resolve().parents[2] / "README.md").read_text("utf-8")


def _job(name: str, *deps: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": "file_process",
        "payload": {"path": f"{name}.txt", "operation": "checksum"},
        "depends_on": list(deps),
        **extra,
    }


def _diamond(tmp_path: Path, **extra: Any) -> Path:
    file = tmp_path / "workflow.json"
    body = {"jobs": [_job("a"), _job("b", "a"), _job("c", "a"), _job("d", "b", "c")], **extra}
    file.write_text(json.dumps(body))
    return file


async def _finish(conn: asyncpg.Connection, job_id: uuid.UUID, *, fail: bool = False) -> None:
    """Claim and end the job as a worker would (the connection acts in `default`)."""
    s = store.EventStore()
    await s.execute(conn, job_id, commands.ClaimJob(worker_id="w", lease_seconds=60), actor="w")
    end: commands.Command = (
        commands.FailAttempt(worker_id="w", error="boom", permanent=True, retry_delay=timedelta(0))
        if fail
        else commands.CompleteJob(worker_id="w", result={"done": 1})
    )
    await s.execute(conn, job_id, end, actor="w")


async def test_submit_show_list_and_a_failure_retried_from_the_cli(
    dbs: Databases,
    conn: asyncpg.Connection,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = settings_for(dbs, tmp_path)
    wid = uuid.uuid4()

    code = await ledger_cli(
        settings, "workflows", "submit", str(_diamond(tmp_path, id=str(wid))), "--json"
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["id"] == str(wid)
    ids = {j["name"]: uuid.UUID(j["job_id"]) for j in out["jobs"]}
    assert [j["status"] for j in out["jobs"]] == ["pending", "blocked", "blocked", "blocked"]

    await _finish(conn, ids["a"])
    await _finish(conn, ids["b"], fail=True)

    assert await ledger_cli(settings, "workflows", "show", str(wid)) == 0
    shown = capsys.readouterr().out.splitlines()
    assert shown[0] == f"workflow {wid}  status running  jobs 4"
    rows = {line.split()[0]: line.split() for line in shown[2:]}
    assert rows["a"][2] == "completed" and rows["b"][2] == "failed"
    assert rows["c"][2] == "pending" and rows["d"][2:4] == ["cancelled", "b,c"]

    assert await ledger_cli(settings, "workflows", "list", "--status", "running") == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in listed[1:]] == [[str(wid), "running", "4"]]
    assert await ledger_cli(settings, "workflows", "list", "--status", "completed") == 0
    assert capsys.readouterr().out.strip() == "no workflows"

    argv = ["workflows", "retry", str(wid), "--actor", "ops", "--json"]
    assert await ledger_cli(settings, *argv) == 0
    retried = {j["name"]: j["status"] for j in json.loads(capsys.readouterr().out)["jobs"]}
    assert retried == {"a": "completed", "b": "pending", "c": "pending", "d": "blocked"}


async def test_cancel_from_the_cli_ends_every_job_not_ended(
    dbs: Databases, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(dbs, tmp_path)
    assert await ledger_cli(settings, "workflows", "submit", str(_diamond(tmp_path))) == 0
    wid = capsys.readouterr().out.split()[1]

    argv = ["workflows", "cancel", wid, "--reason", "not needed", "--json"]
    assert await ledger_cli(settings, *argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "cancelled"
    assert {j["status"] for j in out["jobs"]} == {"cancelled"}


async def test_an_invalid_file_is_refused_naming_the_job_and_field(
    dbs: Databases, tmp_path: Path
) -> None:
    settings = settings_for(dbs, tmp_path)
    file = tmp_path / "cycle.json"
    file.write_text(json.dumps({"jobs": [_job("a", "b"), _job("b", "a")]}))
    with pytest.raises(errors.InvalidInput) as caught:
        await ledger_cli(settings, "workflows", "submit", str(file))
    assert "a → b → a" in str(caught.value)
    file.write_text(json.dumps({"jobs": [{**_job("a"), "depends_on": "b"}]}))
    with pytest.raises(errors.InvalidInput, match=r"jobs\[0\]\.depends_on"):
        await ledger_cli(settings, "workflows", "submit", str(file))
    with pytest.raises(errors.UnknownWorkflow):
        await ledger_cli(settings, "workflows", "show", str(uuid.uuid4()))


async def test_replay_of_a_workflow_interleaves_its_jobs_and_cites_each_decision(
    dbs: Databases,
    conn: asyncpg.Connection,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = settings_for(dbs, tmp_path)
    assert await ledger_cli(settings, "workflows", "submit", str(_diamond(tmp_path)), "--json") == 0
    out = json.loads(capsys.readouterr().out)
    ids = {j["name"]: uuid.UUID(j["job_id"]) for j in out["jobs"]}
    await _finish(conn, ids["a"])
    await _finish(conn, ids["b"])
    await _finish(conn, ids["c"], fail=True)

    assert await ledger_cli(settings, "replay", "--workflow", out["id"], "--json") == 0
    steps = json.loads(capsys.readouterr().out)["steps"]
    positions = [s["step"]["position"] for s in steps]
    assert positions == sorted(positions) and len(steps) == 4 + 2 + 3 + 3 + 1
    a_completed = next(
        s for s in steps if s["job"] == "a" and s["step"]["event"] == "job.completed.v1"
    )
    c_failed = next(s for s in steps if s["job"] == "c" and s["step"]["event"] == "job.failed.v1")
    unblocked = [s for s in steps if s["step"]["event"] == "job.unblocked.v1"]
    assert {s["job"] for s in unblocked} == {"b", "c"}
    for s in unblocked:
        assert s["cause"]["job"] == "a"
        assert s["cause"]["hash"] == a_completed["step"]["hash"]
        assert (s["cause"]["version"], s["cause"]["event"]) == (3, "job.completed.v1")
    (d_cancelled,) = [s for s in steps if s["job"] == "d" and s["step"]["version"] == 2]
    assert d_cancelled["step"]["event"] == "job.cancelled.v1"
    assert d_cancelled["cause"]["job"] == "c"
    assert d_cancelled["cause"]["hash"] == c_failed["step"]["hash"]
    assert d_cancelled["step"]["position"] > c_failed["step"]["position"]

    assert await ledger_cli(settings, "replay", "--workflow", out["id"]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0] == f"workflow {out['id']}  status failed  jobs 4"
    assert (
        "why: cancelled by the cascade: dependency 'c' ended failed "
        f"(caused by 'c' v4 job.failed.v1, event {c_failed['step']['hash'][:16]})"
    ) in text
    assert "why: unblocked: its last dependency 'a' ended completed" in text


async def test_the_readme_workflow_file_is_submitted_by_the_cli(
    dbs: Databases, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    block = README_TEXT.split("<!-- readme-workflow-file: start -->")[1]
    block = block.split("<!-- readme-workflow-file: end -->")[0]
    file = tmp_path / "flow.json"
    file.write_text(block.split("```json")[1].split("```")[0])
    settings = settings_for(dbs, tmp_path)

    assert await ledger_cli(settings, "workflows", "submit", str(file)) == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("status running  jobs 3")
    assert [line.split()[0::2] for line in lines[2:]] == [
        ["fetch", "pending", "cancel"],
        ["count", "blocked", "cancel"],
        ["pack", "blocked", "skip"],
    ]
