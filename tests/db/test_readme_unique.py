"""The README's unique-jobs example, run as written against a real database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parents[2]
START, END = "<!-- readme-unique-example: start -->", "<!-- readme-unique-example: end -->"


def readme_example() -> dict[str, Any]:
    text = (ROOT / "README.md").read_text()
    block = text[text.index(START) : text.index(END)]
    code = block.split("```python\n", 1)[1].rsplit("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    return namespace


async def test_the_readme_reminder_is_sent_once_an_hour_per_customer(
    conn: asyncpg.Connection,
) -> None:
    remind = readme_example()["remind"]
    first = await remind(conn, 7)
    again = await remind(conn, 7)
    other = await remind(conn, 8)
    assert (first.deduplicated, again.deduplicated, other.deduplicated) == (False, True, False)
    assert again.job_id == first.job_id != other.job_id
    assert await conn.fetchval("SELECT count(*) FROM jobs") == 2
