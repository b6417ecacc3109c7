"""The dashboard end to end in headless Chromium (Debian's `chromium`, driven by Playwright).

A real HTTP server (uvicorn) and a real worker pool run in this event loop against
the test's database. The page loads, takes the token, shows a job submitted through
the API, follows it live (the events stream) to completed, a cancel click
reaches the ledger, and the queues panel shows a queue's limits, with Pause and
Resume for an admin. `LEDGER_SCREENSHOT=docs/dashboard.png` saves the README's
screenshot on the way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
import pytest_asyncio
import uvicorn

from ledger import auth, embedded, jobtypes
from service import app as app_module
from tests.conftest import Databases
from tests.workers import jobs
from workers import pool, webhooks

pytestmark = pytest.mark.slow

CHROMIUM = Path(os.environ.get("LEDGER_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SECRET = "browser-test-secret-that-is-long-enough-for-hs256"
SUBJECT = "dashboard-tester"
WAIT_MS = 30_000


@pytest.fixture
def chromium() -> Path:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium as root")
        pytest.skip(f"{CHROMIUM} is not installed (`make test` installs it when run as root)")
    return CHROMIUM


class Service:
    def __init__(self, url: str, token: str, gates: Path) -> None:
        self.url = url
        self.token = token
        self.gates = gates

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest_asyncio.fixture(loop_scope="session")
async def service(dbs: Databases, tmp_path: Path) -> AsyncIterator[Service]:
    """The API on a real port and a worker pool with the test job types, in this loop."""
    async with served(dbs, tmp_path) as running:
        yield running


@contextlib.asynccontextmanager
async def served(
    dbs: Databases, tmp_path: Path, hooks: webhooks.SenderSettings | None = None
) -> AsyncIterator[Service]:
    """The service of `service`; its workers' webhook senders with `hooks` when given."""
    registry = jobs.register(jobtypes.Registry())
    auth_config = auth.AuthConfig(algorithms=("HS256",), secret=SECRET)
    app = app_module.create_app(dbs.app, auth_config=auth_config, registry=registry, pool_size=4)
    port = embedded.free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    )
    serving = asyncio.create_task(server.serve())
    settings = pool.PoolSettings(slots=2, poll_seconds=3600.0, storage_root=tmp_path)
    if hooks is not None:
        settings = msgspec.structs.replace(settings, webhooks=hooks)
    workers = pool.Pool(dbs.app, settings=settings, registry=registry)
    running = asyncio.create_task(workers.run())
    try:
        async with asyncio.timeout(30):
            while not server.started:
                assert not serving.done(), serving
                await asyncio.sleep(0.02)
            await workers.started.wait()
        scopes = ("jobs:read", "jobs:write", "jobs:cancel", "audit:read")
        token = auth_config.mint(SUBJECT, scopes, ttl=timedelta(minutes=30))
        yield Service(f"http://127.0.0.1:{port}", token, tmp_path)
    finally:
        workers.request_stop()
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(running, timeout=30)
        await asyncio.wait_for(serving, timeout=30)


async def submit(service: Service, job_type: str, payload: dict[str, Any], **extra: Any) -> str:
    async with httpx.AsyncClient(base_url=service.url, headers=service.headers) as client:
        response = await client.post(
            "/api/v1/jobs", json={"type": job_type, "payload": payload, **extra}
        )
    assert response.status_code == 201, response.text
    return str(response.json()["job_id"])


def row_status(job_id: str, status: str) -> str:
    return f'tr[data-job-id="{job_id}"] [data-status="{status}"]'


