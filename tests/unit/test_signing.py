"""The audit key: a file outside the database, made once with owner-only permissions."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from audit import signing


def test_key_is_generated_once_with_owner_only_permissions(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "audit-ed25519.pem"

    first = signing.load_or_create(path)
    second = signing.load_or_create(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first.key_id == second.key_id and len(first.key_id) == 16
    assert second.verify(first.sign(b"message"), b"message")
    assert not second.verify(first.sign(b"message"), b"massage")


def test_public_key_round_trips_through_pem(tmp_path: Path) -> None:
    signer = signing.load_or_create(tmp_path / "k.pem")
    public = signing.public_from_pem(signer.pem)
    assert public.key_id == signer.key_id
    assert public.verify(signer.sign(b"x"), b"x")


def test_a_file_that_is_not_an_ed25519_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    path.write_text("not a key")
    with pytest.raises(signing.AuditKeyError, match="not an unencrypted PEM private key"):
        signing.load_or_create(path)
    with pytest.raises(signing.AuditKeyError, match="not a PEM public key"):
        signing.public_from_pem("nope")
