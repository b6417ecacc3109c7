"""Checking events against signed checkpoints, and naming exactly what differs.

A checkpoint (today's kind, see `merkle`) signs the root of the Merkle tree over
the first `event_count` events of one tenant's log (its events in feed order), as a
C2SP checkpoint note (`note`) whose origin names the tenant (all but default's); it
keeps the tree's frontier, which folded must give the signed root, so a walk can
start at any checkpoint and cost only the events after it.

An older checkpoint (no frontier) signs the digest of the whole feed up to a cursor: every event's
hash chained in feed order, ``d_n = sha256(d_{n-1} || hash_n)`` from 32 zero
bytes, so one checkpoint commits to every event before it, their order and
their number. It also keeps a *witness*: the cursor, job, version and hash of
each event since its base (the checkpoint before it). The witness is not signed
on its own, but chaining its hashes from the base digest must give the signed
digest, so it cannot be altered unnoticed; with it a divergence is named event
by event (missing, altered, reordered, unexpected, truncated) rather than only
"the digest differs".

Pure: no database. The live check (`checkpoints.verify`) and the offline bundle
check (`bundle.verify`) feed `Walk` the events in feed order.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Final, Literal

import msgspec

from audit import merkle, note, signing
from ledger import events as ev

GENESIS_DIGEST: Final = bytes(32)
MESSAGE_PREFIX: Final = "job-ledger-checkpoint:v1"
Key = tuple[int, int]  # (txid, position): feed order
START_KEY: Final[Key] = (0, 0)


def extend(digest: bytes, event_hash: bytes) -> bytes:
    """The feed digest after one more event."""
    return hashlib.sha256(digest + event_hash).digest()


def cursor_text(key: Key) -> str:
    return f"{key[0]}.{key[1]}"


def message(key: Key, count: int, digest: bytes) -> bytes:
    """The exact bytes a checkpoint's signature covers."""
    return f"{MESSAGE_PREFIX}:{cursor_text(key)}:{count}:{digest.hex()}".encode()


def short(digest: bytes) -> str:
    return digest.hex()[:16]


class Placed(msgspec.Struct, frozen=True):
    """Something at a place in the feed: (writing transaction id, position)."""

    txid: int
    position: int

    @property
    def key(self) -> Key:
        return (self.txid, self.position)

    @property
    def cursor(self) -> str:
        return cursor_text(self.key)


class FeedEvent(Placed, frozen=True, kw_only=True):
    """An event with its feed place and every column its hash covers (`data`: the exact jsonb text)."""

    job_id: uuid.UUID
    version: int
    type: str
    actor: str
    occurred_at: datetime
    data: str
    prev_hash: bytes
    hash: bytes
    tenant: str = ev.DEFAULT_TENANT

    @classmethod
    def from_row(cls, row: ev.Row) -> FeedEvent:
        """A row of the feed scans (`data::text`, the txid as a bigint)."""
        return cls(**{column: row[column] for column in cls.__struct_fields__})

    def recomputed_hash(self) -> bytes:
        """The hash its stored content and previous link give (equals `hash` unless edited)."""
        return ev.stored_hash(
            self.prev_hash,
            type=self.type,
            job_id=self.job_id,
            version=self.version,
            actor=self.actor,
            occurred_at=self.occurred_at,
            data=self.data,
            tenant=self.tenant,
        )


_ENTRY: Final = struct.Struct(">QQ16sI32s")


class WitnessEntry(Placed, frozen=True):
    """What a checkpoint remembers of one event: where it was in the feed, which it was, its hash."""

    job_id: uuid.UUID
    version: int
    hash: bytes


def pack_entry(e: WitnessEntry) -> bytes:
    return _ENTRY.pack(e.txid, e.position, e.job_id.bytes, e.version, e.hash)


def encode_witness(entries: Iterable[WitnessEntry]) -> bytes:
    return b"".join(pack_entry(e) for e in entries)


def decode_witness(blob: bytes) -> list[WitnessEntry]:
    if len(blob) % _ENTRY.size:
        raise ValueError(f"witness is {len(blob)} bytes, not a multiple of {_ENTRY.size}")
    return [
        WitnessEntry(txid, position, uuid.UUID(bytes=job), version, digest)
        for txid, position, job, version, digest in _ENTRY.iter_unpack(blob)
    ]