async def test_the_dashboard_follows_a_job_live_and_cancels_one(
    chromium: Path, service: Service, conn: asyncpg.Connection
) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = await browser.new_page(viewport={"width": 1360, "height": 1100})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.goto(f"{service.url}/ui")

            # The token, entered once, is kept for the tab.
            await page.fill("#token", service.token)
            await page.click("#login-form button[type=submit]")
            await page.wait_for_selector(
                '[data-testid="live"][data-connected="true"]', timeout=WAIT_MS
            )
            assert SUBJECT in (await page.text_content('[data-testid="who"]') or "")
            # The tenant the server resolved: this token has no tenant claim.
            await page.wait_for_selector(
                '[data-testid="tenant"] >> text="tenant default"', timeout=WAIT_MS
            )

            # A job submitted through the API appears without a reload and is followed to the end.
            gate = service.gates / f"gate-{uuid.uuid4().hex}"
            job_id = await submit(service, "test.gated", {"gate": str(gate)})
            await page.wait_for_selector(row_status(job_id, "processing"), timeout=WAIT_MS)
            gate.write_text("open")
            await page.wait_for_selector(row_status(job_id, "completed"), timeout=WAIT_MS)
            await page.wait_for_selector(
                '[data-testid="count-completed"] .n >> text="1"', timeout=WAIT_MS
            )

            # Its detail: the timeline from the ledger and the verified chain.
            await page.click(f'tr[data-job-id="{job_id}"]')
            await page.wait_for_selector(
                f'[data-testid="detail"][data-job-id="{job_id}"]', timeout=WAIT_MS
            )
            await page.wait_for_selector(
                '[data-testid="chain"][data-verified="true"]', timeout=WAIT_MS
            )
            timeline = await page.locator('[data-testid="timeline"] li').evaluate_all(
                "items => items.map(i => i.dataset.type)"
            )
            assert timeline == ["job.submitted.v1", "job.claimed.v1", "job.completed.v1"]

            # Some history for the picture: a failure and a few waiting jobs.
            broken = await submit(service, "test.permanent", {"n": 7})
            # Its timeline says why it stopped (the reasons its failure's event records).
            await page.wait_for_selector(row_status(broken, "failed"), timeout=WAIT_MS)
            await page.click(f'tr[data-job-id="{broken}"]')
            why = '[data-testid="timeline"] li[data-type="job.failed.v1"] .why'
            await page.wait_for_selector(why, timeout=WAIT_MS)
            assert await page.text_content(why) == (
                "attempt 1 failed: payload 7 can never succeed; stopped retrying: permanent error"
            )
            for n in range(3):
                await submit(service, "test.noop", {"n": n}, queue="reports")

            # Cancel a running job from its detail: the click reaches the ledger.
            stuck = service.gates / f"gate-{uuid.uuid4().hex}"
            doomed = await submit(service, "test.gated", {"gate": str(stuck)}, queue="bulk")
            await page.wait_for_selector(row_status(doomed, "processing"), timeout=WAIT_MS)
            await page.click(f'tr[data-job-id="{doomed}"]')
            await page.wait_for_selector(
                f'[data-testid="detail"][data-job-id="{doomed}"]', timeout=WAIT_MS
            )
            await page.click('[data-testid="cancel"]:not([disabled])')
            await page.wait_for_selector(
                '[data-testid="detail-status"][data-status="cancelled"]', timeout=WAIT_MS
            )
            await page.wait_for_selector(row_status(doomed, "cancelled"), timeout=WAIT_MS)
            recorded = await conn.fetchrow(
                "SELECT type, actor FROM events WHERE job_id = $1 ORDER BY version DESC LIMIT 1",
                uuid.UUID(doomed),
            )
            assert recorded is not None
            assert (recorded["type"], recorded["actor"]) == ("job.cancelled.v1", SUBJECT)

            # Queues: limits set through the API appear in the panel live; this token has
            # no `admin` scope, so no Pause button; an admin's Pause and Resume clicks
            # reach the ledger, and this page follows them from the events stream.
            minter = auth.AuthConfig(algorithms=("HS256",), secret=SECRET)
            operator = minter.mint("queue-admin", ("admin",), ttl=timedelta(minutes=5))
            settings = {
                "concurrency": 2,
                "rate_limit": {"limit": 30, "period_seconds": 60, "burst": 5},
                "fairness": "round_robin",
            }
            async with httpx.AsyncClient(
                base_url=service.url, headers={"Authorization": f"Bearer {operator}"}
            ) as http:
                configured = await http.put("/api/v1/queues/reports", json=settings)
            assert configured.status_code == 200, configured.text
            reports = 'tr[data-queue-name="reports"]'
            for testid, text in (
                ("queue-concurrency", "2"),
                ("queue-rate", "30 per 60s (burst 5)"),
                ("queue-fairness", "round_robin"),
            ):
                await page.wait_for_selector(
                    f'{reports} [data-testid="{testid}"] >> text="{text}"', timeout=WAIT_MS
                )
            assert await page.locator(f"{reports} button").count() == 0

            admin = await browser.new_page()
            await admin.goto(f"{service.url}/ui")
            await admin.fill("#token", operator)
            await admin.click("#login-form button[type=submit]")
            await admin.click(f'{reports} [data-testid="queue-pause"]', timeout=WAIT_MS)
            await admin.wait_for_selector(f'{reports}[data-paused="true"]', timeout=WAIT_MS)
            await page.wait_for_selector(f'{reports}[data-paused="true"]', timeout=WAIT_MS)
            paused = await conn.fetchrow(
                "SELECT type, actor FROM events WHERE type LIKE 'queue.%' "
                "ORDER BY position DESC LIMIT 1"
            )
            assert paused is not None
            assert (paused["type"], paused["actor"]) == ("queue.paused.v1", "queue-admin")
            await admin.click(f'{reports} [data-testid="queue-resume"]', timeout=WAIT_MS)
            await admin.wait_for_selector(f'{reports}[data-paused="false"]', timeout=WAIT_MS)
            await page.wait_for_selector(f'{reports}[data-paused="false"]', timeout=WAIT_MS)
            assert await admin.text_content('[data-testid="queue-action-result"]') == ""
            await admin.close()

            # A read-only token: no Cancel or Retry, and without audit:read no events
            # stream, so the page falls back to polling.
            reader = auth.AuthConfig(algorithms=("HS256",), secret=SECRET).mint(
                "viewer", ("jobs:read",), ttl=timedelta(minutes=5)
            )
            viewer = await browser.new_page()
            await viewer.goto(f"{service.url}/ui")
            await viewer.fill("#token", reader)
            await viewer.click("#login-form button[type=submit]")
            await viewer.wait_for_selector(
                '[data-testid="live"] >> text="polling"', timeout=WAIT_MS
            )
            await viewer.click(f'tr[data-job-id="{job_id}"]')
            await viewer.wait_for_selector(
                f'[data-testid="detail"][data-job-id="{job_id}"]', timeout=WAIT_MS
            )
            assert await viewer.is_hidden('[data-testid="cancel"]')
            assert await viewer.is_hidden('[data-testid="retry"]')
            await viewer.close()

            screenshot = os.environ.get("LEDGER_SCREENSHOT")
            if screenshot:
                await page.wait_for_selector(
                    '[data-testid="count-failed"] .n >> text="1"', timeout=WAIT_MS
                )
                await page.screenshot(path=screenshot, full_page=True)
            assert errors == []
        finally:
            await browser.close()


