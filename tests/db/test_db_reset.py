"""`ledger db-reset`: refuses without confirmation; confirmed, leaves a freshly migrated database."""

from __future__ import annotations

import shutil
from pathlib import Path

import asyncpg
import pytest

from ledger import config, embedded, migrations, store
from service import cli
from tests import factories
from tests.conftest import Databases


def external(dbs: Databases) -> config.Settings:
    return config.Settings(database_url=dbs.app, migrate_database_url=dbs.admin)


async def count_events(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM events"))
    finally:
        await conn.close()


async def test_reset_of_an_external_database_refuses_without_confirmation(
    dbs: Databases,
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await factories.submit(event_store, conn)
    assert await cli.database.db_reset(external(dbs), confirmed=False) == 2
    assert "CONFIRM=yes" in capsys.readouterr().err
    assert await count_events(dbs.admin) == 1


async def test_confirmed_reset_of_an_external_database_leaves_it_empty_and_migrated(
    dbs: Databases, conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await factories.submit(event_store, conn)
    assert await cli.database.db_reset(external(dbs), confirmed=True) == 0
    assert await count_events(dbs.admin) == 0
    admin = await asyncpg.connect(dbs.admin)
    try:
        assert await migrations.pending(admin) == []
    finally:
        await admin.close()
    # The application's role works on the new schema, append-only as before.
    again = await asyncpg.connect(dbs.app)
    try:
        await factories.submit(event_store, again)
        with pytest.raises(asyncpg.PostgresError):
            await again.execute("DELETE FROM events")
    finally:
        await again.close()
    assert await count_events(dbs.admin) == 1


async def test_reset_of_the_embedded_database_needs_confirmation_then_deletes_it(
    tmp_path: Path,
) -> None:
    settings = config.Settings(data_dir=tmp_path, pg_port=embedded.free_port())
    cluster = embedded.EmbeddedPostgres(settings.data_dir, settings.pg_port).cluster_dir
    (cluster / "pgdata").mkdir(parents=True)
    try:
        assert (
            await cli.database.db_reset(settings, confirmed=False) == 2
        )  # stdin is not a terminal
        assert cluster.exists()
        assert await cli.database.db_reset(settings, confirmed=True) == 0
        assert not cluster.exists()
    finally:
        if cluster.exists():
            shutil.rmtree(cluster)
