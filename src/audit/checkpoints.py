"""Signed checkpoints of the global feed: take one, list them, check the live ledger against them.

A checkpoint covers every event up to a feed cursor (see `audit` for the digest and
the witness). It is taken incrementally from the newest checkpoint signed with the
same key, inside one repeatable-read snapshot and only below its xmin, so the set
of events it covers can never grow later (DESIGN.md invariant 5). Holding one
checkpoint, an auditor detects any later edit, deletion, reordering or truncation
of the events up to its cursor.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]

from audit import proof, signing
from ledger import db, errors, sqlfile
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

    @classmethod
    def of(cls, cp: proof.Checkpoint) -> CheckpointOut:
        return cls(**_published(cp))


class BundledCheckpoint(CheckpointOut, frozen=True, kw_only=True):
    """A checkpoint with all it takes to check it offline: a bundle's checkpoints.json."""

    base_digest: str  # hex
    witness: str  # base64

    @classmethod
    def of(cls, cp: proof.Checkpoint) -> BundledCheckpoint:
        return cls(
            **_published(cp),
            base_digest=cp.base_digest.hex(),
            witness=base64.b64encode(cp.witness).decode(),
        )

    def checkpoint(self) -> proof.Checkpoint:
        """The checkpoint this JSON describes (ValueError, BadCursor: it cannot be one)."""
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
        )


def _published(cp: proof.Checkpoint) -> dict[str, Any]:
    return {
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
    for column in ("digest", "base_digest", "witness", "signature"):
        if column in fields and fields[column] is not None:
            fields[column] = bytes(fields[column])
    fields.setdefault("base_digest", proof.GENESIS_DIGEST)
    fields.setdefault("witness", b"")
    return proof.Checkpoint(**fields)


async def create(
    conn: asyncpg.Connection, signer: signing.Signer
) -> tuple[proof.Checkpoint | None, bool]:
    """Take a checkpoint of every committed event since the newest one; (checkpoint, created).

    With nothing new since the newest checkpoint, returns that one and False (None
    when the feed is empty). Raises CheckpointError when the newest checkpoint made
    with this key does not verify: extending it would sign over a forged base.
    """
    await conn.execute(Q["checkpoints_lock"])
    try:
        async with conn.transaction(isolation="repeatable_read"):
            row = await conn.fetchrow(Q["checkpoints_latest"], signer.key_id)
            base = from_row(row) if row is not None else None
            if base is not None and not signer.verify(base.signature, base.message()):
                raise CheckpointError(
                    f"{base.name()} does not verify with key {signer.key_id}: the checkpoint "
                    "table was altered; run `ledger audit verify`"
                )
            base_key = base.key if base else proof.START_KEY
            count = base.event_count if base else 0
            digest = base.digest if base else proof.GENESIS_DIGEST
            witness = bytearray()  # 68 bytes an event, packed as it streams
            added = 0
            key = base_key
            async for r in conn.cursor(
                Q["events_feed_witness_scan"], str(base_key[0]), base_key[1], prefetch=5000
            ):
                event_hash = bytes(r["hash"])
                digest = proof.extend(digest, event_hash)
                key = (r["txid"], r["position"])
                witness += proof.pack_entry(
                    proof.WitnessEntry(key[0], key[1], r["job_id"], r["version"], event_hash)
                )
                added += 1
            if not added:
                return base, False
            count += added
            signature = signer.sign(proof.message(key, count, digest))
            inserted = await conn.fetchrow(
                Q["checkpoints_insert"],
                key[0],
                key[1],
                count,
                digest,
                base_key[0],
                base_key[1],
                base.event_count if base else 0,
                base.digest if base else proof.GENESIS_DIGEST,
                bytes(witness),
                signature,
                signer.key_id,
            )
    finally:
        await conn.execute(Q["checkpoints_unlock"])
    assert inserted is not None
    checkpoint = from_row(inserted)
    log.info("audit checkpoint %s", checkpoint.name())
    return checkpoint, True


async def list_all(conn: asyncpg.Connection) -> list[proof.Checkpoint]:
    """Every checkpoint with its witness, in feed order."""
    return [from_row(r) for r in await conn.fetch(Q["checkpoints_list"])]


async def list_recent(conn: asyncpg.Connection, limit: int = 100) -> list[proof.Checkpoint]:
    """The newest checkpoints, without witnesses (for listing)."""
    return [from_row(r) for r in await conn.fetch(Q["checkpoints_list_summary"], limit)]


async def verify(conn: asyncpg.Connection, verifier: signing.Verifier) -> proof.Report:
    """Walk every committed event in feed order against every checkpoint; name what differs.

    Hash chains per job are `chains.verify`'s job; this names what only a signed
    digest can reveal: events deleted (a job's last ones, whole jobs, the tail),
    rewritten with recomputed hashes, reordered, or inserted afterwards. A first
    pass compares digests only; witnesses are read, and the events walked again,
    only for the checkpoints that do not match.
    """
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        bare = [from_row(r) for r in await conn.fetch(Q["checkpoints_list_bare"])]
        walk = await _walk(conn, proof.Walk(bare, verifier, compare_witnesses=False))
        report = walk.finish()
        if not walk.mismatched:
            return report
        rows = await conn.fetch(Q["checkpoints_witnesses"], walk.mismatched)
        witnesses = {r["checkpoint_id"]: bytes(r["witness"]) for r in rows}
        full = [
            msgspec.structs.replace(cp, witness=witnesses[cp.checkpoint_id])
            if cp.checkpoint_id in witnesses
            else cp
            for cp in bare
        ]
        return (await _walk(conn, proof.Walk(full, verifier))).finish()


async def _walk(conn: asyncpg.Connection, walk: proof.Walk) -> proof.Walk:
    async for row in conn.cursor(Q["events_feed_scan"], "0", 0, prefetch=2000):
        walk.feed(proof.FeedEvent.from_row(row))
    return walk


@asynccontextmanager
async def scheduled(
    dsn: str, signer: signing.Signer, interval_seconds: float
) -> AsyncIterator[AsyncIOScheduler | None]:
    """Take a checkpoint now and then every `interval_seconds` while the block runs (0: never).

    Any number of processes may run this: checkpoints serialise on an advisory lock
    and one with nothing new is skipped.
    """
    if interval_seconds <= 0:
        yield None
        return
    pool = await db.create_pool(dsn, min_size=1, max_size=1, name="job-ledger-checkpoints")

    async def take() -> None:
        async with db.acquire(pool) as conn:
            await create(conn, signer)

    scheduler = AsyncIOScheduler(timezone=UTC)
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
    scheduler.start()
    log.info("audit checkpoints every %ss, signed by key %s", interval_seconds, signer.key_id)
    try:
        yield scheduler
    finally:
        scheduler.shutdown(wait=False)
        await pool.close()
