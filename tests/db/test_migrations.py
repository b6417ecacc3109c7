"""Migrations: applied once, in order, serialised across starters, all-or-nothing per file."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from ledger import errors, migrations
from tests import pg


@pytest_asyncio.fixture(loop_scope="session")
async def empty_db(server_dsn: str) -> AsyncIterator[str]:
    name = f"m_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield pg.with_database(server_dsn, name)
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def test_concurrent_starters_apply_each_migration_once(empty_db: str) -> None:
    conns = [await asyncpg.connect(empty_db) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrations.migrate(c) for c in conns))
        applied = sorted(name for ran in results for name in ran)
        assert applied == [m.name for m in migrations.discover()]
        assert await migrations.pending(conns[0]) == []
        rows = await conns[0].fetchval("SELECT count(*) FROM schema_migrations")
        assert rows == len(applied)
        assert await migrations.migrate(conns[0]) == []
    finally:
        for c in conns:
            await c.close()


async def test_a_failing_migration_leaves_the_database_as_it_was(
    empty_db: str, tmp_path: Path
) -> None:
    (tmp_path / "0001_ok.sql").write_text("-- fine\nCREATE TABLE good (x int);\n")
    (tmp_path / "0002_broken.sql").write_text(
        "-- half of it works\nCREATE TABLE half (x int);\nINSERT INTO half VALUES (1);\nSELECT no_such_function();\n"
    )
    conn = await asyncpg.connect(empty_db)
    try:
        with pytest.raises(errors.MigrationError, match=r"0002_broken\.sql"):
            await migrations.migrate(conn, migrations.discover(tmp_path))
        assert await conn.fetchval("SELECT to_regclass('good') IS NOT NULL")
        assert await conn.fetchval("SELECT to_regclass('half') IS NULL")
        assert await migrations.pending(conn, migrations.discover(tmp_path)) == ["0002_broken.sql"]
    finally:
        await conn.close()


async def test_an_applied_migration_that_was_edited_is_refused(
    empty_db: str, tmp_path: Path
) -> None:
    script = tmp_path / "0001_ok.sql"
    script.write_text("-- v1\nCREATE TABLE good (x int);\n")
    conn = await asyncpg.connect(empty_db)
    try:
        await migrations.migrate(conn, migrations.discover(tmp_path))
        script.write_text("-- v2\nCREATE TABLE good (x int, y int);\n")
        with pytest.raises(errors.ConfigError, match="edited"):
            await migrations.migrate(conn, migrations.discover(tmp_path))
    finally:
        await conn.close()


def test_migration_files_are_numbered_uniquely(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0001_b.sql").write_text("SELECT 1;")
    with pytest.raises(errors.ConfigError, match="share a number"):
        migrations.discover(tmp_path)


def test_every_shipped_migration_says_why_it_exists() -> None:
    for migration in migrations.discover():
        assert migration.sql.startswith("-- "), migration.name


async def test_row_level_security_is_not_installed_by_a_role_it_would_bind(empty_db: str) -> None:
    """0068 refuses a migrating role that is neither superuser nor BYPASSRLS: that role owns
    the tables, and their forced policies would hide every tenant's rows from it."""
    available = migrations.discover()
    before = [m for m in available if m.name < "0068"]
    through = [m for m in available if m.name < "0069"]
    role = f"plain_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(empty_db)
    try:
        await migrations.migrate(conn, before)
        await conn.execute(f'CREATE ROLE "{role}" NOSUPERUSER NOBYPASSRLS')
        await conn.execute(f'GRANT ALL ON schema_migrations TO "{role}"')
        await conn.execute(f'GRANT CREATE ON SCHEMA public TO "{role}"')
        await conn.execute(f'SET ROLE "{role}"')
        with pytest.raises(errors.MigrationError, match="must be a superuser or have BYPASSRLS"):
            await migrations.migrate(conn, through)
        await conn.execute("RESET ROLE")
        assert await migrations.pending(conn, through) == [through[-1].name]
        assert not await conn.fetchval(
            "SELECT relrowsecurity FROM pg_class WHERE oid = 'jobs'::regclass"
        )
    finally:
        await conn.execute("RESET ROLE")
        await conn.execute(f'REVOKE ALL ON schema_migrations FROM "{role}"')
        await conn.execute(f'REVOKE CREATE ON SCHEMA public FROM "{role}"')
        await conn.close()
        admin = await asyncpg.connect(empty_db)
        try:
            await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        finally:
            await admin.close()
