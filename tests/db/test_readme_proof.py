"""The README's proof-checking example (auditors), run as written on the service's proofs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import msgspec

from audit import checkpoints, tree
from tests import ledgers

ROOT = Path(__file__).resolve().parents[2]
START, END = "<!-- readme-proof-example: start -->", "<!-- readme-proof-example: end -->"


def readme_included() -> Callable[[dict[str, Any], dict[str, Any], dict[str, Any]], bool]:
    text = (ROOT / "README.md").read_text()
    block = text[text.index(START) : text.index(END)]
    code = block.split("```python\n", 1)[1].rsplit("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    included: Callable[[dict[str, Any], dict[str, Any], dict[str, Any]], bool]
    included = namespace["included"]
    return included


async def test_the_readme_example_accepts_every_proof_and_rejects_altered_ones(
    admin_conn: asyncpg.Connection, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    included = readme_included()
    signer = ledgers.signer(tmp_path)
    await ledgers.bulk_events(admin_conn, 37)
    first, _ = await checkpoints.create(conn, signer)
    await ledgers.bulk_events(admin_conn, 29)
    second, _ = await checkpoints.create(conn, signer)
    rows = await conn.fetch(
        "SELECT txid::text::bigint AS txid, position, hash FROM events ORDER BY txid, position"
    )
    for cp in (first, second):
        assert cp is not None
        held = msgspec.to_builtins(checkpoints.CheckpointOut.of(cp, signer))
        for index, row in enumerate(rows[: cp.event_count]):
            got = await tree.inclusion(
                conn, signer.key_id, row["txid"], row["position"], cp.event_count
            )
            proof = msgspec.to_builtins(got)
            event = {"hash": bytes(row["hash"]).hex()}
            assert included(event, proof, held), (cp.event_count, index)

            other = {"hash": bytes(rows[(index + 1) % cp.event_count]["hash"]).hex()}
            assert not included(other, proof, held)
            if proof["hashes"]:
                bent = {**proof, "hashes": ["00" * 32, *proof["hashes"][1:]]}
                assert not included(event, bent, held)
                assert not included(event, {**proof, "hashes": proof["hashes"][:-1]}, held)
            assert not included(event, {**proof, "leaf_index": index ^ 1}, held)
