"""Signed checkpoints of each tenant's log: take one, list them, check the live ledger against them.

Each tenant's events, in feed order, form a log of their own: a Merkle tree, its
checkpoints and its integrated head (tenant default's is the tree kept before tenants,
so its older checkpoints keep verifying). Everything here acts in one tenant: the one
named, or else the one the connection's transaction acts in (`ledger_tenant()`,
default when none); every statement reads and writes only that tenant's rows.

A checkpoint signs the root of the Merkle tree over every event of the tenant up to a
feed cursor (`merkle`), as a C2SP checkpoint note (`note`). It is taken incrementally
from the newest checkpoint signed with the same key: only the events since are
read, folded into that checkpoint's frontier, and the tree's new complete subtrees
are stored for proofs (`tree`), all inside one repeatable-read snapshot and only
below its xmin, so the set of events it covers can never grow later (DESIGN.md
invariant 5). Holding one checkpoint, an auditor detects any later edit, deletion,
reordering or truncation of the events up to its cursor, and a consistency proof
shows any later checkpoint extends it.

Between checkpoints the scheduler integrates each tenant's new events into its stored
tree every few seconds (`integrate`, as a Certificate Transparency log's sequencer does) and
keeps a signed head of it (`head`); a checkpoint then starts from that head, once
its signature verifies and the stored tree proves it consistent with the newest
signed checkpoint, and folds only the events after it.

Checkpoints of the older kind (a running digest and a 68-byte-an-event witness,
before migration 0057) keep verifying as they did; the first checkpoint after them
builds the tree from the first event of the feed, once.
"""

from __future__ import annotations

import base64
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]

from audit import head, merkle, note, proof, signing, tree
from ledger import acting, db, errors, sqlfile, tenancy
from projections import feed

Q = sqlfile.load("audit")
log = logging.getLogger(__name__)


class CheckpointError(errors.LedgerError):
    """A checkpoint cannot be taken because the newest one does not verify (its table was altered)."""


class CheckpointOut(msgspec.Struct, frozen=True, kw_only=True):
    """A checkpoint as JSON, one encoding for every reader: the API's answer and, with its
    base digest and witness (`BundledCheckpoint`), an audit bundle's checkpoints.json."""

    checkpoint_id: int
    cursor: str
    event_count: int
    digest: str  # hex
    base_cursor: str
    base_count: int
    signature: str  # hex
    key_id: str
    signed_message: str
    created_at: datetime
    tree_size: int | None = None  # a Merkle checkpoint's size and root; None: the older kind
    root_hash: str | None = None  # hex
    note: str | None = None  # the C2SP tlog-checkpoint signed note

    @classmethod
    def of(cls, cp: proof.Checkpoint, key: signing.Verifier | None = None) -> CheckpointOut:
        """Its JSON; with the public key that signed it, Merkle checkpoints carry their note."""
        return cls(**_published(cp, key))


class BundledCheckpoint(CheckpointOut, frozen=True, kw_only=True):
    """A checkpoint with all it takes to check it offline: a bundle's checkpoints.json."""

    base_digest: str  # hex
    witness: str  # base64 (empty for a Merkle checkpoint)
    frontier: str | None = None  # base64: a Merkle checkpoint's right edge

    @classmethod
    def of(cls, cp: proof.Checkpoint, key: signing.Verifier | None = None) -> BundledCheckpoint:
        """Its JSON with the checkpoint's own cursors (a default bundle's)."""
        return cls(
            **_published(cp, key),
            base_digest=cp.base_digest.hex(),
            witness=base64.b64encode(cp.witness).decode(),
            frontier=None if cp.frontier is None else base64.b64encode(cp.frontier).decode(),
        )

    def checkpoint(self, tenant: str = tenancy.DEFAULT) -> proof.Checkpoint:
        """The checkpoint of `tenant`'s log this JSON describes (ValueError, BadCursor: it
        cannot be one)."""
        at = feed.parse_cursor(self.cursor)
        base = feed.parse_cursor(self.base_cursor)
        return proof.Checkpoint(
            checkpoint_id=self.checkpoint_id,
            txid=at.txid,
            position=at.position,
            event_count=self.event_count,
            digest=bytes.fromhex(self.digest),
            base_txid=base.txid,
            base_position=base.position,
            base_count=self.base_count,
            base_digest=bytes.fromhex(self.base_digest),
            witness=base64.b64decode(self.witness, validate=True),
            signature=bytes.fromhex(self.signature),
            key_id=self.key_id,
            created_at=self.created_at,
            frontier=None
            if self.frontier is None
            else base64.b64decode(self.frontier, validate=True),
            tenant=tenant,
        )


