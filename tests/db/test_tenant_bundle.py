"""A tenant's audit bundle (format v2): only its events and its checkpoints and proofs, verified
complete offline, with no global position or count; one of its events left out, or another
tenant's added, fails."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
import pytest

from audit import bundle, checkpoints, proof, signing
from projections import feed
from service import cli
from tests import ledgers
from tests.conftest import Databases
from tests.db.test_audit_per_tenant import bulk_in, interleaved
from tests.db.test_cli_audit import ledger_cli, settings_for


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (path / bundle.EVENTS).read_text().splitlines()]


def _write(path: Path, lines: list[dict[str, object]]) -> None:
    (path / bundle.EVENTS).write_text("".join(json.dumps(line) + "\n" for line in lines))


def _kinds(report: proof.Report) -> list[str]:
    return [f.kind for f in report.findings]


async def _acme_bundle(
    admin: asyncpg.Connection, conn: asyncpg.Connection, tmp_path: Path
) -> tuple[Path, signing.Signer]:
    """acme's log: 17 events, a checkpoint, 50 more (default and beta's interleaved)."""
    signer = ledgers.signer(tmp_path)
    await bulk_in(admin, "acme", 17)
    await checkpoints.create(conn, signer, tenant="acme")
    await interleaved(admin)  # 70 default, 67 more of acme, 5 of beta
    out = tmp_path / "acme"
    exported = await bundle.export(conn, signer, out, tenant="acme")
    assert (exported.events, exported.checkpoints, exported.start, exported.end) == (
        84,
        2,
        None,
        "0.84",
    )
    return out, signer


async def test_a_tenant_bundle_verifies_complete_and_shows_no_global_position(
    admin_conn: asyncpg.Connection, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    out, signer = await _acme_bundle(admin_conn, conn, tmp_path)

    report = bundle.verify(out, trusted=signer)
    assert report.ok, report.findings
    assert (report.events, report.checkpoints, report.uncovered) == (84, 2, 0)
    lines = _lines(out)
    assert [line["leaf"] for line in lines] == list(range(84))
    assert {line["tenant"] for line in lines} == {"acme"}
    assert all("cursor" not in line for line in lines)
    manifest = json.loads((out / bundle.MANIFEST).read_text())
    assert (manifest["format"], manifest["tenant"], manifest["events"]) == (
        bundle.TENANT_FORMAT,
        "acme",
        84,
    )
    listed = json.loads((out / bundle.CHECKPOINTS).read_text())
    assert [(c["checkpoint_id"], c["cursor"], c["base_cursor"]) for c in listed] == [
        (17, "0.17", "0.0"),
        (84, "0.84", "0.17"),
    ]
    assert all(c["note"].startswith(f"job-ledger/{signer.key_id}/tenant/acme\n") for c in listed)
    # No feed position, transaction id or checkpoint id of the ledger appears anywhere.
    text = "".join(p.read_text() for p in out.iterdir())
    places = await admin_conn.fetch("SELECT txid::text AS t, position AS p FROM events")
    assert not [r for r in places if f"{r['t']}.{r['p']}" in text]
    ids = await admin_conn.fetch("SELECT checkpoint_id FROM audit_checkpoints")
    assert not [r for r in ids if f'"checkpoint_id": {r["checkpoint_id"]},' in text]


async def test_a_tenant_bundle_missing_one_of_its_events_fails(
    admin_conn: asyncpg.Connection, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    out, signer = await _acme_bundle(admin_conn, conn, tmp_path)
    lines = _lines(out)
    _write(out, lines[:40] + lines[41:])  # a submission: no job loses a link

    report = bundle.verify(out, trusted=signer)
    assert not report.ok
    assert "missing" in _kinds(report) and "digest" in _kinds(report), report.findings
    assert "leaf 40 is missing from tenant acme's log" in report.findings[0].message


async def test_a_tenant_bundle_with_another_tenants_event_added_fails(
    admin_conn: asyncpg.Connection, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    out, signer = await _acme_bundle(admin_conn, conn, tmp_path)
    other = await admin_conn.fetchrow(
        "SELECT * , data::text AS text FROM events WHERE tenant = 'beta' LIMIT 1"
    )
    foreign = {
        "leaf": 50,
        "tenant": "beta",
        "job_id": str(other["job_id"]),
        "version": other["version"],
        "type": other["type"],
        "actor": other["actor"],
        "occurred_at": other["occurred_at"].strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "data": other["text"],
        "prev_hash": bytes(other["prev_hash"]).hex(),
        "hash": bytes(other["hash"]).hex(),
    }
    lines = _lines(out)
    for line in lines[50:]:  # renumbered, so only the added event stands out
        line["leaf"] = int(line["leaf"]) + 1  # type: ignore[call-overload]
    _write(out, [*lines[:50], foreign, *lines[50:]])

    report = bundle.verify(out, trusted=signer)
    assert not report.ok
    assert "unexpected" in _kinds(report) and "digest" in _kinds(report), report.findings
    assert "an event of tenant beta in tenant acme's bundle" in report.findings[0].message
    # Relabelled as acme's, its hash no longer holds.
    _write(out, [*lines[:50], {**foreign, "tenant": "acme"}, *lines[50:]])
    assert "content" in _kinds(bundle.verify(out, trusted=signer))


async def test_a_tenant_bundle_relabelled_as_another_tenants_fails(
    admin_conn: asyncpg.Connection, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    out, signer = await _acme_bundle(admin_conn, conn, tmp_path)
    manifest = json.loads((out / bundle.MANIFEST).read_text())
    (out / bundle.MANIFEST).write_text(json.dumps({**manifest, "tenant": "beta"}))

    report = bundle.verify(out, trusted=signer)
    assert _kinds(report).count("signature") >= 2, report.findings  # each checkpoint's


async def test_a_tenant_bundle_of_a_range_starts_after_its_checkpoint(
    admin_conn: asyncpg.Connection, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    signer = ledgers.signer(tmp_path)
    await bulk_in(admin_conn, "acme", 17)
    first, _ = await checkpoints.create(conn, signer, tenant="acme")
    assert first is not None
    await interleaved(admin_conn)
    out = tmp_path / "range"

    exported = await bundle.export(
        conn, signer, out, start=feed.Cursor(first.txid, first.position), tenant="acme"
    )

    assert (exported.events, exported.start, exported.end) == (67, "0.17", "0.84")
    assert [line["leaf"] for line in _lines(out)] == list(range(17, 84))
    assert bundle.verify(out, trusted=signer).ok
    manifest = json.loads((out / bundle.MANIFEST).read_text())
    assert manifest["requested"] == {"from": None, "to": None}


async def test_export_tenant_from_the_cli_then_verify_offline(
    dbs: Databases,
    admin_conn: asyncpg.Connection,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await interleaved(admin_conn)
    settings = settings_for(dbs, tmp_path)
    acme, plain = tmp_path / "acme.tar.gz", tmp_path / "default"

    assert await ledger_cli(settings, "audit", "export", "--tenant", "acme", str(acme)) == 0
    assert "exported 67 events (from the start, through cursor 0.67)" in capsys.readouterr().out
    assert await ledger_cli(settings, "audit", "export", str(plain)) == 0
    assert json.loads((plain / bundle.MANIFEST).read_text())["format"] == bundle.FORMAT
    assert len(_lines(plain)) == 70
    capsys.readouterr()
    offline = settings_for(dbs, tmp_path)
    assert await ledger_cli(offline, "audit", "verify", str(acme)) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "bundle OK"
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["audit", "export", "--tenant", "no/such", str(tmp_path / "x")])
