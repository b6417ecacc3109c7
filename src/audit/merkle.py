"""The feed as a Merkle tree in the manner of Certificate Transparency (RFC 6962, RFC 9162 §2.1).

Leaves are the events in feed order ((txid, position), only below the snapshot's
xmin, so the order never changes once an event is a leaf): leaf ``i`` is the
``i``-th event of the feed, its hash ``SHA-256(0x00 ‖ event hash)``; an interior
node is ``SHA-256(0x01 ‖ left ‖ right)``; a tree of ``n`` leaves splits at the
largest power of two below ``n``. A checkpoint of size ``n`` signs the root of the
first ``n`` leaves.

Storage. A checkpoint keeps its *frontier*: the roots of the complete subtrees on
the right edge of its tree, one per set bit of its size (at most log2 n hashes),
so the next checkpoint folds only the new events into it. The frontier needs no
signature of its own: folded, it must give the signed root. Complete subtrees of
``2**CHUNK_LEVEL`` leaves or more are kept as rows (`audit_tree_nodes`), written as
the tree grows; the levels below are recomputed from the events (at most
``2**CHUNK_LEVEL`` event hashes read per proof), so the tree costs about one
32-byte node per 32 events rather than two per event. (Trees stored before the
chunk grew from 16 leaves to 64 keep their extra rows and marks; proofs ignore them.)

Proofs are computed here from a `Nodes` lookup: `needed` runs a proof with a
recording lookup first, to learn which complete subtrees it reads (the shape of a
proof depends only on the sizes), then the caller fetches exactly those.

Pure: no database.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import struct
from collections.abc import Callable, Sequence
from typing import Final

import stringzilla as sz  # type: ignore[import-not-found]  # no stubs: a C extension

CHUNK_LEVEL: Final = 6  # subtrees of 64 leaves and up are stored; smaller ones recomputed
CHUNK: Final = 1 << CHUNK_LEVEL
HASH_SIZE: Final = 32
EMPTY_ROOT: Final = hashlib.sha256(b"").digest()
LEAF_PREFIX: Final = b"\x00"
NODE_PREFIX: Final = b"\x01"

log = logging.getLogger(__name__)

Node = tuple[int, int]  # (level, index): leaves [index * 2**level, (index + 1) * 2**level)
Nodes = Callable[[int, int], bytes]  # (level, index) -> the hash of that complete subtree


class ProofError(ValueError):
    """A proof is asked for sizes or indexes the tree does not have."""


def leaf_hash(event_hash: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + event_hash).digest()


def leaf_hashes(event_hashes: bytes) -> bytes:
    """The leaf hashes of concatenated event hashes, concatenated."""
    return _hash_each(LEAF_PREFIX, event_hashes, HASH_SIZE)


def _hash_each_in_lanes(prefix: bytes, blob: bytes, width: int) -> bytes:
    """SHA-256(prefix ‖ chunk) of every `width`-byte chunk of `blob`, concatenated.

    One call into C for all of them (stringzilla's multi-message SHA-256): a tree
    level of 2**15 nodes costs ~4 ms rather than the ~20 ms of one `hashlib` call a
    node, which is most of a checkpoint's Python time. The chunks are cut by one
    `struct` unpack (no Python loop either).
    """
    count = len(blob) // width
    if not count:
        return b""
    lanes = sz.Sha256s(count)
    lanes.update([prefix] * count)
    lanes.update(_cutter(count, width).unpack_from(blob))
    out = bytearray(count * HASH_SIZE)
    lanes.digest(out=out)
    return bytes(out)


def _hash_each_one_by_one(prefix: bytes, blob: bytes, width: int) -> bytes:
    """`_hash_each_in_lanes` with `hashlib`, one call a chunk (the reference, and the fallback)."""
    sha256 = hashlib.sha256
    count = len(blob) // width
    return b"".join(
        [sha256(prefix + blob[i : i + width]).digest() for i in range(0, count * width, width)]
    )


@functools.lru_cache(maxsize=16)
def _cutter(count: int, width: int) -> struct.Struct:
    return struct.Struct(f"{width}s" * count)


def _known_answers(hash_each: Callable[[bytes, bytes, int], bytes]) -> bool:
    """Whether `hash_each` gives `hashlib`'s digests (a few sizes, both prefixes)."""
    blob = hashlib.shake_256(b"merkle known answers").digest(64 * 37)
    return all(
        hash_each(prefix, blob[: count * width], width)
        == _hash_each_one_by_one(prefix, blob[: count * width], width)
        for prefix, width in ((LEAF_PREFIX, HASH_SIZE), (NODE_PREFIX, 2 * HASH_SIZE))
        for count in (0, 1, 2, 3, 17, 37)
    )


def _choose_hash_each() -> Callable[[bytes, bytes, int], bytes]:
    """The batch hasher, checked against `hashlib` once at import; `hashlib` if it differs
    (a root is only signed from digests that agree with the standard library's)."""
    if _known_answers(_hash_each_in_lanes):
        return _hash_each_in_lanes
    log.warning(
        "stringzilla %s's SHA-256 disagrees with hashlib on known answers: hashing the "
        "Merkle tree one node at a time (slower)",
        sz.__version__,
    )
    return _hash_each_one_by_one


_hash_each: Final = _choose_hash_each()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class Frontier:
    """The right edge of a tree of `size` leaves: its complete subtrees' roots, largest first."""

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0 or len(hashes) != size.bit_count():
            raise ValueError(f"a tree of {size} leaves has {size.bit_count()} frontier hashes")
        self.size = size
        self.hashes = list(hashes)

    @classmethod
    def decode(cls, size: int, blob: bytes) -> Frontier:
        """A frontier from its stored bytes (ValueError: not one for this size)."""
        if len(blob) % HASH_SIZE:
            raise ValueError(f"a frontier of {len(blob)} bytes is not whole hashes")
        return cls(size, [blob[i : i + HASH_SIZE] for i in range(0, len(blob), HASH_SIZE)])

    def encode(self) -> bytes:
        return b"".join(self.hashes)

    def copy(self) -> Frontier:
        return Frontier(self.size, self.hashes)

    def append(self, event_hash: bytes) -> list[tuple[int, int, bytes]]:
        """Add one event as the next leaf; the complete subtrees it closes, (level, index, hash)."""
        h = leaf_hash(event_hash)
        level = 0
        size = self.size
        closed = [(0, size, h)]
        while size >> level & 1:
            h = node_hash(self.hashes.pop(), h)
            level += 1
            closed.append((level, ((size + 1) >> level) - 1, h))
        self.hashes.append(h)
        self.size = size + 1
        return closed

    def extend(self, leaves: bytes, keep_from: int = 0) -> list[tuple[int, int, bytes]]:
        """Add many leaves at once (their `leaf_hash`es, concatenated), level by level.

        The same tree as `append` one leaf at a time, without its per-leaf Python
        work: each level is hashed in one pass over its pairs, the old frontier's
        node at a level joining it when the new nodes there start at an odd index.
        Returns the complete subtrees it closed at levels `keep_from` and up,
        (level, index, hash), as `append` does.
        """
        if len(leaves) % HASH_SIZE:
            raise ValueError(f"{len(leaves)} bytes of leaf hashes are not whole hashes")
        size, new = self.size, self.size + len(leaves) // HASH_SIZE
        old = dict(zip(_bits(size), self.hashes, strict=True))
        fresh: dict[int, bytes] = {}
        closed: list[tuple[int, int, bytes]] = []
        level, start, nodes = 0, size, leaves  # nodes: the new ones at `level`, from `start`
        while nodes:
            if level >= keep_from:
                closed += [
                    (level, start + i, nodes[i * HASH_SIZE : (i + 1) * HASH_SIZE])
                    for i in range(len(nodes) // HASH_SIZE)
                ]
            if start & 1:  # the left sibling of the first new node is on the old frontier
                nodes, start = old[level] + nodes, start - 1
            n = len(nodes) // HASH_SIZE
            if n & 1:
                fresh[level] = nodes[-HASH_SIZE:]
            nodes = _hash_each(NODE_PREFIX, nodes, 2 * HASH_SIZE)
            level, start = level + 1, start >> 1
        self.hashes = [fresh[b] if b in fresh else old[b] for b in _bits(new)]
        self.size = new
        return closed

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        h = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            h = node_hash(left, h)
        return h


def _bits(n: int) -> list[int]:
    """The set bits of n, largest first: the levels of a tree of n leaves' frontier."""
    return [b for b in range(n.bit_length() - 1, -1, -1) if n >> b & 1]


def root_of(leaves: Sequence[bytes]) -> bytes:
    """MTH of a list of leaf hashes (already `leaf_hash`ed)."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return node_hash(root_of(leaves[:k]), root_of(leaves[k:]))


def subtree(nodes: Nodes, start: int, end: int) -> bytes:
    """MTH(D[start:end]) from complete subtrees (RFC 6962 §2.1)."""
    n = end - start
    if n <= 0:
        raise ProofError(f"empty range {start}..{end}")
    if n & (n - 1) == 0 and start % n == 0:
        return nodes(n.bit_length() - 1, start // n)
    k = _split(n)
    return node_hash(subtree(nodes, start, start + k), subtree(nodes, start + k, end))


def inclusion_path(nodes: Nodes, index: int, size: int) -> list[bytes]:
    """PATH(m, D[n]) (RFC 6962 §2.1.1): the audit path of leaf `index` in a tree of `size`."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of {size} leaves")

    def path(m: int, start: int, end: int) -> list[bytes]:
        n = end - start
        if n == 1:
            return []
        k = _split(n)
        if m < k:
            return [*path(m, start, start + k), subtree(nodes, start + k, end)]
        return [*path(m - k, start + k, end), subtree(nodes, start, start + k)]

    return path(index, 0, size)


def consistency_path(nodes: Nodes, old: int, new: int) -> list[bytes]:
    """PROOF(m, D[n]) (RFC 6962 §2.1.2): the tree of size `new` extends the one of size `old`."""
    if not 0 < old <= new:
        raise ProofError(f"no consistency proof from size {old} to size {new}")

    def sub(m: int, start: int, end: int, whole: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if whole else [subtree(nodes, start, end)]
        k = _split(n)
        if m <= k:
            return [*sub(m, start, start + k, whole), subtree(nodes, start + k, end)]
        return [*sub(m - k, start + k, end, False), subtree(nodes, start, start + k)]

    return [] if old == new else sub(old, 0, new, True)


def needed(proof: Callable[[Nodes], object]) -> set[Node]:
    """The complete subtrees a proof reads (its shape depends only on sizes and indexes)."""
    wanted: set[Node] = set()

    def record(level: int, index: int) -> bytes:
        wanted.add((level, index))
        return bytes(HASH_SIZE)

    proof(record)
    return wanted


def root_from_inclusion(index: int, size: int, leaf: bytes, path: Sequence[bytes]) -> bytes:
    """The root an audit path gives for a leaf hash (ProofError: the path has the wrong length)."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of {size} leaves")

    def up(m: int, n: int, hashes: Sequence[bytes]) -> bytes:
        if n == 1:
            if hashes:
                raise ProofError("the audit path is too long")
            return leaf
        if not hashes:
            raise ProofError("the audit path is too short")
        k = _split(n)
        *rest, sibling = hashes
        if m < k:
            return node_hash(up(m, k, rest), sibling)
        return node_hash(sibling, up(m - k, n - k, rest))

    return up(index, size, path)


def verify_inclusion(
    index: int, size: int, event_hash: bytes, path: Sequence[bytes], root: bytes
) -> bool:
    """Whether `path` proves the event is leaf `index` of the tree of `size` with `root`."""
    try:
        return root_from_inclusion(index, size, leaf_hash(event_hash), path) == root
    except ProofError:
        return False


def verify_consistency(
    old: int, new: int, old_root: bytes, new_root: bytes, path: Sequence[bytes]
) -> bool:
    """Whether `path` proves the tree of size `new` with `new_root` extends `old`'s `old_root`."""
    if not 0 < old <= new:
        return False
    if old == new:
        return not path and old_root == new_root

    def walk(m: int, n: int, hashes: Sequence[bytes], whole: bool) -> tuple[bytes, bytes]:
        # (the old tree's hash over this range, the new tree's), mirroring PROOF's SUBPROOF
        if m == n:
            if whole:
                if hashes:
                    raise ProofError("the consistency path is too long")
                return old_root, old_root
            if len(hashes) != 1:
                raise ProofError("the consistency path has the wrong length")
            return hashes[0], hashes[0]
        if not hashes:
            raise ProofError("the consistency path is too short")
        k = _split(n)
        *rest, sibling = hashes
        if m <= k:
            before, after = walk(m, k, rest, whole)
            return before, node_hash(after, sibling)
        before, after = walk(m - k, n - k, rest, False)
        return node_hash(sibling, before), node_hash(sibling, after)

    try:
        before, after = walk(old, new, path, True)
    except ProofError:
        return False
    return before == old_root and after == new_root
