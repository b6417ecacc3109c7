"""The webhooks API through the real app and a real PostgreSQL: the webhooks:write scope
(granted by admin), the SSRF guard at registration, RFC 9457 answers, secrets shown
once, and two tenants that never see each other's endpoints or deliveries."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from ledger import auth

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
