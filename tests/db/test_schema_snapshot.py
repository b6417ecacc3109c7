"""sql/schema.sql is what the migrations produce: a migration without a new dump fails here."""

from __future__ import annotations

import difflib

from ledger import schema
from tests.conftest import Databases


async def test_the_schema_file_is_what_the_migrations_produce(dbs: Databases) -> None:
    produced = await schema.dump(dbs.admin)
    kept = schema.snapshot_path().read_text("utf-8")
    if produced != kept:
        diff = "".join(
            difflib.unified_diff(
                kept.splitlines(keepends=True),
                produced.splitlines(keepends=True),
                "sql/schema.sql",
                "the migrations",
            )
        )
        raise AssertionError(
            "sql/schema.sql is stale: run `ledger schema dump --output sql/schema.sql`\n"
            + diff[:4000]
        )


def test_the_dump_leaves_out_what_differs_between_machines() -> None:
    raw = (
        "\\restrict abc\n-- Dumped from database version 18.6\nSET lock_timeout = 0;\n"
        "SELECT pg_catalog.set_config('search_path', '', false);\n"
        "CREATE TABLE t (\n    a integer\n);\n"
        "ALTER DEFAULT PRIVILEGES FOR ROLE someone IN SCHEMA public GRANT ALL ON TABLES TO x;\n"
        "\\unrestrict abc\n"
    )
    text = schema.normalise(raw)
    assert text.startswith(schema.HEADER)
    assert "restrict" not in text and "Dumped" not in text and "SET lock" not in text
    assert "CREATE TABLE t (\n    a integer\n);" in text
    assert "FOR ROLE CURRENT_USER IN SCHEMA public" in text
