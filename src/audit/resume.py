"""Where an auditor's last verification ended: a small state file, so the next one costs only
the events since (`ledger audit verify` and `ledger verify` resume from it by default).

The file (``<LEDGER_DATA_DIR>/verified.json``, ``verified-<tenant>.json`` for a tenant
other than default) records the last Merkle checkpoint the
whole ledger verified through: its id, tree size and signed root. Resuming, the
checkpoint is read back from the database and must carry the same signed root, and
the walk starts from its frontier; so the file also acts as a checkpoint the auditor
holds: a database that later rewrote history before it no longer matches.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import asyncpg
import msgspec

from audit import checkpoints, note, proof, signing
from ledger import errors, sqlfile, tenancy

Q = sqlfile.load("audit")
FILE = "verified.json"


class ResumeError(errors.LedgerError):
    """The checkpoint to resume from is unknown, not a Merkle checkpoint, or not the one recorded."""


class Verified(msgspec.Struct, frozen=True, kw_only=True):
    key_id: str
    checkpoint_id: int
    tree_size: int
    root_hash: str  # hex


def path_in(data_dir: Path, tenant: str = tenancy.DEFAULT) -> Path:
    """The state file of `tenant`'s log (`verified.json` for default's, else
    `verified-<tenant>.json`): each tenant's log is verified on its own."""
    if tenant == tenancy.DEFAULT:
        return data_dir / FILE
    return data_dir / f"verified-{tenancy.checked(tenant)}.json"


def load(path: Path) -> Verified | None:
    try:
        return msgspec.json.decode(path.read_bytes(), type=Verified)
    except FileNotFoundError:
        return None
    except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ResumeError(f"cannot read {path}: {exc}; remove it to verify from the start") from exc


def save(path: Path, cp: proof.Checkpoint) -> None:
    record = Verified(
        key_id=cp.key_id,
        checkpoint_id=cp.checkpoint_id,
        tree_size=cp.event_count,
        root_hash=cp.digest.hex(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".verified-")
    with os.fdopen(fd, "w") as out:
        json.dump(msgspec.to_builtins(record), out, indent=1)
        out.write("\n")
    os.replace(tmp, path)


async def checkpoint(
    conn: asyncpg.Connection, verifier: signing.Verifier, checkpoint_id: int
) -> proof.Checkpoint:
    """A signed Merkle checkpoint to start a walk from (ResumeError otherwise)."""
    row = await conn.fetchrow(Q["checkpoints_by_id"], checkpoint_id)
    if row is None:
        raise ResumeError(f"no checkpoint {checkpoint_id}")
    cp = checkpoints.from_row(row)
    if cp.key_id != verifier.key_id or not verifier.verify(cp.signature, cp.message()):
        raise ResumeError(f"{cp.name()} is not signed by the trusted key {verifier.key_id}")
    if cp.tree() is None:
        raise ResumeError(f"{cp.name()} is not a Merkle checkpoint with a sound frontier")
    return cp


async def start(
    conn: asyncpg.Connection,
    verifier: signing.Verifier,
    *,
    since_checkpoint: int | None,
    recorded: Verified | None,
) -> tuple[proof.Checkpoint | None, list[note.Signed]]:
    """The checkpoint to start from (None: the beginning) and the recorded one as a pin."""
    if since_checkpoint is not None:
        return await checkpoint(conn, verifier, since_checkpoint), []
    if recorded is None or recorded.key_id != verifier.key_id:
        return None, []
    pin = note.Signed(
        origin=note.origin(recorded.key_id),
        tree_size=recorded.tree_size,
        root_hash=bytes.fromhex(recorded.root_hash),
    )
    try:
        cp = await checkpoint(conn, verifier, recorded.checkpoint_id)
    except ResumeError:
        return None, [pin]  # gone or altered: verify everything, against the recorded root
    if (cp.event_count, cp.digest) != (pin.tree_size, pin.root_hash):
        return None, [pin]
    return cp, []


async def newest(
    conn: asyncpg.Connection, verifier: signing.Verifier, upto: int
) -> proof.Checkpoint | None:
    """The newest Merkle checkpoint signed by the key of at most `upto` events (the events a
    clean verification walked)."""
    rows = await conn.fetch(Q["checkpoints_list_merkle_bare"], verifier.key_id)
    signed = [
        cp
        for cp in (checkpoints.from_row(r) for r in rows)
        if cp.event_count <= upto and verifier.verify(cp.signature, cp.message())
    ]
    return signed[-1] if signed else None
