"""Merkle checkpoints against the database: proofs from the stored tree hold against the
signed roots (checked by the independent RFC 9162 verifier), forged tree rows give proofs
that fail, a forked log and a cut-back bundle are caught, and a checkpoint stays small."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import asyncpg
import pytest

from audit import bundle, checkpoints, merkle, note, proof, signing, tree
from ledger import store
from projections import feed
from tests import ledgers, rfc9162


async def _feed(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT txid::text::bigint AS txid, position, hash FROM events ORDER BY txid, position"
    )


def _pin(cp: proof.Checkpoint, key: signing.Verifier) -> note.Signed:
    """What an auditor keeps of a checkpoint: its signed note, opened with the key they trust."""
    text = checkpoints.CheckpointOut.of(cp, key).note
    assert text is not None
    return note.open_note(text, key)


async def test_proofs_from_the_stored_tree_hold_for_every_event_and_checkpoint(
    admin_conn: asyncpg.Connection, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    signer = ledgers.signer(tmp_path)
    taken: list[proof.Checkpoint] = []
    for batch in (1, 16, 17, 31, 64, 3, 100):
        await ledgers.bulk_events(admin_conn, batch)
        cp, created = await checkpoints.create(conn, signer)
        assert created and cp is not None
        taken.append(cp)
    rows = await _feed(conn)
    hashes = [bytes(r["hash"]) for r in rows]
    for cp in taken:
        assert cp.digest == rfc9162.mth(hashes[: cp.event_count])
        for index in range(0, cp.event_count, 7):
            r = rows[index]
            got = await tree.inclusion(
                conn, signer.key_id, r["txid"], r["position"], cp.event_count
            )
            path = [bytes.fromhex(h) for h in got.hashes]
            assert got.leaf_index == index
            assert rfc9162.verify_inclusion(index, cp.event_count, hashes[index], path, cp.digest)
    for i, old in enumerate(taken):
        for new in taken[i:]:
            path = await tree.consistency_hashes(
                conn, signer.key_id, old.event_count, new.event_count
            )
            assert rfc9162.verify_consistency(
                old.event_count, new.event_count, old.digest, new.digest, path
            )
    assert (await checkpoints.verify(conn, signer)).ok


async def test_forged_tree_rows_give_proofs_that_fail_and_verify_names_them(
    admin_conn: asyncpg.Connection, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    signer = ledgers.signer(tmp_path)
    old, new = 40 * merkle.CHUNK // 16, 70 * merkle.CHUNK // 16
    await ledgers.bulk_events(admin_conn, old)
    first, _ = await checkpoints.create(conn, signer)
    await ledgers.bulk_events(admin_conn, new - old)
    second, _ = await checkpoints.create(conn, signer)
    assert first is not None and second is not None
    assert (await checkpoints.verify(conn, signer)).ok

    await admin_conn.execute(  # the subtree of the first 2 chunks: in the proof from old to new
        "UPDATE audit_tree_nodes SET hash = sha256(hash) WHERE level = $1 AND index = 0",
        merkle.CHUNK_LEVEL + 1,
    )

    path = await tree.consistency_hashes(conn, signer.key_id, old, new)
    assert not rfc9162.verify_consistency(old, new, first.digest, second.digest, path)
    report = await checkpoints.verify(conn, signer)
    assert [(f.kind, f.checkpoint_id) for f in report.findings] == [
        ("consistency", second.checkpoint_id)
    ]


async def test_the_application_role_cannot_rewrite_the_tree(
    admin_conn: asyncpg.Connection, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    await ledgers.bulk_events(admin_conn, 20)
    await checkpoints.create(conn, ledgers.signer(tmp_path))
    for statement in (
        "DELETE FROM audit_tree_nodes",
        "DELETE FROM audit_tree_marks",
        "UPDATE audit_tree_nodes SET index = index",
        "UPDATE audit_tree_marks SET txid = txid",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(statement)


async def test_a_forked_log_of_the_same_size_is_caught_by_a_held_checkpoint(
    admin_conn: asyncpg.Connection,
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    tmp_path: Path,
) -> None:
    jobs = await ledgers.ledger_of(event_store, conn, 3)
    signer = ledgers.signer(tmp_path)
    held, _ = await checkpoints.create(conn, signer)
    assert held is not None
    pin = _pin(held, signer)
    # A DBA with the key rewrites an event (hash recomputed), wipes checkpoints and tree,
    # and signs the forked history afresh: same size, another root.
    await ledgers.edit_data_rehashed(admin_conn, jobs[1], 3)
    await admin_conn.execute(
        "DELETE FROM audit_checkpoints; DELETE FROM audit_tree_nodes; DELETE FROM audit_tree_marks"
    )
    forked, _ = await checkpoints.create(conn, signer)
    assert forked is not None and forked.event_count == held.event_count
    assert forked.digest != held.digest
    assert (await checkpoints.verify(conn, signer)).ok  # self-consistent on its own

    report = await checkpoints.verify(conn, signer, pins=[pin])
    assert [f.kind for f in report.findings] == ["fork"]
    assert "forked log" in report.findings[0].message

    out = tmp_path / "forked"
    await bundle.export(conn, signer, out)
    assert bundle.verify(out, signer).ok
    assert [f.kind for f in bundle.verify(out, signer, pins=[pin]).findings] == ["fork"]


async def test_a_bundle_cut_back_to_an_earlier_checkpoint_is_caught(
    admin_conn: asyncpg.Connection, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    signer = ledgers.signer(tmp_path)
    await ledgers.bulk_events(admin_conn, 25)
    first, _ = await checkpoints.create(conn, signer)
    await ledgers.bulk_events(admin_conn, 25)
    later, _ = await checkpoints.create(conn, signer)
    assert first is not None and later is not None
    out = tmp_path / "cut"
    await bundle.export(conn, signer, out, end=feed.Cursor(first.txid, first.position))
    assert bundle.verify(out, signer).ok  # alone it passes: it is a true prefix

    report = bundle.verify(out, signer, pins=[_pin(later, signer)])

    assert [f.kind for f in report.findings] == ["truncated"]
    assert "cut back" in report.findings[0].message


async def test_a_bundles_consistency_proofs_are_checked(
    admin_conn: asyncpg.Connection, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    signer = ledgers.signer(tmp_path)
    for _ in range(3):
        await ledgers.bulk_events(admin_conn, 20)
        await checkpoints.create(conn, signer)
    out = tmp_path / "b"
    await bundle.export(conn, signer, out)
    proofs = json.loads((out / bundle.CONSISTENCY).read_text())
    assert [(p["from"], p["to"]) for p in proofs] == [(20, 40), (40, 60)]
    assert bundle.verify(out, signer).ok
    proofs[1]["hashes"][0] = "00" * 32
    (out / bundle.CONSISTENCY).write_text(json.dumps(proofs))

    assert [f.kind for f in bundle.verify(out, signer).findings] == ["consistency"]


async def test_a_checkpoint_row_and_the_tree_stay_small(
    admin_conn: asyncpg.Connection, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    signer = ledgers.signer(tmp_path)
    await ledgers.bulk_events(admin_conn, 4000)
    cp, _ = await checkpoints.create(conn, signer)
    assert cp is not None and cp.event_count == 4000

    row_bytes = await conn.fetchval(
        "SELECT pg_column_size(c.*) FROM audit_checkpoints c WHERE checkpoint_id = $1",
        cp.checkpoint_id,
    )
    assert row_bytes < 300 + 32 * merkle.HASH_SIZE  # O(log n): a frontier of popcount(n) hashes
    tree_bytes = await conn.fetchval(
        "SELECT sum(pg_column_size(n.*)) FROM audit_tree_nodes n"
    ) + await conn.fetchval("SELECT sum(pg_column_size(m.*)) FROM audit_tree_marks m")
    assert tree_bytes / 4000 < 16  # bytes a event, indexes aside


@pytest.mark.parametrize("batch", [tree.LEAVES, 100])
async def test_the_tree_built_in_batches_is_the_one_built_leaf_by_leaf(
    admin_conn: asyncpg.Connection,
    conn: asyncpg.Connection,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    batch: int,
) -> None:
    """Checkpoints at sizes not a multiple of 16, each extending the last at an unaligned
    size (and, with batches of 100, batches ending inside chunks of 16): the stored nodes,
    marks, frontiers and signed roots are those of the one-leaf-at-a-time Python tree."""
    monkeypatch.setattr(tree, "LEAVES", batch)
    signer = ledgers.signer(tmp_path)
    reference = merkle.Frontier()
    nodes: dict[merkle.Node, bytes] = {}
    marks: dict[int, tuple[int, int]] = {}
    for added in (1, 37, 16, 1000, 3, 2047, 259):
        await ledgers.bulk_events(admin_conn, added, per_transaction=600)
        cp, created = await checkpoints.create(conn, signer)
        assert created and cp is not None
        for row in (await _feed(conn))[reference.size :]:
            if reference.size % merkle.CHUNK == 0:
                marks[reference.size] = (row["txid"], row["position"])
            for level, index, value in reference.append(bytes(row["hash"])):
                if level >= merkle.CHUNK_LEVEL:
                    nodes[(level, index)] = value
        assert cp.event_count == reference.size
        assert cp.digest == reference.root()
        assert cp.frontier == reference.encode()

    stored = await conn.fetch("SELECT level, index, hash FROM audit_tree_nodes")
    assert {(r["level"], r["index"]): bytes(r["hash"]) for r in stored} == nodes
    rows = await conn.fetch("SELECT leaf_index, txid, position FROM audit_tree_marks")
    assert {r["leaf_index"]: (r["txid"], r["position"]) for r in rows} == marks


async def test_a_tree_stored_in_chunks_of_16_keeps_proving_once_extended_in_chunks_of_64(
    admin_conn: asyncpg.Connection,
    conn: asyncpg.Connection,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Trees written before the chunk grew from 16 leaves to 64 (every 16th leaf marked,
    subtrees of 16 and 32 stored) serve proofs alongside the rows written after."""
    signer = ledgers.signer(tmp_path)
    taken: list[proof.Checkpoint] = []
    with monkeypatch.context() as before:
        before.setattr(merkle, "CHUNK_LEVEL", 4)
        before.setattr(merkle, "CHUNK", 16)
        for added in (40, 37):
            await ledgers.bulk_events(admin_conn, added)
            taken.append((await checkpoints.create(conn, signer))[0])  # type: ignore[arg-type]
    for added in (150, 5):
        await ledgers.bulk_events(admin_conn, added)
        taken.append((await checkpoints.create(conn, signer))[0])  # type: ignore[arg-type]

    rows = await _feed(conn)
    hashes = [bytes(r["hash"]) for r in rows]
    for cp in taken:
        for index in range(0, cp.event_count, 5):
            got = await tree.inclusion(
                conn, signer.key_id, rows[index]["txid"], rows[index]["position"], cp.event_count
            )
            path = [bytes.fromhex(h) for h in got.hashes]
            assert rfc9162.verify_inclusion(index, cp.event_count, hashes[index], path, cp.digest)
    for old, new in itertools.combinations(taken, 2):
        path = await tree.consistency_hashes(conn, signer.key_id, old.event_count, new.event_count)
        assert rfc9162.verify_consistency(
            old.event_count, new.event_count, old.digest, new.digest, path
        )
    assert (await checkpoints.verify(conn, signer)).ok