def _published(cp: proof.Checkpoint, key: signing.Verifier | None) -> dict[str, Any]:
    merkle_ = cp.is_merkle
    return {
        "tree_size": cp.event_count if merkle_ else None,
        "root_hash": cp.digest.hex() if merkle_ else None,
        "note": note.signed_note(cp.message(), cp.signature, key, cp.tenant)
        if merkle_ and key is not None and key.key_id == cp.key_id
        else None,
        "checkpoint_id": cp.checkpoint_id,
        "cursor": cp.cursor,
        "event_count": cp.event_count,
        "digest": cp.digest.hex(),
        "base_cursor": proof.cursor_text(cp.base_key),
        "base_count": cp.base_count,
        "signature": cp.signature.hex(),
        "key_id": cp.key_id,
        "signed_message": cp.message().decode(),
        "created_at": cp.created_at,
    }


def from_row(row: asyncpg.Record | dict[str, Any]) -> proof.Checkpoint:
    fields = dict(row)
    for column in ("digest", "base_digest", "witness", "signature", "frontier"):
        if column in fields and fields[column] is not None:
            fields[column] = bytes(fields[column])
    fields.setdefault("base_digest", proof.GENESIS_DIGEST)
    fields.setdefault("witness", b"")
    return proof.Checkpoint(**fields)


async def tenant_of(conn: asyncpg.Connection, tenant: str | None) -> str:
    """`tenant` (checked), or else the tenant `conn` acts in (default when none)."""
    if tenant is not None:
        return tenancy.checked(tenant)
    current: str = await conn.fetchval(Q["tenant_current"])
    return current


async def tenants(conn: asyncpg.Connection) -> list[str]:
    """The tenants that have events (a skip scan: one index probe a tenant)."""
    return [r["tenant"] for r in await conn.fetch(Q["events_tenants"])]


async def create(
    conn: asyncpg.Connection,
    signer: signing.Signer,
    *,
    tenant: str | None = None,
    only_if_new: bool = False,
) -> tuple[proof.Checkpoint | None, bool]:
    """Take a checkpoint of every committed event of the tenant since its newest one;
    (checkpoint, created).

    With nothing new since the newest checkpoint, returns that one and False (None
    when the tenant has no event); with `only_if_new` (the scheduler), returns None and
    False after one index probe. Raises CheckpointError when the newest checkpoint made
    with this key does not verify (or its frontier does not fold to its signed
    root): extending it would sign over a forged base. Starts from the integrated
    tree head when it is past that checkpoint and checks out (`integrate`), so only
    the events after the head are folded here.
    """
    tenant = await tenant_of(conn, tenant)
    await conn.execute(Q["checkpoints_lock"])
    try:
        async with conn.transaction(isolation="repeatable_read"):
            await acting.act_in(conn, tenant)
            if only_if_new and not await conn.fetchval(
                Q["tree_has_new_events"], signer.key_id, False
            ):
                return None, False
            base, grown, start = await _fold_start(conn, signer)
            folded_from = grown.size
            key = await tree.grow(conn, grown, start)
            if grown.size == (base.event_count if base else 0):
                return (base or await _latest(conn, signer)), False
            root = grown.root()
            signature = signer.sign(note.body(note.origin(signer.key_id, tenant), grown.size, root))
            base_start = base.key if base else proof.START_KEY
            inserted = await conn.fetchrow(
                Q["checkpoints_insert"],
                key[0],
                key[1],
                grown.size,
                root,
                base_start[0],
                base_start[1],
                base.event_count if base else 0,
                base.digest if base else merkle.EMPTY_ROOT,
                grown.encode(),
                signature,
                signer.key_id,
            )
    finally:
        await conn.execute(Q["checkpoints_unlock"])
    assert inserted is not None
    checkpoint = from_row(inserted)
    log.info(
        "audit checkpoint %s (folded %d events after leaf %d)",
        checkpoint.name(),
        grown.size - folded_from,
        folded_from,
    )
    return checkpoint, True