class Checkpoint(Placed, frozen=True, kw_only=True):
    """A signed statement: the feed up to `cursor` holds `event_count` events with this digest."""

    checkpoint_id: int
    event_count: int
    digest: bytes
    base_txid: int
    base_position: int
    base_count: int
    base_digest: bytes
    witness: bytes
    signature: bytes
    key_id: str
    created_at: datetime
    frontier: bytes | None = None  # a Merkle checkpoint's right edge; None: the older kind
    tenant: str = ev.DEFAULT_TENANT  # whose log: its note's origin names any but default

    @property
    def is_merkle(self) -> bool:
        return self.frontier is not None

    def tree(self) -> merkle.Frontier | None:
        """Its frontier if it is a Merkle checkpoint and the frontier folds to its signed root."""
        if self.frontier is None:
            return None
        try:
            tree = merkle.Frontier.decode(self.event_count, self.frontier)
        except ValueError:
            return None
        return tree if tree.root() == self.digest else None

    @property
    def base_key(self) -> Key:
        return (self.base_txid, self.base_position)

    def message(self) -> bytes:
        """The exact bytes its signature covers: the note body, or the older kind's message."""
        if self.frontier is not None:
            return note.body(note.origin(self.key_id, self.tenant), self.event_count, self.digest)
        return message(self.key, self.event_count, self.digest)

    def name(self) -> str:
        return f"checkpoint {self.checkpoint_id} (cursor {self.cursor}, {self.event_count} events)"

    def witness_entries(self) -> list[WitnessEntry] | None:
        """The witness if it is whole and chains from the base digest to the signed digest."""
        try:
            entries = decode_witness(self.witness)
        except ValueError:
            return None
        if len(entries) != self.event_count - self.base_count:
            return None
        digest = self.base_digest
        previous = self.base_key
        for entry in entries:
            if entry.key <= previous:
                return None
            digest, previous = extend(digest, entry.hash), entry.key
        if digest != self.digest or (entries and previous != self.key):
            return None
        return entries


Kind = Literal[
    "signature",  # a checkpoint's signature does not hold (or another key made it)
    "witness",  # a checkpoint's witness list was altered; only its digest can be checked
    "content",  # an event's content no longer matches its hash (edited in place)
    "link",  # an event's previous-hash link does not match its job's previous event
    "gap",  # a job's version is missing between two of its events
    "order",  # events are not in feed order
    "missing",  # an event a checkpoint recorded is gone
    "job_deleted",  # every event of a job that a checkpoint recorded is gone
    "truncated",  # the events end before a checkpoint's cursor
    "altered",  # the event at a recorded cursor has another hash (rewritten with a new hash)
    "reordered",  # a recorded event now sits at another cursor
    "unexpected",  # an event at a cursor the checkpoint does not know (inserted afterwards)
    "digest",  # the events up to a checkpoint do not give its signed digest (or tree root)
    "fork",  # the events give another root than a checkpoint the auditor holds, at its size
    "consistency",  # a consistency proof between two checkpoints does not hold, or is missing
    "malformed",  # a bundle line or checkpoint that cannot be read
]


