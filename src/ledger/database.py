"""Which PostgreSQL the service uses: DATABASE_URL, or the embedded one, provisioned and migrated."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import msgspec

from ledger import config, db, embedded, errors, migrations, sqlfile

log = logging.getLogger(__name__)


class Database(msgspec.Struct, frozen=True, kw_only=True):
    """Connection strings for the application, for migrations, and for LISTEN."""

    app_dsn: str
    admin_dsn: str
    listen_dsn: str
    embedded: bool


async def provision_embedded(pg: embedded.EmbeddedPostgres) -> None:
    """Create the application database and login role on the embedded cluster, and migrate."""
    async with db.connect(pg.dsn("postgres", admin=True)) as admin:
        exists = await admin.fetchval(
            "SELECT 1 FROM pg_database WHERE datname = $1", embedded.APP_DATABASE
        )
        if not exists:
            await admin.execute(f'CREATE DATABASE "{embedded.APP_DATABASE}"')
    async with db.connect(pg.dsn(admin=True)) as conn:
        applied = await migrations.migrate(conn)
        if applied:
            log.info("applied migrations: %s", ", ".join(applied))
        await ensure_login_role(conn, embedded.APP_USER, pg.credentials().app_password)


async def ensure_login_role(conn: asyncpg.Connection, name: str, password: str) -> None:
    """A login role that is a member of ledger_app (and nothing more), with this password."""
    exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", name)
    verb = "ALTER" if exists else "CREATE"
    # Role names and passwords cannot be bound parameters in DDL; quote them as literals.
    ident = await conn.fetchval("SELECT quote_ident($1)", name)
    literal = await conn.fetchval("SELECT quote_literal($1)", password)
    await conn.execute(
        f"{verb} ROLE {ident} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {literal}"
    )
    await conn.execute(f"GRANT ledger_app TO {ident}")


async def _migrate_if_pending(dsn: str, *, owner_given: bool) -> None:
    """Migrate when something is pending; the application's role (no MIGRATE_DATABASE_URL)
    can see that nothing is, and then starts without needing rights it does not have."""
    async with db.connect(dsn) as conn:
        try:
            if not await migrations.pending(conn):
                return
        except asyncpg.InsufficientPrivilegeError:
            pass  # a database from before 0040: let migrate decide
        try:
            applied = await migrations.migrate(conn)
        except asyncpg.InsufficientPrivilegeError as exc:
            if owner_given:
                raise
            raise errors.ConfigError(
                "the database has pending migrations that DATABASE_URL's role may not apply: "
                "run `ledger migrate` with MIGRATE_DATABASE_URL set to the owner's connection "
                f"({exc})"
            ) from exc
        if applied:
            log.info("applied migrations: %s", ", ".join(applied))


@asynccontextmanager
async def open_database(
    settings: config.Settings, *, migrate: bool = True
) -> AsyncIterator[Database]:
    """The database to use for the life of the block; starts and stops the embedded one if needed."""
    if settings.database_url is not None:
        admin_dsn = settings.migrate_database_url or settings.database_url
        if migrate:
            await _migrate_if_pending(
                admin_dsn, owner_given=settings.migrate_database_url is not None
            )
        yield Database(
            app_dsn=settings.database_url,
            admin_dsn=admin_dsn,
            listen_dsn=settings.listen_database_url or settings.database_url,
            embedded=False,
        )
        return
    pg = embedded.EmbeddedPostgres(settings.data_dir, settings.pg_port)
    pg.start()
    try:
        await provision_embedded(pg)
        yield Database(
            app_dsn=pg.dsn(),
            admin_dsn=pg.dsn(admin=True),
            listen_dsn=settings.listen_database_url or pg.dsn(),
            embedded=True,
        )
    finally:
        pg.stop()


async def reset_server(admin_dsn: str) -> list[str]:
    """Drop everything the migrations made on an external server and migrate afresh.

    Destroys the ledger's history: callers ask for confirmation first. Returns the
    migrations applied.
    """
    async with db.connect(admin_dsn) as conn:
        async with conn.transaction():
            await conn.execute(sqlfile.load("ledger")["schema_reset"])
        return await migrations.migrate(conn)
