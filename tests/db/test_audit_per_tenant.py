"""Each tenant's events form an audit log of their own (sql/0066): a Merkle tree, checkpoints
whose notes name the tenant, proofs and heads; tenant default's is the log kept before
tenants, so checkpoints made before keep verifying and new ones extend them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from audit import checkpoints, head, merkle, note, proof, signing, tree
from ledger import acting, migrations
from tests import ledgers, pg, rfc9162
from tests.conftest import Databases


async def bulk_in(admin: asyncpg.Connection, tenant: str, events: int) -> None:
    """`events` submitted jobs of `tenant`, appended in one transaction acting in it."""
    async with admin.transaction():
        await acting.act_in(admin, tenant)
        await ledgers.bulk_events(admin, events)


async def feed_of(conn: asyncpg.Connection, tenant: str) -> list[asyncpg.Record]:
    """The tenant's events in feed order: its log's leaves."""
    return await conn.fetch(
        "SELECT txid::text::bigint AS txid, position, hash FROM events WHERE tenant = $1 "
        "ORDER BY txid, position",
        tenant,
    )


async def interleaved(admin: asyncpg.Connection) -> dict[str, int]:
    """Three tenants' events interleaved in the feed; how many each has."""
    counts = {"default": 0, "acme": 0, "beta": 0}
    for tenant, n in [("default", 40), ("acme", 17), ("default", 30), ("beta", 5), ("acme", 50)]:
        await bulk_in(admin, tenant, n)
        counts[tenant] += n
    return counts


