"""Fixtures: one PostgreSQL per session, a migrated template, a fresh database per test."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
import pytest_asyncio

from ledger import database, migrations, store
from tests import pg

APP_ROLE = "ledger_test_app"
# Session settings of a test's own connection that reads what it wrote in tenant
# `default` (see the `conn` fixture).
IN_DEFAULT = {"timezone": "UTC", "ledger.tenant": "default"}
APP_PASSWORD = secrets.token_urlsafe(16)


class Databases:
    """DSNs of one test's database: as the superuser (owner) and as the application's role."""

    def __init__(self, admin: str, app: str, name: str) -> None:
        self.admin = admin
        self.app = app
        self.name = name


@pytest.fixture(scope="session")
def server_dsn() -> Iterator[str]:
    with pg.server() as dsn:
        yield dsn


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def template_db(server_dsn: str) -> str:
    """Create and migrate the template once per session (this is also the migration test)."""
    name = f"ledger_template_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(pg.with_database(server_dsn, name))
    try:
        await migrations.migrate(conn)
        await database.ensure_login_role(conn, APP_ROLE, APP_PASSWORD)
    finally:
        await conn.close()
    return name


@pytest_asyncio.fixture(loop_scope="session")
async def dbs(server_dsn: str, template_db: str) -> AsyncIterator[Databases]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
        yield Databases(
            admin=pg.with_database(server_dsn, name),
            app=pg.with_database(server_dsn, name, user=APP_ROLE, password=APP_PASSWORD),
            name=name,
        )
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest_asyncio.fixture(loop_scope="session")
async def conn(dbs: Databases) -> AsyncIterator[asyncpg.Connection]:
    """A connection as the application's role, acting in tenant `default` for its session.

    The service names a tenant per transaction only (acting.act_in): a transaction that
    names none reads no tenant's rows (row-level security, sql/0068). Tests read what
    they wrote with this connection directly, so it names `default` for its session; a
    transaction that acts in another tenant overrides it until it ends. The pools of
    the service under test (HTTP, workers) connect with `dbs.app` and name nothing."""
    connection = await asyncpg.connect(dbs.app, server_settings=IN_DEFAULT)
    try:
        yield connection
    finally:
        await connection.close()


@pytest_asyncio.fixture(loop_scope="session")
async def worker_conn(dbs: Databases) -> AsyncIterator[asyncpg.Connection]:
    """A connection as the application's role naming no tenant, as the service's pools
    connect: it reads only inside transactions acting in a tenant, and the workers'
    claims and outcomes through it reach every tenant's jobs (sql/0068)."""
    connection = await asyncpg.connect(dbs.app, server_settings={"timezone": "UTC"})
    try:
        yield connection
    finally:
        await connection.close()


@pytest_asyncio.fixture(loop_scope="session")
async def admin_conn(dbs: Databases) -> AsyncIterator[asyncpg.Connection]:
    """A connection as the superuser that owns the tables."""
    connection = await asyncpg.connect(dbs.admin, server_settings={"timezone": "UTC"})
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
def event_store() -> store.EventStore:
    return store.EventStore()
