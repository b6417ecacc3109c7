"""PostgreSQL stopped under a running `ledger api`: every /api/v1 route answers 503 problem
details with Retry-After; PostgreSQL started again, the same process serves again."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
from litestar.routes import HTTPRoute

from ledger import auth, config, database, embedded
from service import app as app_module
from tests import services
from tests.process.test_api_shutdown import errors_logged
from tests.workers.conftest import eventually

SECRET = "api-outage-test-secret-long-enough-for-hs256"
SUBMISSION: Final = {"type": "test.noop", "payload": {"n": 1}}
# The body each route needs to get past validation to the database; a new route that
# needs one fails below with its 4xx until it is listed here.
BODIES: Final[dict[tuple[str, str], Any]] = {
    ("POST", "/api/v1/jobs"): SUBMISSION,
    ("POST", "/api/v1/jobs/batch"): {"jobs": [SUBMISSION, SUBMISSION]},
    ("PUT", "/api/v1/queues/{name:str}"): {"concurrency": 1},
    ("PUT", "/api/v1/tenants/{tenant:str}"): {"max_queued": 5},
    ("POST", "/api/v1/jobs/cancel"): {"filter": {"status": "pending"}},
    ("POST", "/api/v1/workflows"): {"jobs": [{**SUBMISSION, "name": "a"}]},
    ("POST", "/api/v1/jobs/retry"): {"filter": {"status": "failed"}},
    ("POST", "/api/v1/schedules"): {"id": "s", "interval_seconds": 60, "job": SUBMISSION},
    ("PUT", "/api/v1/schedules/{schedule_id:str}"): {"interval_seconds": 60, "job": SUBMISSION},
    ("POST", "/api/v1/schedules/{schedule_id:str}/backfill"): {
        "start": "2026-01-01T00:00:00Z",
        "end": "2026-01-01T00:05:00Z",
    },
    ("POST", "/api/v1/webhooks"): {"url": "https://8.8.8.8/hook", "events": ["job.completed"]},
    ("PATCH", "/api/v1/webhooks/{endpoint_id:uuid}"): {"description": "d"},
    ("POST", "/api/v1/webhooks/{endpoint_id:uuid}/recover"): {"since": "2026-01-01T00:00:00Z"},
}
# The query each route needs to get past validation (likewise).
QUERIES: Final[dict[tuple[str, str], str]] = {
    ("GET", "/api/v1/audit/proofs/inclusion"): "?cursor=1.1&tree_size=1",
    ("GET", "/api/v1/audit/proofs/consistency"): "?from=1&to=2",
    ("GET", "/api/v1/schedules/{schedule_id:str}/slots"): (
        "?from=2026-01-01T00:00:00Z&to=2026-01-01T01:00:00Z"
    ),
}
PARAMETER: Final = re.compile(r"\{(\w+):(\w+)\}")


class Call:
    def __init__(self, method: str, template: str) -> None:
        self.method = method
        self.template = template
        self.path = PARAMETER.sub(lambda m: _value(m.group(2)), template)
        self.path += QUERIES.get((method, template), "")
        self.body = BODIES.get((method, template))

    def __repr__(self) -> str:
        return f"{self.method} {self.template}"


def _value(kind: str) -> str:
    if kind == "uuid":
        return str(uuid.uuid4())
    if kind == "int":
        return "1"
    return "x"


def api_calls() -> list[Call]:
    """Every method of every route under /api/v1, from the app's own route table."""
    settings = config.Settings(jwt_secret=SECRET, handler_modules=("tests.workers.plugin_jobs",))
    app = app_module.create_app("postgresql://unused/unused", settings=settings)
    calls = [
        Call(method, route.path)
        for route in app.routes
        if isinstance(route, HTTPRoute) and route.path.startswith("/api/v1")
        for method in sorted(route.methods - {"HEAD", "OPTIONS"})
    ]
    assert len(calls) >= 10, calls  # the table was read: jobs, audit and stats routes
    return calls


@pytest.fixture
def cluster() -> Iterator[embedded.EmbeddedPostgres]:
    """A PostgreSQL of this test's own, that it may stop and start."""
    with tempfile.TemporaryDirectory(prefix="ledger-outage-") as tmp:
        os.chmod(tmp, 0o755)
        pg = embedded.EmbeddedPostgres(Path(tmp), embedded.free_port(), durable=False)
        pg.start()
        try:
            yield pg
        finally:
            pg.destroy()


@contextlib.contextmanager
def api_on(pg: embedded.EmbeddedPostgres, tmp_path: Path) -> Iterator[services.Running]:
    with services.ledger(
        "api",
        tmp_path,
        DATABASE_URL=pg.dsn(),
        MIGRATE_DATABASE_URL=pg.dsn(admin=True),
        JWT_SECRET=SECRET,
        LEDGER_HANDLERS="tests.workers.plugin_jobs",
    ) as running:
        yield running


async def answer(client: httpx.AsyncClient, call: Call) -> httpx.Response:
    """The response's status and headers, and its body unless it is a stream."""
    async with client.stream(call.method, call.path, json=call.body) as response:
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            await response.aread()
        else:
            response._content = b"(a stream)"
        return response


async def status_of(client: httpx.AsyncClient, path: str) -> int:
    return (await client.get(path)).status_code


@pytest.mark.slow
async def test_every_api_route_answers_503_while_the_database_is_down_and_recovers(
    cluster: embedded.EmbeddedPostgres, tmp_path: Path
) -> None:
    calls = api_calls()
    token = auth.AuthConfig(algorithms=("HS256",), secret=SECRET).mint("ops", auth.SCOPES)
    await database.provision_embedded(cluster)
    with api_on(cluster, tmp_path) as api:
        async with httpx.AsyncClient(
            base_url=api.base, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as client:
            await outage_and_recovery(api, client, cluster, calls)
        assert api.process.poll() is None  # served again by the same process
    assert errors_logged(api.log) == [], api.log.read_text()


async def outage_and_recovery(
    api: services.Running,
    client: httpx.AsyncClient,
    cluster: embedded.EmbeddedPostgres,
    calls: list[Call],
) -> None:
    async def ready() -> bool:
        assert api.process.poll() is None, api.log.read_text()
        try:
            return await status_of(client, "/ready") == 200
        except httpx.TransportError:
            return False

    await eventually(ready, within=60)
    for call in calls:  # warm the pool: each route has used a pooled connection
        assert (await answer(client, call)).status_code < 500, call

    await asyncio.to_thread(cluster.stop)
    for call in calls:
        response = await answer(client, call)
        assert response.status_code == 503, (call, response.status_code, response.text)
        assert response.headers["content-type"] == "application/problem+json", call
        assert int(response.headers["retry-after"]) > 0, call
        problem = response.json()
        assert problem["status"] == 503, call
        assert problem["type"] == "urn:job-ledger:problem:database-unavailable", call
    assert await status_of(client, "/ready") == 503
    assert await status_of(client, "/health") == 503

    await asyncio.to_thread(cluster.start)
    await eventually(ready, within=60)
    for call in calls:

        async def served(call: Call = call) -> bool:
            return (await answer(client, call)).status_code < 500

        await eventually(served, within=30)
