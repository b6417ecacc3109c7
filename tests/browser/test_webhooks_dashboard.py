"""The dashboard's webhooks (issue #19) in headless Chromium, against real senders.

A real HTTP receiver on 127.0.0.1 answers one endpoint 500 then 200 and another 410;
the page shows the endpoints with their state (the 410 one disabled, and why), an
endpoint's recent deliveries, and a job's deliveries in its timeline, each attempt with
its outcome, status code, duration and next attempt; an admin's Enable click reaches
the ledger and a page without webhooks:write has no such button.
"""

from __future__ import annotations

import ipaddress
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from ledger import auth
from tests.browser import test_dashboard as dashboard
from tests.browser.test_dashboard import (
    CHROMIUM_ARGS,
    SECRET,
    WAIT_MS,
    Service,
    row_status,
    served,
    submit,
)
from tests.conftest import Databases
from tests.receiver import receiving
from workers import webhooks

pytestmark = pytest.mark.slow
chromium = dashboard.chromium  # the fixture: Debian's chromium, or a skip

# The senders' retry schedule here: a retry 50 ms after a failed attempt.
HOOKS = webhooks.SenderSettings(
    allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),),
    schedule=(0.05, 0.05),
    poll_seconds=3600,
)


async def register(service: Service, admin: str, url: str, events: list[str]) -> str:
    async with httpx.AsyncClient(
        base_url=service.url, headers={"Authorization": f"Bearer {admin}"}
    ) as http:
        made = await http.post("/api/v1/webhooks", json={"url": url, "events": events})
    assert made.status_code == 201, made.text
    return str(made.json()["endpoint"]["endpoint_id"])


async def signed_in(browser: Any, service: Service, token: str, errors: list[str]) -> Any:
    page = await browser.new_page(viewport={"width": 1360, "height": 1400})
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(f"{service.url}/ui")
    await page.fill("#token", token)
    await page.click("#login-form button[type=submit]")
    return page


async def test_the_webhooks_panel_and_a_jobs_timeline_show_every_attempt_and_enable(
    chromium: Path,
    dbs: Databases,
    tmp_path: Path,
    conn: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from playwright.async_api import async_playwright

    monkeypatch.setenv("WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8")
    minter = auth.AuthConfig(algorithms=("HS256",), secret=SECRET)
    admin = minter.mint("hook-admin", ("admin",), ttl=timedelta(minutes=10))
    async with (
        receiving() as flaky,
        receiving() as gone,
        served(dbs, tmp_path, HOOKS) as service,
        async_playwright() as playwright,
    ):
        flaky.answer(500)
        gone.answer(410)
        results = await register(service, admin, flaky.url, ["job.completed"])
        failures = await register(service, admin, gone.url, ["job.failed"])
        browser = await playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True
        )
        try:
            errors: list[str] = []
            page = await signed_in(browser, service, service.token, errors)
            await page.wait_for_selector(
                '[data-testid="live"][data-connected="true"]', timeout=WAIT_MS
            )
            for endpoint_id in (results, failures):
                await page.wait_for_selector(
                    f'tr[data-endpoint-id="{endpoint_id}"][data-disabled="false"]',
                    timeout=WAIT_MS,
                )

            # A completed job: its delivery fails once (500), then arrives (200).
            job_id = await submit(service, "test.noop", {"n": 1})
            await page.wait_for_selector(row_status(job_id, "completed"), timeout=WAIT_MS)
            await page.click(f'tr[data-job-id="{job_id}"]')
            delivery = '[data-testid="timeline"] li[data-type="webhook.delivery"]'
            await page.wait_for_selector(f'{delivery}[data-status="delivered"]', timeout=WAIT_MS)
            attempts = '[data-testid="timeline"] li[data-type="webhook.delivery_attempted.v1"]'
            await page.wait_for_selector(f'{attempts}[data-outcome="delivered"]', timeout=WAIT_MS)
            shown = await page.locator(attempts).evaluate_all(
                "items => items.map(i => [i.dataset.outcome, i.querySelector('.why').textContent])"
            )
            assert [outcome for outcome, _ in shown] == ["retrying", "delivered"]
            assert shown[0][1].startswith("retrying: HTTP 500 in ")
            assert "; next attempt " in shown[0][1]
            assert shown[1][1].startswith("delivered: HTTP 200 in ")
            assert " ms" in shown[1][1] and "next attempt" not in shown[1][1]
            summary = await page.text_content(f"{delivery} .why")
            assert summary == "delivered after 2 attempts, last HTTP 200"
            assert f"to {flaky.url}" in (await page.text_content(delivery) or "")
            assert len(flaky.received) == 2

            # The endpoint's recent deliveries, with their last attempt.
            await page.click(f'tr[data-endpoint-id="{results}"]')
            row = '[data-testid="webhook-delivery"][data-status="delivered"]'
            await page.wait_for_selector(row, timeout=WAIT_MS)
            assert await page.text_content(f'{row} [data-testid="delivery-attempts"]') == "2"
            assert await page.text_content(f'{row} [data-testid="delivery-answer"]') == "HTTP 200"

            # A failed job: its endpoint answers 410 and is disabled, saying why; this
            # token (no webhooks:write) gets no Enable button.
            await submit(service, "test.permanent", {"n": 2})
            off = f'tr[data-endpoint-id="{failures}"][data-disabled="true"]'
            await page.wait_for_selector(off, timeout=WAIT_MS)
            state = f'{off} [data-testid="webhook-state"]'
            assert await page.text_content(f"{state} .qstate") == "disabled"
            assert await page.text_content(f"{state} .reason") == "the endpoint answered 410 Gone"
            assert await page.locator(f"{off} button").count() == 0

            # An admin enables it: the click appends the endpoint's update, by the admin,
            # and the first page follows it from the events stream.
            operator = await signed_in(browser, service, admin, errors)
            await operator.click(f'{off} [data-testid="webhook-enable"]', timeout=WAIT_MS)
            on = f'tr[data-endpoint-id="{failures}"][data-disabled="false"]'
            await operator.wait_for_selector(on, timeout=WAIT_MS)
            await page.wait_for_selector(on, timeout=WAIT_MS)
            assert await operator.text_content('[data-testid="webhook-action-result"]') == ""
            enabled = await conn.fetchrow(
                "SELECT type, actor, data->>'disabled' AS disabled FROM events"
                " WHERE job_id = $1 ORDER BY version DESC LIMIT 1",
                uuid.UUID(failures),
            )
            assert enabled is not None
            assert tuple(enabled) == ("webhook.endpoint_updated.v1", "hook-admin", "false")
            assert errors == []
        finally:
            await browser.close()