async def test_retry_all_matching_on_a_filtered_list_confirms_and_shows_the_count(
    chromium: Path, service: Service, conn: asyncpg.Connection
) -> None:
    from playwright.async_api import async_playwright

    failing = [await submit(service, "test.permanent", {"n": n}) for n in range(3)]
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            asked: list[str] = []

            async def confirm(dialog: Any) -> None:
                asked.append(dialog.message)
                await dialog.accept()

            page.on("dialog", confirm)
            await page.goto(f"{service.url}/ui")
            await page.fill("#token", service.token)
            await page.click("#login-form button[type=submit]")

            # No status filter: no bulk button (an empty filter never means every job).
            await page.wait_for_selector('[data-testid="jobs"]', timeout=WAIT_MS)
            assert await page.is_hidden('[data-testid="bulk-retry"]')
            for job_id in failing:
                await page.wait_for_selector(row_status(job_id, "failed"), timeout=WAIT_MS)
            await page.select_option('[data-testid="filter-status"]', "failed")
            await page.fill('[data-testid="filter-type"]', "test.permanent")
            await page.click("#filters button[type=submit]")
            await page.wait_for_selector('[data-testid="bulk-retry"]:visible', timeout=WAIT_MS)
            assert await page.is_hidden('[data-testid="bulk-cancel"]')

            await page.click('[data-testid="bulk-retry"]')
            await page.wait_for_selector(
                '[data-testid="bulk-result"] >> text=/Retried 3 of 3 matching jobs/',
                timeout=WAIT_MS,
            )
            assert asked == ["Retry up to 1000 jobs matching status failed, type test.permanent?"]
            rows = await conn.fetch(
                "SELECT DISTINCT data->>'bulk_request_id' AS id, actor FROM events"
                " WHERE type = 'job.retried.v1' AND job_id = ANY($1::uuid[])",
                [uuid.UUID(j) for j in failing],
            )
            assert len(rows) == 1 and rows[0]["actor"] == SUBJECT
            assert rows[0]["id"].startswith("ui-")
            assert errors == []
        finally:
            await browser.close()


