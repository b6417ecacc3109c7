"""`ledger serve` on the embedded database prints a development token that the API accepts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from ledger import auth, embedded
from tests.workers.conftest import eventually


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Not pytest's tmp_path: its parent is private to root, and the server may run as nobody.
    root = Path(tempfile.mkdtemp(prefix="ledger-serve-"))
    os.chmod(root, 0o755)
    try:
        yield root / "data"
    finally:
        shutil.rmtree(root, ignore_errors=True)


class Served:
    def __init__(self, process: subprocess.Popen[bytes], port: int, out: Path) -> None:
        self.process, self.port, self.out = process, port, out


@pytest.fixture
def served(data_dir: Path) -> Iterator[Served]:
    """`ledger serve` with no DATABASE_URL and no JWT settings: the first-run experience."""
    port = embedded.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "JWT_"))}
    env |= {
        "LEDGER_DATA_DIR": str(data_dir),
        "LEDGER_PG_PORT": str(embedded.free_port()),
        "SERVER_PORT": str(port),
        "WORKER_COUNT": "0",
        "AUDIT_CHECKPOINT_INTERVAL_SECONDS": "0",
        "AUDIT_INTEGRATE_INTERVAL_SECONDS": "0",
        "LOG_LEVEL": "warning",
    }
    out = data_dir.parent / "serve.out"
    with out.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve"], env=env, stdout=sink, stderr=sink
        )
    try:
        yield Served(process, port, out)
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.slow
async def test_serve_on_the_embedded_database_prints_a_token_the_api_accepts(
    served: Served, data_dir: Path
) -> None:
    async def printed_token() -> str | None:
        assert served.process.poll() is None, served.out.read_text()
        lines = served.out.read_text().splitlines()
        for i, line in enumerate(lines[:-1]):
            if line.startswith("development token"):
                return lines[i + 1].strip()
        return None

    token = await eventually(printed_token, within=120)
    secret = (data_dir / auth.SECRET_FILE).read_text().strip()
    claims = jwt.decode(token, secret, algorithms=["HS256"])
    assert claims["sub"] == "dev"
    assert {"jobs:write", "jobs:read"} <= set(claims["scope"].split())

    async def listed() -> httpx.Response | None:
        try:
            async with httpx.AsyncClient() as client:
                return await client.get(
                    f"http://127.0.0.1:{served.port}/api/v1/jobs",
                    headers={"Authorization": f"Bearer {token}"},
                )
        except httpx.TransportError:
            return None

    response = await eventually(listed, within=60)
    assert response.status_code == 200, response.text
