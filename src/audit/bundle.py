"""Audit bundles: a self-contained export of events with the signed checkpoints covering them.

A bundle is a directory (or a .tar.gz of one) holding:

- ``events.jsonl``: one event per line in feed order, with ``data`` as the exact
  jsonb text its hash covers, so anyone can recompute every hash;
- ``checkpoints.json``: the checkpoint the events follow (absent: the start of the
  feed) and every checkpoint up to the last event, each Merkle checkpoint with its
  signed note and frontier (older ones with their witness);
- ``consistency.json``: an RFC 9162 consistency proof between each consecutive pair
  of those Merkle checkpoints, ``[{"from", "to", "hashes"}]``;
- ``public_key.pem``: the Ed25519 key that signed them;
- ``manifest.json``: what was asked for and what is inside.

A bundle holds one tenant's log. Tenant default's is format v1, as it always was.
Any other tenant's is format v2 and shows no global position or count: each line
carries the event's ``leaf`` (its index in the tenant's log) and ``tenant`` in place
of its feed cursor; a checkpoint's ``cursor`` is ``0.<tree size>``, its
``base_cursor`` ``0.<base tree size>`` and its ``checkpoint_id`` its tree size (an
event's cursor in findings is ``0.<leaf + 1>``); the manifest names the ``tenant``.
Its checkpoints' notes name the tenant, so a bundle relabelled as another tenant's
does not verify, and the events must give the signed roots: one of the tenant's
events left out, or another tenant's added, fails.

`verify` checks a bundle offline (no database): hashes, per-job links, feed order,
signatures, each checkpoint's tree root recomputed from the events (from the
frontier of the checkpoint they follow), the consistency proofs, and the
checkpoints the auditor holds (``pins``): one of the same size with another root
is a forked log, one beyond the bundle's last event a bundle cut back.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import shutil
import tarfile
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, BinaryIO, Final

import asyncpg
import msgspec

from audit import checkpoints, merkle, note, proof, signing, tree
from ledger import acting, errors, sqlfile, tenancy
from projections import feed

Q = sqlfile.load("audit")
FORMAT: Final = "job-ledger-audit-bundle/v1"
TENANT_FORMAT: Final = "job-ledger-audit-bundle/v2"  # a tenant other than default
EVENTS: Final = "events.jsonl"
CHECKPOINTS: Final = "checkpoints.json"
PUBLIC_KEY: Final = "public_key.pem"
MANIFEST: Final = "manifest.json"
CONSISTENCY: Final = "consistency.json"


class BundleError(errors.LedgerError):
    """The bundle cannot be written or read at all (missing files, not a bundle)."""


class Line(msgspec.Struct, frozen=True, kw_only=True):
    """One line of events.jsonl."""

    cursor: str
    job_id: uuid.UUID
    version: int
    type: str
    actor: str
    occurred_at: str  # UTC to the microsecond, as the hash covers it
    data: str  # the exact jsonb text the hash covers
    prev_hash: str  # hex
    hash: str  # hex


class TenantLine(msgspec.Struct, frozen=True, kw_only=True):
    """One line of a tenant bundle's events.jsonl (v2): the event's leaf index in its
    tenant's log in place of its feed cursor."""

    leaf: int
    tenant: str
    job_id: uuid.UUID
    version: int
    type: str
    actor: str
    occurred_at: str  # UTC to the microsecond, as the hash covers it
    data: str  # the exact jsonb text the hash covers
    prev_hash: str  # hex
    hash: str  # hex


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def line_from_event(e: proof.FeedEvent) -> Line:
    return Line(
        cursor=e.cursor,
        job_id=e.job_id,
        version=e.version,
        type=e.type,
        actor=e.actor,
        occurred_at=_stamp(e.occurred_at),
        data=e.data,
        prev_hash=e.prev_hash.hex(),
        hash=e.hash.hex(),
    )


