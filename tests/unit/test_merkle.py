"""The Merkle tree's arithmetic against a naive tree and the independent RFC 9162 verifier."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit import merkle
from tests import rfc9162


def entries(n: int) -> list[bytes]:
    return [hashlib.sha256(str(i).encode()).digest() for i in range(n)]


def grown(data: list[bytes]) -> tuple[merkle.Frontier, dict[merkle.Node, bytes]]:
    """A frontier grown one leaf at a time, and every complete subtree it closed."""
    tree = merkle.Frontier()
    nodes: dict[merkle.Node, bytes] = {}
    for h in data:
        for level, index, value in tree.append(h):
            nodes[(level, index)] = value
    return tree, nodes


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 300), st.data())
def test_proofs_match_the_naive_tree_and_the_rfc_verifier(size: int, data: st.DataObject) -> None:
    d = entries(size)
    tree, nodes = grown(d)
    root = rfc9162.mth(d)
    assert tree.root() == root
    assert merkle.Frontier.decode(size, tree.encode()).root() == root

    index = data.draw(st.integers(0, size - 1))
    path = merkle.inclusion_path(lambda lv, ix: nodes[(lv, ix)], index, size)
    assert path == rfc9162.path(index, d)
    assert rfc9162.verify_inclusion(index, size, d[index], path, root)
    assert merkle.verify_inclusion(index, size, d[index], path, root)
    assert not merkle.verify_inclusion(index, size, d[index][::-1], path, root)

    old = data.draw(st.integers(1, size))
    consistency = merkle.consistency_path(lambda lv, ix: nodes[(lv, ix)], old, size)
    if old < size:
        assert consistency == rfc9162.proof(old, d)
    old_root = rfc9162.mth(d[:old])
    assert rfc9162.verify_consistency(old, size, old_root, root, consistency)
    assert merkle.verify_consistency(old, size, old_root, root, consistency)
    forked = rfc9162.mth([*d[: old - 1], b"forked"])
    assert not merkle.verify_consistency(old, size, forked, root, consistency)
    assert not rfc9162.verify_consistency(old, size, forked, root, consistency)


def test_a_frontier_keeps_one_hash_per_set_bit_of_the_size() -> None:
    tree, _ = grown(entries(1000))
    assert len(tree.encode()) == 32 * bin(1000).count("1")


def test_a_proof_reads_logarithmically_many_subtrees() -> None:
    size = 100_000
    wanted = merkle.needed(lambda nodes: merkle.inclusion_path(nodes, 4321, size))
    assert len(wanted) <= 2 * size.bit_length()
    wanted = merkle.needed(lambda nodes: merkle.consistency_path(nodes, 33_333, size))
    assert len(wanted) <= 2 * size.bit_length()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 70), min_size=1, max_size=6), st.integers(0, 6))
def test_extending_by_many_leaves_at_once_grows_the_same_tree_as_one_at_a_time(
    steps: list[int], keep_from: int
) -> None:
    d = entries(sum(steps))
    one, nodes = grown(d)
    many = merkle.Frontier()
    kept: dict[merkle.Node, bytes] = {}
    done = 0
    for step in steps:
        leaves = b"".join(merkle.leaf_hash(h) for h in d[done : done + step])
        for level, index, value in many.extend(leaves, keep_from):
            assert (level, index) not in kept
            kept[(level, index)] = value
        done += step
        assert many.root() == rfc9162.mth(d[:done])
    assert (many.size, many.hashes) == (one.size, one.hashes)
    assert kept == {node: h for node, h in nodes.items() if node[0] >= keep_from}


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=0, max_size=32 * 300).map(lambda b: b[: len(b) // 32 * 32]))
def test_leaf_hashes_of_many_events_are_each_events_rfc_leaf_hash(event_hashes: bytes) -> None:
    hashes = [event_hashes[i : i + 32] for i in range(0, len(event_hashes), 32)]
    assert merkle.leaf_hashes(event_hashes) == b"".join(rfc9162.leaf(h) for h in hashes)


def test_the_batch_hasher_gives_hashlibs_digests_and_is_the_one_in_use() -> None:
    assert merkle._known_answers(merkle._hash_each_in_lanes)
    assert merkle._hash_each is merkle._hash_each_in_lanes


def test_a_batch_hasher_that_disagrees_with_hashlib_is_not_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(merkle, "_hash_each_in_lanes", lambda prefix, blob, width: b"")
    assert merkle._choose_hash_each() is merkle._hash_each_one_by_one
