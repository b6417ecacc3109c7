"""Audit bundles: exported from the database, verified offline, and every kind of tampering named."""

from __future__ import annotations

import json
import shutil
import tarfile
import uuid
from pathlib import Path

import asyncpg
import msgspec
import pytest

from audit import bundle, checkpoints, proof, signing
from ledger import store
from projections import feed
from tests import ledgers


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (path / bundle.EVENTS).read_text().splitlines()]


def _write(path: Path, lines: list[dict[str, object]]) -> None:
    (path / bundle.EVENTS).write_text("".join(json.dumps(line) + "\n" for line in lines))


def _kinds(report: proof.Report) -> list[str]:
    return [f.kind for f in report.findings]


@pytest.fixture
async def exported(
    conn: asyncpg.Connection, event_store: store.EventStore, tmp_path: Path
) -> tuple[Path, list[uuid.UUID], signing.Signer]:
    jobs = await ledgers.ledger_of(event_store, conn, 4)
    signer = ledgers.signer(tmp_path)
    out = tmp_path / "bundle"
    result = await bundle.export(conn, signer, out)
    assert (result.events, result.checkpoints, result.start) == (12, 1, None)
    return out, jobs, signer


async def test_untouched_bundle_passes_offline(
    exported: tuple[Path, list[uuid.UUID], signing.Signer],
) -> None:
    out, _, signer = exported
    report = bundle.verify(out, trusted=signer)
    assert report.ok, report.findings
    assert (report.events, report.checkpoints, report.uncovered) == (12, 1, 0)
    lines = _lines(out)
    assert isinstance(lines[0]["data"], str)  # the exact jsonb text its hash covers
    assert (out / bundle.PUBLIC_KEY).read_text() == signer.pem


async def test_bundle_line_data_is_the_stored_jsonb_text(
    conn: asyncpg.Connection, exported: tuple[Path, list[uuid.UUID], signing.Signer]
) -> None:
    out, jobs, _ = exported
    first = _lines(out)[0]
    stored = await conn.fetchval(
        "SELECT data::text FROM events WHERE job_id = $1 AND version = 1", jobs[0]
    )
    assert first["data"] == stored and first["job_id"] == str(jobs[0])


async def test_edited_data_in_a_bundle_is_named(
    exported: tuple[Path, list[uuid.UUID], signing.Signer],
) -> None:
    out, jobs, _ = exported
    lines = _lines(out)
    assert '"n": 1' in str(lines[3]["data"])
    lines[3]["data"] = str(lines[3]["data"]).replace('"n": 1', '"n": 2')
    _write(out, lines)

    report = bundle.verify(out)

    assert _kinds(report) == ["content"]
    assert report.findings[0].message.startswith(f"event edited: job {jobs[1]} version 1 at cursor")
    assert "(line 4): its content no longer matches its hash" in report.findings[0].message


async def test_deleted_last_event_in_a_bundle_is_named(
    exported: tuple[Path, list[uuid.UUID], signing.Signer],
) -> None:
    out, jobs, _ = exported
    lines = _lines(out)
    _write(out, [line for line in lines if (line["job_id"], line["version"]) != (str(jobs[1]), 3)])

    report = bundle.verify(out)

    assert _kinds(report) == ["digest", "digest"]
    assert "(11 events, 1 fewer events than signed)" in report.findings[0].message
    assert report.findings[1].message == "the manifest lists 12 events, the bundle holds 11"


async def test_deleted_job_in_a_bundle_is_named(
    exported: tuple[Path, list[uuid.UUID], signing.Signer],
) -> None:
    out, jobs, _ = exported
    _write(out, [line for line in _lines(out) if line["job_id"] != str(jobs[2])])

    report = bundle.verify(out)

    assert _kinds(report)[:1] == ["digest"]
    assert "3 fewer events than signed" in report.findings[0].message


async def test_swapped_events_in_a_bundle_are_named(
    exported: tuple[Path, list[uuid.UUID], signing.Signer],
) -> None:
    out, jobs, _ = exported
    lines = _lines(out)
    lines[3], lines[6] = lines[6], lines[3]
    _write(out, lines)

    report = bundle.verify(out)

    assert _kinds(report)[0] == "order" and "digest" in _kinds(report)
    assert f"(line 5) (job {jobs[1]} version 2) comes after cursor" in report.findings[0].message
    assert "events out of feed order" in report.findings[0].message


async def test_swapped_event_contents_in_a_bundle_are_named(
    exported: tuple[Path, list[uuid.UUID], signing.Signer],
) -> None:
    """Lines swapped but their cursors kept in order: the signed root no longer matches."""
    out, jobs, _ = exported
    lines = _lines(out)
    lines[3], lines[6] = lines[6], lines[3]
    lines[3]["cursor"], lines[6]["cursor"] = lines[6]["cursor"], lines[3]["cursor"]
    _write(out, lines)

    report = bundle.verify(out)

    assert len(jobs) == 4
    assert _kinds(report) == ["gap", "gap", "digest"]
    assert "the same number of events, but different ones" in report.findings[-1].message


