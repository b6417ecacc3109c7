"""Signed checkpoints against a hostile database superuser (DESIGN.md invariant 6, and more).

Each tampering is done as the superuser with the append-only trigger disabled, after
a checkpoint was taken; the chain verifier or the checkpoint check must name it.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import asyncpg
import pytest

from audit import chains, checkpoints
from ledger import store
from tests import factories, ledgers, rfc9162
from tests.conftest import Databases


async def test_checkpoint_signs_the_merkle_root_of_the_whole_feed_as_a_note(
    conn: asyncpg.Connection, event_store: store.EventStore, tmp_path: Path
) -> None:
    await ledgers.ledger_of(event_store, conn, 3)
    signer = ledgers.signer(tmp_path)

    cp, created = await checkpoints.create(conn, signer)

    assert created and cp is not None
    rows = await conn.fetch(
        "SELECT txid::text::bigint AS txid, position, hash FROM events ORDER BY txid, position"
    )
    root = rfc9162.mth([bytes(row["hash"]) for row in rows])
    assert (cp.event_count, cp.digest) == (9, root)
    assert cp.key == (rows[-1]["txid"], rows[-1]["position"])
    body = f"job-ledger/{signer.key_id}\n9\n{base64.b64encode(root).decode()}\n"
    assert signer.verify(cp.signature, body.encode())
    assert cp.key_id == signer.key_id


async def test_checkpoints_extend_the_previous_one_and_skip_when_nothing_is_new(
    conn: asyncpg.Connection, event_store: store.EventStore, tmp_path: Path
) -> None:
    signer = ledgers.signer(tmp_path)
    assert await checkpoints.create(conn, signer) == (None, False)
    await ledgers.ledger_of(event_store, conn, 2)
    first, _ = await checkpoints.create(conn, signer)
    again, created = await checkpoints.create(conn, signer)
    assert not created and again == first
    await ledgers.ledger_of(event_store, conn, 1)
    second, created = await checkpoints.create(conn, signer)

    assert created and first is not None and second is not None
    assert (second.base_count, second.event_count) == (6, 9)
    assert second.base_key == first.key and second.base_digest == first.digest
    assert second.witness == b"" and len(second.frontier or b"") == 32 * 2  # 9 = 0b1001
    report = await checkpoints.verify(conn, signer)
    assert report.ok, report.findings
    assert (report.events, report.checkpoints, report.verified_through) == (9, 2, second.cursor)


async def test_untouched_ledger_verifies(
    conn: asyncpg.Connection, event_store: store.EventStore, tmp_path: Path
) -> None:
    await ledgers.ledger_of(event_store, conn, 4)
    signer = ledgers.signer(tmp_path)
    await checkpoints.create(conn, signer)
    await ledgers.run_job(event_store, conn, 99)

    report = await checkpoints.verify(conn, signer)

    assert report.ok and report.uncovered == 3
    assert (await chains.verify(conn)).ok


async def test_edited_event_data_is_named_by_the_chain_verifier(
    conn: asyncpg.Connection,
    admin_conn: asyncpg.Connection,
    event_store: store.EventStore,
    tmp_path: Path,
) -> None:
    jobs = await ledgers.ledger_of(event_store, conn, 3)
    await checkpoints.create(conn, ledgers.signer(tmp_path))

    await ledgers.edit_data(admin_conn, jobs[1], 2)

    report = await chains.verify(conn)
    assert [(b.job_id, b.version, b.reason) for b in report.broken] == [
        (jobs[1], 2, "event content does not match its hash")
    ]


async def test_edit_with_recomputed_hash_is_caught_by_the_checkpoint(
    conn: asyncpg.Connection,
    admin_conn: asyncpg.Connection,
    event_store: store.EventStore,
    tmp_path: Path,
) -> None:
    jobs = await ledgers.ledger_of(event_store, conn, 3)
    signer = ledgers.signer(tmp_path)
    cp, _ = await checkpoints.create(conn, signer)
    assert cp is not None

    await ledgers.edit_data_rehashed(admin_conn, jobs[1], 3)  # its last event: chain still holds

    assert (await chains.verify(conn)).ok
    report = await checkpoints.verify(conn, signer)
    assert [(f.kind, f.checkpoint_id) for f in report.findings] == [("digest", cp.checkpoint_id)]
    assert "do not give its signed tree root" in report.findings[0].message
    assert "the same number of events" in report.findings[0].message


async def test_deleted_last_event_of_a_job_is_named(
    conn: asyncpg.Connection,
    admin_conn: asyncpg.Connection,
    event_store: store.EventStore,
    tmp_path: Path,
) -> None:
    jobs = await ledgers.ledger_of(event_store, conn, 3)
    signer = ledgers.signer(tmp_path)
    await checkpoints.create(conn, signer)

    version = await ledgers.delete_last_event(admin_conn, jobs[0])

    assert (await chains.verify(conn)).ok  # a shorter chain is still a valid chain
    assert version == 3
    report = await checkpoints.verify(conn, signer)
    assert [f.kind for f in report.findings] == ["digest"]
    assert "(8 events, 1 fewer events than signed)" in report.findings[0].message


async def test_deleted_job_is_named(
    conn: asyncpg.Connection,
    admin_conn: asyncpg.Connection,
    event_store: store.EventStore,
    tmp_path: Path,
) -> None:
    jobs = await ledgers.ledger_of(event_store, conn, 3)
    signer = ledgers.signer(tmp_path)
    await checkpoints.create(conn, signer)

    await ledgers.delete_job(admin_conn, jobs[1])

    assert (await chains.verify(conn)).ok
    report = await checkpoints.verify(conn, signer)
    assert [f.kind for f in report.findings] == ["digest"]
    assert "3 fewer events than signed" in report.findings[0].message


async def test_swapped_events_are_named_as_reordered(
    conn: asyncpg.Connection,
    admin_conn: asyncpg.Connection,
    event_store: store.EventStore,
    tmp_path: Path,
) -> None:
    jobs = await ledgers.ledger_of(event_store, conn, 3)
    signer = ledgers.signer(tmp_path)
    await checkpoints.create(conn, signer)
    first, second = [
        await conn.fetchval("SELECT position FROM events WHERE job_id = $1 AND version = 1", job)
        for job in (jobs[0], jobs[2])
    ]

    await ledgers.swap_events(admin_conn, first, second)

    assert (await chains.verify(conn)).ok  # every event's content and link are intact
    report = await checkpoints.verify(conn, signer)
    assert [f.kind for f in report.findings] == ["digest"]
    assert "the same number of events, but different ones" in report.findings[0].message


async def test_truncated_tail_is_named(
    conn: asyncpg.Connection,
    admin_conn: asyncpg.Connection,
    event_store: store.EventStore,
    tmp_path: Path,
) -> None:
    jobs = await ledgers.ledger_of(event_store, conn, 3)
    signer = ledgers.signer(tmp_path)
    cp, _ = await checkpoints.create(conn, signer)
    assert cp is not None

    await ledgers.truncate_tail(admin_conn, 4)

    assert len(jobs) == 3
    report = await checkpoints.verify(conn, signer)
    assert [(f.kind, f.checkpoint_id) for f in report.findings] == [("digest", cp.checkpoint_id)]
    assert "(5 events, 4 fewer events than signed)" in report.findings[0].message


async def test_tampering_before_an_older_checkpoint_fails_it_and_the_proof_to_the_next(
    conn: asyncpg.Connection,
    admin_conn: asyncpg.Connection,
    event_store: store.EventStore,
    tmp_path: Path,
) -> None:
    jobs = await ledgers.ledger_of(event_store, conn, 2)
    signer = ledgers.signer(tmp_path)
    first, _ = await checkpoints.create(conn, signer)
    await ledgers.ledger_of(event_store, conn, 2)
    second, _ = await checkpoints.create(conn, signer)
    assert first is not None and second is not None

    await ledgers.delete_job(admin_conn, jobs[0])

    report = await checkpoints.verify(conn, signer)
    # The newer checkpoint's own events are intact; its consistency proof reads the old ones.
    assert [(f.kind, f.checkpoint_id) for f in report.findings] == [
        ("digest", first.checkpoint_id),
        ("consistency", second.checkpoint_id),
    ]
    assert report.verified_through == second.cursor


async def test_altered_checkpoint_fails_its_signature_and_blocks_the_next(
    conn: asyncpg.Connection,
    admin_conn: asyncpg.Connection,
    event_store: store.EventStore,
    tmp_path: Path,
) -> None:
    await ledgers.ledger_of(event_store, conn, 2)
    signer = ledgers.signer(tmp_path)
    cp, _ = await checkpoints.create(conn, signer)
    assert cp is not None

    await admin_conn.execute(
        "UPDATE audit_checkpoints SET event_count = event_count - 1 WHERE checkpoint_id = $1",
        cp.checkpoint_id,
    )

    report = await checkpoints.verify(conn, signer)
    assert [f.kind for f in report.findings] == ["signature"]
    assert "signature that does not verify" in report.findings[0].message
    await ledgers.run_job(event_store, conn, 7)
    with pytest.raises(checkpoints.CheckpointError, match="does not verify"):
        await checkpoints.create(conn, signer)


async def test_checkpoint_from_another_key_is_not_trusted(
    conn: asyncpg.Connection, event_store: store.EventStore, tmp_path: Path
) -> None:
    await ledgers.ledger_of(event_store, conn, 1)
    await checkpoints.create(conn, ledgers.signer(tmp_path, "forger.pem"))

    report = await checkpoints.verify(conn, ledgers.signer(tmp_path))

    assert [f.kind for f in report.findings] == ["signature"]
    assert "not the trusted key" in report.findings[0].message


async def test_application_role_cannot_rewrite_checkpoints(
    conn: asyncpg.Connection, event_store: store.EventStore, tmp_path: Path
) -> None:
    await factories.submit(event_store, conn)
    await checkpoints.create(conn, ledgers.signer(tmp_path))

    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await conn.execute("UPDATE audit_checkpoints SET event_count = 0")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await conn.execute("DELETE FROM audit_checkpoints")


async def _wait_for_checkpoint(conn: asyncpg.Connection, count: int) -> int:
    """Poll (at most 20 s) until a checkpoint covers `count` events; the number of checkpoints then."""
    async with asyncio.timeout(20):
        while True:
            covered = await conn.fetchval("SELECT max(event_count) FROM audit_checkpoints")
            if covered == count:
                return int(await conn.fetchval("SELECT count(*) FROM audit_checkpoints"))
            await asyncio.sleep(0.05)


async def test_scheduled_checkpoints_start_at_once_and_follow_new_events(
    dbs: Databases, conn: asyncpg.Connection, event_store: store.EventStore, tmp_path: Path
) -> None:
    await ledgers.ledger_of(event_store, conn, 1)
    signer = ledgers.signer(tmp_path)

    async with checkpoints.scheduled(dbs.app, signer, interval_seconds=0.2) as scheduler:
        assert scheduler is not None
        assert await _wait_for_checkpoint(conn, 3) == 1
        await ledgers.run_job(event_store, conn, 2)
        assert await _wait_for_checkpoint(conn, 6) == 2

    assert (await checkpoints.verify(conn, signer)).ok


async def test_interval_zero_schedules_nothing(dbs: Databases, tmp_path: Path) -> None:
    async with checkpoints.scheduled(dbs.app, ledgers.signer(tmp_path), 0) as scheduler:
        assert scheduler is None


async def test_a_forged_frontier_blocks_the_next_checkpoint(
    conn: asyncpg.Connection,
    admin_conn: asyncpg.Connection,
    event_store: store.EventStore,
    tmp_path: Path,
) -> None:
    await ledgers.ledger_of(event_store, conn, 3)
    signer = ledgers.signer(tmp_path)
    await checkpoints.create(conn, signer)
    # The frontier is not signed on its own: folded, it must give the signed root.
    await admin_conn.execute("UPDATE audit_checkpoints SET frontier = reverse(frontier)")
    await ledgers.run_job(event_store, conn, 7)

    with pytest.raises(checkpoints.CheckpointError, match="frontier does not fold"):
        await checkpoints.create(conn, signer)
