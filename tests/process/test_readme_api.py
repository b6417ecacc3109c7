"""The README's curl examples (token, submit, status) work as written against a real `ledger api`."""

from __future__ import annotations

import asyncio
import getpass
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


QUEUES_START = "<!-- readme-queues-example: start -->"
QUEUES_END = "<!-- readme-queues-example: end -->"


def readme_block(start: str, end: str, fence: str) -> str:
    text = (ROOT / "README.md").read_text()
    block = text[text.index(start) :]
    if end:
        block = block[: block.index(end)]
    return block.split(f"```{fence}\n", 1)[1].split("```", 1)[0]


@pytest.mark.slow
async def test_the_readme_queues_example_works_as_written(
    api: services.Running, dbs: Databases, tmp_path: Path, conn: asyncpg.Connection
) -> None:
    port = api.port
    env = services.environment(
        tmp_path, port, DATABASE_URL=dbs.app, MIGRATE_DATABASE_URL=dbs.admin, JWT_SECRET=SECRET
    )
    await eventually(api.answers, within=60)
    (tmp_path / ".venv").symlink_to(sys.prefix)
    script = readme_block(QUEUES_START, QUEUES_END, "bash").replace(
        "localhost:8080", f"localhost:{port}"
    )

    ran = await asyncio.create_subprocess_exec(
        "bash", "-e", "-c", script, cwd=tmp_path, env=env, stdout=PIPE, stderr=PIPE
    )
    stdout, stderr = await asyncio.wait_for(ran.communicate(), timeout=120)

    assert ran.returncode == 0, stderr.decode()
    printed = stdout.decode()
    decoder = json.JSONDecoder()
    answers, end = [], 0
    for _ in range(5):  # PUT, the job, pause, resume, GET: curl prints them back to back
        value, end = decoder.raw_decode(printed, end)
        answers.append(value)
    configured, job, paused, resumed, shown = answers
    assert (configured["version"], configured["rate_limit"]["burst"]) == (1, 10)
    assert (job["queue"], job["concurrency_key"]) == ("mail", "customer-42")
    assert (paused["paused"], resumed["paused"]) == (True, False)
    # The answer the README shows, but for its time.
    documented = json.loads(
        readme_block(QUEUES_END, "", "json").replace('"…"', f'"{shown["updated_at"]}"')
    )
    assert shown == documented
    # The table `ledger queues list` printed is the README's.
    table = readme_block("`ledger queues list` prints:", "", "").strip().splitlines()
    listed = printed[end:].splitlines()
    at = listed.index(next(line for line in listed if line.startswith("QUEUE ")))
    assert listed[at : at + 2] == table

    rows = await conn.fetch(
        "SELECT type, actor, data FROM events WHERE type LIKE 'queue.%' ORDER BY position"
    )
    cli = f"cli:{getpass.getuser()}"
    assert [(r["type"], r["actor"]) for r in rows] == [
        ("queue.configured.v1", "ops"),
        ("queue.paused.v1", "ops"),
        ("queue.resumed.v1", "ops"),
        ("queue.configured.v1", cli),
        ("queue.paused.v1", cli),
        ("queue.resumed.v1", cli),
    ]
    assert json.loads(rows[1]["data"])["reason"] == "mail provider outage"
    final = json.loads(rows[3]["data"])
    assert (final["concurrency"], final["rate_limit"], final["per_key_concurrency"]) == (
        10,
        None,
        2,
    )


@pytest.mark.slow
async def test_the_readme_tenants_example_works_as_written(
    api: services.Running, dbs: Databases, tmp_path: Path, admin_conn: asyncpg.Connection
) -> None:
    port = api.port
    env = services.environment(
        tmp_path, port, DATABASE_URL=dbs.app, MIGRATE_DATABASE_URL=dbs.admin, JWT_SECRET=SECRET
    )
    await eventually(api.answers, within=60)
    (tmp_path / ".venv").symlink_to(sys.prefix)
    script = readme_block(
        "<!-- readme-tenants-example: start -->", "<!-- readme-tenants-example: end -->", "bash"
    ).replace("localhost:8080", f"localhost:{port}")

    ran = await asyncio.create_subprocess_exec(
        "bash", "-e", "-c", script, cwd=tmp_path, env=env, stdout=PIPE, stderr=PIPE
    )
    stdout, stderr = await asyncio.wait_for(ran.communicate(), timeout=60)

    assert ran.returncode == 0, stderr.decode()
    assert stdout.decode().split() == ["200", "404"]
    assert await admin_conn.fetchval("SELECT DISTINCT tenant FROM jobs") == "acme"