class Finding(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    kind: Kind
    message: str
    cursor: str | None = None
    job_id: uuid.UUID | None = None
    version: int | None = None
    checkpoint_id: int | None = None


class Report(msgspec.Struct, frozen=True, kw_only=True):
    """What was checked and what is wrong; `ok` when nothing is."""

    events: int
    checkpoints: int
    verified_through: str | None  # the last checkpoint's cursor whose digest matched
    uncovered: int  # events after the last checkpoint (checked for content only)
    key_id: str
    findings: list[Finding]

    @property
    def ok(self) -> bool:
        return not self.findings


class Walk:
    """Feed it events in feed order; it checks them against the checkpoints as it goes.

    `start` is the checkpoint the events follow (None: the beginning of the feed).
    With `check_chains`, each event's hash is recomputed from its content and each
    job's links are followed (the offline check; the live one has `chains.verify`).
    `pins` are checkpoints the auditor holds (signed notes already opened): when the
    events reach a pin's tree size their root must be the pin's, and events that end
    before it are a cut-back log. Pins at or before `start` are left to the caller
    (`earlier_pins`), who checks them with a consistency proof.
    """

    def __init__(
        self,
        checkpoints: Sequence[Checkpoint],
        verifier: signing.Verifier,
        *,
        start: Checkpoint | None = None,
        check_chains: bool = False,
        compare_witnesses: bool = True,
        subject: str = "ledger",
        pins: Sequence[note.Signed] = (),
    ) -> None:
        self.findings: list[Finding] = []
        self.mismatched: list[int] = []  # checkpoints whose digest did not match
        self._compare_witnesses = compare_witnesses
        self._verifier = verifier
        self._check_chains = check_chains
        self._subject = subject
        self._from_genesis = start is None
        if start is not None:
            self._trusted(start)
        self._pending = sorted(
            (
                cp
                for cp in checkpoints
                if (start is None or cp.key > start.key) and self._trusted(cp)
            ),
            key=lambda cp: (cp.key, cp.event_count),
        )
        self._checkpoints = len(self._pending) + (start is not None)
        self._count = start.event_count if start else 0
        self._digest = start.digest if start else GENESIS_DIGEST
        self._range_start: Key = start.key if start else START_KEY
        self._last: Key = self._range_start
        self._buffer: list[WitnessEntry] = []
        self._jobs: dict[uuid.UUID, tuple[int, bytes]] = {}
        self._seen_jobs: set[uuid.UUID] = set()
        self._events = 0
        self._uncovered = 0
        self._verified: str | None = start.cursor if start else None
        # The Merkle tree of the events so far (None: started from an older checkpoint).
        self._tree: merkle.Frontier | None = merkle.Frontier()
        if start is not None:
            self._tree = start.tree()
            if start.is_merkle and self._tree is None:
                self._add(
                    "digest",
                    f"{start.name()}: its stored frontier does not fold to its signed root",
                    checkpoint=start,
                )
        begin = start.event_count if start else 0
        self.earlier_pins = [p for p in pins if p.tree_size <= begin]
        self._pins = sorted((p for p in pins if p.tree_size > begin), key=lambda p: p.tree_size)

    def _trusted(self, cp: Checkpoint) -> bool:
        if cp.key_id != self._verifier.key_id:
            problem = f"was signed by key {cp.key_id}, not the trusted key {self._verifier.key_id}"
        elif not self._verifier.verify(cp.signature, cp.message()):
            problem = (
                "has a signature that does not verify: its cursor, count or digest was altered"
            )
        else:
            return True
        self._add("signature", f"{cp.name()} {problem}", checkpoint=cp)
        return False

    def _add(
        self,
        kind: Kind,
        text: str,
        *,
        at: FeedEvent | WitnessEntry | None = None,
        checkpoint: Checkpoint | None = None,
    ) -> None:
        self.findings.append(
            Finding(
                kind=kind,
                message=text,
                cursor=at.cursor if at is not None else None,
                job_id=at.job_id if at is not None else None,
                version=at.version if at is not None else None,
                checkpoint_id=checkpoint.checkpoint_id if checkpoint is not None else None,
            )
        )

    def feed(self, event: FeedEvent, where: str | None = None) -> None:
        """One more event; `where` (e.g. "line 12") is added to the messages about it."""
        self._events += 1
        loc = f" ({where})" if where else ""
        if event.key <= self._last:
            self._add(
                "order",
                f"events out of feed order: cursor {event.cursor}{loc} "
                f"(job {event.job_id} version {event.version}) comes after cursor "
                f"{cursor_text(self._last)}",
                at=event,
            )
        else:
            while self._pending and event.key > self._pending[0].key:
                self._close(self._pending.pop(0), ended=False)
            self._last = event.key
        if self._check_chains:
            self._check_chain(event, loc)
        self._seen_jobs.add(event.job_id)
        self._count += 1
        if self._tree is not None:
            self._tree.append(event.hash)
            while self._pins and self._pins[0].tree_size == self._tree.size:
                self._check_pin(self._pins.pop(0), self._tree.root())
        if not self._pending:
            self._uncovered += 1
        elif not self._pending[0].is_merkle:  # the older kind: a running digest and a witness
            self._digest = extend(self._digest, event.hash)
            if self._compare_witnesses:
                self._buffer.append(
                    WitnessEntry(
                        event.txid, event.position, event.job_id, event.version, event.hash
                    )
                )

    def finish(self) -> Report:
        """Close the checkpoints the events never reached (truncation) and report."""
        while self._pending:
            self._close(self._pending.pop(0), ended=True)
        for pin in self._pins:
            self._add(
                "truncated",
                f"the {self._subject} ends at {self._count} events, before the checkpoint you "
                f"hold of tree size {pin.tree_size}: its log was cut back (or rewritten)",
            )
        self._pins = []
        return Report(
            events=self._events,
            checkpoints=self._checkpoints,
            verified_through=self._verified,
            uncovered=self._uncovered,
            key_id=self._verifier.key_id,
            findings=self.findings,
        )

    def _check_chain(self, e: FeedEvent, loc: str) -> None:
        if e.recomputed_hash() != e.hash:
            self._add(
                "content",
                f"event edited: job {e.job_id} version {e.version} at cursor {e.cursor}{loc}: "
                "its content no longer matches its hash",
                at=e,
            )
        previous = self._jobs.get(e.job_id)
        self._jobs[e.job_id] = (e.version, e.hash)
        if previous is None:
            if e.version == 1 and e.prev_hash != ev.GENESIS_HASH:
                self._add(
                    "link",
                    f"job {e.job_id} version 1 at cursor {e.cursor}{loc}: "
                    "its previous-hash link is not the genesis link",
                    at=e,
                )
            elif e.version > 1 and self._from_genesis:
                earlier = "version 1 is" if e.version == 2 else f"versions 1 to {e.version - 1} are"
                self._add(
                    "gap",
                    f"job {e.job_id}: {earlier} missing "
                    f"(its first event is version {e.version} at cursor {e.cursor}{loc})",
                    at=e,
                )
            return
        version, link = previous
        if e.version != version + 1:
            self._add(
                "gap",
                f"job {e.job_id}: version {version + 1} is missing "
                f"(version {version} is followed by version {e.version} at cursor {e.cursor}{loc})",
                at=e,
            )
        elif e.prev_hash != link:
            self._add(
                "link",
                f"job {e.job_id} version {e.version} at cursor {e.cursor}{loc}: "
                f"its previous-hash link does not match version {version}",
                at=e,
            )

    def _check_pin(self, pin: note.Signed, root: bytes) -> None:
        if root != pin.root_hash:
            self._add(
                "fork",
                f"forked log: the {self._subject}'s first {pin.tree_size} events have root "
                f"{short(root)}…, the checkpoint you hold signs {short(pin.root_hash)}… for "
                "the same size",
            )

    def _close_merkle(self, cp: Checkpoint) -> None:
        tree = self._tree
        if tree is not None and tree.size == cp.event_count and tree.root() == cp.digest:
            self._verified = cp.cursor
            return
        self.mismatched.append(cp.checkpoint_id)
        if tree is None:
            detail = "it cannot be checked from an older checkpoint's digest"
        elif tree.size != cp.event_count:
            difference = tree.size - cp.event_count
            detail = (
                f"{-difference} fewer events than signed"
                if difference < 0
                else f"{difference} more events than signed"
            )
        else:
            detail = "the same number of events, but different ones or in another order"
        self._add(
            "digest",
            f"{cp.name()}: the {self._subject}'s events up to it do not give its signed tree "
            f"root ({self._count} events, {detail})",
            checkpoint=cp,
        )
        # Later checkpoints are checked from this one's signed tree, each on its own range.
        signed = cp.tree()
        if signed is not None:
            self._tree = signed
        self._count = cp.event_count

    def _close(self, cp: Checkpoint, *, ended: bool) -> None:
        if cp.is_merkle:
            self._range_start = cp.key
            self._close_merkle(cp)
            return
        actual, self._buffer = self._buffer, []
        range_start, self._range_start = self._range_start, cp.key
        if self._count == cp.event_count and self._digest == cp.digest:
            self._verified = cp.cursor
        else:
            if self._compare_witnesses:
                self._explain(cp, range_start, actual, ended)
            self.mismatched.append(cp.checkpoint_id)
            difference = self._count - cp.event_count
            counted = (
                f"{-difference} fewer events than signed"
                if difference < 0
                else f"{difference} more events than signed"
                if difference > 0
                else "the same number of events, but different ones or in another order"
            )
            self._add(
                "digest",
                f"{cp.name()}: the {self._subject}'s events up to it do not match its signed "
                f"digest ({self._count} events, {counted})",
                checkpoint=cp,
            )
        # Later checkpoints are checked from this one's signed values, each on its own range.
        self._count, self._digest = cp.event_count, cp.digest

    def _explain(
        self, cp: Checkpoint, range_start: Key, actual: list[WitnessEntry], ended: bool
    ) -> None:
        """Name what differs between the events and the checkpoint's witness."""
        entries = cp.witness_entries()
        if entries is None:
            self._add(
                "witness",
                f"{cp.name()}: its witness list does not chain to its signed digest "
                "(altered); only the digest can be compared",
                checkpoint=cp,
            )
            return
        recorded = [w for w in entries if w.key > range_start]
        self._compare(cp, recorded, [a for a in actual if a.key > cp.base_key], ended)

    def _compare(
        self,
        cp: Checkpoint,
        recorded: list[WitnessEntry],
        actual: list[WitnessEntry],
        ended: bool,
    ) -> None:
        by_key = {w.key: w for w in recorded}
        by_hash = {w.hash: w for w in recorded}
        present_keys = {a.key for a in actual}
        present_hashes = {a.hash for a in actual}
        for a in actual:
            w = by_key.get(a.key)
            if w is not None and w.hash == a.hash:
                continue
            moved = by_hash.get(a.hash)
            if moved is not None:
                self._add(
                    "reordered",
                    f"events reordered: cursor {a.cursor} holds job {moved.job_id} version "
                    f"{moved.version}, which {cp.name()} recorded at cursor {moved.cursor}",
                    at=a,
                    checkpoint=cp,
                )
            elif w is not None:
                self._add(
                    "altered",
                    f"event altered: job {w.job_id} version {w.version} at cursor {a.cursor} "
                    f"has hash {short(a.hash)}…, {cp.name()} recorded {short(w.hash)}…",
                    at=w,
                    checkpoint=cp,
                )
            else:
                self._add(
                    "unexpected",
                    f"unexpected event: job {a.job_id} version {a.version} at cursor {a.cursor} "
                    f"is not in {cp.name()}",
                    at=a,
                    checkpoint=cp,
                )
        missing = [
            w for w in recorded if w.key not in present_keys and w.hash not in present_hashes
        ]
        if ended:
            tail = [w for w in missing if w.key > self._last]
            if tail:
                self._add(
                    "truncated",
                    f"{self._subject} truncated after cursor {cursor_text(self._last)}: "
                    f"{len(tail)} events up to cursor {cp.cursor} recorded by {cp.name()} are "
                    f"gone, the first being job {tail[0].job_id} version {tail[0].version} "
                    f"at cursor {tail[0].cursor}",
                    at=tail[0],
                    checkpoint=cp,
                )
                missing = [w for w in missing if w.key <= self._last]
        by_job: dict[uuid.UUID, list[WitnessEntry]] = {}
        for w in missing:
            by_job.setdefault(w.job_id, []).append(w)
        for job_id, gone in by_job.items():
            if job_id not in self._seen_jobs and len(gone) == sum(
                1 for w in recorded if w.job_id == job_id
            ):
                versions = ", ".join(str(w.version) for w in gone)
                self._add(
                    "job_deleted",
                    f"job deleted: job {job_id} is gone, with all {len(gone)} of its events "
                    f"recorded by {cp.name()} (versions {versions}, first at cursor "
                    f"{gone[0].cursor})",
                    at=gone[0],
                    checkpoint=cp,
                )
                continue
            for w in gone:
                self._add(
                    "missing",
                    f"event missing: job {w.job_id} version {w.version} at cursor {w.cursor}, "
                    f"recorded by {cp.name()}, is gone",
                    at=w,
                    checkpoint=cp,
                )
