"""Request heads over the limit answer 431 and close the connection: through uvicorn with
the API's own protocol (in this process), and through a real `ledger api` process."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import uvicorn
from litestar import Litestar

from service.http import heads
from tests import services
from tests.conftest import Databases
from tests.http.conftest import SECRET, Mint
from tests.workers.conftest import eventually

LIMIT = 8 * 1024
HUGE = 8 * 1024 * 1024


@pytest_asyncio.fixture(loop_scope="session")
async def served(app: Litestar) -> AsyncIterator[int]:
    """The app behind uvicorn with the API's protocol, capped at LIMIT; yields the port."""
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            log_config=None,
            lifespan="on",
            http=heads.protocol(LIMIT),
        )
    )
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(20):
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await task


async def exchange(port: int, head: bytes, padding: int) -> bytes:
    """Send `head`, then `padding` bytes of one more header in 64 KiB writes (stopping when
    the server hangs up), then the head's end; everything the server answered until it
    closed the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def send() -> None:
        with contextlib.suppress(ConnectionError):
            writer.write(head + b"X-Padding: ")
            left = padding
            while left > 0 and not writer.is_closing():
                chunk = min(left, 64 * 1024)
                writer.write(b"a" * chunk)
                await writer.drain()
                left -= chunk
            writer.write(b"\r\nConnection: close\r\n\r\n")
            await writer.drain()

    sending = asyncio.create_task(send())
    try:
        async with asyncio.timeout(30):
            answer = await reader.read()  # until the server closes
            await sending
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return answer


def parse(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    return int(status_line.split()[1]), headers, body


async def test_a_request_head_over_the_limit_answers_431_and_closes(served: int) -> None:
    answer = await exchange(served, b"GET /health HTTP/1.1\r\nHost: t\r\n", HUGE)
    status, headers, body = parse(answer)
    assert status == 431
    assert headers["content-type"] == "application/problem+json"
    assert headers["connection"] == "close"
    assert json.loads(body)["status"] == 431


async def test_a_request_head_under_the_limit_is_served(served: int) -> None:
    answer = await exchange(served, b"GET /health HTTP/1.1\r\nHost: t\r\n", LIMIT - 200)
    assert parse(answer)[0] == 200


async def test_a_body_larger_than_the_head_limit_is_not_counted(served: int, bearer: Mint) -> None:
    payload = {"type": "noop", "payload": {"text": "a" * (4 * LIMIT)}}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{served}") as client:
        # One keep-alive connection: each request's head is counted afresh.
        for _ in range(3):
            response = await client.post("/api/v1/jobs", json=payload, headers=bearer())
            assert response.status_code == 201, response.text
            headers = {**bearer(), "X-Padding": "a" * (LIMIT - 1024)}
            assert (await client.get("/health", headers=headers)).status_code == 200


# -- a real `ledger api` process --------------------------------------------------------------


@pytest.fixture
def api(
    dbs: Databases, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[services.Running]:
    monkeypatch.delenv("MAX_HEADER_BYTES", raising=False)  # the default limit
    with services.ledger(
        "api",
        tmp_path,
        DATABASE_URL=dbs.app,
        MIGRATE_DATABASE_URL=dbs.admin,
        JWT_SECRET=SECRET,
        LOG_LEVEL="warning",
    ) as running:
        yield running


@pytest.mark.slow
async def test_ledger_api_refuses_8_mib_of_headers_with_431(api: services.Running) -> None:
    await eventually(api.answers, within=60)
    head = b"GET /health HTTP/1.1\r\nHost: t\r\n"
    status, _, body = parse(await exchange(api.port, head, HUGE))
    assert status == 431
    assert json.loads(body)["title"] == "Request Header Fields Too Large"
    # Within the default limit (32 KiB), a request is served.
    assert parse(await exchange(api.port, head, heads.DEFAULT_MAX_HEADER_BYTES - 1024))[0] == 200