@pytest.mark.slow
async def test_the_readme_tenant_settings_example_works_as_written(
    api: services.Running, dbs: Databases, tmp_path: Path, admin_conn: asyncpg.Connection
) -> None:
    port = api.port
    env = services.environment(
        tmp_path, port, DATABASE_URL=dbs.app, MIGRATE_DATABASE_URL=dbs.admin, JWT_SECRET=SECRET
    )
    await eventually(api.answers, within=60)
    (tmp_path / ".venv").symlink_to(sys.prefix)
    end = "<!-- readme-tenant-settings-example: end -->"
    script = readme_block("<!-- readme-tenant-settings-example: start -->", end, "bash").replace(
        "localhost:8080", f"localhost:{port}"
    )

    ran = await asyncio.create_subprocess_exec(
        "bash", "-e", "-c", script, cwd=tmp_path, env=env, stdout=PIPE, stderr=PIPE
    )
    stdout, stderr = await asyncio.wait_for(ran.communicate(), timeout=120)

    assert ran.returncode == 0, stderr.decode()
    printed = stdout.decode()
    configured, at = json.JSONDecoder().raw_decode(printed)
    # The answer the README shows, but for its time.
    documented = json.loads(
        readme_block(end, "", "json").replace('"…"', f'"{configured["updated_at"]}"')
    )
    assert configured == documented
    lines = [line.strip() for line in printed[at:].splitlines() if line.strip()]
    assert lines[0].startswith("HTTP/1.1 201")
    assert lines[1].startswith("HTTP/1.1 429")
    assert lines[2].lower().startswith("retry-after:")
    table = readme_block("`ledger tenants list` prints:", "", "").strip().splitlines()
    at_table = lines.index(next(line for line in lines if line.startswith("TENANT ")))
    assert lines[at_table : at_table + 2] == table
    assert await admin_conn.fetchval("SELECT count(*) FROM jobs") == 1
    rows = await admin_conn.fetch(
        "SELECT actor, tenant FROM events WHERE type = 'tenant.configured.v1' ORDER BY version"
    )
    assert [tuple(r) for r in rows] == [("ops", "acme"), (f"cli:{getpass.getuser()}", "acme")]


@pytest.mark.slow
async def test_the_readme_schedules_example_works_as_written(
    api: services.Running, dbs: Databases, tmp_path: Path, admin_conn: asyncpg.Connection
) -> None:
    port = api.port
    env = services.environment(
        tmp_path, port, DATABASE_URL=dbs.app, MIGRATE_DATABASE_URL=dbs.admin, JWT_SECRET=SECRET
    )
    await eventually(api.answers, within=60)
    (tmp_path / ".venv").symlink_to(sys.prefix)
    end = "<!-- readme-schedules-example: end -->"
    script = readme_block("<!-- readme-schedules-example: start -->", end, "bash").replace(
        "localhost:8080", f"localhost:{port}"
    )

    ran = await asyncio.create_subprocess_exec(
        "bash", "-e", "-c", script, cwd=tmp_path, env=env, stdout=PIPE, stderr=PIPE
    )
    stdout, stderr = await asyncio.wait_for(ran.communicate(), timeout=120)

    assert ran.returncode == 0, stderr.decode()
    printed = stdout.decode()
    decoder = json.JSONDecoder()
    answers, at = [], 0
    for _ in range(5):  # create, pause, resume, trigger, slots: printed back to back
        value, at = decoder.raw_decode(printed, at)
        answers.append(value)
    created, paused, resumed, triggered, slots = answers
    assert (created["id"], created["spec"]["timezone"], created["version"]) == (
        "nightly-report",
        "Europe/Paris",
        1,
    )
    assert (paused["paused"], paused["note"]) == (True, "mail provider migration")
    assert resumed["paused"] is False
    assert triggered["job"]["schedule_id"] == "nightly-report"
    text = (ROOT / "README.md").read_text()
    documented = text[text.index(end) :].split("The slots answer ", 1)[1]
    assert slots == json.loads(documented[: documented.index("; a slot")].replace("`", ""))
    listed = printed[at:].splitlines()
    header = listed.index(next(line for line in listed if line.startswith("SCHEDULE ")))
    assert listed[header + 1].split()[:2] == ["nightly-report", "active"]
    assert any(line.startswith("schedule nightly-report  stream ") for line in listed)
    rows = await admin_conn.fetch(
        "SELECT type, actor FROM events WHERE type LIKE 'schedule.%' ORDER BY position"
    )
    assert [(r["type"], r["actor"]) for r in rows] == [
        ("schedule.created.v1", "ops"),
        ("schedule.paused.v1", "ops"),
        ("schedule.resumed.v1", "ops"),
        ("schedule.triggered.v1", "ops"),
    ]