def event_from_line(line: Line) -> proof.FeedEvent:
    parsed = feed.parse_cursor(line.cursor)
    return proof.FeedEvent(
        txid=parsed.txid,
        position=parsed.position,
        job_id=line.job_id,
        version=line.version,
        type=line.type,
        actor=line.actor,
        occurred_at=datetime.strptime(line.occurred_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=UTC
        ),
        data=line.data,
        prev_hash=bytes.fromhex(line.prev_hash),
        hash=bytes.fromhex(line.hash),
    )


def tenant_line_from_event(e: proof.FeedEvent, leaf: int) -> TenantLine:
    return TenantLine(
        leaf=leaf,
        tenant=e.tenant,
        job_id=e.job_id,
        version=e.version,
        type=e.type,
        actor=e.actor,
        occurred_at=_stamp(e.occurred_at),
        data=e.data,
        prev_hash=e.prev_hash.hex(),
        hash=e.hash.hex(),
    )


def event_from_tenant_line(line: TenantLine) -> proof.FeedEvent:
    """The event, placed at `0.<leaf + 1>`: after the checkpoint of `leaf` events (`0.<leaf>`)."""
    if line.leaf < 0:
        raise ValueError(f"leaf {line.leaf} is negative")
    return proof.FeedEvent(
        txid=0,
        position=line.leaf + 1,
        job_id=line.job_id,
        version=line.version,
        type=line.type,
        actor=line.actor,
        occurred_at=datetime.strptime(line.occurred_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=UTC
        ),
        data=line.data,
        prev_hash=bytes.fromhex(line.prev_hash),
        hash=bytes.fromhex(line.hash),
        tenant=line.tenant,
    )


def _local_cursor(cp: proof.Checkpoint) -> str:
    return f"0.{cp.event_count}"


def _local_checkpoint(cp: proof.Checkpoint, key: signing.Verifier) -> checkpoints.BundledCheckpoint:
    """A tenant bundle's checkpoint: placed by tree sizes, not by feed cursors."""
    return msgspec.structs.replace(
        checkpoints.BundledCheckpoint.of(cp, key),
        checkpoint_id=cp.event_count,
        cursor=_local_cursor(cp),
        base_cursor=f"0.{cp.base_count}",
    )


Bound = feed.Cursor | datetime | None


class Proof(msgspec.Struct, frozen=True, kw_only=True, rename={"from_": "from"}):
    """A consistency proof in consistency.json: the tree of size `to` extends that of `from`."""

    from_: int
    to: int
    hashes: list[str]  # hex


class Exported(msgspec.Struct, frozen=True, kw_only=True):
    path: str
    events: int
    checkpoints: int
    start: str | None  # the checkpoint cursor the events follow (None: the start of the feed)
    end: str  # the last checkpoint's cursor: every event in the bundle is covered
    key_id: str


async def _key_at(conn: asyncpg.Connection, query: str, moment: datetime) -> proof.Key | None:
    row = await conn.fetchrow(Q[query], moment)
    return None if row is None else (row["txid"], row["position"])


async def export(
    conn: asyncpg.Connection,
    signer: signing.Signer,
    out: Path,
    *,
    start: Bound = None,
    end: Bound = None,
    tenant: str | None = None,
) -> Exported:
    """Write a bundle of the tenant's events from `start` to `end` (cursors: after/up to;
    times: at or after/before); the tenant: `tenant`, or else the one `conn` acts in.

    The range is widened to checkpoint boundaries: it begins right after the newest
    checkpoint before the first event asked for and ends at the first checkpoint at
    or after the last one. A checkpoint is taken first when none reaches that far.
    """
    writer = _Writer(out)
    tenant = await checkpoints.tenant_of(conn, tenant)
    async with conn.transaction():
        await acting.act_in(conn, tenant)
        if isinstance(end, datetime):
            end_key = await _key_at(conn, "events_feed_last_until", end)
            if end_key is None:
                raise BundleError(f"no event at or before {end.isoformat()}")
        elif isinstance(end, feed.Cursor):
            end_key = (end.txid, end.position)
        else:
            end_key = None
        row = None
        if end_key is not None:
            row = await conn.fetchrow(Q["checkpoints_at_or_after"], signer.key_id, *end_key)
    if row is None:
        taken, _ = await checkpoints.create(conn, signer, tenant=tenant)
        if taken is None:
            raise BundleError("the ledger has no events to export")
        last = taken
        if end_key is not None and last.key < end_key:
            raise BundleError(f"cursor {proof.cursor_text(end_key)} is past the end of the feed")
    else:
        last = checkpoints.from_row(row)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        await acting.act_in(conn, tenant)
        return await _export_through(conn, signer, writer, last, start, end, tenant)