async def integrate(
    conn: asyncpg.Connection,
    signer: signing.Signer,
    *,
    tenant: str | None = None,
    only_if_new: bool = False,
) -> head.Head | None:
    """Fold the tenant's events since its newest checkpoint or integrated head into its
    stored tree and move the head there; the new head (None: nothing new to fold).

    What a checkpoint would do, without signing one: run every few seconds
    (`scheduled`), it leaves a checkpoint only the events of the last few seconds to
    fold. Same lock, same snapshot rule (only events below the xmin), same checks of
    where it starts (CheckpointError as `create`). With `only_if_new`, a tenant with
    nothing new costs one index probe.
    """
    tenant = await tenant_of(conn, tenant)
    await conn.execute(Q["checkpoints_lock"])
    try:
        async with conn.transaction(isolation="repeatable_read"):
            await acting.act_in(conn, tenant)
            if only_if_new and not await conn.fetchval(
                Q["tree_has_new_events"], signer.key_id, True
            ):
                return None
            _, grown, start = await _fold_start(conn, signer)
            key = await tree.grow(conn, grown, start)
            return None if key == start else await head.put(conn, signer, grown, key, tenant)
    finally:
        await conn.execute(Q["checkpoints_unlock"])


async def _fold_start(
    conn: asyncpg.Connection, signer: signing.Signer
) -> tuple[proof.Checkpoint | None, merkle.Frontier, proof.Key]:
    """The newest checkpoint made with the key (verified), and the tree to fold the next
    events into with the feed key it ends at: that checkpoint's frontier, or the
    integrated head's when the head is past it and checks out."""
    row = await conn.fetchrow(Q["checkpoints_latest"], signer.key_id)
    base = from_row(row) if row is not None else None
    if base is not None and not signer.verify(base.signature, base.message()):
        raise CheckpointError(
            f"{base.name()} does not verify with key {signer.key_id}: the checkpoint "
            "table was altered; run `ledger audit verify`"
        )
    grown = base.tree() if base is not None else merkle.Frontier()
    if base is not None and base.is_merkle and grown is None:
        raise CheckpointError(
            f"{base.name()}'s stored frontier does not fold to its signed root: the "
            "checkpoint table was altered; run `ledger audit verify`"
        )
    if base is None or grown is None:  # none yet, or the older kind: from leaf 0
        base, grown, start = None, merkle.Frontier(), proof.START_KEY
    else:
        start = base.key
    current = await head.get(conn, signer.key_id)
    if current is not None and current.tree_size > grown.size:
        trusted = await _trusted_head(conn, signer, current, base)
        if trusted is not None:
            return base, trusted, current.key
    return base, grown, start


async def _trusted_head(
    conn: asyncpg.Connection,
    signer: signing.Signer,
    current: head.Head,
    base: proof.Checkpoint | None,
) -> merkle.Frontier | None:
    """The head's tree if its signature verifies and the stored tree proves it consistent
    with `base` (the newest signed checkpoint); None, logged, when not: the caller folds
    from `base` instead, trusting the head no more than the signed rows."""
    grown = current.tree()
    problem = None
    if not signer.verify(current.signature, current.message()) or grown is None:
        problem = f"its signature does not verify with key {signer.key_id}"
    elif base is not None:
        try:
            path = await tree.stored_consistency(conn, base.event_count, grown.size)
        except tree.TreeError as exc:
            problem = f"the stored tree cannot prove it extends {base.name()}: {exc}"
        else:
            if not merkle.verify_consistency(
                base.event_count, grown.size, base.digest, grown.root(), path
            ):
                problem = f"the stored tree does not prove it extends {base.name()}"
    if problem is None:
        return grown
    log.warning(
        "the integrated tree head at %d events is not used (%s): the audit tables were "
        "altered; folding from the newest signed checkpoint; run `ledger audit verify`",
        current.tree_size,
        problem,
    )
    return None


async def _latest(conn: asyncpg.Connection, signer: signing.Signer) -> proof.Checkpoint | None:
    row = await conn.fetchrow(Q["checkpoints_latest"], signer.key_id)
    return None if row is None else from_row(row)


