"""`ledger audit checkpoint|checkpoints|export|verify` and `ledger replay`, run as the CLI parses them."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import asyncpg
import msgspec
import pytest

from audit import checkpoints, signing
from ledger import commands, config, errors, jobtypes, store
from service import cli
from tests import factories, ledgers
from tests.conftest import Databases


def settings_for(dbs: Databases, tmp_path: Path) -> config.Settings:
    return config.Settings(
        database_url=dbs.app,
        migrate_database_url=dbs.admin,
        data_dir=tmp_path / "data",
        audit_key=tmp_path / "audit.pem",
    )


async def ledger_cli(settings: config.Settings, *argv: str) -> int:
    """Run a command the way `main` does, minus the event loop it creates."""
    return await cli.runner(cli.parser().parse_args(list(argv)))(settings)


async def test_export_then_verify_offline_passes_and_a_tampered_bundle_fails(
    dbs: Databases,
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    jobs = await ledgers.ledger_of(event_store, conn, 3)
    settings = settings_for(dbs, tmp_path)
    out = tmp_path / "bundle"

    assert await ledger_cli(settings, "audit", "export", str(out)) == 0
    assert "exported 9 events (from the start" in capsys.readouterr().out
    offline = config.Settings(database_url="postgresql://nowhere.invalid/none")
    assert await ledger_cli(offline, "audit", "verify", str(out)) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "bundle OK"

    lines = (out / "events.jsonl").read_text().splitlines()
    (out / "events.jsonl").write_text("\n".join(lines[:4] + lines[5:]) + "\n")
    assert await ledger_cli(offline, "audit", "verify", str(out)) == 1
    printed = capsys.readouterr().out
    assert f"TAMPERED gap: job {jobs[1]}: version 2 is missing" in printed
    assert "TAMPERED digest: checkpoint" in printed
    assert printed.splitlines()[-1] == "bundle FAILED verification"


async def test_verify_against_a_pinned_public_key(
    dbs: Databases,
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await ledgers.ledger_of(event_store, conn, 1)
    settings = settings_for(dbs, tmp_path)
    out = tmp_path / "bundle.tar.gz"
    assert await ledger_cli(settings, "audit", "export", str(out)) == 0
    mine = tmp_path / "mine.pub"
    mine.write_text((ledgers.signer(tmp_path, "audit.pem")).pem)
    other = tmp_path / "other.pub"
    other.write_text(ledgers.signer(tmp_path, "other.pem").pem)
    capsys.readouterr()

    assert await ledger_cli(settings, "audit", "verify", str(out), "--public-key", str(mine)) == 0
    assert await ledger_cli(settings, "audit", "verify", str(out), "--public-key", str(other)) == 1
    assert "is not the trusted key" in capsys.readouterr().out


async def test_live_verify_names_a_deleted_job(
    dbs: Databases,
    conn: asyncpg.Connection,
    admin_conn: asyncpg.Connection,
    event_store: store.EventStore,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    jobs = await ledgers.ledger_of(event_store, conn, 2)
    settings = settings_for(dbs, tmp_path)
    assert await ledger_cli(settings, "audit", "checkpoint") == 0
    assert "signed checkpoint 1:" in capsys.readouterr().out
    assert await ledger_cli(settings, "audit", "verify") == 0
    assert capsys.readouterr().out.splitlines()[-1] == "ledger OK"

    await ledgers.delete_job(admin_conn, jobs[0])

    # By default a verification resumes after the last checkpoint verified here; --full
    # walks the whole ledger again and finds what was done before it.
    assert await ledger_cli(settings, "audit", "verify", "--full") == 1
    printed = capsys.readouterr().out
    assert "TAMPERED digest: checkpoint 1 " in printed and "3 fewer events than signed" in printed
    assert len(jobs) == 2
    assert await ledger_cli(settings, "audit", "checkpoints") == 0
    listing = capsys.readouterr().out
    assert "-----BEGIN PUBLIC KEY-----" in listing and "cursor " in listing


async def test_export_by_time_range(
    dbs: Databases,
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await ledgers.ledger_of(event_store, conn, 2)
    settings = settings_for(dbs, tmp_path)
    out = tmp_path / "b"
    assert (
        await ledger_cli(
            settings, "audit", "export", "--from", "2000-01-01", "--to", "2999-01-01T00:00:00Z",
            str(out),
        )
        == 0
    )  # fmt: skip
    assert "exported 6 events" in capsys.readouterr().out
    with pytest.raises(errors.ConfigError, match="neither a feed cursor"):
        await ledger_cli(settings, "audit", "export", "--from", "yesterday", str(tmp_path / "c"))


async def test_replay_prints_the_timeline_and_reruns_the_handler(
    monkeypatch: pytest.MonkeyPatch,
    dbs: Databases,
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import msgspec

    class Payload(msgspec.Struct, frozen=True):
        n: int

    name = f"test.double.{uuid.uuid4().hex[:8]}"

    def double(payload: Payload, ctx: jobtypes.JobContext) -> dict[str, int]:
        return {"n": payload.n * 2}

    # Registered for this test only: other tests walk the global registry.
    job = jobtypes.JobType(name=name, payload_type=Payload, handler=double)
    monkeypatch.setitem(jobtypes.REGISTRY._types, name, job)

    job_id = await factories.submit(event_store, conn, job_type=name, payload={"n": 21})
    await event_store.execute(
        conn, job_id, commands.ClaimJob(worker_id="w", lease_seconds=30), actor="w"
    )
    await event_store.execute(
        conn, job_id, commands.CompleteJob(worker_id="w", result={"n": 41}), actor="w"
    )
    settings = settings_for(dbs, tmp_path)
    events_before = await conn.fetchval("SELECT count(*) FROM events")

    assert await ledger_cli(settings, "replay", str(job_id)) == 0
    table = capsys.readouterr().out
    assert "job.completed.v1" in table and "completed" in table and "STATUS AFTER" in table

    assert await ledger_cli(settings, "replay", str(job_id), "--run") == 0
    ran = capsys.readouterr().out
    assert 'recorded  completed  result {"n":41}' in ran
    assert 'replayed  completed  result {"n":42}' in ran
    assert "DIFFERENT outcome" in ran
    assert await conn.fetchval("SELECT count(*) FROM events") == events_before

    assert await ledger_cli(settings, "replay", str(job_id), "--json", "--run") == 0
    body = json.loads(capsys.readouterr().out)
    assert [s["status"] for s in body["steps"]] == ["pending", "processing", "completed"]
    assert body["replayed"]["result"] == {"n": 42}

    first = body["steps"][0]["occurred_at"]
    assert await ledger_cli(settings, "replay", str(job_id), "--as-of", first, "--json") == 0
    assert [s["version"] for s in json.loads(capsys.readouterr().out)["steps"]] == [1]


async def test_live_verify_without_the_key_file_asks_for_the_public_key(
    dbs: Databases, conn: asyncpg.Connection, event_store: store.EventStore, tmp_path: Path
) -> None:
    """Verifying must not mint a fresh key that would disown every checkpoint."""
    await ledgers.ledger_of(event_store, conn, 1)
    settings = settings_for(dbs, tmp_path)
    assert await ledger_cli(settings, "audit", "checkpoint") == 0
    elsewhere = msgspec.structs.replace(settings, audit_key=tmp_path / "absent.pem")

    with pytest.raises(errors.ConfigError, match="pass --public-key"):
        await ledger_cli(elsewhere, "audit", "verify")
    assert not (tmp_path / "absent.pem").exists()
    public = tmp_path / "audit.pub"
    public.write_text(ledgers.signer(tmp_path, "audit.pem").pem)
    assert await ledger_cli(elsewhere, "audit", "verify", "--public-key", str(public)) == 0


async def test_live_verify_resumes_after_the_last_verified_checkpoint(
    dbs: Databases,
    conn: asyncpg.Connection,
    admin_conn: asyncpg.Connection,
    event_store: store.EventStore,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await ledgers.ledger_of(event_store, conn, 2)
    settings = settings_for(dbs, tmp_path)
    assert await ledger_cli(settings, "audit", "checkpoint") == 0
    assert await ledger_cli(settings, "audit", "verify") == 0
    recorded = json.loads((settings.data_dir / "verified.json").read_text())
    assert (recorded["checkpoint_id"], recorded["tree_size"]) == (1, 6)
    later = await ledgers.ledger_of(event_store, conn, 1)
    assert await ledger_cli(settings, "audit", "checkpoint") == 0
    capsys.readouterr()

    assert await ledger_cli(settings, "audit", "verify") == 0
    printed = capsys.readouterr().out
    assert "from checkpoint 1 (cursor" in printed and ": 3 events since" in printed
    assert json.loads((settings.data_dir / "verified.json").read_text())["tree_size"] == 9

    assert await ledger_cli(settings, "verify", "--since-checkpoint", "1") == 0
    assert "3 events since checkpoint 1" in capsys.readouterr().out
    await ledgers.edit_data(admin_conn, later[0], 2)
    assert await ledger_cli(settings, "verify", "--since-checkpoint", "1") == 1
    assert f"event edited: job {later[0]} version 2" in capsys.readouterr().out
    assert await ledger_cli(settings, "audit", "verify", "--since-checkpoint", "1") == 1


async def test_live_verify_against_a_held_checkpoint_note(
    dbs: Databases,
    conn: asyncpg.Connection,
    admin_conn: asyncpg.Connection,
    event_store: store.EventStore,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    jobs = await ledgers.ledger_of(event_store, conn, 2)
    settings = settings_for(dbs, tmp_path)
    signer = signing.load_or_create(settings.audit_key_path)
    held, _ = await checkpoints.create(conn, signer)
    assert held is not None
    note_file = tmp_path / "held.note"
    note_text = checkpoints.CheckpointOut.of(held, signer).note
    assert note_text is not None
    note_file.write_text(note_text)
    assert (
        await ledger_cli(settings, "audit", "verify", "--trusted-checkpoint", str(note_file)) == 0
    )

    await ledgers.edit_data_rehashed(admin_conn, jobs[1], 3)
    await admin_conn.execute(
        "DELETE FROM audit_checkpoints; DELETE FROM audit_tree_nodes; DELETE FROM audit_tree_marks"
    )
    await checkpoints.create(conn, signer)
    capsys.readouterr()

    assert (
        await ledger_cli(
            settings, "audit", "verify", "--full", "--trusted-checkpoint", str(note_file)
        )
        == 1
    )
    assert "TAMPERED fork: forked log" in capsys.readouterr().out