async def _export_through(
    conn: asyncpg.Connection,
    signer: signing.Signer,
    writer: _Writer,
    last: proof.Checkpoint,
    start: Bound,
    end: Bound,
    tenant: str,
) -> Exported:
    """The bundle ending at checkpoint `last`, in one snapshot acting in `tenant`."""
    local = tenant != tenancy.DEFAULT
    if isinstance(start, datetime):
        first_key = await _key_at(conn, "events_feed_first_since", start)
        if first_key is None:
            raise BundleError(f"no event at or after {start.isoformat()}")
    elif isinstance(start, feed.Cursor):
        first_key = (start.txid, start.position + 1)
    else:
        first_key = proof.START_KEY
    anchor_row = await conn.fetchrow(Q["checkpoints_before"], signer.key_id, *first_key)
    anchor = checkpoints.from_row(anchor_row) if anchor_row is not None else None
    if anchor is not None and last.is_merkle and not anchor.is_merkle:
        anchor = None  # the tree starts at the first event: an older checkpoint has no frontier
    if anchor is not None and anchor.key >= last.key:
        raise BundleError("the start of the range is after its end")
    anchor_key = anchor.key if anchor else proof.START_KEY
    covering = [
        checkpoints.from_row(r)
        for r in await conn.fetch(Q["checkpoints_covering"], signer.key_id, *anchor_key, *last.key)
    ]
    merkles = [cp for cp in covering if cp.is_merkle]
    proofs = [
        Proof(
            from_=old.event_count,
            to=new.event_count,
            hashes=[
                h.hex()
                for h in await tree.consistency_hashes(
                    conn, signer.key_id, old.event_count, new.event_count
                )
            ],
        )
        for old, new in itertools.pairwise(merkles)
    ]
    writer.open()
    count = 0
    leaf = anchor.event_count if anchor else 0
    try:
        async for r in conn.cursor(
            Q["events_feed_scan_range"],
            str(anchor_key[0]),
            anchor_key[1],
            str(last.txid),
            last.position,
            prefetch=2000,
        ):
            event = proof.FeedEvent.from_row(r)
            writer.event(tenant_line_from_event(event, leaf) if local else line_from_event(event))
            count += 1
            leaf += 1
    except BaseException:
        writer.abort()
        raise
    place = _local_cursor if local else (lambda cp: cp.cursor)
    exported = Exported(
        path=str(writer.out),
        events=count,
        checkpoints=len(covering),
        start=place(anchor) if anchor else None,
        end=place(last),
        key_id=signer.key_id,
    )
    manifest: dict[str, Any] = {
        "format": TENANT_FORMAT if local else FORMAT,
        **({"tenant": tenant} if local else {}),
        "exported_at": _stamp(datetime.now(UTC)),
        "requested": {  # a tenant bundle shows no feed cursor, even one asked for
            "from": None if local and isinstance(start, feed.Cursor) else _bound_text(start),
            "to": None if local and isinstance(end, feed.Cursor) else _bound_text(end),
        },
        "start_checkpoint_id": (anchor.event_count if local else anchor.checkpoint_id)
        if anchor
        else None,
        "start_cursor": exported.start,
        "end_checkpoint_id": last.event_count if local else last.checkpoint_id,
        "end_cursor": exported.end,
        "events": count,
        "key_id": signer.key_id,
    }
    writer.close(
        covering=[
            _local_checkpoint(cp, signer) if local else checkpoints.BundledCheckpoint.of(cp, signer)
            for cp in covering
        ],
        proofs=proofs,
        public_key=signer.pem,
        manifest=manifest,
    )
    return exported


