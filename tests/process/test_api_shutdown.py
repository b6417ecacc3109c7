"""SIGTERM to `ledger api` or `ledger serve` drains: what was answered 201 is saved, what was
saved was answered 201 (or its client saw the connection close first), nothing answers 500,
and a normal shutdown logs no error."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import asyncpg
import httpx
import pytest

from ledger import auth, embedded
from tests.conftest import Databases
from tests.workers.conftest import eventually

SECRET = "api-shutdown-test-secret-long-enough-for-hs256"
BATCHES = 10
JOBS_PER_BATCH = 300


class Server:
    def __init__(self, process: subprocess.Popen[bytes], base: str, log: Path) -> None:
        self.process = process
        self.base = base
        self.log = log


@contextlib.contextmanager
def spawn(command: str, dbs: Databases, tmp_path: Path, grace: int) -> Iterator[Server]:
    """`ledger <command>` on the test's database, logging JSON lines to a file."""
    port = embedded.free_port()
    env = {
        **os.environ,
        "DATABASE_URL": dbs.app,
        "MIGRATE_DATABASE_URL": dbs.admin,
        "SERVER_PORT": str(port),
        "SERVER_HOST": "127.0.0.1",
        "JWT_SECRET": SECRET,
        "WORKER_COUNT": "1",
        "WORKER_POLL_SECONDS": "3600",
        "WORKER_METRICS_PORT": "0",
        "AUDIT_CHECKPOINT_INTERVAL_SECONDS": "0",
        "AUDIT_INTEGRATE_INTERVAL_SECONDS": "0",
        "API_SHUTDOWN_GRACE_SECONDS": str(grace),
        "LEDGER_DATA_DIR": str(tmp_path),
        "LEDGER_HANDLERS": "tests.workers.plugin_jobs",
        "LOG_FORMAT": "json",
    }
    log = tmp_path / f"{command}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", command], env=env, stdout=out, stderr=out
        )
    try:
        yield Server(process, f"http://127.0.0.1:{port}", log)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


async def wait_ready(server: Server) -> None:
    async def ready() -> bool:
        assert server.process.poll() is None, server.log.read_text()
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                return (await client.get(f"{server.base}/ready")).status_code == 200
        except httpx.TransportError:
            return False

    await eventually(ready, within=60)


