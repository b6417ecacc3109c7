"""Forward-only plain-SQL migrations from sql/, each applied once, in order, in its own transaction.

Concurrent starters serialise on an advisory lock; an applied file whose text has
changed since is refused (never edit a shipped migration: write the next one).
"""

from __future__ import annotations

import hashlib
import re
from importlib import resources
from pathlib import Path
from typing import Final

import asyncpg
import msgspec

from ledger import errors

LOCK_KEY: Final = 0x4C454447  # "LEDG"
_FILE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
SNAPSHOT: Final = "schema.sql"

_BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    name       text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class Migration(msgspec.Struct, frozen=True):
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def sql_dir() -> Path:
    """sql/ beside src/ in a checkout, or the copy packaged inside `ledger`."""
    checkout = Path(__file__).resolve().parents[2] / "sql"
    if checkout.is_dir():
        return checkout
    return Path(str(resources.files("ledger").joinpath("sql")))


def discover(directory: Path | None = None) -> list[Migration]:
    """The migrations in `directory`, in order; numbers must be unique."""
    directory = directory or sql_dir()
    found: list[Migration] = []
    seen: dict[str, str] = {}
    for path in sorted(directory.glob("*.sql")):
        if path.name == SNAPSHOT:
            continue  # what they add up to (ledger.schema), not a migration
        match = _FILE.match(path.name)
        if not match:
            raise errors.ConfigError(f"migration file {path.name} is not named NNNN_name.sql")
        number = match.group(1)
        if number in seen:
            raise errors.ConfigError(f"migrations {seen[number]} and {path.name} share a number")
        seen[number] = path.name
        found.append(Migration(path.name, path.read_text("utf-8")))
    return found


async def applied(conn: asyncpg.Connection) -> dict[str, str]:
    """{name: checksum} of the migrations recorded as applied (empty before the first)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return {}
    rows = await conn.fetch("SELECT name, checksum FROM schema_migrations")
    return {r["name"]: r["checksum"] for r in rows}


async def pending(conn: asyncpg.Connection, available: list[Migration] | None = None) -> list[str]:
    """Names of the migrations not yet applied."""
    done = await applied(conn)
    return [m.name for m in available or discover() if m.name not in done]


async def migrate(conn: asyncpg.Connection, available: list[Migration] | None = None) -> list[str]:
    """Apply what is pending; returns the names applied. Safe to run from many processes at once."""
    available = available if available is not None else discover()
    await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
    try:
        await conn.execute(_BOOTSTRAP)
        done = await applied(conn)
        ran: list[str] = []
        for migration in available:
            if migration.name in done:
                if done[migration.name] != migration.checksum:
                    raise errors.ConfigError(
                        f"migration {migration.name} was edited after it was applied"
                    )
                continue
            try:
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)",
                        migration.name,
                        migration.checksum,
                    )
            except asyncpg.PostgresError as exc:
                raise errors.MigrationError(migration.name, str(exc)) from exc
            ran.append(migration.name)
        return ran
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