class _Writer:
    """Writes a bundle's files into a directory, then tars it when the path asks for a tarball."""

    def __init__(self, out: Path) -> None:
        if out.exists():
            raise BundleError(f"{out} already exists; choose a new path")
        self.out = out
        self.directory = out.with_name(out.name + ".partial") if _is_tarball(out) else out
        self._events: BinaryIO | None = None
        self._encoder = msgspec.json.Encoder()

    def open(self) -> None:
        self.directory.mkdir(parents=True)
        self._events = (self.directory / EVENTS).open("wb")

    def event(self, line: Line | TenantLine) -> None:
        assert self._events is not None
        self._events.write(self._encoder.encode(line))
        self._events.write(b"\n")

    def abort(self) -> None:
        """Remove what was written: a bundle is whole or absent."""
        if self._events is not None:
            self._events.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def close(
        self,
        *,
        covering: list[checkpoints.BundledCheckpoint],
        proofs: list[Proof],
        public_key: str,
        manifest: dict[str, Any],
    ) -> None:
        assert self._events is not None
        self._events.close()
        listed = msgspec.to_builtins(covering)
        (self.directory / CHECKPOINTS).write_text(json.dumps(listed, indent=1) + "\n")
        (self.directory / CONSISTENCY).write_bytes(
            msgspec.json.format(msgspec.json.encode(proofs)) + b"\n"
        )
        (self.directory / PUBLIC_KEY).write_text(public_key)
        (self.directory / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        if self.directory == self.out:
            return
        names = (MANIFEST, PUBLIC_KEY, CHECKPOINTS, CONSISTENCY, EVENTS)
        with tarfile.open(self.out, "w:gz", compresslevel=6) as tar:
            for name in names:
                tar.add(self.directory / name, arcname=name)
        for name in names:
            (self.directory / name).unlink()
        self.directory.rmdir()


def _bound_text(bound: Bound) -> str | None:
    if bound is None:
        return None
    return bound.encode() if isinstance(bound, feed.Cursor) else bound.isoformat()


def _is_tarball(path: Path) -> bool:
    return path.name.endswith((".tar.gz", ".tgz"))


class _Files:
    """The files of a bundle, from a directory or a tarball; events are streamed, never held whole."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._tar = False
        if path.is_dir():
            return
        if not (path.is_file() and _is_tarball(path)):
            raise BundleError(f"{path} is neither a bundle directory nor a .tar.gz bundle")
        self._tar = True

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[IO[bytes]]:
        if not self._tar:
            try:
                with (self.path / name).open("rb") as plain:
                    yield plain
            except FileNotFoundError:
                raise BundleError(f"{self.path} has no {name}: not a complete bundle") from None
            return
        try:
            with tarfile.open(self.path, "r:gz") as tar:
                try:
                    member = tar.getmember(name)
                except KeyError:
                    raise BundleError(f"{self.path} has no {name}: not a complete bundle") from None
                packed = tar.extractfile(member) if member.isfile() else None
                if packed is None:
                    raise BundleError(f"{self.path}: {name} is not a file")
                yield packed
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise BundleError(f"{self.path} is not a readable bundle tarball: {exc}") from exc

    def read(self, name: str) -> bytes:
        with self.open(name) as handle:
            return handle.read()

    def lines(self, name: str) -> Iterator[bytes]:
        with self.open(name) as handle:
            yield from handle


_line_decoder = msgspec.json.Decoder(Line)
_tenant_line_decoder = msgspec.json.Decoder(TenantLine)


def verify(
    path: Path, trusted: signing.Verifier | None = None, pins: Sequence[note.Signed] = ()
) -> proof.Report:
    """Check a bundle with no database; `trusted` pins the public key the auditor holds,
    `pins` checkpoints they hold (signed notes, opened with that key)."""
    files = _Files(path)
    try:
        manifest = json.loads(files.read(MANIFEST))
        raw_checkpoints = json.loads(files.read(CHECKPOINTS))
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path}: manifest or checkpoints are not JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") not in (FORMAT, TENANT_FORMAT):
        raise BundleError(f"{path}: not a {FORMAT} or {TENANT_FORMAT} bundle")
    local = manifest["format"] == TENANT_FORMAT
    tenant = manifest.get("tenant") if local else tenancy.DEFAULT
    if not isinstance(tenant, str) or tenancy.PATTERN.fullmatch(tenant) is None:
        raise BundleError(f"{path}: a {TENANT_FORMAT} bundle's manifest names no tenant")
    bundled = signing.public_from_pem(files.read(PUBLIC_KEY))
    findings: list[proof.Finding] = []
    verifier: signing.Verifier = bundled
    if trusted is not None and trusted.key_id != bundled.key_id:
        findings.append(
            proof.Finding(
                kind="signature",
                message=f"the bundle's public key (id {bundled.key_id}) is not the trusted key "
                f"(id {trusted.key_id}): its checkpoints are checked against the trusted key",
            )
        )
        verifier = trusted
    cps: list[proof.Checkpoint] = []
    for index, raw in enumerate(raw_checkpoints if isinstance(raw_checkpoints, list) else []):
        try:
            cps.append(msgspec.convert(raw, checkpoints.BundledCheckpoint).checkpoint(tenant))
        except (ValueError, errors.BadCursor) as exc:
            findings.append(
                proof.Finding(
                    kind="malformed",
                    message=f"checkpoint #{index + 1} in {CHECKPOINTS} is malformed: {exc}",
                )
            )
    start_id = manifest.get("start_checkpoint_id")
    start = next((cp for cp in cps if cp.checkpoint_id == start_id), None)
    if start_id is not None and start is None:
        findings.append(
            proof.Finding(
                kind="signature",
                message=f"the bundle's start checkpoint {start_id} is not in {CHECKPOINTS}",
            )
        )
    log_name = note.origin(verifier.key_id, tenant)
    findings += checkpoints.other_logs([p for p in pins if p.origin != log_name], log_name)
    pins = [p for p in pins if p.origin == log_name]
    walk = proof.Walk(cps, verifier, start=start, check_chains=True, subject="bundle", pins=pins)
    leaves = _Leaves(tenant, start.event_count if start else 0)
    for number, raw_line in enumerate(files.lines(EVENTS), start=1):
        if not raw_line.strip():
            continue
        try:
            if local:
                line = _tenant_line_decoder.decode(raw_line)
                event = event_from_tenant_line(line)
            else:
                event = event_from_line(_line_decoder.decode(raw_line))
        except (msgspec.DecodeError, ValueError, errors.BadCursor) as exc:
            walk.findings.append(
                proof.Finding(
                    kind="malformed", message=f"line {number} is not a bundle event: {exc}"
                )
            )
            continue
        where = f"line {number}"
        if local:
            where = f"line {number}, leaf {line.leaf}"
            walk.findings += leaves.check(line, where)
        walk.feed(event, where)
    report = walk.finish()
    after = _check_consistency(files, cps, verifier, start, walk.earlier_pins)
    if report.checkpoints == 0:
        after.append(
            proof.Finding(
                kind="signature", message="the bundle holds no checkpoint whose signature verifies"
            )
        )
    if report.uncovered:
        after.append(
            proof.Finding(
                kind="unexpected",
                message=f"{report.uncovered} events after the last checkpoint are covered by "
                "no signature",
            )
        )
    declared = manifest.get("events")
    if isinstance(declared, int) and declared != report.events:
        after.append(
            proof.Finding(
                kind="digest",
                message=f"the manifest lists {declared} events, the bundle holds {report.events}",
            )
        )
    return msgspec.structs.replace(report, findings=[*findings, *report.findings, *after])


class _Leaves:
    """A tenant bundle's lines must be the tenant's, at consecutive leaves of its log."""

    def __init__(self, tenant: str, first: int) -> None:
        self.tenant = tenant
        self.next = first

    def check(self, line: TenantLine, where: str) -> list[proof.Finding]:
        found: list[proof.Finding] = []
        if line.tenant != self.tenant:
            found.append(
                proof.Finding(
                    kind="unexpected",
                    message=f"an event of tenant {line.tenant} in tenant {self.tenant}'s "
                    f"bundle ({where}): job {line.job_id} version {line.version}",
                    job_id=line.job_id,
                    version=line.version,
                )
            )
        if line.leaf > self.next:
            gone = (
                f"leaf {self.next} is"
                if line.leaf == self.next + 1
                else f"leaves {self.next} to {line.leaf - 1} are"
            )
            found.append(
                proof.Finding(
                    kind="missing",
                    message=f"{gone} missing from tenant {self.tenant}'s log (before {where})",
                )
            )
        self.next = max(self.next, line.leaf + 1)
        return found


_proofs_decoder = msgspec.json.Decoder(list[Proof])


def _check_consistency(
    files: _Files,
    cps: list[proof.Checkpoint],
    verifier: signing.Verifier,
    start: proof.Checkpoint | None,
    earlier_pins: Sequence[note.Signed],
) -> list[proof.Finding]:
    """Each consecutive pair of signed Merkle checkpoints has a consistency proof that holds;
    a pin older than the bundle's start is matched by size at the start, or cannot be checked."""
    findings: list[proof.Finding] = []
    try:
        proofs = {
            (p.from_, p.to): p.hashes for p in _proofs_decoder.decode(files.read(CONSISTENCY))
        }
    except BundleError:
        proofs = {}
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        proofs = {}
        findings.append(proof.Finding(kind="malformed", message=f"{CONSISTENCY}: {exc}"))
    signed = sorted(
        (
            cp
            for cp in cps
            if cp.is_merkle
            and cp.key_id == verifier.key_id
            and verifier.verify(cp.signature, cp.message())
        ),
        key=lambda cp: cp.event_count,
    )
    for old, new in itertools.pairwise(signed):
        hashes = proofs.get((old.event_count, new.event_count))
        try:
            path = [bytes.fromhex(h) for h in hashes] if hashes is not None else None
        except ValueError:
            path = None
        if path is None or not merkle.verify_consistency(
            old.event_count, new.event_count, old.digest, new.digest, path
        ):
            findings.append(
                proof.Finding(
                    kind="consistency",
                    message=f"{new.name()} is not proven consistent with {old.name()}: "
                    + ("no proof in the bundle" if path is None else "the proof fails"),
                    checkpoint_id=new.checkpoint_id,
                )
            )
    for pin in earlier_pins:
        if start is not None and pin.tree_size == start.event_count:
            if pin.root_hash != start.digest:
                findings.append(
                    proof.Finding(
                        kind="fork",
                        message=f"forked log: {start.name()} signs another root than the "
                        f"checkpoint you hold of the same size {pin.tree_size}",
                        checkpoint_id=start.checkpoint_id,
                    )
                )
            continue
        findings.append(
            proof.Finding(
                kind="consistency",
                message=f"the checkpoint you hold (tree size {pin.tree_size}) precedes this "
                "bundle's events: export a range that includes it to check it",
            )
        )
    return findings