async def test_the_schedules_panel_shows_next_slot_and_last_outcomes_and_pauses(
    chromium: Path, service: Service, conn: asyncpg.Connection
) -> None:
    from playwright.async_api import async_playwright

    from ledger import schedules, submission

    minter = auth.AuthConfig(algorithms=("HS256",), secret=SECRET)
    operator = minter.mint("schedule-admin", ("admin",), ttl=timedelta(minutes=5))
    t0 = datetime(2026, 5, 1, 12, tzinfo=UTC)
    body = {
        "id": "digest",
        "interval_seconds": 60,
        "start_at": t0.isoformat(),
        "overlap": "allow_all",
        "job": {"type": "test.noop", "payload": {}},
    }
    async with httpx.AsyncClient(
        base_url=service.url, headers={"Authorization": f"Bearer {operator}"}
    ) as http:
        created = await http.post("/api/v1/schedules", json=body)
    assert created.status_code == 201, created.text
    # The scheduler's rounds at chosen times (this server runs none): 12:00 fires; at
    # 12:03:20, 12:01 and 12:02 are past the 60 s window (skipped), 12:03 fires late.
    recorder = schedules.Schedules(submission.Submitter(jobs.register(jobtypes.Registry())))
    for seconds in (0.5, 200):
        await recorder.record_due(conn, "default", "digest", t0 + timedelta(seconds=seconds))
    digest = 'tr[data-schedule-id="digest"]'

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = await browser.new_page(viewport={"width": 1360, "height": 1100})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.goto(f"{service.url}/ui")
            await page.fill("#token", service.token)
            await page.click("#login-form button[type=submit]")
            await page.wait_for_selector(
                '[data-testid="live"][data-connected="true"]', timeout=WAIT_MS
            )
            await page.wait_for_selector(
                f'{digest} [data-testid="schedule-next"] >> text="2026-05-01 12:04:00"',
                timeout=WAIT_MS,
            )
            outcomes = page.locator(f'{digest} [data-testid="schedule-last"] .slot')
            assert await outcomes.evaluate_all("(n) => n.map((e) => e.dataset.outcome)") == [
                "fired",
                "skipped",
                "fired",
            ]
            skipped = await outcomes.nth(1).text_content()
            assert skipped == "2026-05-01 12:01:00 skipped: outside_catchup_window"
            # This token cannot write schedules: no button.
            assert await page.locator(f"{digest} button").count() == 0

            admin = await browser.new_page()
            await admin.goto(f"{service.url}/ui")
            await admin.fill("#token", operator)
            await admin.click("#login-form button[type=submit]")
            await admin.click(f'{digest} [data-testid="schedule-pause"]', timeout=WAIT_MS)
            await admin.wait_for_selector(f'{digest}[data-paused="true"]', timeout=WAIT_MS)
            # The other page follows the change from the events stream.
            await page.wait_for_selector(f'{digest}[data-paused="true"]', timeout=WAIT_MS)
            paused = await conn.fetchrow(
                "SELECT type, actor, data->>'note' AS note FROM events"
                " WHERE type LIKE 'schedule.%' ORDER BY position DESC LIMIT 1"
            )
            assert paused is not None
            assert (paused["type"], paused["actor"]) == ("schedule.paused.v1", "schedule-admin")
            assert paused["note"] == "paused from the dashboard by schedule-admin"
            await admin.click(f'{digest} [data-testid="schedule-resume"]', timeout=WAIT_MS)
            await admin.wait_for_selector(f'{digest}[data-paused="false"]', timeout=WAIT_MS)
            await page.wait_for_selector(f'{digest}[data-paused="false"]', timeout=WAIT_MS)
            assert await admin.text_content('[data-testid="schedule-action-result"]') == ""
            await admin.close()
            assert errors == []
        finally:
            await browser.close()