async def test_truncated_bundle_is_named(
    exported: tuple[Path, list[uuid.UUID], signing.Signer],
) -> None:
    out, _, _ = exported
    lines = _lines(out)
    _write(out, lines[:-5])

    report = bundle.verify(out)

    assert _kinds(report)[:1] == ["digest"]
    assert "(7 events, 5 fewer events than signed)" in report.findings[0].message


async def test_re_signed_bundle_fails_against_the_trusted_key(
    exported: tuple[Path, list[uuid.UUID], signing.Signer], tmp_path: Path
) -> None:
    """A forger who re-signs with a key of their own passes alone, and is caught by the key the auditor holds."""
    out, _, signer = exported
    forger = ledgers.signer(tmp_path, "forger.pem")
    raw = json.loads((out / bundle.CHECKPOINTS).read_text())
    raw[0]["key_id"] = forger.key_id
    body = raw[0]["signed_message"].replace(signer.key_id, forger.key_id).encode()
    raw[0]["signature"] = forger.sign(body).hex()
    (out / bundle.CHECKPOINTS).write_text(json.dumps(raw))
    (out / bundle.PUBLIC_KEY).write_text(forger.pem)

    assert bundle.verify(out).ok  # self-consistent: only the key id tells them apart
    report = bundle.verify(out, trusted=signer)

    assert _kinds(report)[:2] == ["signature", "signature"]
    assert f"is not the trusted key (id {signer.key_id})" in report.findings[0].message
    assert f"was signed by key {forger.key_id}, not the trusted key" in report.findings[1].message


async def test_altered_checkpoint_in_a_bundle_is_named(
    exported: tuple[Path, list[uuid.UUID], signing.Signer],
) -> None:
    out, _, _ = exported
    raw = json.loads((out / bundle.CHECKPOINTS).read_text())
    raw[0]["event_count"] = 11
    (out / bundle.CHECKPOINTS).write_text(json.dumps(raw))

    report = bundle.verify(out)

    assert "signature" in _kinds(report)
    assert "signature that does not verify" in report.findings[0].message
    assert "covered by no signature" in report.findings[-1].message


async def test_bundle_range_starts_after_a_checkpoint_and_ends_at_one(
    conn: asyncpg.Connection, event_store: store.EventStore, tmp_path: Path
) -> None:
    signer = ledgers.signer(tmp_path)
    await ledgers.ledger_of(event_store, conn, 2)
    first, _ = await checkpoints.create(conn, signer)
    later = await ledgers.ledger_of(event_store, conn, 2)
    assert first is not None

    out = tmp_path / "later.tar.gz"
    result = await bundle.export(conn, signer, out, start=feed.Cursor(first.txid, first.position))

    assert (result.events, result.checkpoints, result.start) == (6, 2, first.cursor)
    with tarfile.open(out) as tar:
        assert sorted(tar.getnames()) == sorted(
            [
                bundle.MANIFEST,
                bundle.PUBLIC_KEY,
                bundle.CHECKPOINTS,
                bundle.CONSISTENCY,
                bundle.EVENTS,
            ]
        )
    report = bundle.verify(out, trusted=signer)
    assert report.ok, report.findings
    assert report.events == 6
    unpacked = tmp_path / "unpacked"
    shutil.unpack_archive(out, unpacked, filter="data")
    assert {line["job_id"] for line in _lines(unpacked)} == {str(j) for j in later}


async def test_export_refuses_an_existing_path(
    exported: tuple[Path, list[uuid.UUID], signing.Signer], conn: asyncpg.Connection
) -> None:
    out, _, signer = exported
    with pytest.raises(bundle.BundleError, match="already exists"):
        await bundle.export(conn, signer, out)


async def test_bundle_written_before_one_checkpoint_encoding_still_verifies(
    exported: tuple[Path, list[uuid.UUID], signing.Signer],
) -> None:
    """Bundles exported before the API and bundles shared one encoder stamped `created_at`
    with all six fraction digits, in another key order: they verify as they did."""
    out, _, signer = exported
    raw = json.loads((out / bundle.CHECKPOINTS).read_text())
    order = ["checkpoint_id", "cursor", "event_count", "digest", "base_cursor", "base_count"]
    order += ["base_digest", "witness", "signature", "key_id", "created_at", "signed_message"]
    order += ["frontier"]
    old = [{key: cp[key] for key in order} for cp in raw]
    old[0]["created_at"] = "2024-05-01T12:00:00.000000Z"
    (out / bundle.CHECKPOINTS).write_text(json.dumps(old, indent=1) + "\n")

    report = bundle.verify(out, trusted=signer)

    assert report.ok, report.findings
    assert (report.events, report.checkpoints) == (12, 1)


async def test_a_bundles_checkpoints_are_the_apis_encoding_with_base_and_witness(
    conn: asyncpg.Connection, exported: tuple[Path, list[uuid.UUID], signing.Signer]
) -> None:
    out, _, signer = exported
    [cp] = await checkpoints.list_all(conn)
    [bundled] = json.loads((out / bundle.CHECKPOINTS).read_text())

    published = json.loads(msgspec.json.encode(checkpoints.CheckpointOut.of(cp, signer)))
    extra = ("base_digest", "witness", "frontier")
    assert {k: v for k, v in bundled.items() if k not in extra} == published
    assert bundled["created_at"] == published["created_at"]
