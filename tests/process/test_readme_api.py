"""The README's curl examples (token, submit, status) work as written against a real `ledger api`."""

from __future__ import annotations

import asyncio
import json
import sys
from asyncio.subprocess import PIPE
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests import services
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
def api(dbs: Databases, tmp_path: Path) -> Iterator[services.Running]:
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
async def test_the_readme_submit_and_status_examples_work_as_written(
    api: services.Running, dbs: Databases, tmp_path: Path, conn: asyncpg.Connection
) -> None:
    port = api.port
    env = services.environment(
        tmp_path, port, DATABASE_URL=dbs.app, MIGRATE_DATABASE_URL=dbs.admin, JWT_SECRET=SECRET
    )
    await eventually(api.answers, within=60)
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