async def test_a_workflow_is_drawn_as_its_graph_and_followed_live(
    chromium: Path, service: Service
) -> None:
    from playwright.async_api import async_playwright

    gate = service.gates / f"gate-{uuid.uuid4().hex}"
    body = {
        "jobs": [
            {"name": "fetch", "type": "test.gated", "payload": {"gate": str(gate)}},
            *(
                {"name": n, "type": "test.noop", "payload": {"n": i}, "depends_on": ["fetch"]}
                for i, n in enumerate(("resize", "scan"))
            ),
            {
                "name": "publish",
                "type": "test.noop",
                "payload": {},
                "depends_on": ["resize", "scan"],
            },
        ]
    }
    async with httpx.AsyncClient(base_url=service.url, headers=service.headers) as client:
        created = await client.post("/api/v1/workflows", json=body)
    assert created.status_code == 201, created.text
    workflow_id = created.json()["id"]

    def node(name: str, status: str) -> str:
        return f'[data-testid="workflow-node"][data-name="{name}"][data-status="{status}"]'

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = await browser.new_page(viewport={"width": 1360, "height": 1100})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.goto(f"{service.url}/ui")
            await page.fill("#token", service.token)
            await page.click("#login-form button[type=submit]")
            await page.wait_for_selector(
                '[data-testid="live"][data-connected="true"]', timeout=WAIT_MS
            )
            await page.click(f'tr[data-workflow-id="{workflow_id}"]', timeout=WAIT_MS)
            await page.wait_for_selector(
                f'[data-testid="workflow"][data-workflow-id="{workflow_id}"]', timeout=WAIT_MS
            )
            # Columns by depth: fetch, then resize and scan side by side, then publish.
            await page.wait_for_selector(node("fetch", "processing"), timeout=WAIT_MS)
            for name in ("resize", "scan", "publish"):
                assert await page.locator(node(name, "blocked")).count() == 1
            columns = await page.locator('[data-testid="workflow-node"] rect').evaluate_all(
                "rects => rects.map(r => [r.parentNode.dataset.name, Number(r.getAttribute('x'))])"
            )
            x = dict(columns)
            assert x["fetch"] < x["resize"] == x["scan"] < x["publish"]
            edges = await page.locator('[data-testid="workflow-graph"] path.edge').evaluate_all(
                "paths => paths.map(p => p.dataset.from + '>' + p.dataset.to).sort()"
            )
            assert edges == ["fetch>resize", "fetch>scan", "resize>publish", "scan>publish"]

            # Live from the events stream: the gate opens, each job's node follows it.
            gate.write_text("open")
            for name in ("fetch", "resize", "scan", "publish"):
                await page.wait_for_selector(node(name, "completed"), timeout=WAIT_MS)
            await page.wait_for_selector(
                '[data-testid="workflow-status"][data-status="completed"]', timeout=WAIT_MS
            )
            # A node opens its job's detail, the unblocking in its timeline, with the server's
            # note (the `why:` line `ledger replay` prints).
            await page.click('[data-testid="workflow-node"][data-name="publish"]')
            unblocked = '[data-testid="timeline"] li[data-type="job.unblocked.v1"] .why'
            await page.wait_for_selector(unblocked, timeout=WAIT_MS)
            why = await page.text_content(unblocked) or ""
            assert why.startswith("its last dependency, job "), why
            assert why.endswith(": it may run"), why
            assert errors == []
        finally:
            await browser.close()
