"""An independent RFC 9162 verifier for the tests: §2.1.3.2 (inclusion) and §2.1.4.2
(consistency) as the RFC states them, step by step, and a naive in-memory tree
(§2.1.1's MTH, PATH and PROOF by their recursive definitions). It shares no code
with src/audit/merkle.py, which verifies by another method (rebuilding subtrees).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(entries: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over the entries (the events' hashes), RFC 6962 §2.1."""
    if not entries:
        return hashlib.sha256(b"").digest()
    if len(entries) == 1:
        return leaf(entries[0])
    k = _k(len(entries))
    return node(mth(entries[:k]), mth(entries[k:]))


def path(m: int, entries: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n])."""
    if len(entries) == 1:
        return []
    k = _k(len(entries))
    if m < k:
        return [*path(m, entries[:k]), mth(entries[k:])]
    return [*path(m - k, entries[k:]), mth(entries[:k])]


def proof(m: int, entries: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) = SUBPROOF(m, D[n], true)."""

    def sub(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
        if m == len(d):
            return [] if b else [mth(d)]
        k = _k(len(d))
        if m <= k:
            return [*sub(m, d[:k], b), mth(d[k:])]
        return [*sub(m - k, d[k:], False), mth(d[:k])]

    return sub(m, entries, True)


def verify_inclusion(
    leaf_index: int, tree_size: int, entry: bytes, inclusion_path: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2."""
    if leaf_index >= tree_size:
        return False
    fn, sn = leaf_index, tree_size - 1
    r = leaf(entry)
    for p in inclusion_path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    first: int, second: int, first_hash: bytes, second_hash: bytes, consistency: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2 (first == second: an empty proof and equal roots)."""
    if first == second:
        return not consistency and first_hash == second_hash
    if not 0 < first < second or not consistency:
        return False
    c = list(consistency)
    if first & (first - 1) == 0:
        c = [first_hash, *c]
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = c[0]
    for x in c[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node(x, fr)
            sr = node(x, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node(sr, x)
        fn >>= 1
        sn >>= 1
    return fr == first_hash and sr == second_hash and sn == 0
