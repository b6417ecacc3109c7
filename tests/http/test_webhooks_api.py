"""The webhooks API through the real app and a real PostgreSQL: the webhooks:write scope
(granted by admin), the SSRF guard at registration, RFC 9457 answers, secrets shown
once, and two tenants that never see each other's endpoints or deliveries."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from ledger import acting, auth, store, webhooks
from ledger import events as ev

HOOKS = "/api/v1/webhooks"
LOCAL = "http://127.0.0.1:9/hook"


@pytest.fixture(autouse=True)
def allow_local(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8")


def token(config_: auth.AuthConfig, *scopes: str, tenant: str = "acme") -> dict[str, str]:
    return {"Authorization": f"Bearer {config_.mint('ops', scopes, tenant=tenant)}"}


async def create(client: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> Any:
    answer = await client.post(
        HOOKS, json={"url": LOCAL, "events": ["job.completed"], **body}, headers=headers
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


async def test_endpoints_need_webhooks_write_which_admin_grants(
    client: httpx.AsyncClient, auth_config: auth.AuthConfig
) -> None:
    body = {"url": LOCAL, "events": ["job.completed"]}
    refused = await client.post(HOOKS, json=body, headers=token(auth_config, "jobs:write"))
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert (await client.post(HOOKS, json=body, headers=token(auth_config, "admin"))).is_success
    made = await client.post(HOOKS, json=body, headers=token(auth_config, "webhooks:write"))
    assert made.status_code == 201
    assert made.json()["secret"].startswith("whsec_")


async def test_a_private_or_malformed_url_is_refused_with_a_problem(
    client: httpx.AsyncClient, auth_config: auth.AuthConfig
) -> None:
    admin = token(auth_config, "admin")
    for url in ("http://10.0.0.1/x", "http://169.254.169.254/latest/meta-data", "ftp://a/"):
        answer = await client.post(
            HOOKS, json={"url": url, "events": ["job.completed"]}, headers=admin
        )
        assert answer.status_code in (400, 422), (url, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
    unknown = await client.post(
        HOOKS, json={"url": LOCAL, "events": ["job.exploded"]}, headers=admin
    )
    assert unknown.status_code in (400, 422)


async def test_the_secret_is_shown_once_and_rotation_shows_a_new_one(
    client: httpx.AsyncClient, auth_config: auth.AuthConfig
) -> None:
    admin = token(auth_config, "admin")
    made = await create(client, admin, description="billing")
    endpoint_id = made["endpoint"]["endpoint_id"]
    shown = (await client.get(f"{HOOKS}/{endpoint_id}", headers=admin)).json()
    assert "secret" not in shown and made["secret"] not in str(shown)
    rotated = await client.post(f"{HOOKS}/{endpoint_id}/rotate-secret", headers=admin)
    assert rotated.status_code == 200
    assert rotated.json()["secret"] != made["secret"]
    assert rotated.json()["endpoint"]["version"] == 2


async def test_patch_disables_and_enables_and_delete_removes(
    client: httpx.AsyncClient, auth_config: auth.AuthConfig
) -> None:
    admin = token(auth_config, "admin")
    endpoint_id = (await create(client, admin))["endpoint"]["endpoint_id"]
    off = await client.patch(f"{HOOKS}/{endpoint_id}", json={"disabled": True}, headers=admin)
    assert off.json()["disabled"] is True
    on = await client.patch(
        f"{HOOKS}/{endpoint_id}",
        json={"disabled": False, "events": ["job.failed", "job.completed"]},
        headers=admin,
    )
    assert (on.json()["disabled"], on.json()["events"]) == (False, ["job.failed", "job.completed"])
    tested = await client.post(f"{HOOKS}/{endpoint_id}/test", headers=admin)
    assert tested.status_code == 202
    assert tested.json()["event_type"] == "webhook.test"
    listed = await client.get(f"{HOOKS}/{endpoint_id}/deliveries", headers=admin)
    assert [d["delivery_id"] for d in listed.json()["deliveries"]] == [tested.json()["delivery_id"]]
    assert (await client.delete(f"{HOOKS}/{endpoint_id}", headers=admin)).status_code == 204
    gone = await client.get(f"{HOOKS}/{endpoint_id}", headers=admin)
    assert gone.status_code == 404
    assert gone.json()["type"].endswith("unknown-webhook")


async def test_a_tenant_never_sees_or_changes_anothers_endpoints_or_deliveries(
    client: httpx.AsyncClient, auth_config: auth.AuthConfig
) -> None:
    acme = token(auth_config, "admin", tenant="acme")
    beta = token(auth_config, "admin", tenant="beta")
    endpoint_id = (await create(client, acme))["endpoint"]["endpoint_id"]
    delivery = (await client.post(f"{HOOKS}/{endpoint_id}/test", headers=acme)).json()

    assert (await client.get(HOOKS, headers=beta)).json() == {"endpoints": []}
    assert len((await client.get(HOOKS, headers=acme)).json()["endpoints"]) == 1
    for method, path in (
        ("GET", f"{HOOKS}/{endpoint_id}"),
        ("PATCH", f"{HOOKS}/{endpoint_id}"),
        ("DELETE", f"{HOOKS}/{endpoint_id}"),
        ("POST", f"{HOOKS}/{endpoint_id}/rotate-secret"),
        ("POST", f"{HOOKS}/{endpoint_id}/test"),
        ("GET", f"{HOOKS}/{endpoint_id}/deliveries"),
        ("GET", f"{HOOKS}/deliveries/{delivery['delivery_id']}"),
        ("POST", f"{HOOKS}/deliveries/{delivery['delivery_id']}/redeliver"),
    ):
        body = {"disabled": True} if method == "PATCH" else None
        answer = await client.request(method, path, json=body, headers=beta)
        assert answer.status_code == 404, (method, path, answer.text)
    still = (await client.get(f"{HOOKS}/{endpoint_id}", headers=acme)).json()
    assert (still["disabled"], still["version"]) == (False, 2)


async def test_a_job_may_name_its_own_webhook_at_submission(
    client: httpx.AsyncClient, auth_config: auth.AuthConfig
) -> None:
    writer = token(auth_config, "jobs:write", "jobs:read", "audit:read")
    job = {"type": "noop", "payload": {}, "webhook": {"url": "https://example.com/done"}}
    made = await client.post("/api/v1/jobs", json=job, headers=writer)
    assert made.status_code == 201, made.text
    events = await client.get(f"/api/v1/jobs/{made.json()['job_id']}/events", headers=writer)
    assert events.status_code == 200, events.text
    assert events.json()["events"][0]["data"]["webhook"] == {"url": "https://example.com/done"}
    bad = {**job, "webhook": {"url": "file:///etc/passwd"}}
    refused = await client.post("/api/v1/jobs", json=bad, headers=writer)
    assert refused.status_code in (400, 422)
    assert refused.headers["content-type"].startswith("application/problem+json")


async def attempted(
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    delivery: dict[str, Any],
    *,
    tenant: str,
    status_code: int,
    next_attempt_at: datetime | None,
) -> None:
    """Record an attempt as a sender does (workers.webhooks): acting in the delivery's
    tenant, the next event of its stream."""
    async with conn.transaction():
        await acting.act_in(conn, tenant)
        event = ev.WebhookDeliveryAttempted(
            job_id=uuid.UUID(delivery["delivery_id"]),
            version=delivery["attempts"] + 1,
            actor="worker-1",
            occurred_at=event_store.clock(),
            endpoint_id=uuid.UUID(delivery["endpoint_id"]),
            about_job=uuid.UUID(delivery["job_id"]),
            attempt=delivery["attempts"] + 1,
            outcome="retrying" if next_attempt_at else "delivered",
            status_code=status_code,
            duration_ms=12.5,
            error=None if status_code < 300 else f"HTTP {status_code}",
            response_body="no",
            next_attempt_at=next_attempt_at,
        )
        await event_store.append(conn, [event])


async def cancelled_job(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    made = await client.post("/api/v1/jobs", json={"type": "noop", "payload": {}}, headers=headers)
    assert made.status_code == 201, made.text
    job_id = str(made.json()["job_id"])
    assert (await client.post(f"/api/v1/jobs/{job_id}/cancel", headers=headers)).is_success
    return job_id


async def test_a_jobs_read_shows_the_deliveries_reporting_it_and_their_last_attempt(
    client: httpx.AsyncClient,
    auth_config: auth.AuthConfig,
    worker_conn: asyncpg.Connection,
    event_store: store.EventStore,
) -> None:
    admin = token(auth_config, "admin")
    endpoint_id = (await create(client, admin, events=["job.cancelled"]))["endpoint"]["endpoint_id"]
    job_id = await cancelled_job(client, admin)

    read = await client.get(f"/api/v1/jobs/{job_id}", headers=admin)
    assert read.status_code == 200, read.text
    [delivery] = read.json()["webhook_deliveries"]
    assert {k: delivery[k] for k in ("endpoint_id", "url", "job_id", "event_type")} == {
        "endpoint_id": endpoint_id,
        "url": None,
        "job_id": job_id,
        "event_type": "job.cancelled",
    }
    assert (delivery["status"], delivery["attempts"], delivery["last_status_code"]) == (
        "pending",
        0,
        None,
    )
    assert delivery["next_attempt_at"] is not None
    assert delivery["webhook_id"] == webhooks.webhook_id(uuid.UUID(delivery["delivery_id"]))

    # A 503, then a 200: the read follows each attempt the ledger records.
    retry_at = datetime.now(UTC) + timedelta(minutes=5)
    await attempted(
        worker_conn, event_store, delivery, tenant="acme", status_code=503, next_attempt_at=retry_at
    )
    [after] = (await client.get(f"/api/v1/jobs/{job_id}", headers=admin)).json()[
        "webhook_deliveries"
    ]
    assert (after["status"], after["attempts"], after["last_status_code"]) == ("pending", 1, 503)
    assert datetime.fromisoformat(after["next_attempt_at"]) == retry_at
    await attempted(
        worker_conn, event_store, after, tenant="acme", status_code=200, next_attempt_at=None
    )
    [done] = (await client.get(f"/api/v1/jobs/{job_id}", headers=admin)).json()[
        "webhook_deliveries"
    ]
    assert (done["status"], done["attempts"], done["last_status_code"]) == ("delivered", 2, 200)
    assert done["next_attempt_at"] is None

    # Each attempt, from its event.
    listed = await client.get(
        f"{HOOKS}/deliveries/{delivery['delivery_id']}/attempts",
        headers=token(auth_config, "jobs:read"),
    )
    assert listed.status_code == 200, listed.text
    assert listed.json()["delivery"]["status"] == "delivered"
    assert [
        (a["attempt"], a["outcome"], a["status_code"], a["duration_ms"], a["actor"])
        for a in listed.json()["attempts"]
    ] == [(1, "retrying", 503, 12.5, "worker-1"), (2, "delivered", 200, 12.5, "worker-1")]
    assert datetime.fromisoformat(listed.json()["attempts"][0]["next_attempt_at"]) == retry_at

    # A job no endpoint subscribes to: an empty list; a past state (as_of): no field.
    made = await client.post("/api/v1/jobs", json={"type": "noop", "payload": {}}, headers=admin)
    quiet = (await client.get(f"/api/v1/jobs/{made.json()['job_id']}", headers=admin)).json()
    assert quiet["webhook_deliveries"] == []
    then = await client.get(
        f"/api/v1/jobs/{job_id}", params={"as_of": datetime.now(UTC).isoformat()}, headers=admin
    )
    assert then.status_code == 200, then.text
    assert "webhook_deliveries" not in then.json()


async def test_a_tenant_never_sees_anothers_job_deliveries(
    client: httpx.AsyncClient,
    auth_config: auth.AuthConfig,
    worker_conn: asyncpg.Connection,
) -> None:
    acme = token(auth_config, "admin", tenant="acme")
    beta = token(auth_config, "admin", tenant="beta")
    await create(client, acme, events=["job.cancelled"])
    await create(client, beta, events=["job.cancelled"])
    job_id = await cancelled_job(client, acme)
    [delivery] = (await client.get(f"/api/v1/jobs/{job_id}", headers=acme)).json()[
        "webhook_deliveries"
    ]
    # beta's own job reports to beta's endpoint only.
    beta_job = await cancelled_job(client, beta)
    [beta_delivery] = (await client.get(f"/api/v1/jobs/{beta_job}", headers=beta)).json()[
        "webhook_deliveries"
    ]
    assert beta_delivery["delivery_id"] != delivery["delivery_id"]

    assert (await client.get(f"/api/v1/jobs/{job_id}", headers=beta)).status_code == 404
    attempts = f"{HOOKS}/deliveries/{delivery['delivery_id']}/attempts"
    assert (await client.get(attempts, headers=beta)).status_code == 404
    assert (await client.get(attempts, headers=acme)).status_code == 200
    # Row security decides, not the route: acting in beta, or in no tenant, the
    # statement the job read runs sees none of acme's deliveries.
    async with worker_conn.transaction():
        await acting.act_in(worker_conn, "beta")
        assert await webhooks.deliveries_reporting(worker_conn, uuid.UUID(job_id)) == []
    assert await webhooks.deliveries_reporting(worker_conn, uuid.UUID(job_id)) == []
    async with worker_conn.transaction():
        await acting.act_in(worker_conn, "acme")
        [seen] = await webhooks.deliveries_reporting(worker_conn, uuid.UUID(job_id))
    assert str(seen.delivery_id) == delivery["delivery_id"]