def errors_logged(log: Path) -> list[str]:
    """Lines logged at error or critical, and tracebacks printed outside the log."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            if "Traceback" in line:
                found.append(line)
            continue
        if json.loads(line).get("level") in ("error", "critical"):
            found.append(line)
    return found


class Sent:
    """Counts request bodies sent in full; `half` is set once half the batches are out."""

    def __init__(self, of: int) -> None:
        self.count = 0
        self.of = of
        self.half = asyncio.Event()

    def one(self) -> None:
        self.count += 1
        if self.count * 2 >= self.of:
            self.half.set()


async def submit(base: str, token: str, batch: int, sent: Sent | None = None) -> int | str:
    """POST one batch on a connection of its own: the status, or how the connection failed."""

    async def trace(name: str, info: dict[str, object]) -> None:
        if sent is not None and name == "http11.send_request_body.complete":
            sent.one()

    body = {
        "jobs": [
            {"type": "test.noop", "payload": {"n": i}, "queue": f"b{batch}"}
            for i in range(JOBS_PER_BATCH)
        ]
    }
    try:
        async with httpx.AsyncClient(timeout=60) as client:
            answer = await client.post(
                f"{base}/api/v1/jobs/batch",
                json=body,
                headers={"Authorization": f"Bearer {token}"},
                extensions={"trace": trace},
            )
    except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
        return type(exc).__name__  # the connection closed (or was refused) before any answer
    return answer.status_code


# Past the grace (0 s), uvicorn cancels the requests still running; a write runs on to
# its answer all the same, and uvicorn's one line saying it cancelled is the only error.
GRACE_OVER: Final = "timeout graceful shutdown exceeded"


@pytest.mark.slow
@pytest.mark.parametrize(("command", "grace"), [("api", 60), ("serve", 60), ("api", 0)])
async def test_sigterm_during_batch_submissions_answers_every_saved_batch(
    command: str, grace: int, dbs: Databases, tmp_path: Path
) -> None:
    token = auth.AuthConfig(algorithms=("HS256",), secret=SECRET).mint("ops", ("jobs:write",))
    with spawn(command, dbs, tmp_path, grace) as server:
        await wait_ready(server)
        sent = Sent(BATCHES)
        submissions = [
            asyncio.create_task(submit(server.base, token, i, sent)) for i in range(BATCHES)
        ]
        # SIGTERM once half the batches are sent in full: those are in flight, the
        # others race with the shutdown.
        await asyncio.wait_for(sent.half.wait(), timeout=60)
        server.process.send_signal(signal.SIGTERM)
        late = asyncio.create_task(submit(server.base, token, BATCHES))  # after the signal
        outcomes = await asyncio.gather(*submissions, late)
        code = await asyncio.to_thread(server.process.wait, 120)

        conn = await asyncpg.connect(dbs.admin)
        try:
            rows = await conn.fetch("SELECT queue, count(*) AS n FROM jobs GROUP BY queue")
        finally:
            await conn.close()
        saved = {row["queue"]: row["n"] for row in rows}
        log = server.log.read_text(errors="replace")
        for batch, outcome in enumerate(outcomes):
            count = saved.get(f"b{batch}", 0)
            assert count in (0, JOBS_PER_BATCH), (batch, count)
            assert outcome == 201 or isinstance(outcome, str), (batch, outcome, log)
            if outcome == 201:
                assert count == JOBS_PER_BATCH, (batch, outcome)
            if count:
                assert outcome == 201 or isinstance(outcome, str), (batch, outcome)
        assert outcomes.count(201) >= 1
        assert code == 0, log
        errors = errors_logged(server.log)
        if grace == 0:
            errors = [line for line in errors if GRACE_OVER not in line]
        assert errors == [], log


@pytest.mark.slow
@pytest.mark.parametrize("command", ["api", "serve"])
async def test_sigterm_ends_an_open_event_stream_and_exits_cleanly(
    command: str, dbs: Databases, tmp_path: Path
) -> None:
    token = auth.AuthConfig(algorithms=("HS256",), secret=SECRET).mint("ops", ("audit:read",))
    # Were the stream left open, the shutdown would wait out this grace and then cut it.
    with spawn(command, dbs, tmp_path, 10) as server:
        await wait_ready(server)
        async with (
            httpx.AsyncClient(timeout=120) as client,
            client.stream(
                "GET",
                f"{server.base}/api/v1/events/stream",
                headers={"Authorization": f"Bearer {token}"},
            ) as stream,
        ):
            assert stream.status_code == 200
            lines = stream.aiter_lines()
            assert await anext(lines) == "event: ready"
            server.process.send_signal(signal.SIGTERM)

            async def rest_of_stream() -> list[str]:
                return [line async for line in lines]

            try:  # the stream ends, cleanly (a bound, so a stream left open fails the test)
                rest = await asyncio.wait_for(rest_of_stream(), timeout=30)
            except TimeoutError:
                raise AssertionError("the event stream stayed open after SIGTERM") from None
        assert "event: ready" not in rest
        code = await asyncio.to_thread(server.process.wait, 120)
        assert code == 0, server.log.read_text()
        assert errors_logged(server.log) == [], server.log.read_text()


@pytest.mark.slow
async def test_a_read_still_running_when_the_grace_is_over_answers_503(
    dbs: Databases, tmp_path: Path
) -> None:
    token = auth.AuthConfig(algorithms=("HS256",), secret=SECRET).mint("ops", ("jobs:read",))
    with spawn("api", dbs, tmp_path, 0) as server:
        await wait_ready(server)
        admin = await asyncpg.connect(dbs.admin)
        try:
            async with admin.transaction(), httpx.AsyncClient(timeout=60) as client:
                await admin.execute("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE")
                reading = asyncio.create_task(
                    client.get(
                        f"{server.base}/api/v1/jobs/{uuid.uuid4()}",
                        headers={"Authorization": f"Bearer {token}"},
                    )
                )

                async def blocked() -> bool:
                    waiting = await admin.fetchval(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = $1 AND wait_event_type = 'Lock'",
                        dbs.name,
                    )
                    return bool(waiting)

                await eventually(blocked)
                server.process.send_signal(signal.SIGTERM)
                response = await reading
        finally:
            await admin.close()
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert int(response.headers["retry-after"]) > 0
        assert response.json()["type"] == "urn:job-ledger:problem:shutting-down"
        code = await asyncio.to_thread(server.process.wait, 120)
        assert code == 0, server.log.read_text()
        errors = [line for line in errors_logged(server.log) if GRACE_OVER not in line]
        assert errors == [], server.log.read_text()
