"""Each built-in job type end to end: submitted to the ledger, claimed and run by a real
worker pool, its outcome recorded as events; and refusals recorded as permanent failures."""

from __future__ import annotations

import email
import email.policy
import hashlib
import io
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from PIL import Image

from ledger import acting, jobtypes, lifecycle, store
from ledger import events as ev
from projections import current
from tests import factories
from tests.workers.conftest import PoolStarter, eventually
from tests.workers.handlers.conftest import HttpServer, Route, SmtpServer


@pytest.fixture
def registry() -> jobtypes.Registry:
    """The service's own registry, where importing workers.handlers put the four types."""
    return jobtypes.REGISTRY


async def finished(conn: asyncpg.Connection, job_id: uuid.UUID) -> lifecycle.JobState:
    async def probe() -> lifecycle.JobState | None:
        state = await current.get(conn, job_id)
        assert state is not None
        return state if state.status in ("completed", "failed") else None

    return await eventually(probe)


async def submit(
    event_store: store.EventStore, conn: asyncpg.Connection, job_type: str, payload: dict[str, Any]
) -> uuid.UUID:
    jobtypes.REGISTRY.get(job_type).validate(payload)  # what the API checks on submission
    return await factories.submit(event_store, conn, job_type=job_type, payload=payload)


async def test_file_process_runs_in_the_pool(
    start_pool: PoolStarter,
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    storage_root: Path,
) -> None:
    (storage_root / "logs").mkdir()
    (storage_root / "logs" / "app.log").write_bytes(b"one\ntwo\nthree\n")
    await start_pool(storage_root=storage_root)

    job_id = await submit(
        event_store, conn, "file_process", {"path": "logs/app.log", "operation": "gzip"}
    )

    state = await finished(conn, job_id)
    assert state.status == "completed", state.error
    assert state.result is not None and state.result["path"] == "logs/app.log.gz"
    assert (storage_root / "logs" / "app.log.gz").stat().st_size == state.result["bytes"]


async def test_image_resize_runs_in_the_pool(
    start_pool: PoolStarter,
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    storage_root: Path,
    http_server: HttpServer,
    handler_env: pytest.MonkeyPatch,
) -> None:
    handler_env.setenv("FETCH_ALLOWED_NETWORKS", "127.0.0.1/32")
    buffer = io.BytesIO()
    Image.new("RGB", (120, 90), (200, 30, 30)).save(buffer, format="JPEG")
    http_server.routes["/red.jpg"] = Route(body=buffer.getvalue())
    await start_pool(storage_root=storage_root)

    job_id = await submit(
        event_store,
        conn,
        "image_resize",
        {"image_url": http_server.url("/red.jpg"), "width": 60, "height": 60},
    )

    state = await finished(conn, job_id)
    assert state.status == "completed", state.error
    assert state.result is not None
    assert (state.result["path"], state.result["width"], state.result["height"]) == (
        f"images/{job_id}.jpg",
        60,
        45,
    )
    data = (storage_root / state.result["path"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == state.result["sha256"]


async def test_email_send_runs_in_the_pool(
    start_pool: PoolStarter,
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    storage_root: Path,
    smtp_server: SmtpServer,
    handler_env: pytest.MonkeyPatch,
) -> None:
    handler_env.setenv("SMTP_URL", f"smtp://127.0.0.1:{smtp_server.port}")
    await start_pool(storage_root=storage_root)

    job_id = await submit(
        event_store,
        conn,
        "email_send",
        {
            "to": ["ops@example.test"],
            "from": "ledger@example.test",
            "subject": "done",
            "body": "ok",
        },
    )

    state = await finished(conn, job_id)
    assert state.status == "completed", state.error
    content = smtp_server.recorder.envelopes[0].original_content
    assert content is not None
    message = email.message_from_bytes(content, policy=email.policy.default)
    assert message["Message-ID"] == f"<job-{job_id}@example.test>"
    assert state.result is not None and state.result["message_id"] == message["Message-ID"]


async def test_data_export_runs_in_the_pool_with_its_database_pool(
    start_pool: PoolStarter,
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    storage_root: Path,
) -> None:
    (storage_root / "f.txt").write_text("x\n")
    await start_pool(storage_root=storage_root)
    counted = await submit(
        event_store, conn, "file_process", {"path": "f.txt", "operation": "line_count"}
    )
    assert (await finished(conn, counted)).status == "completed"

    job_id = await submit(
        event_store, conn, "data_export", {"source": "events", "job_id": str(counted)}
    )

    state = await finished(conn, job_id)
    assert state.status == "completed", state.error
    assert state.result is not None and state.result["rows"] == 3
    lines = (storage_root / state.result["path"]).read_text().splitlines()
    assert [line.split('"type":"')[1].split('"')[0] for line in lines] == [
        "job.submitted.v1",
        "job.claimed.v1",
        "job.completed.v1",
    ]


async def test_data_export_holds_only_its_submitters_tenant(
    start_pool: PoolStarter,
    conn: asyncpg.Connection,
    admin_conn: asyncpg.Connection,
    event_store: store.EventStore,
    storage_root: Path,
) -> None:
    async def submit_in(tenant: str, job_type: str, payload: dict[str, Any]) -> uuid.UUID:
        async with conn.transaction():
            await acting.act_in(conn, tenant)
            return await submit(event_store, conn, job_type, payload)

    (storage_root / "f.txt").write_text("x\n")
    counted = {
        tenant: await submit_in(tenant, "file_process", {"path": "f.txt", "operation": "checksum"})
        for tenant in ("acme", "beta", "default")
    }
    await start_pool(storage_root=storage_root)
    for job_id in counted.values():
        assert (await finished(admin_conn, job_id)).status == "completed"

    exports = {
        source: await submit_in("acme", "data_export", {"source": source})
        for source in ("jobs", "events")
    }

    acme = {str(counted["acme"]), *(str(j) for j in exports.values())}
    for source, job_id in exports.items():
        state = await finished(admin_conn, job_id)
        assert state.status == "completed", state.error
        text = (storage_root / state.result["path"]).read_text()  # type: ignore[index]
        exported = {line.split('"job_id":"')[1].split('"')[0] for line in text.splitlines()}
        assert exported <= acme and str(counted["acme"]) in exported, source
        assert not {str(counted["beta"]), str(counted["default"])} & set(text.split('"')), source


@pytest.mark.parametrize(
    ("job_type", "payload", "error"),
    [
        ("file_process", {"path": "../../etc/passwd", "operation": "checksum"}, "escapes"),
        (
            "image_resize",
            {"image_url": "http://169.254.169.254/", "width": 1, "height": 1},
            "link-local",
        ),
    ],
)
async def test_a_refusal_fails_the_job_at_once_without_retrying(
    start_pool: PoolStarter,
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    storage_root: Path,
    handler_env: pytest.MonkeyPatch,
    job_type: str,
    payload: dict[str, Any],
    error: str,
) -> None:
    await start_pool(storage_root=storage_root)

    job_id = await submit(event_store, conn, job_type, payload)

    state = await finished(conn, job_id)
    assert (state.status, state.attempt) == ("failed", 1)
    assert state.error is not None and error in state.error
    history = [r.event for r in await event_store.history(conn, job_id)]
    assert [type(e) for e in history] == [ev.JobSubmitted, ev.JobClaimed, ev.JobFailed]
