"""API and worker processes that connect as the application's role (no MIGRATE_DATABASE_URL)."""

from __future__ import annotations

import asyncpg
import pytest

from ledger import config, database, errors, migrations
from tests.conftest import Databases


async def test_the_app_role_can_read_which_migrations_are_applied(
    conn: asyncpg.Connection,
) -> None:
    assert await migrations.pending(conn) == []


async def test_the_app_role_starts_without_migrating_when_nothing_is_pending(
    dbs: Databases,
) -> None:
    async with database.open_database(config.Settings(database_url=dbs.app)) as opened:
        assert opened.app_dsn == dbs.app


async def test_pending_migrations_the_app_role_cannot_apply_are_a_clear_error(
    dbs: Databases, admin_conn: asyncpg.Connection
) -> None:
    last = migrations.discover()[-1].name
    await admin_conn.execute("DELETE FROM schema_migrations WHERE name = $1", last)
    with pytest.raises(errors.ConfigError, match="ledger migrate"):
        async with database.open_database(config.Settings(database_url=dbs.app)):
            pass