async def test_each_tenant_has_its_own_tree_checkpoints_and_proofs(
    admin_conn: asyncpg.Connection, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    signer = ledgers.signer(tmp_path)
    counts = await interleaved(admin_conn)
    taken: dict[str, proof.Checkpoint] = {}
    for tenant in counts:
        cp, created = await checkpoints.create(conn, signer, tenant=tenant)
        assert created and cp is not None and cp.tenant == tenant
        hashes = [bytes(r["hash"]) for r in await feed_of(admin_conn, tenant)]
        assert (cp.event_count, cp.digest) == (counts[tenant], rfc9162.mth(hashes))
        taken[tenant] = cp
    await bulk_in(admin_conn, "acme", 70)
    grown, _ = await checkpoints.create(conn, signer, tenant="acme")
    assert grown is not None and grown.event_count == 137

    acme = await feed_of(admin_conn, "acme")
    hashes = [bytes(r["hash"]) for r in acme]
    async with conn.transaction():
        await acting.act_in(conn, "acme")
        for index in (0, 16, 66, 136):
            got = await tree.inclusion(
                conn, signer.key_id, acme[index]["txid"], acme[index]["position"], 137
            )
            assert got.leaf_index == index
            path = [bytes.fromhex(h) for h in got.hashes]
            assert rfc9162.verify_inclusion(index, 137, hashes[index], path, grown.digest)
        path = await tree.consistency_hashes(conn, signer.key_id, 67, 137)
        assert rfc9162.verify_consistency(67, 137, taken["acme"].digest, grown.digest, path)
        listed = await checkpoints.list_recent(conn)
        assert [cp.event_count for cp in listed] == [137, 67]
        default_event = (await feed_of(admin_conn, "default"))[0]
        with pytest.raises(tree.UnknownLeaf):  # another tenant's event is no leaf of acme's
            await tree.inclusion(
                conn, signer.key_id, default_event["txid"], default_event["position"], 137
            )
    # The default tenant's proofs (no tenant named) see only its own 70 events.
    assert [cp.event_count for cp in await checkpoints.list_recent(conn)] == [70]
    with pytest.raises(tree.UnknownLeaf):
        await tree.inclusion(conn, signer.key_id, acme[0]["txid"], acme[0]["position"], 70)
    for tenant in counts:
        report = await checkpoints.verify(conn, signer, tenant=tenant)
        assert report.ok, report.findings
        assert report.events == (137 if tenant == "acme" else counts[tenant])


async def test_a_tenants_checkpoint_note_names_the_tenant_and_defaults_stays_as_it_was(
    admin_conn: asyncpg.Connection, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    signer = ledgers.signer(tmp_path)
    await bulk_in(admin_conn, "acme", 3)
    await bulk_in(admin_conn, "default", 2)
    acme, _ = await checkpoints.create(conn, signer, tenant="acme")
    plain, _ = await checkpoints.create(conn, signer)
    assert acme is not None and plain is not None

    acme_note = checkpoints.CheckpointOut.of(acme, signer).note
    plain_note = checkpoints.CheckpointOut.of(plain, signer).note
    assert acme_note is not None and plain_note is not None
    assert acme_note.splitlines()[:2] == [f"job-ledger/{signer.key_id}/tenant/acme", "3"]
    assert plain_note.splitlines()[:2] == [f"job-ledger/{signer.key_id}", "2"]
    assert f"\u2014 job-ledger/{signer.key_id}/tenant/acme " in acme_note
    assert note.open_note(acme_note, signer).origin == note.origin(signer.key_id, "acme")
    assert note.verifier_key(signer, "acme").startswith(f"job-ledger/{signer.key_id}/tenant/acme+")

    # A checkpoint moved to another tenant's log no longer verifies there.
    await admin_conn.execute(
        "UPDATE audit_checkpoints SET tenant = 'beta' WHERE checkpoint_id = $1", acme.checkpoint_id
    )
    await bulk_in(admin_conn, "beta", 3)
    report = await checkpoints.verify(conn, signer, tenant="beta")
    assert [f.kind for f in report.findings] == ["signature"], report.findings
    # A note the auditor holds of acme's log is not taken for default's.
    held = note.open_note(acme_note, signer)
    report = await checkpoints.verify(conn, signer, pins=[held])
    assert [f.kind for f in report.findings] == ["signature"]
    assert "is of log" in report.findings[0].message


async def test_a_tenants_head_is_its_own_and_names_it(
    admin_conn: asyncpg.Connection, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    signer = ledgers.signer(tmp_path)
    await bulk_in(admin_conn, "acme", 80)
    await bulk_in(admin_conn, "default", 10)
    moved = await checkpoints.integrate(conn, signer, tenant="acme")
    assert moved is not None and (moved.tenant, moved.tree_size) == ("acme", 80)
    assert moved.message().startswith(b"job-ledger integrated tree head v2\nacme\n")
    assert await head.get(conn, signer.key_id) is None  # default's: none yet
    # A head moved to another tenant's row does not verify: that tenant folds from scratch.
    await admin_conn.execute("UPDATE audit_tree_heads SET tenant = 'default'")
    cp, _ = await checkpoints.create(conn, signer)
    assert cp is not None and cp.event_count == 10
    acme, _ = await checkpoints.create(conn, signer, tenant="acme")
    assert acme is not None and acme.event_count == 80
    assert (await checkpoints.verify(conn, signer, tenant="acme")).ok


async def test_scheduled_checkpoints_and_integration_cover_every_tenant_with_events(
    dbs: Databases, admin_conn: asyncpg.Connection, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    signer = ledgers.signer(tmp_path)
    await interleaved(admin_conn)
    assert sorted(await checkpoints.tenants(conn)) == ["acme", "beta", "default"]

    async def until(expected: dict[str, int]) -> None:
        """Poll (at most 20 s) until each tenant's newest checkpoint has these sizes."""
        async with asyncio.timeout(20):
            while True:
                rows = await admin_conn.fetch(
                    "SELECT tenant, max(event_count) AS n FROM audit_checkpoints GROUP BY tenant"
                )
                if {r["tenant"]: r["n"] for r in rows} == expected:
                    return
                await asyncio.sleep(0.05)

    async with checkpoints.scheduled(dbs.app, signer, 0.1, integrate_seconds=0.1):
        await until({"default": 70, "acme": 67, "beta": 5})
        await bulk_in(admin_conn, "beta", 4)
        await until({"default": 70, "acme": 67, "beta": 9})
    # One checkpoint a tenant per change: tenants with nothing new were skipped.
    counted = await admin_conn.fetch(
        "SELECT tenant, count(*) AS n FROM audit_checkpoints GROUP BY tenant ORDER BY tenant"
    )
    assert [(r["tenant"], r["n"]) for r in counted] == [("acme", 1), ("beta", 2), ("default", 1)]
    for tenant in ("default", "acme", "beta"):
        assert (await checkpoints.verify(conn, signer, tenant=tenant)).ok


@pytest.mark.parametrize(
    ("query", "args"),
    [
        (
            "tree_leaves_batch",
            "('{t}', {p}, 0, 32768, '{{}}', '{{}}', '{{}}', '{{}}', '{{}}', '{{}}', 64)",
        ),
        ("events_feed_hashes_from", "('{t}', {p}, 64)"),
        ("events_feed_scan", "('{t}', {p})"),
        ("events_feed_scan_range", "('{t}', {p}, '{t}', {q})"),
    ],
)
async def test_a_small_tenants_scans_read_only_its_events_through_its_index(
    admin_conn: asyncpg.Connection, query: str, args: str
) -> None:
    await bulk_in(admin_conn, "small", 3)
    await bulk_in(admin_conn, "default", 20000)
    await bulk_in(admin_conn, "small", 3)
    await admin_conn.execute("ANALYZE events")
    first = await admin_conn.fetchrow(
        "SELECT txid::text AS t, position AS p FROM events WHERE tenant = 'small' "
        "ORDER BY txid, position LIMIT 1"
    )
    async with admin_conn.transaction():
        await acting.act_in(admin_conn, "small")
        await admin_conn.execute(f"PREPARE feed_plan AS {tree.Q[query].rstrip().rstrip(';')}")
        bound = args.format(t=first["t"], p=first["p"], q=first["p"] + 30000)
        plan = "\n".join(
            r[0]
            for r in await admin_conn.fetch(
                f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE feed_plan{bound}"
            )
        )
        await admin_conn.execute("DEALLOCATE feed_plan")

    assert "Index Scan using events_tenant_txid_position_idx" in plan, plan
    assert "Rows Removed by Filter" not in plan, plan  # no other tenant's event was read
    assert "Sort Key: e." not in plan, plan  # the events come in the index's order


@pytest_asyncio.fixture(loop_scope="session")
async def empty_db(server_dsn: str) -> AsyncIterator[str]:
    name = f"m_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield pg.with_database(server_dsn, name)
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def _sign_as_before_0066(
    conn: asyncpg.Connection, signer: signing.Signer, upto: int, head_upto: int
) -> tuple[proof.Checkpoint, merkle.Frontier]:
    """A Merkle checkpoint of the first `upto` events, the tree's nodes and marks, and an
    integrated head at `head_upto`, written as the code before 0066 wrote them (the tables
    have no tenant yet)."""
    rows = await conn.fetch(
        "SELECT txid::text::bigint AS txid, position, hash FROM events ORDER BY txid, position"
    )
    tree_ = merkle.Frontier()
    nodes: list[tuple[int, int, bytes]] = []
    for leaf, row in enumerate(rows[:head_upto]):
        if leaf % merkle.CHUNK == 0:
            await conn.execute(
                "INSERT INTO audit_tree_marks (leaf_index, txid, position) VALUES ($1, $2, $3)",
                leaf,
                row["txid"],
                row["position"],
            )
        nodes += [n for n in tree_.append(bytes(row["hash"])) if n[0] >= merkle.CHUNK_LEVEL]
        if tree_.size == upto:
            root = tree_.root()
            at = row
            signed = tree_.encode()
        if tree_.size == head_upto:
            frontier = tree_.encode()
            key = (row["txid"], row["position"])
            await conn.execute(
                "INSERT INTO audit_tree_heads (key_id, tree_size, txid, position, frontier, "
                "signature) VALUES ($1, $2, $3, $4, $5, $6)",
                signer.key_id,
                head_upto,
                *key,
                frontier,
                signer.sign(head.message(signer.key_id, head_upto, key, frontier)),
            )
    await conn.executemany(
        "INSERT INTO audit_tree_nodes (level, index, hash) VALUES ($1, $2, $3)", nodes
    )
    row = await conn.fetchrow(
        "INSERT INTO audit_checkpoints (txid, position, event_count, digest, base_txid, "
        "base_position, base_count, base_digest, frontier, signature, key_id) "
        "VALUES ($1, $2, $3, $4, 0, 0, 0, $5, $6, $7, $8) RETURNING *",
        at["txid"],
        at["position"],
        upto,
        root,
        merkle.EMPTY_ROOT,
        signed,
        signer.sign(note.body(f"job-ledger/{signer.key_id}", upto, root)),
        signer.key_id,
    )
    return checkpoints.from_row(row), tree_


async def test_checkpoints_and_heads_from_before_0066_keep_verifying_as_default_tenants(
    empty_db: str, tmp_path: Path
) -> None:
    signer = ledgers.signer(tmp_path)
    before = [m for m in migrations.discover() if m.name < "0066"]
    conn = await asyncpg.connect(empty_db)
    try:
        await migrations.migrate(conn, before)
        await ledgers.bulk_events(conn, 300)
        old, _ = await _sign_as_before_0066(conn, signer, upto=200, head_upto=260)
        note_before = checkpoints.CheckpointOut.of(old, signer).note

        assert "0066_audit_trees_per_tenant.sql" in await migrations.migrate(conn)

        listed = await checkpoints.list_all(conn)
        assert [(cp.checkpoint_id, cp.tenant) for cp in listed] == [(old.checkpoint_id, "default")]
        assert checkpoints.CheckpointOut.of(listed[0], signer).note == note_before
        assert (await checkpoints.verify(conn, signer)).ok
        await bulk_in(conn, "acme", 20)  # another tenant's events are no part of default's log
        await ledgers.bulk_events(conn, 50)
        new, created = await checkpoints.create(conn, signer)
        assert created and new is not None and new.event_count == 350
        hashes = [bytes(r["hash"]) for r in await feed_of(conn, "default")]
        assert new.digest == rfc9162.mth(hashes)
        path = await tree.consistency_hashes(conn, signer.key_id, 200, 350)
        assert rfc9162.verify_consistency(200, 350, old.digest, new.digest, path)
        rows = await feed_of(conn, "default")
        got = await tree.inclusion(
            conn, signer.key_id, rows[150]["txid"], rows[150]["position"], 200
        )
        path = [bytes.fromhex(h) for h in got.hashes]
        assert rfc9162.verify_inclusion(150, 200, hashes[150], path, old.digest)
        report = await checkpoints.verify(conn, signer, pins=[note.open_note(note_before, signer)])
        assert report.ok, report.findings
    finally:
        await conn.close()
