"""The audit key: an Ed25519 key pair in a file outside the database, and signatures with it.

The private key never enters the database: a database administrator who rewrites
history cannot re-sign checkpoints. The file is created on first use (mode 0600)
when absent; concurrent starters race safely (the first link wins, the others load it).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from ledger import errors


class AuditKeyError(errors.LedgerError):
    """The audit key file cannot be read, or holds something other than an Ed25519 key."""


def key_id(public_raw: bytes) -> str:
    """A short, stable name for a public key: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


class Verifier:
    """A public key that checks checkpoint signatures."""

    def __init__(self, public: ed25519.Ed25519PublicKey) -> None:
        self._public = public
        self.raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.key_id = key_id(self.raw)

    @property
    def pem(self) -> str:
        return self._public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    @property
    def raw_base64(self) -> str:
        return base64.b64encode(self.raw).decode()

    def verify(self, signature: bytes, message: bytes) -> bool:
        try:
            self._public.verify(signature, message)
        except InvalidSignature:
            return False
        return True


class Signer(Verifier):
    """The private key that signs checkpoints (and its public half)."""

    def __init__(self, private: ed25519.Ed25519PrivateKey) -> None:
        super().__init__(private.public_key())
        self._private = private

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)


def public_from_pem(pem: str | bytes) -> Verifier:
    """A public key from its PEM text (as `GET /audit/checkpoints` and bundles show it)."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise AuditKeyError(f"not a PEM public key: {exc}") from exc
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise AuditKeyError(f"public key is {type(key).__name__}, not Ed25519")
    return Verifier(key)


def public_from_file(path: Path) -> Verifier:
    """A public key from a PEM file (an auditor's own copy)."""
    try:
        return public_from_pem(path.read_bytes())
    except OSError as exc:
        raise AuditKeyError(f"cannot read the public key {path}: {exc}") from exc


def load_or_create(path: Path) -> Signer:
    """The key in `path`, generating it (mode 0600) when the file does not exist."""
    if not path.exists():
        _create(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AuditKeyError(f"cannot read the audit key {path}: {exc}") from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise AuditKeyError(f"{path} is not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise AuditKeyError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return Signer(key)


def _create(path: Path) -> None:
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".audit-key-")
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o600)
            out.write(pem)
            out.flush()
            os.fsync(out.fileno())
        # Atomic, and refuses to replace a key another process made meanwhile.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
