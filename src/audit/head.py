"""The integrated tree head: the stored tree's edge between checkpoints.

As a Certificate Transparency log's sequencer integrates entries into its stored
tree continuously and its signer only signs the current head, the scheduler folds
the feed into the stored tree every few seconds (`checkpoints.integrate`) and keeps
here, per tenant and audit key, where it stopped: the tree size, the last event's feed key and
the frontier there. A checkpoint then folds only the events after it.

The row is not a checkpoint: it is never published and proves nothing to anyone
else. It is signed with the audit key over a message that no checkpoint note or
older checkpoint message can be (its first line differs from both), so that the
database alone cannot make the service start a checkpoint from a frontier it did
not compute; and before a checkpoint starts from it, its tree must also be shown
consistent with the newest signed checkpoint from the stored tree
(`checkpoints._trusted_head`). Tenant default's head message is the one it always was;
any other tenant's starts with another first line and names the tenant, so a head
moved to another tenant's row does not verify.
"""

from __future__ import annotations

import base64
from typing import Final

import asyncpg
import msgspec

from audit import merkle, signing
from ledger import events as ev
from ledger import sqlfile

Q = sqlfile.load("audit")
MESSAGE_FIRST_LINE: Final = "job-ledger integrated tree head v1"
TENANT_MESSAGE_FIRST_LINE: Final = "job-ledger integrated tree head v2"


class Head(msgspec.Struct, frozen=True, kw_only=True):
    tenant: str = ev.DEFAULT_TENANT
    key_id: str
    tree_size: int
    txid: int
    position: int
    frontier: bytes
    signature: bytes

    @property
    def key(self) -> tuple[int, int]:
        return (self.txid, self.position)

    def message(self) -> bytes:
        """The exact bytes its signature covers."""
        return message(self.key_id, self.tree_size, self.key, self.frontier, self.tenant)

    def tree(self) -> merkle.Frontier | None:
        """Its frontier (None: the stored bytes are not one for its size)."""
        try:
            return merkle.Frontier.decode(self.tree_size, self.frontier)
        except ValueError:
            return None


def message(
    key_id: str,
    size: int,
    key: tuple[int, int],
    frontier: bytes,
    tenant: str = ev.DEFAULT_TENANT,
) -> bytes:
    first = (
        MESSAGE_FIRST_LINE
        if tenant == ev.DEFAULT_TENANT
        else f"{TENANT_MESSAGE_FIRST_LINE}\n{tenant}"
    )
    return (
        f"{first}\n{key_id}\n{size}\n{key[0]}.{key[1]}\n{base64.b64encode(frontier).decode()}\n"
    ).encode()


async def get(conn: asyncpg.Connection, key_id: str) -> Head | None:
    """The key's head in the tenant the transaction acts in (None: none yet)."""
    row = await conn.fetchrow(Q["tree_head_get"], key_id)
    if row is None:
        return None
    return Head(
        tenant=row["tenant"],
        key_id=row["key_id"],
        tree_size=row["tree_size"],
        txid=row["txid"],
        position=row["position"],
        frontier=bytes(row["frontier"]),
        signature=bytes(row["signature"]),
    )


async def put(
    conn: asyncpg.Connection,
    signer: signing.Signer,
    tree: merkle.Frontier,
    key: tuple[int, int],
    tenant: str,
) -> Head:
    """Store (sign and replace) the key's head in `tenant`, the tenant the transaction acts
    in: `tree` folds every one of its events up to `key`."""
    frontier = tree.encode()
    signature = signer.sign(message(signer.key_id, tree.size, key, frontier, tenant))
    await conn.execute(
        Q["tree_head_put"], signer.key_id, tree.size, key[0], key[1], frontier, signature
    )
    return Head(
        tenant=tenant,
        key_id=signer.key_id,
        tree_size=tree.size,
        txid=key[0],
        position=key[1],
        frontier=frontier,
        signature=signature,
    )
