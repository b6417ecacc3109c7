"""A database that cannot be reached answers 503 problem details with Retry-After; a
statement the database refuses is not an outage (the process test stops PostgreSQL
itself: tests/process/test_api_outage.py)."""

from __future__ import annotations

import asyncio
import errno
import uuid

import asyncpg
import httpx
import pytest
from litestar import Litestar, get
from litestar.testing import AsyncTestClient

from ledger import db
from service.http import problems
from tests.conftest import Databases
from tests.http.conftest import Mint
from tests.workers.conftest import eventually


async def test_a_connection_lost_mid_request_answers_503(
    client: httpx.AsyncClient, bearer: Mint, dbs: Databases
) -> None:
    job_id = uuid.uuid4()
    server = await asyncpg.connect(dbs.admin)
    try:
        async with server.transaction():
            await server.execute("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE")
            reading = asyncio.create_task(client.get(f"/api/v1/jobs/{job_id}", headers=bearer()))

            async def blocked() -> list[int]:
                rows = await server.fetch(
                    "SELECT pid FROM pg_stat_activity "
                    "WHERE datname = $1 AND application_name = $2 AND wait_event_type = 'Lock'",
                    dbs.name,
                    db.APPLICATION_NAME,
                )
                return [row["pid"] for row in rows]

            for pid in await eventually(blocked):
                await server.execute("SELECT pg_terminate_backend($1)", pid)
            response = await reading
    finally:
        await server.close()

    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) > 0
    assert response.json()["type"] == "urn:job-ledger:problem:database-unavailable"
    assert (await client.get(f"/api/v1/jobs/{job_id}", headers=bearer())).status_code == 404


OUTAGES = [
    ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
    ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
    OSError(errno.EHOSTUNREACH, "No route to host"),
    TimeoutError(),  # asyncpg's pool.acquire(timeout=...)
    asyncpg.CannotConnectNowError("the database system is starting up"),
    asyncpg.AdminShutdownError("terminating connection due to administrator command"),
    asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    asyncpg.TooManyConnectionsError("sorry, too many clients already"),
]
NOT_OUTAGES = [
    asyncpg.UniqueViolationError("duplicate key"),
    asyncpg.QueryCanceledError("canceling statement due to statement timeout"),
    FileNotFoundError(errno.ENOENT, "No such file or directory"),
    asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
]


def raising(exc: Exception) -> Litestar:
    @get("/boom")
    async def boom() -> None:
        raise exc

    return Litestar([boom], exception_handlers=problems.EXCEPTION_HANDLERS, logging_config=None)


@pytest.mark.parametrize("exc", OUTAGES, ids=lambda e: type(e).__name__)
async def test_each_kind_of_outage_answers_503_with_retry_after(exc: Exception) -> None:
    assert db.unavailable(exc)
    async with AsyncTestClient(raising(exc)) as http:
        response = await http.get("/boom")
    assert response.status_code == 503
    assert response.headers["retry-after"] == str(problems.RETRY_AFTER_SECONDS)
    assert response.json()["status"] == 503


@pytest.mark.parametrize("exc", NOT_OUTAGES, ids=lambda e: type(e).__name__)
async def test_a_failed_statement_or_a_bug_stays_a_bare_500(exc: Exception) -> None:
    assert not db.unavailable(exc)
    async with AsyncTestClient(raising(exc)) as http:
        response = await http.get("/boom")
    assert response.status_code == 500
    assert "retry-after" not in response.headers
    assert response.json() == {
        "type": "about:blank",
        "title": "Internal Server Error",
        "status": 500,
    }
