"""The README's transactional-enqueue example, run as written against a real database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import pytest

from projections import current
from tests.conftest import Databases

ROOT = Path(__file__).resolve().parents[2]
START, END = "<!-- readme-python-example: start -->", "<!-- readme-python-example: end -->"


def readme_example() -> dict[str, Any]:
    text = (ROOT / "README.md").read_text()
    block = text[text.index(START) : text.index(END)]
    code = block.split("```python\n", 1)[1].rsplit("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    return namespace


async def test_the_readme_order_and_its_email_commit_together_or_not_at_all(
    dbs: Databases, conn: asyncpg.Connection, admin_conn: asyncpg.Connection
) -> None:
    await admin_conn.execute("CREATE TABLE orders (id integer PRIMARY KEY, email text NOT NULL)")
    await admin_conn.execute("GRANT SELECT, INSERT ON orders TO ledger_app")
    place_order = readme_example()["place_order"]

    job = await place_order(conn, 1, "ada@example.com")
    state = await current.get(conn, job.job_id)
    assert state is not None and (state.type, state.status) == ("email_send", "pending")
    assert state.payload["to"] == ["ada@example.com"]

    with pytest.raises(asyncpg.UniqueViolationError):  # the order exists: nothing is mailed
        await place_order(conn, 1, "eve@example.com")
    assert await conn.fetchval("SELECT count(*) FROM jobs") == 1
    assert await conn.fetchval("SELECT email FROM orders WHERE id = 1") == "ada@example.com"
