"""GET /api/v1/events/stream is woken by NOTIFY: frames come on the wake-up, not the poll.

The app here polls the feed once an hour while its listener is connected
(FEED_POLL_SECONDS=3600): a frame that arrives within the tests' timeouts was woken.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Callable

import asyncpg
import msgspec
import pytest
import pytest_asyncio
from litestar import Litestar

from ledger import auth, config, jobtypes, store
from projections import live
from service import app as app_module
from tests import factories, pg
from tests.conftest import Databases
from tests.http.conftest import Mint
from tests.http.test_audit_api import served, sse
from tests.workers.conftest import eventually

__all__ = ["served"]  # the fixture, imported for this module's own `app`

AUDIT = ("audit:read",)


@pytest_asyncio.fixture(loop_scope="session")
async def listen_dsn(
    request: pytest.FixtureRequest, server_dsn: str, dbs: Databases
) -> AsyncIterator[str]:
    """The feed listener's DSN: the app's, or (param "own role") a role of its own that
    a test can stop from logging in again."""
    if getattr(request, "param", None) != "own role":
        yield dbs.app
        return
    role, password = f"feed_listener_{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(16)
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        yield pg.with_database(server_dsn, dbs.name, user=role, password=password)
    finally:
        await admin.execute(f"DROP ROLE {role}")
        await admin.close()


@pytest.fixture
def app(
    dbs: Databases, auth_config: auth.AuthConfig, registry: jobtypes.Registry, listen_dsn: str
) -> Litestar:
    settings = config.Settings(feed_poll_seconds=3600, listen_database_url=listen_dsn)
    return app_module.create_app(
        dbs.app, auth_config=auth_config, registry=registry, settings=settings, pool_size=4
    )


def _wakeups(app: Litestar) -> live.Wakeups:
    wakeups: live.Wakeups = app.state.feed_wakeups
    return wakeups


def _job_id(message: dict[str, str]) -> uuid.UUID:
    return uuid.UUID(msgspec.json.decode(message["data"])["job_id"])


async def test_a_stream_gets_an_appended_event_on_the_wake_up_not_the_poll(
    app: Litestar,
    served: str,
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    bearer: Mint,
) -> None:
    first = await factories.submit(event_store, conn)
    async with asyncio.timeout(20), sse(served, bearer(*AUDIT)) as stream:
        assert _job_id(await stream.next_event()) == first
        second = await factories.submit(event_store, conn)
        assert _job_id(await stream.next_event()) == second
    await until(lambda: _wakeups(app).subscribers == 0)  # a client that left


async def test_many_streams_are_all_woken(
    app: Litestar,
    served: str,
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    bearer: Mint,
) -> None:
    first = await factories.submit(event_store, conn)
    headers = bearer(*AUDIT)
    async with asyncio.timeout(30):
        clients = [sse(served, headers) for _ in range(8)]
        streams = [await client.__aenter__() for client in clients]
        try:
            for stream in streams:
                assert _job_id(await stream.next_event()) == first
            second = await factories.submit(event_store, conn)
            got = await asyncio.gather(*(stream.next_event() for stream in streams))
            assert [_job_id(message) for message in got] == [second] * len(streams)
        finally:
            for client in reversed(clients):
                await client.__aexit__(None, None, None)
    await until(lambda: _wakeups(app).subscribers == 0)


@pytest.mark.parametrize("listen_dsn", ["own role"], indirect=True)
async def test_the_feed_listener_recovers_after_its_connection_is_killed(
    app: Litestar,
    served: str,
    conn: asyncpg.Connection,
    admin_conn: asyncpg.Connection,
    event_store: store.EventStore,
    bearer: Mint,
    listen_dsn: str,
) -> None:
    """Killed, and kept from logging in again for a while: the stream goes on by the
    outage poll meanwhile; back, the listener wakes the stream again."""
    wakeups = _wakeups(app)
    role = listen_dsn.split("//", 1)[1].split(":", 1)[0]
    first = await factories.submit(event_store, conn)
    async with asyncio.timeout(60), sse(served, bearer(*AUDIT)) as stream:
        assert _job_id(await stream.next_event()) == first
        await wakeups.listener.connected.wait()
        await admin_conn.execute(f"ALTER ROLE {role} NOLOGIN")
        killed = await admin_conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE usename = $1 AND application_name = $2",
            role,
            live.APPLICATION_NAME,
        )
        assert killed == 1
        await until(lambda: not wakeups.listening)

        during = await factories.submit(event_store, conn)
        assert _job_id(await stream.next_event()) == during  # by the outage poll
        assert not wakeups.listening

        await admin_conn.execute(f"ALTER ROLE {role} LOGIN")
        await until(lambda: wakeups.listener.connections == 2)
        after = await factories.submit(event_store, conn)
        assert _job_id(await stream.next_event()) == after  # woken again


async def until(predicate: Callable[[], bool]) -> None:
    async def probe() -> bool:
        return predicate()

    await eventually(probe)
