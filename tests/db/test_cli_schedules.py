"""`ledger schedules list|show|create|pause|resume|trigger|backfill|history|delete`, run as
the CLI parses them, on a real database: every change an event with its actor, and
`history` the schedule's timeline with each slot's outcome."""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from ledger import errors, schedules
from tests.conftest import Databases
from tests.db.test_cli_audit import ledger_cli, settings_for

T0 = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
JOB = {"type": "email_send", "payload": {"to": ["a@example.com"], "subject": "hi", "body": "."}}


async def recorded(conn: asyncpg.Connection, schedule_id: str) -> list[tuple[str, str]]:
    rows = await conn.fetch(
        "SELECT type, actor FROM events WHERE job_id = $1 ORDER BY version",
        schedules.stream_id(schedule_id, "default"),
    )
    return [(r["type"], r["actor"]) for r in rows]


def job_file(tmp_path: Path) -> str:
    path = tmp_path / "job.json"
    path.write_text(json.dumps(JOB))
    return str(path)


async def test_create_show_list_and_history_show_each_slot_s_outcome(
    dbs: Databases, conn: asyncpg.Connection, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(dbs, tmp_path)
    created = await ledger_cli(
        settings,
        "schedules",
        "create",
        "digest",
        "--interval",
        "60",
        "--start-at",
        T0.isoformat(),
        "--job-file",
        job_file(tmp_path),
        "--overlap",
        "allow_all",
        "--note",
        "weekly digest",
        "--actor",
        "ops",
    )
    assert created == 0
    assert capsys.readouterr().out.startswith("schedule digest  active  (version 1, by ops")
    # The scheduler's rounds, at chosen times: T0 fires; 200 s on, T0+60 s and T0+120 s
    # are older than the 60 s catch-up window (one skipped event), T0+180 s fires late.
    recorder = schedules.Schedules()
    await recorder.record_due(conn, "default", "digest", T0 + timedelta(seconds=0.5))
    await recorder.record_due(conn, "default", "digest", T0 + timedelta(seconds=200))

    assert await ledger_cli(settings, "schedules", "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["SCHEDULE", "STATE", "WHEN"]
    assert lines[1].split()[:6] == ["digest", "active", "every", "60", "s", "email_send"]

    assert await ledger_cli(settings, "schedules", "show", "digest") == 0
    shown = capsys.readouterr().out
    assert "  when             every 60 s" in shown
    assert "  next slot        2026-05-01 12:04:00+0000" in shown
    assert "2026-05-01 12:03:00+0000  fired  job " in shown
    assert "2026-05-01 12:01:00+0000  skipped  outside_catchup_window" in shown
    assert await ledger_cli(settings, "schedules", "show", "digest", "--json") == 0
    body = json.loads(capsys.readouterr().out)
    assert [s["outcome"] for s in body["recent_slots"]] == ["fired", "skipped", "fired"]

    assert await ledger_cli(settings, "schedules", "history", "digest") == 0
    history = capsys.readouterr().out
    assert history.startswith("schedule digest  stream ")
    assert "created: every 60.0 s, job email_send; first slot 2026-05-01 12:00:00+0000" in history
    assert "slot 2026-05-01 12:00:00+0000 fired: job " in history
    assert (
        "slot 2026-05-01 12:01:00+0000 up to (not with) 2026-05-01 12:03:00+0000 skipped: "
        "outside_catchup_window"
    ) in history
    assert await ledger_cli(settings, "schedules", "history", "digest", "--json") == 0
    steps = json.loads(capsys.readouterr().out)["steps"]
    assert [s["event"] for s in steps] == [
        "schedule.created.v1",
        "schedule.slot_fired.v1",
        "schedule.slot_skipped.v1",
        "schedule.slot_fired.v1",
    ]
    assert [s["actor"] for s in steps] == ["ops", "scheduler", "scheduler", "scheduler"]


async def test_pause_resume_trigger_backfill_and_delete_are_events_with_their_actor(
    dbs: Databases, conn: asyncpg.Connection, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(dbs, tmp_path)
    jobs = job_file(tmp_path)
    assert (
        await ledger_cli(
            settings, "schedules", "create", "nightly", "--cron", "0 3 * * *", "--timezone",
            "Europe/Paris", "--job-file", jobs, "--overlap", "allow_all",
        )
        == 0
    )  # fmt: skip
    capsys.readouterr()
    assert await ledger_cli(settings, "schedules", "pause", "nightly", "--note", "migration") == 0
    assert "schedule nightly  PAUSED" in capsys.readouterr().out
    assert await ledger_cli(settings, "schedules", "resume", "nightly", "--json") == 0
    assert json.loads(capsys.readouterr().out)["paused"] is False
    assert await ledger_cli(settings, "schedules", "trigger", "nightly", "--actor", "ops") == 0
    assert capsys.readouterr().out.startswith("schedule nightly fired job ")
    assert (
        await ledger_cli(
            settings, "schedules", "backfill", "nightly", "--start", "2026-05-01T00:00:00Z",
            "--end", "2026-05-03T00:00:00Z",
        )
        == 0
    )  # fmt: skip
    backfilled = capsys.readouterr().out.splitlines()
    assert backfilled[0].endswith(": 2 slot(s)")
    assert [line.split()[2] for line in backfilled[1:]] == ["fired", "fired"]
    fired = await conn.fetch(
        "SELECT schedule_slot FROM jobs WHERE schedule_id = 'nightly' ORDER BY schedule_slot"
    )
    assert [r["schedule_slot"] for r in fired] == [
        datetime(2026, 5, 1, 1, tzinfo=UTC),
        datetime(2026, 5, 2, 1, tzinfo=UTC),
        None,  # the trigger's job: outside the slots
    ]
    assert await ledger_cli(settings, "schedules", "delete", "nightly", "--note", "gone") == 0
    capsys.readouterr()
    me = f"cli:{getpass.getuser()}"
    assert await recorded(conn, "nightly") == [
        ("schedule.created.v1", me),
        ("schedule.paused.v1", me),
        ("schedule.resumed.v1", me),
        ("schedule.triggered.v1", "ops"),
        ("schedule.backfilled.v1", me),
        ("schedule.deleted.v1", me),
    ]
    with pytest.raises(schedules.UnknownSchedule):
        await ledger_cli(settings, "schedules", "show", "nightly")
    # The history of a deleted schedule stays readable.
    assert await ledger_cli(settings, "schedules", "history", "nightly") == 0
    history = capsys.readouterr().out
    assert "DELETED" in history.splitlines()[0]
    assert "paused (migration)" in history and "deleted (gone)" in history


async def test_a_bad_schedule_is_refused_naming_its_field(dbs: Databases, tmp_path: Path) -> None:
    settings = settings_for(dbs, tmp_path)
    jobs = job_file(tmp_path)
    with pytest.raises(errors.InvalidInput, match="cron"):
        await ledger_cli(
            settings, "schedules", "create", "x", "--cron", "61 * * * *", "--job-file", jobs
        )
    with pytest.raises(errors.InvalidInput, match="needs a timezone") as naive:
        await ledger_cli(
            settings, "schedules", "create", "x", "--interval", "60", "--start-at",
            "2026-05-01T12:00:00", "--job-file", jobs,
        )  # fmt: skip
    assert [e.path for e in naive.value.field_errors] == ["start_at"]
    bad_job = tmp_path / "bad.json"
    bad_job.write_text(json.dumps({"type": "email_send", "payload": {"to": []}}))
    with pytest.raises(errors.InvalidInput):
        await ledger_cli(
            settings, "schedules", "create", "x", "--interval", "60", "--job-file", str(bad_job)
        )
