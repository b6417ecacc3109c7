"""Real `ledger worker` processes against the real database.

Each process loads the test job types through LEDGER_HANDLERS (the plugin
mechanism a deployment uses) and polls only once an hour, so every job here
starts because of a NOTIFY, a freed slot, the retry clock or a reconnect.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from audit import chains
from ledger import embedded, store
from ledger import events as ev
from projections import rebuild
from tests import factories
from tests.conftest import Databases
from tests.workers.conftest import eventually

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    """One `ledger worker` child process; its output goes to a log file shown on failure."""

    def __init__(
        self, dsn: str, tmp_path: Path, name: str, command: str = "worker", **env: str
    ) -> None:
        self.log = tmp_path / f"{name}.log"
        environment = {
            k: v
            for k, v in os.environ.items()
            if k not in {"LISTEN_DATABASE_URL", "MIGRATE_DATABASE_URL", "LEDGER_HANDLERS"}
        }
        environment.update(
            DATABASE_URL=dsn,
            LEDGER_HANDLERS="tests.workers.plugin_jobs",
            PYTHONPATH=os.pathsep.join([str(ROOT), str(tmp_path)]),
            WORKER_COUNT="5",
            WORKER_POLL_SECONDS="3600",
            WORKER_LEASE_SECONDS="30",
            WORKER_SHUTDOWN_GRACE_SECONDS="10",
            WORKER_METRICS_PORT="0",
            LEDGER_DATA_DIR=str(tmp_path / name),
            STORAGE_ROOT=str(tmp_path / "storage"),
            LOG_LEVEL="info",
        )
        environment.update(env)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "service.cli", command],
                cwd=ROOT,
                env=environment,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.worker_id = ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def registered(self, conn: asyncpg.Connection) -> str:
        """Wait until the process has announced itself; returns its worker id."""

        async def probe() -> str | None:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"worker exited early ({self.proc.returncode}):\n{self.output()}"
                )
            found: str | None = await conn.fetchval(
                "SELECT worker_id FROM worker_processes WHERE pid = $1", self.pid
            )
            return found

        self.worker_id = await eventually(probe, within=60)
        return self.worker_id

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    async def exited(self, within: float = 60) -> int:
        return await asyncio.to_thread(self.proc.wait, within)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


Spawn = Callable[..., WorkerProcess]


@pytest_asyncio.fixture(loop_scope="session")
async def spawn(dbs: Databases, tmp_path: Path) -> AsyncIterator[Spawn]:
    """Start worker processes; every one is killed at the end, whatever happened."""
    children: list[WorkerProcess] = []

    def start(command: str = "worker", **env: Any) -> WorkerProcess:
        child = WorkerProcess(
            dbs.app,
            tmp_path,
            f"worker{len(children)}",
            command,
            **{k: str(v) for k, v in env.items()},
        )
        children.append(child)
        return child

    try:
        yield start
    finally:
        for child in children:
            child.kill()


async def _status(conn: asyncpg.Connection, job_id: uuid.UUID) -> str:
    status: str = await conn.fetchval("SELECT status FROM jobs WHERE job_id = $1", job_id)
    return status


async def _all_in(conn: asyncpg.Connection, ids: list[uuid.UUID], status: str) -> bool:
    count = await conn.fetchval(
        "SELECT count(*) FROM jobs WHERE job_id = ANY($1) AND status = $2", ids, status
    )
    return bool(count == len(ids))


async def _verify_invariants(conn: asyncpg.Connection) -> None:
    assert await rebuild.verify(conn) == []
    report = await chains.verify(conn)
    assert report.ok, [b.describe() for b in report.broken]


async def test_two_worker_processes_complete_2000_jobs_each_recorded_once(
    spawn: Spawn, conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    a, b = spawn(WORKER_COUNT=10), spawn(WORKER_COUNT=10)
    await a.registered(conn)
    await b.registered(conn)

    ids: list[uuid.UUID] = []
    for _ in range(10):
        ids += await factories.submit_many(event_store, conn, 200, job_type="test.noop")

    try:
        await eventually(lambda: _all_in(conn, ids, "completed"), within=180, every=0.25)
    except AssertionError:
        print(a.output(), b.output())
        raise
    per_job = await conn.fetch(
        "SELECT job_id, count(*) FILTER (WHERE type = 'job.completed.v1') AS completed, "
        "count(*) FILTER (WHERE type = 'job.claimed.v1') AS claimed "
        "FROM events GROUP BY job_id"
    )
    assert len(per_job) == 2000
    assert all(r["completed"] == 1 for r in per_job)
    assert all(r["claimed"] == 1 for r in per_job)
    actors = await conn.fetch(
        "SELECT actor, count(*) AS n FROM events WHERE type = 'job.claimed.v1' GROUP BY actor"
    )
    assert {r["actor"] for r in actors} == {a.worker_id, b.worker_id}
    await _verify_invariants(conn)


async def test_a_killed_worker_s_jobs_are_recovered_and_completed_by_another(
    spawn: Spawn, conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    doomed = spawn(WORKER_COUNT=3, WORKER_LEASE_SECONDS=3)
    await doomed.registered(conn)
    ids = await factories.submit_many(
        event_store,
        conn,
        3,
        job_type="test.hang_first_attempt",
        backoff_base_seconds=0.05,
        backoff_cap_seconds=0.1,
    )
    await eventually(lambda: _all_in(conn, ids, "processing"))

    doomed.signal(signal.SIGKILL)
    assert await doomed.exited() == -signal.SIGKILL
    rescuer = spawn(WORKER_COUNT=3, WORKER_LEASE_SECONDS=3)
    await rescuer.registered(conn)

    try:
        await eventually(lambda: _all_in(conn, ids, "completed"), within=60)
    except AssertionError:
        print(rescuer.output())
        raise
    for job_id in ids:
        history = [r.event for r in await event_store.history(conn, job_id)]
        assert [ev.type_tag(e) for e in history] == [
            "job.submitted.v1",
            "job.claimed.v1",
            "job.lease_expired.v1",
            "job.claimed.v1",
            "job.completed.v1",
        ]
        first, expired, second, completed = history[1:]
        assert isinstance(first, ev.JobClaimed) and first.worker_id == doomed.worker_id
        assert isinstance(expired, ev.JobLeaseExpired) and expired.worker_id == doomed.worker_id
        assert isinstance(second, ev.JobClaimed) and second.worker_id == rescuer.worker_id
        assert second.attempt == 2
        assert isinstance(completed, ev.JobCompleted) and completed.result == {"attempt": 2}
    await _verify_invariants(conn)


async def test_work_continues_after_the_listener_connection_is_terminated(
    spawn: Spawn, dbs: Databases, conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    worker = spawn(WORKER_COUNT=2)
    await worker.registered(conn)
    admin = await asyncpg.connect(dbs.admin)
    try:

        async def listener_pid() -> int | None:
            pid: int | None = await admin.fetchval(
                "SELECT pid FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = 'job-ledger-listener'"
            )
            return pid

        first_pid = await eventually(listener_pid)
        job_id = await factories.submit(event_store, conn, job_type="test.noop")
        await eventually(lambda: _is(conn, job_id, "completed"))  # woken by NOTIFY

        assert await admin.fetchval("SELECT pg_terminate_backend($1)", first_pid)
        during = await factories.submit(event_store, conn, job_type="test.noop")

        async def new_listener() -> bool:
            pid = await listener_pid()
            return pid is not None and pid != first_pid

        await eventually(new_listener)
        after = await factories.submit(event_store, conn, job_type="test.noop")
        try:
            await eventually(lambda: _all_in(conn, [during, after], "completed"))
        except AssertionError:
            print(worker.output())
            raise
    finally:
        await admin.close()
    assert "listener connection lost" in worker.output()


async def test_sigterm_drains_running_jobs_and_hands_back_the_rest(
    spawn: Spawn, conn: asyncpg.Connection, event_store: store.EventStore, tmp_path: Path
) -> None:
    leaving = spawn(WORKER_COUNT=2, WORKER_SHUTDOWN_GRACE_SECONDS=4)
    await leaving.registered(conn)
    gate = tmp_path / "gate"
    stuck = await factories.submit(
        event_store, conn, job_type="test.gated", payload={"gate": str(gate)}
    )
    quick = await factories.submit(
        event_store,
        conn,
        job_type="test.gated",
        payload={"gate": str(tmp_path / "quick"), "seconds": 0.5},
    )
    await eventually(lambda: _all_in(conn, [stuck, quick], "processing"))
    staying = spawn(WORKER_COUNT=1)
    await staying.registered(conn)

    leaving.signal(signal.SIGTERM)
    assert await leaving.exited() == 0, leaving.output()

    assert await _status(conn, quick) == "completed"
    # The handed-back job went straight to the other worker (it never polls).
    await eventually(lambda: _is(conn, stuck, "processing"))
    gate.touch()
    await eventually(lambda: _is(conn, stuck, "completed"))
    history = [r.event for r in await event_store.history(conn, stuck)]
    assert [ev.type_tag(e) for e in history] == [
        "job.submitted.v1",
        "job.claimed.v1",
        "job.released.v1",
        "job.claimed.v1",
        "job.completed.v1",
    ]
    released, reclaimed = history[2], history[3]
    assert isinstance(released, ev.JobReleased) and released.actor == leaving.worker_id
    assert isinstance(reclaimed, ev.JobClaimed)
    assert (reclaimed.worker_id, reclaimed.attempt) == (staying.worker_id, 1)
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM worker_processes WHERE worker_id = $1", leaving.worker_id
        )
        == 0
    )
    await _verify_invariants(conn)


async def test_a_second_signal_exits_at_once(
    spawn: Spawn, conn: asyncpg.Connection, event_store: store.EventStore, tmp_path: Path
) -> None:
    worker = spawn(WORKER_COUNT=1, WORKER_SHUTDOWN_GRACE_SECONDS=600)
    await worker.registered(conn)
    job_id = await factories.submit(
        event_store, conn, job_type="test.gated", payload={"gate": str(tmp_path / "never")}
    )
    await eventually(lambda: _is(conn, job_id, "processing"))

    worker.signal(signal.SIGTERM)
    await eventually(lambda: _contains(worker, "finishing running jobs"))
    worker.signal(signal.SIGINT)

    assert await worker.exited(within=20) == 128 + signal.SIGINT
    assert await _status(conn, job_id) == "processing"  # left to lease recovery


async def test_serve_runs_the_api_and_a_worker_pool_together(
    spawn: Spawn, conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    server = spawn(
        "serve",
        WORKER_COUNT=2,
        SERVER_PORT=embedded.free_port(),
        JWT_SECRET="a-test-secret-of-at-least-32-bytes-long",
    )
    await server.registered(conn)
    job_id = await factories.submit(event_store, conn, job_type="test.noop", payload={"n": 4})
    try:
        await eventually(lambda: _is(conn, job_id, "completed"))
    except AssertionError:
        print(server.output())
        raise
    actor = await conn.fetchval(
        "SELECT actor FROM events WHERE job_id = $1 AND type = 'job.completed.v1'", job_id
    )
    assert actor == server.worker_id

    server.signal(signal.SIGTERM)
    assert await server.exited() == 0, server.output()
    assert await conn.fetchval("SELECT count(*) FROM worker_processes") == 0


def _readme_example() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Writing a job type") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README's job type example is missing"
    return match.group(1)


async def test_the_readme_job_type_example_runs_as_a_plugin(
    spawn: Spawn, conn: asyncpg.Connection, event_store: store.EventStore, tmp_path: Path
) -> None:
    (tmp_path / "acme_jobs.py").write_text(_readme_example())
    worker = spawn(LEDGER_HANDLERS="acme_jobs")
    await worker.registered(conn)
    greet = await factories.submit(
        event_store, conn, job_type="greet", payload={"name": "ada", "times": 2}
    )
    count = await factories.submit(
        event_store, conn, job_type="count_letters", payload={"text": "a1b2c"}
    )
    empty = await factories.submit(event_store, conn, job_type="greet", payload={"name": " "})
    try:
        await eventually(lambda: _all_in(conn, [greet, count], "completed"))
        await eventually(lambda: _is(conn, empty, "failed"))
    except AssertionError:
        print(worker.output())
        raise
    results = await conn.fetch(
        "SELECT job_id, result::text, error FROM jobs WHERE job_id = ANY($1)", [greet, count, empty]
    )
    by_id = {r["job_id"]: r for r in results}
    assert by_id[greet]["result"] == '{"greeting": "hello ada, hello ada"}'
    assert by_id[count]["result"] == '{"attempt": 1, "letters": 3}'
    assert by_id[empty]["error"] == "name is empty"


async def _is(conn: asyncpg.Connection, job_id: uuid.UUID, status: str) -> bool:
    return await _status(conn, job_id) == status


async def _contains(worker: WorkerProcess, text: str) -> bool:
    return text in worker.output()
