"""Integrating the feed into the stored tree between checkpoints (`checkpoints.integrate`): a
checkpoint then folds only the events after the integrated head, signs the root the whole
feed gives (checked by the independent RFC 9162 tree), and never starts from a head whose
signature or consistency with the newest signed checkpoint does not check out."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import asyncpg
import pytest
from apscheduler import events  # type: ignore[import-untyped]

from audit import checkpoints, head, merkle, tree
from tests import ledgers, rfc9162
from tests.conftest import Databases


async def _hashes(conn: asyncpg.Connection) -> list[bytes]:
    rows = await conn.fetch("SELECT hash FROM events ORDER BY txid, position")
    return [bytes(r["hash"]) for r in rows]


async def test_a_checkpoint_after_integration_folds_only_the_events_after_the_head(
    admin_conn: asyncpg.Connection,
    conn: asyncpg.Connection,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    signer = ledgers.signer(tmp_path)
    await ledgers.bulk_events(admin_conn, 100)
    first, _ = await checkpoints.create(conn, signer)
    await ledgers.bulk_events(admin_conn, 300)
    integrated = await checkpoints.integrate(conn, signer)
    assert integrated is not None and integrated.tree_size == 400
    assert await checkpoints.integrate(conn, signer) is None  # nothing new
    await ledgers.bulk_events(admin_conn, 7)

    with caplog.at_level(logging.INFO, logger="audit.checkpoints"):
        second, created = await checkpoints.create(conn, signer)

    assert created and first is not None and second is not None
    assert "folded 7 events after leaf 400" in caplog.text
    hashes = await _hashes(conn)
    assert (second.event_count, second.digest) == (407, rfc9162.mth(hashes))
    path = await tree.consistency_hashes(conn, signer.key_id, 100, 407)
    assert rfc9162.verify_consistency(100, 407, first.digest, second.digest, path)
    for index in (0, 99, 100, 250, 399, 400, 406):
        key = await conn.fetchrow(
            "SELECT txid::text::bigint AS txid, position FROM events"
            " ORDER BY txid, position OFFSET $1 LIMIT 1",
            index,
        )
        got = await tree.inclusion(conn, signer.key_id, key["txid"], key["position"], 407)
        proof_ = [bytes.fromhex(h) for h in got.hashes]
        assert got.leaf_index == index
        assert rfc9162.verify_inclusion(index, 407, hashes[index], proof_, second.digest)
    assert (await checkpoints.verify(conn, signer)).ok


async def test_events_integrated_and_none_after_are_still_signed_by_the_next_checkpoint(
    admin_conn: asyncpg.Connection, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    signer = ledgers.signer(tmp_path)
    await ledgers.bulk_events(admin_conn, 70)
    assert await checkpoints.integrate(conn, signer) is not None

    cp, created = await checkpoints.create(conn, signer)

    assert created and cp is not None
    assert (cp.event_count, cp.digest) == (70, rfc9162.mth(await _hashes(conn)))
    assert (await checkpoints.create(conn, signer))[1] is False


async def test_a_head_whose_signature_fails_is_not_folded_from_and_is_rewritten(
    admin_conn: asyncpg.Connection,
    conn: asyncpg.Connection,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    signer = ledgers.signer(tmp_path)
    await ledgers.bulk_events(admin_conn, 10)
    await checkpoints.create(conn, signer)
    await ledgers.bulk_events(admin_conn, 90)
    await checkpoints.integrate(conn, signer)
    forged = merkle.Frontier()  # the application role may write heads; it cannot sign them
    forged.extend(merkle.leaf_hashes(bytes(32 * 100)))
    await conn.execute("UPDATE audit_tree_heads SET frontier = $1", forged.encode())
    await ledgers.bulk_events(admin_conn, 5)

    with caplog.at_level(logging.WARNING, logger="audit.checkpoints"):
        cp, _ = await checkpoints.create(conn, signer)

    assert "its signature does not verify" in caplog.text
    assert cp is not None and cp.digest == rfc9162.mth(await _hashes(conn))
    await ledgers.bulk_events(admin_conn, 5)
    moved = await checkpoints.integrate(conn, signer)
    assert moved is not None and moved.tree_size == 110
    stored = await head.get(conn, signer.key_id)
    assert stored is not None and signer.verify(stored.signature, stored.message())
    assert (await checkpoints.verify(conn, signer)).ok


async def test_a_head_the_stored_tree_cannot_prove_consistent_is_not_folded_from(
    admin_conn: asyncpg.Connection,
    conn: asyncpg.Connection,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    signer = ledgers.signer(tmp_path)
    await ledgers.bulk_events(admin_conn, 100)
    await checkpoints.create(conn, signer)
    await ledgers.bulk_events(admin_conn, 300)
    await checkpoints.integrate(conn, signer)
    await admin_conn.execute(  # leaves 128..255: on the proof from 100 to 400 leaves
        "UPDATE audit_tree_nodes SET hash = sha256(hash) WHERE level = 7 AND index = 1"
    )

    with caplog.at_level(logging.WARNING, logger="audit.checkpoints"):
        cp, _ = await checkpoints.create(conn, signer)

    assert "does not prove it extends" in caplog.text
    assert cp is not None and cp.digest == rfc9162.mth(await _hashes(conn))
    report = await checkpoints.verify(conn, signer)
    assert [f.kind for f in report.findings] == ["consistency"]


async def test_integration_folds_no_event_of_a_transaction_still_open_below_it(
    dbs: Databases, admin_conn: asyncpg.Connection, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    signer = ledgers.signer(tmp_path)
    await ledgers.bulk_events(admin_conn, 20)
    slow = await asyncpg.connect(dbs.admin)
    try:
        open_ = slow.transaction()
        await open_.start()
        await ledgers.bulk_events(slow, 3)  # a lower txid, committed after the events below
        await ledgers.bulk_events(admin_conn, 30)

        integrated = await checkpoints.integrate(conn, signer)
        assert integrated is not None and integrated.tree_size == 20

        await open_.commit()
    finally:
        await slow.close()
    assert (await checkpoints.integrate(conn, signer)) is not None
    cp, _ = await checkpoints.create(conn, signer)
    assert cp is not None
    assert (cp.event_count, cp.digest) == (53, rfc9162.mth(await _hashes(conn)))
    assert (await checkpoints.verify(conn, signer)).ok


async def test_scheduled_integration_moves_the_head_without_signing_checkpoints(
    dbs: Databases, admin_conn: asyncpg.Connection, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    signer = ledgers.signer(tmp_path)
    await ledgers.bulk_events(admin_conn, 12)

    ran = asyncio.Event()
    async with checkpoints.scheduled(dbs.app, signer, 0, integrate_seconds=0.2) as scheduler:
        assert scheduler is not None
        scheduler.add_listener(
            lambda event: ran.set() if event.job_id == "audit-integrate" else None,
            events.EVENT_JOB_EXECUTED,
        )
        async with asyncio.timeout(20):
            await ran.wait()

    current = await head.get(conn, signer.key_id)
    assert current is not None
    assert current.tree_size == 12
    assert await conn.fetchval("SELECT count(*) FROM audit_checkpoints") == 0


@pytest.mark.parametrize(
    ("query", "args"),
    [
        ("events_feed_hashes_from", "('{t}', {p}, 64)"),
        ("events_feed_scan", "('{t}', {p})"),
        ("events_feed_scan_range", "('{t}', {p}, '{t}', {q})"),
    ],
)
async def test_proofs_and_the_audit_walk_read_the_feed_after_a_key_from_its_index(
    admin_conn: asyncpg.Connection, query: str, args: str
) -> None:
    await ledgers.bulk_events(admin_conn, 2000)
    await admin_conn.execute("ANALYZE events")
    near_end = await admin_conn.fetchrow(  # a cursor a few events from the end, as is usual
        "SELECT txid::text AS t, position AS p FROM events ORDER BY txid, position OFFSET 1990"
    )
    await admin_conn.execute(f"PREPARE feed_plan AS {tree.Q[query].rstrip().rstrip(';')}")
    bound = args.format(t=near_end["t"], p=near_end["p"], q=near_end["p"] + 5)
    plan = "\n".join(r[0] for r in await admin_conn.fetch(f"EXPLAIN EXECUTE feed_plan{bound}"))
    await admin_conn.execute("DEALLOCATE feed_plan")

    assert "Index Scan using events_tenant_txid_position_idx" in plan, plan
    assert "Sort" not in plan, plan