async def list_all(conn: asyncpg.Connection) -> list[proof.Checkpoint]:
    """Every checkpoint of the tenant `conn` acts in, with its witness, in feed order."""
    return [from_row(r) for r in await conn.fetch(Q["checkpoints_list"])]


async def list_recent(conn: asyncpg.Connection, limit: int = 100) -> list[proof.Checkpoint]:
    """The newest checkpoints of the tenant `conn` acts in, without witnesses (for listing)."""
    return [from_row(r) for r in await conn.fetch(Q["checkpoints_list_summary"], limit)]


async def verify(
    conn: asyncpg.Connection,
    verifier: signing.Verifier,
    *,
    since: proof.Checkpoint | None = None,
    pins: Sequence[note.Signed] = (),
    check_chains: bool = False,
    tenant: str | None = None,
) -> proof.Report:
    """Walk the tenant's committed events in feed order against its checkpoints; name what
    differs (the tenant: `tenant`, or else the one `conn` acts in).

    Hash chains per job are `chains.verify`'s job; this names what only a signed
    root or digest can reveal: events deleted (a job's last ones, whole jobs, the
    tail), rewritten with recomputed hashes, reordered, or inserted afterwards.
    `since` (a Merkle checkpoint already verified) starts the walk there, from its
    frontier: the cost is the events after it. Every consecutive pair of the key's
    Merkle checkpoints is checked with a consistency proof from the stored tree,
    and `pins` (checkpoints the auditor holds) against the events or, when older
    than `since`, with a consistency proof to it. With `check_chains` each event's hash
    is recomputed and each job's links followed on the way (the incremental
    `chains.verify`: jobs whose earlier events precede `since` start mid-chain).
    Witnesses of older checkpoints are
    read, and the events walked again, only for the checkpoints that do not match.
    """
    tenant = await tenant_of(conn, tenant)
    log_name = note.origin(verifier.key_id, tenant)
    foreign = [p for p in pins if p.origin != log_name]
    pins = [p for p in pins if p.origin == log_name]
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        await acting.act_in(conn, tenant)
        bare = [from_row(r) for r in await conn.fetch(Q["checkpoints_list_bare"])]
        walk = await _walk(
            conn,
            proof.Walk(
                bare,
                verifier,
                start=since,
                compare_witnesses=False,
                pins=pins,
                check_chains=check_chains,
            ),
            since,
        )
        findings = await _consistency(conn, verifier, since, walk.earlier_pins)
        report = walk.finish()
        if walk.mismatched and any(not cp.is_merkle for cp in bare):
            rows = await conn.fetch(Q["checkpoints_witnesses"], walk.mismatched)
            witnesses = {r["checkpoint_id"]: bytes(r["witness"]) for r in rows}
            full = [
                msgspec.structs.replace(cp, witness=witnesses[cp.checkpoint_id])
                if cp.checkpoint_id in witnesses
                else cp
                for cp in bare
            ]
            again = proof.Walk(full, verifier, start=since, pins=pins, check_chains=check_chains)
            report = (await _walk(conn, again, since)).finish()
    return msgspec.structs.replace(
        report, findings=[*other_logs(foreign, log_name), *report.findings, *findings]
    )


def other_logs(pins: Sequence[note.Signed], log_name: str) -> list[proof.Finding]:
    """A finding for each checkpoint the auditor holds that is of another log than `log_name`
    (another tenant's, or another key's): it says nothing of this one."""
    return [
        proof.Finding(
            kind="signature",
            message=f"the checkpoint you hold (tree size {p.tree_size}) is of log {p.origin}, "
            f"not {log_name}: it cannot be checked against this one",
        )
        for p in pins
    ]


async def _walk(
    conn: asyncpg.Connection, walk: proof.Walk, since: proof.Checkpoint | None
) -> proof.Walk:
    start = since.key if since else proof.START_KEY
    async for row in conn.cursor(Q["events_feed_scan"], str(start[0]), start[1], prefetch=2000):
        walk.feed(proof.FeedEvent.from_row(row))
    return walk


