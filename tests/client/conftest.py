"""One real `ledger api` and one `ledger worker` for all of tests/client, on a database of
their own, for the client to talk to; tokens minted with the API's secret."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
import pytest_asyncio

from ledger import auth, client, embedded
from tests import pg
from tests.conftest import APP_PASSWORD, APP_ROLE, Databases
from tests.workers.conftest import eventually

SECRET = "client-test-secret-0123456789abcdef-0123456789"
EVERY_SCOPE = ("jobs:write", "jobs:read", "jobs:cancel", "audit:read")

Mint = Callable[..., str]


class Api:
    """The running API: its base URL, and the folder its worker's gates live in."""

    def __init__(self, url: str, gates: Path) -> None:
        self.url = url
        self.gates = gates

    def gate(self) -> Path:
        """A fresh gate file path for a `test.gated` job (the job ends once it exists)."""
        return self.gates / uuid.uuid4().hex


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def module_dbs(server_dsn: str, template_db: str) -> AsyncIterator[Databases]:
    """A database for tests/client: its API and worker processes outlive each test."""
    name = f"c_{uuid.uuid4().hex[:12]}"
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


def _start(command: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "service.cli", command],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _logs(root: Path) -> str:
    return "\n".join(log.read_text() for log in root.glob("*.log"))


async def _workers_up(url: str, processes: list[subprocess.Popen[bytes]], root: Path) -> bool:
    for process in processes:
        assert process.poll() is None, _logs(root)
    try:
        async with httpx.AsyncClient() as client:
            health = await client.get(f"{url}/health")
    except httpx.TransportError:
        return False
    return health.status_code == 200 and health.json()["workers"] > 0


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def api(
    module_dbs: Databases, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Api]:
    """`ledger api` and a `ledger worker` running the test job types."""
    root = tmp_path_factory.mktemp("client")
    gates = root / "gates"
    gates.mkdir()
    port = embedded.free_port()
    env = {
        **os.environ,
        "DATABASE_URL": module_dbs.app,
        "MIGRATE_DATABASE_URL": module_dbs.admin,
        "JWT_SECRET": SECRET,
        "SERVER_PORT": str(port),
        "SERVER_HOST": "127.0.0.1",
        "LEDGER_HANDLERS": "tests.workers.plugin_jobs",
        "AUDIT_CHECKPOINT_INTERVAL_SECONDS": "0",
        "AUDIT_INTEGRATE_INTERVAL_SECONDS": "0",
        "LEDGER_AUDIT_KEY": str(root / "audit.pem"),
        "WORKER_COUNT": "4",
        "WORKER_METRICS_PORT": "0",
        "STORAGE_ROOT": str(root / "storage"),
        "LOG_LEVEL": "warning",
    }
    processes = [_start("api", env, root / "api.log"), _start("worker", env, root / "worker.log")]
    url = f"http://127.0.0.1:{port}"
    try:
        await eventually(lambda: _workers_up(url, processes, root), within=60)
        yield Api(url, gates)
    finally:
        for process in processes:
            _stop(process)


@pytest.fixture(scope="package")
def mint() -> Mint:
    """A token for `sub` with `scopes` (default: every scope the client uses)."""
    config = auth.AuthConfig(algorithms=("HS256",), secret=SECRET)

    def token(*scopes: str, sub: str = "client-test") -> str:
        return config.mint(sub, scopes or EVERY_SCOPE, ttl=timedelta(minutes=30))

    return token


@pytest.fixture
def ledger(api: Api, mint: Mint) -> Iterator[client.Client]:
    with client.Client(api.url, token=mint()) as connected:
        yield connected
