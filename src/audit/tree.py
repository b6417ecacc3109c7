"""The stored Merkle tree of a tenant's log: growing it as checkpoints are taken, and proofs from it.

Each tenant's events, in feed order, are the leaves of a tree of their own; every
statement here reads and writes the tree of the tenant the transaction acts in
(`ledger_tenant()`, default when none), so a cursor of another tenant's event is
no leaf of it (UnknownLeaf).

Rows: `audit_tree_nodes` keeps every complete subtree of 64 leaves and up (about
one node per 32 events), `audit_tree_marks` the feed key of every 64th leaf (one
per 64 events; every 16th in trees stored before). A proof reads O(log n) nodes and
at most two chunks of 64 event hashes; nothing here reads the whole log. The rows are written by the application
role and trusted by nobody: a proof is only worth what it gives against a signed
root (`merkle.verify_*`), so a forged row makes a proof that fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Final

import asyncpg
import msgspec

from audit import merkle
from ledger import errors, sqlfile

Q = sqlfile.load("audit")
LEAVES: Final = 1 << 15  # leaves a batch (its rows stay within the default work_mem)


class TreeError(errors.LedgerError):
    """The stored tree lacks rows a proof needs (they were removed or never written)."""


class UnknownLeaf(errors.LedgerError):
    """The cursor names no event of the signed tree (404)."""


class BadTreeSize(errors.LedgerError):
    """A proof asked for a tree size no checkpoint reaches, or sizes in the wrong order (400)."""


class Inclusion(msgspec.Struct, frozen=True, kw_only=True):
    """RFC 9162 §2.1.3: the audit path of one leaf in the tree of `tree_size` leaves."""

    leaf_index: int
    tree_size: int
    hashes: list[str]  # hex, innermost first


class Consistency(msgspec.Struct, frozen=True, kw_only=True):
    """RFC 9162 §2.1.4: the tree of size `to` extends the tree of size `from`."""

    hashes: list[str]  # hex


async def grow(
    conn: asyncpg.Connection, tree: merkle.Frontier, start: tuple[int, int]
) -> tuple[int, int]:
    """Fold every event after the feed key `start` (below the xmin) into `tree`; the last
    event's key (`start` when there is none).

    Pipelined over one connection: while this process hashes a batch of events into the
    tree (`Frontier.extend`), the server reads the next batch and writes the rows (marks,
    complete subtrees of 64 leaves and up) of the batches before.
    """
    rows = _Rows()
    key = start
    await conn.execute(Q["tree_scan_in_order"])
    pending = asyncio.ensure_future(_leaves(conn, key, tree.size, rows.take()))
    try:
        while (batch := await pending)["leaves"]:
            key = (batch["last_key"][0], batch["last_key"][1])
            rows.marks(batch)
            pending = asyncio.ensure_future(_leaves(conn, key, batch["last_leaf"] + 1, rows.take()))
            await asyncio.sleep(0)  # the next batch's query is sent before this one is hashed
            rows.nodes(tree.extend(merkle.leaf_hashes(batch["hashes"]), merkle.CHUNK_LEVEL))
    except BaseException:
        await asyncio.gather(pending, return_exceptions=True)  # the connection is free again
        raise
    await conn.execute(Q["tree_scan_default"])
    await conn.execute(Q["tree_nodes_insert"], *rows.take()[:3])
    return key


class _Rows:
    """Tree rows not yet sent: nodes (level, index, hash) and marks (leaf, txid, position)."""

    def __init__(self) -> None:
        self._columns: list[list[Any]] = [[] for _ in range(6)]

    def nodes(self, closed: list[tuple[int, int, bytes]]) -> None:
        for level, index, node in closed:
            self._columns[0].append(level)
            self._columns[1].append(index)
            self._columns[2].append(node)

    def marks(self, batch: asyncpg.Record) -> None:
        self._columns[3] += batch["mark_leaves"]
        self._columns[4] += batch["mark_txids"]
        self._columns[5] += batch["mark_positions"]

    def take(self) -> list[list[Any]]:
        columns, self._columns = self._columns, [[] for _ in range(6)]
        return columns


async def _leaves(
    conn: asyncpg.Connection, key: tuple[int, int], leaf: int, rows: list[list[Any]]
) -> asyncpg.Record:
    batch = await conn.fetchrow(
        Q["tree_leaves_batch"], str(key[0]), key[1], leaf, LEAVES, *rows, merkle.CHUNK
    )
    assert batch is not None  # an aggregate: always one row
    return batch


async def signed_size(conn: asyncpg.Connection, key_id: str) -> int:
    """The largest tree a key signed a checkpoint of (0: none)."""
    size: int = await conn.fetchval(Q["checkpoints_tree_size"], key_id)
    return size


async def _chunk(conn: asyncpg.Connection, chunk: int) -> list[asyncpg.Record]:
    """The events (txid, position, hash) of leaves [64·chunk, 64·chunk + 64) that exist."""
    mark = await conn.fetchrow(Q["tree_mark_at"], chunk * merkle.CHUNK)
    if mark is None:
        raise TreeError(f"the tree has no mark for leaf {chunk * merkle.CHUNK}")
    rows: list[asyncpg.Record] = await conn.fetch(
        Q["events_feed_hashes_from"], str(mark["txid"]), mark["position"], merkle.CHUNK
    )
    return rows


async def _lookup(
    conn: asyncpg.Connection, wanted: set[merkle.Node], size: int
) -> dict[merkle.Node, bytes]:
    """The hashes of the complete subtrees `wanted` (all within the first `size` leaves)."""
    stored = sorted(n for n in wanted if n[0] >= merkle.CHUNK_LEVEL)
    found: dict[merkle.Node, bytes] = {}
    if stored:
        rows = await conn.fetch(Q["tree_nodes_get"], [n[0] for n in stored], [n[1] for n in stored])
        found = {(r["level"], r["index"]): bytes(r["hash"]) for r in rows}
        absent = [n for n in stored if n not in found]
        if absent:
            raise TreeError(f"the stored tree lacks the subtrees {absent} (level, index)")
    low = [n for n in wanted if n[0] < merkle.CHUNK_LEVEL]
    chunks = {(index << level) >> merkle.CHUNK_LEVEL for level, index in low}
    for chunk in chunks:
        first = chunk * merkle.CHUNK
        leaves = [merkle.leaf_hash(bytes(r["hash"])) for r in await _chunk(conn, chunk)]
        leaves = leaves[: max(0, size - first)]
        for level, index in low:
            start = (index << level) - first
            if not 0 <= start < merkle.CHUNK:
                continue
            span = leaves[start : start + (1 << level)]
            if len(span) != 1 << level:
                raise TreeError(f"the events end inside leaves {first + start}…")
            found[(level, index)] = merkle.root_of(span)
    return found


async def _prove(
    conn: asyncpg.Connection, size: int, proof: Callable[[merkle.Nodes], list[bytes]]
) -> list[bytes]:
    found = await _lookup(conn, merkle.needed(proof), size)
    return proof(lambda level, index: found[(level, index)])


async def leaf_index(conn: asyncpg.Connection, txid: int, position: int) -> int:
    """The leaf index of the event at a feed key (UnknownLeaf: no event of the tree there)."""
    mark = await conn.fetchrow(Q["tree_mark_before"], txid, position)
    if mark is not None:
        rows = await conn.fetch(
            Q["events_feed_hashes_from"], str(mark["txid"]), mark["position"], merkle.CHUNK
        )
        for offset, row in enumerate(rows):
            if (row["txid"], row["position"]) == (txid, position):
                index: int = mark["leaf_index"] + offset
                return index
    raise UnknownLeaf(f"no event of the checkpointed tree at cursor {txid}.{position}")


async def inclusion(
    conn: asyncpg.Connection, key_id: str, txid: int, position: int, size: int
) -> Inclusion:
    """The inclusion proof of the event at a feed key in the tree of `size` leaves."""
    signed = await signed_size(conn, key_id)
    if not 0 < size <= signed:
        raise BadTreeSize(f"tree_size {size} is not in 1..{signed}, the largest signed tree")
    index = await leaf_index(conn, txid, position)
    if index >= size:
        raise BadTreeSize(f"the event is leaf {index}, not in the tree of {size} leaves")
    path = await _prove(conn, size, lambda nodes: merkle.inclusion_path(nodes, index, size))
    return Inclusion(leaf_index=index, tree_size=size, hashes=[h.hex() for h in path])


async def consistency_hashes(
    conn: asyncpg.Connection, key_id: str, old: int, new: int
) -> list[bytes]:
    """The consistency proof from the tree of `old` leaves to the one of `new` leaves."""
    signed = await signed_size(conn, key_id)
    if not 0 < old <= new <= signed:
        raise BadTreeSize(
            f"from={old} and to={new} must satisfy 1 <= from <= to <= {signed}, "
            "the largest signed tree"
        )
    return await stored_consistency(conn, old, new)


async def stored_consistency(conn: asyncpg.Connection, old: int, new: int) -> list[bytes]:
    """The consistency proof from `old` leaves to `new` from the stored tree, whatever was
    signed (the caller checks it against roots it trusts; TreeError: rows are missing)."""
    return await _prove(conn, new, lambda nodes: merkle.consistency_path(nodes, old, new))


async def consistency(conn: asyncpg.Connection, key_id: str, old: int, new: int) -> Consistency:
    hashes = await consistency_hashes(conn, key_id, old, new)
    return Consistency(hashes=[h.hex() for h in hashes])
