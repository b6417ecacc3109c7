"""`ledger queues list|show|set|pause|resume`, run as the CLI parses them, on a real database."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import asyncpg
import msgspec
import pytest

from ledger import errors, queues, store, wire
from ledger import events as ev
from tests import factories
from tests.conftest import Databases
from tests.db.test_cli_audit import ledger_cli, settings_for


async def recorded(conn: asyncpg.Connection, name: str) -> list[tuple[str, str, str]]:
    rows = await conn.fetch(
        "SELECT type, actor, data FROM events WHERE job_id = $1 ORDER BY version",
        queues.stream_id(name),
    )
    return [(r["type"], r["actor"], r["data"]) for r in rows]


async def test_set_changes_only_the_limits_given_and_keeps_the_others(
    dbs: Databases, conn: asyncpg.Connection, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(dbs, tmp_path)

    assert await ledger_cli(settings, "queues", "set", "mail", "--concurrency", "3") == 0
    assert "concurrency          3" in capsys.readouterr().out
    assert (
        await ledger_cli(
            settings, "queues", "set", "mail", "--rate-limit", "50/1s:10", "--actor", "ops"
        )
        == 0
    )
    state = await queues.current(conn, "mail")
    assert state is not None
    assert (state.concurrency, state.rate_limit) == (
        3,
        ev.RateLimit(limit=50, period_seconds=1.0, burst=10),
    )
    await ledger_cli(settings, "queues", "set", "mail", "--per-key-concurrency", "2")
    await ledger_cli(settings, "queues", "set", "mail", "--fairness", "round_robin")
    await ledger_cli(settings, "queues", "set", "mail", "--concurrency", "none")
    await ledger_cli(settings, "queues", "set", "mail", "--rate-limit", "120/1m")
    state = await queues.current(conn, "mail")
    assert state is not None
    assert (state.concurrency, state.per_key_concurrency, state.fairness) == (
        None,
        2,
        "round_robin",
    )
    assert state.rate_limit == ev.RateLimit(limit=120, period_seconds=60.0, burst=120)
    await ledger_cli(settings, "queues", "set", "mail", "--rate-limit", "none")
    assert (await queues.current(conn, "mail")).rate_limit is None  # type: ignore[union-attr]

    events = await recorded(conn, "mail")
    assert [t for t, _, _ in events] == ["queue.configured.v1"] * 7
    me = f"cli:{getpass.getuser()}"
    assert [a for _, a, _ in events] == [me, "ops", me, me, me, me, me]


async def test_list_and_show_print_limits_state_and_counts(
    dbs: Databases,
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = settings_for(dbs, tmp_path)
    for _ in range(2):
        await factories.submit(event_store, conn, queue="bulk")
    await queues.configure(
        conn,
        event_store,
        "mail",
        wire.QueueSettings(concurrency=5, rate_limit=wire.RateLimitIn(limit=2, period_seconds=1)),
        actor="admin",
    )

    assert await ledger_cli(settings, "queues", "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "QUEUE",
        "STATE",
        "CONCURRENCY",
        "RATE_LIMIT",
        "PER_KEY",
        "FAIRNESS",
        "PENDING",
        "RETRYING",
        "RUNNING",
        "VERSION",
    ]
    assert [line.split() for line in lines[1:]] == [
        ["bulk", "active", "-", "-", "-", "fifo", "2", "0", "0", "0"],
        ["mail", "active", "5", "2/1s:2", "-", "fifo", "0", "0", "0", "1"],
    ]

    assert await ledger_cli(settings, "queues", "list", "--json") == 0
    listed = msgspec.json.decode(capsys.readouterr().out, type=wire.QueueList)
    assert [q.name for q in listed.queues] == ["bulk", "mail"]

    assert await ledger_cli(settings, "queues", "show", "mail") == 0
    shown = capsys.readouterr().out
    assert shown.startswith("queue mail  active  (version 1, by admin at ")
    assert "rate limit           2/1s:2" in shown
    assert await ledger_cli(settings, "queues", "show", "bulk", "--json") == 0
    bulk = json.loads(capsys.readouterr().out)
    assert (bulk["version"], bulk["counts"]["pending"]) == (0, 2)
    with pytest.raises(queues.UnknownQueue):
        await ledger_cli(settings, "queues", "show", "nowhere")


async def test_pause_and_resume_record_the_actor_and_reason(
    dbs: Databases, conn: asyncpg.Connection, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(dbs, tmp_path)
    assert (
        await ledger_cli(
            settings, "queues", "pause", "mail", "--reason", "incident 7", "--actor", "ops"
        )
        == 0
    )
    assert "queue mail  PAUSED" in capsys.readouterr().out
    assert await ledger_cli(settings, "queues", "resume", "mail", "--json") == 0
    assert json.loads(capsys.readouterr().out)["paused"] is False

    events = await recorded(conn, "mail")
    assert [(t, a) for t, a, _ in events] == [
        ("queue.paused.v1", "ops"),
        ("queue.resumed.v1", f"cli:{getpass.getuser()}"),
    ]
    assert json.loads(events[0][2])["reason"] == "incident 7"


async def test_bad_flags_and_values_are_refused_and_nothing_is_written(
    dbs: Databases, conn: asyncpg.Connection, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(dbs, tmp_path)
    for argv in (
        ["--rate-limit", "fast"],
        ["--rate-limit", "5/"],
        ["--concurrency", "many"],
        ["--fairness", "lifo"],
    ):
        with pytest.raises(SystemExit) as exited:
            await ledger_cli(settings, "queues", "set", "mail", *argv)
        assert exited.value.code == 2
    assert "is not LIMIT/PERIOD[:BURST]" in capsys.readouterr().err
    with pytest.raises(errors.ConfigError, match="nothing to set"):
        await ledger_cli(settings, "queues", "set", "mail")
    with pytest.raises(errors.InvalidInput, match="concurrency"):
        await ledger_cli(settings, "queues", "set", "mail", "--concurrency", "-1")
    with pytest.raises(errors.InvalidInput, match="rate_limit"):
        await ledger_cli(settings, "queues", "set", "mail", "--rate-limit", "0/1s")
    with pytest.raises(errors.InvalidInput):
        await ledger_cli(settings, "queues", "pause", "no spaces")
    assert await conn.fetchval("SELECT count(*) FROM events") == 0
