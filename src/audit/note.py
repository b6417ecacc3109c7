"""Checkpoints as C2SP signed notes (https://c2sp.org/tlog-checkpoint, https://c2sp.org/signed-note).

The body is three lines, each ending in a newline::

    <origin>
    <tree size, decimal>
    <root hash, standard base64>

and the note is the body, an empty line, and one signature line per signer::

    — <key name> <base64(key hash (4 bytes) ‖ Ed25519 signature over the body)>

with the key hash the first 4 bytes of SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ public
key), 0x01 naming Ed25519. The origin, which is also the key name, is
``job-ledger/<key id>`` for tenant ``default``'s log and
``job-ledger/<key id>/tenant/<tenant>`` for any other tenant's: one log per audit key
and tenant, so a note of one tenant's log never passes for another's. Witnesses and
verifiers that read
checkpoints (Go's golang.org/x/mod/sumdb/note, sigsum, litewitness) take the
verifier key `verifier_key` gives.

Pure: no database.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Final

import msgspec

from audit import signing
from ledger import events as ev

ED25519: Final = b"\x01"
SIGNATURE_PREFIX: Final = "\u2014 "  # an em dash and a space


class NoteError(ValueError):
    """Text that is not a checkpoint note, or one no trusted signature covers."""


class Signed(msgspec.Struct, frozen=True, kw_only=True):
    """What a checkpoint note states."""

    origin: str
    tree_size: int
    root_hash: bytes


def origin(key_id: str, tenant: str = ev.DEFAULT_TENANT) -> str:
    """The name of a tenant's log signed with a key (default's: the name it always had)."""
    if tenant == ev.DEFAULT_TENANT:
        return f"job-ledger/{key_id}"
    return f"job-ledger/{key_id}/tenant/{tenant}"


def body(origin_: str, tree_size: int, root_hash: bytes) -> bytes:
    """The exact bytes the signature covers."""
    return f"{origin_}\n{tree_size}\n{base64.b64encode(root_hash).decode()}\n".encode()


def key_hash(name: str, public_raw: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + ED25519 + public_raw).digest()[:4]


def verifier_key(key: signing.Verifier, tenant: str = ev.DEFAULT_TENANT) -> str:
    """The key in the signed-note verifier key format: `<name>+<key hash hex>+<base64(0x01 ‖ key)>`
    (the name is the tenant's log's origin)."""
    name = origin(key.key_id, tenant)
    encoded = base64.b64encode(ED25519 + key.raw).decode()
    return f"{name}+{key_hash(name, key.raw).hex()}+{encoded}"


def signed_note(
    note_body: bytes, signature: bytes, key: signing.Verifier, tenant: str = ev.DEFAULT_TENANT
) -> str:
    """The note: the body, an empty line and the signature line of `key` for the tenant's log."""
    name = origin(key.key_id, tenant)
    stamp = base64.b64encode(key_hash(name, key.raw) + signature).decode()
    return f"{note_body.decode()}\n{SIGNATURE_PREFIX}{name} {stamp}\n"


def open_note(text: str, key: signing.Verifier) -> Signed:
    """The checkpoint a note states, if `key` signed it (NoteError otherwise): a note of
    any tenant's log signed with the key (its `origin` says which)."""
    split = text.rfind("\n\n")
    if split < 0 or not text.endswith("\n"):
        raise NoteError("not a signed note: no empty line before the signatures")
    note_body, signatures = text[: split + 1], text[split + 2 :]
    name = note_body.partition("\n")[0]
    if name != origin(key.key_id) and not name.startswith(origin(key.key_id) + "/tenant/"):
        raise NoteError(f"the note's origin {name!r} is not a log of key {key.key_id}")
    expected = key_hash(name, key.raw)
    for line in signatures.splitlines():
        if not line.startswith(SIGNATURE_PREFIX):
            raise NoteError(f"not a signature line: {line!r}")
        signer, _, stamp = line[len(SIGNATURE_PREFIX) :].partition(" ")
        try:
            raw = base64.b64decode(stamp, validate=True)
        except binascii.Error as exc:
            raise NoteError(f"signature of {signer} is not base64: {exc}") from exc
        if signer == name and raw[:4] == expected and len(raw) == 68:
            if not key.verify(raw[4:], note_body.encode()):
                raise NoteError(f"the signature of {name} does not verify: the note was altered")
            return _parse(note_body)
    raise NoteError(f"the note carries no signature of {name}")


def _parse(note_body: str) -> Signed:
    lines = note_body.split("\n")
    if len(lines) < 4:
        raise NoteError("a checkpoint note has an origin, a tree size and a root hash")
    origin_, size, root = lines[0], lines[1], lines[2]
    if not size.isdigit() or (size != "0" and size.startswith("0")):
        raise NoteError(f"tree size {size!r} is not a decimal number")
    try:
        root_hash = base64.b64decode(root, validate=True)
    except binascii.Error as exc:
        raise NoteError(f"root hash {root!r} is not base64: {exc}") from exc
    if len(root_hash) != 32:
        raise NoteError(f"root hash is {len(root_hash)} bytes, not 32")
    return Signed(origin=origin_, tree_size=int(size), root_hash=root_hash)