async def _consistency(
    conn: asyncpg.Connection,
    verifier: signing.Verifier,
    since: proof.Checkpoint | None,
    earlier_pins: Sequence[note.Signed],
) -> list[proof.Finding]:
    """Consistency proofs from the stored tree between consecutive signed checkpoints (from
    `since` on) and from each pin older than `since` to it."""
    signed = [
        cp
        for cp in (
            from_row(r)
            for r in await conn.fetch(Q["checkpoints_list_merkle_bare"], verifier.key_id)
        )
        if verifier.verify(cp.signature, cp.message())
        and (since is None or cp.event_count >= since.event_count)
    ]
    findings: list[proof.Finding] = []
    pairs: list[tuple[int, bytes, proof.Checkpoint, str]] = [
        (old.event_count, old.digest, new, old.name()) for old, new in itertools.pairwise(signed)
    ]
    if since is not None and since.is_merkle:
        pairs += [
            (
                pin.tree_size,
                pin.root_hash,
                since,
                f"the checkpoint you hold of size {pin.tree_size}",
            )
            for pin in earlier_pins
        ]
    for size, root, new, old_name in pairs:
        try:
            path = await tree.consistency_hashes(conn, verifier.key_id, size, new.event_count)
        except (tree.TreeError, tree.BadTreeSize) as exc:
            findings.append(
                proof.Finding(
                    kind="consistency",
                    message=f"no consistency proof from {old_name} to {new.name()}: {exc}",
                    checkpoint_id=new.checkpoint_id,
                )
            )
            continue
        if not merkle.verify_consistency(size, new.event_count, root, new.digest, path):
            findings.append(
                proof.Finding(
                    kind="consistency",
                    message=f"{new.name()} is not consistent with {old_name}: the log was "
                    "forked or rewritten, or the stored tree was altered",
                    checkpoint_id=new.checkpoint_id,
                )
            )
    return findings


async def _each_tenant(conn: asyncpg.Connection, step: Callable[[str], Awaitable[object]]) -> None:
    """`step` for every tenant with events. A tenant whose audit tables do not verify
    (CheckpointError) does not hold up the others: each is logged, and the first is
    raised once every tenant had its turn."""
    failed: list[CheckpointError] = []
    for tenant in await tenants(conn):
        try:
            await step(tenant)
        except CheckpointError as exc:
            log.error("audit log of tenant %s: %s", tenant, exc)
            failed.append(exc)
    if failed:
        raise failed[0]


@asynccontextmanager
async def scheduled(
    dsn: str, signer: signing.Signer, interval_seconds: float, integrate_seconds: float = 0
) -> AsyncIterator[AsyncIOScheduler | None]:
    """Take a checkpoint now and then every `interval_seconds` while the block runs (0: never),
    and fold new events into the stored trees every `integrate_seconds` (`integrate`; 0:
    never): each time for every tenant with events, each in a transaction of its own
    acting in that tenant.

    Any number of processes may run this: checkpoints and integrations serialise on an
    advisory lock, and a tenant with nothing new is skipped after one index probe.
    """
    if interval_seconds <= 0 and integrate_seconds <= 0:
        yield None
        return
    pool = await db.create_pool(dsn, min_size=1, max_size=1, name="job-ledger-checkpoints")

    async def take() -> None:
        async with db.acquire(pool) as conn:
            await _each_tenant(conn, lambda t: create(conn, signer, tenant=t, only_if_new=True))

    async def fold() -> None:
        async with db.acquire(pool) as conn:
            await _each_tenant(conn, lambda t: integrate(conn, signer, tenant=t, only_if_new=True))

    scheduler = AsyncIOScheduler(timezone=UTC)
    if interval_seconds > 0:
        scheduler.add_job(
            take,
            "interval",
            seconds=interval_seconds,
            id="audit-checkpoint",
            name="audit checkpoint",
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(UTC),
        )
    if integrate_seconds > 0:
        scheduler.add_job(
            fold,
            "interval",
            seconds=integrate_seconds,
            id="audit-integrate",
            name="audit tree integration",
            max_instances=1,
            coalesce=True,
        )
    scheduler.start()
    log.info(
        "audit checkpoints every %ss, the tree integrated every %ss, signed by key %s",
        interval_seconds,
        integrate_seconds,
        signer.key_id,
    )
    try:
        yield scheduler
    finally:
        scheduler.shutdown(wait=False)
        await pool.close()
