"""The README's curl examples (token, submit, status) work as written against a real `ledger api`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from asyncio.subprocess import PIPE
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from ledger import embedded
from tests.conftest import Databases
from tests.workers.conftest import eventually

ROOT = Path(__file__).resolve().parents[2]
START, END = "<!-- readme-api-example: start -->", "<!-- readme-api-example: end -->"
SECRET = "readme-example-secret-0123456789abcdef"


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    block = text[text.index(START) : text.index(END)]
    return block.split("```bash\n", 1)[1].rsplit("```", 1)[0]


@pytest.fixture
def api(dbs: Databases, tmp_path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    port = embedded.free_port()
    env = {
        **os.environ,
        "DATABASE_URL": dbs.app,
        "MIGRATE_DATABASE_URL": dbs.admin,
        "JWT_SECRET": SECRET,
        "SERVER_PORT": str(port),
        "LOG_LEVEL": "warning",
    }
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "api"], env=env, stdout=out, stderr=out
        )
    try:
        yield port, env
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def answering(port: int) -> bool:
    try:
        async with httpx.AsyncClient() as client:
            return (await client.get(f"http://127.0.0.1:{port}/health")).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.slow
async def test_the_readme_submit_and_status_examples_work_as_written(
    api: tuple[int, dict[str, str]], tmp_path: Path, conn: asyncpg.Connection
) -> None:
    port, env = api
    await eventually(lambda: answering(port), within=60)
    # As written, run from a checkout (./.venv/bin/ledger), against this test's port.
    (tmp_path / ".venv").symlink_to(sys.prefix)
    script = readme_example().replace("localhost:8080", f"localhost:{port}")

    ran = await asyncio.create_subprocess_exec(
        "bash", "-e", "-c", script, cwd=tmp_path, env=env, stdout=PIPE, stderr=PIPE
    )
    stdout, stderr = await asyncio.wait_for(ran.communicate(), timeout=60)

    assert ran.returncode == 0, stderr.decode()
    decoder = json.JSONDecoder()
    printed = stdout.decode()
    submitted, end = decoder.raw_decode(printed)  # tee'd submission, then the status
    status, _ = decoder.raw_decode(printed[end:].lstrip())
    assert json.loads((tmp_path / "job.json").read_text()) == submitted
    assert submitted["status"] == "pending" and submitted["type"] == "image_resize"
    assert status["job_id"] == submitted["job_id"]
    assert await conn.fetchval("SELECT actor FROM events") == "alice"
