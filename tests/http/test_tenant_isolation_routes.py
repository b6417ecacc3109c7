"""Every job route acts in the token's tenant: another tenant's job is a 404, exactly
like a job that does not exist, and lists, feeds and idempotency keys are per tenant."""

from __future__ import annotations

import uuid

import asyncpg
import httpx
import pytest

from ledger import auth

JOBS = "/api/v1/jobs"
SCOPES = ("jobs:read", "jobs:write", "jobs:cancel", "audit:read")


def _as(config_: auth.AuthConfig, tenant: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {config_.mint('alice', SCOPES, tenant=tenant)}"}


async def _submit(
    client: httpx.AsyncClient, headers: dict[str, str], **extra: object
) -> dict[str, object]:
    response = await client.post(
        JOBS, json={"type": "noop", "payload": {}, **extra}, headers=headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


@pytest.fixture
def acme(auth_config: auth.AuthConfig) -> dict[str, str]:
    return _as(auth_config, "acme")


@pytest.fixture
def beta(auth_config: auth.AuthConfig) -> dict[str, str]:
    return _as(auth_config, "beta")


async def test_a_job_submitted_in_a_tenant_is_stored_in_it_and_seen_only_there(
    client: httpx.AsyncClient,
    auth_config: auth.AuthConfig,
    acme: dict[str, str],
    beta: dict[str, str],
    admin_conn: asyncpg.Connection,
) -> None:
    job = await _submit(client, acme)
    job_id = job["job_id"]
    batch = await client.post(
        f"{JOBS}/batch", json={"jobs": [{"type": "noop", "payload": {}}]}, headers=acme
    )
    assert batch.status_code == 201, batch.text
    tenants = {
        str(r["job_id"]): r["tenant"]
        for r in await admin_conn.fetch("SELECT job_id, tenant FROM jobs")
    }
    assert set(tenants.values()) == {"acme"} and len(tenants) == 2
    assert set(await admin_conn.fetch("SELECT DISTINCT tenant FROM events")) == {("acme",)}

    own = await client.get(f"{JOBS}/{job_id}", headers=acme)
    assert own.status_code == 200, own.text
    unknown = await client.get(f"{JOBS}/{uuid.uuid4()}", headers=beta)
    for headers in (beta, _as(auth_config, None)):
        for path in (
            f"{JOBS}/{job_id}",
            f"{JOBS}/{job_id}/events",
            f"{JOBS}/{job_id}?as_of=2999-01-01T00:00:00Z",
        ):
            other = await client.get(path, headers=headers)
            assert other.status_code == 404, (path, other.text)
            assert other.json()["type"] == unknown.json()["type"]
        for action in ("cancel", "retry", "replay"):
            other = await client.post(f"{JOBS}/{job_id}/{action}", headers=headers)
            assert other.status_code == 404, (action, other.text)
        listed = await client.get(JOBS, headers=headers)
        assert listed.status_code == 200 and listed.json()["jobs"] == []
        feed = await client.get("/api/v1/events", headers=headers)
        assert feed.status_code == 200 and feed.json()["events"] == []
    assert (
        await admin_conn.fetchval(
            "SELECT max(version) FROM events WHERE job_id = $1", uuid.UUID(str(job_id))
        )
        == 1
    )

    listed = await client.get(JOBS, headers=acme)
    assert len(listed.json()["jobs"]) == 2
    feed = await client.get("/api/v1/events", headers=acme)
    assert {e["job_id"] for e in feed.json()["events"]} >= {job_id}
    cancelled = await client.post(f"{JOBS}/{job_id}/cancel", headers=acme)
    assert cancelled.status_code == 200, cancelled.text


async def test_an_idempotency_key_is_the_tenants_own(
    client: httpx.AsyncClient, acme: dict[str, str], beta: dict[str, str]
) -> None:
    keyed = {"Idempotency-Key": "order-7"}
    first = await client.post(JOBS, json={"type": "noop", "payload": {}}, headers={**acme, **keyed})
    again = await client.post(JOBS, json={"type": "noop", "payload": {}}, headers={**acme, **keyed})
    other = await client.post(JOBS, json={"type": "noop", "payload": {}}, headers={**beta, **keyed})
    assert first.status_code == again.status_code == 201, (first.text, again.text)
    assert first.json()["job_id"] == again.json()["job_id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert other.status_code == 201, other.text
    assert "idempotent-replayed" not in other.headers
    assert other.json()["job_id"] != first.json()["job_id"]


async def test_tenants_admin_reads_another_tenants_job_with_the_query_parameter(
    client: httpx.AsyncClient, auth_config: auth.AuthConfig, acme: dict[str, str]
) -> None:
    job_id = (await _submit(client, acme))["job_id"]
    operator = {
        "Authorization": f"Bearer {auth_config.mint('ops', ('jobs:read', 'tenants:admin'))}"
    }
    seen = await client.get(f"{JOBS}/{job_id}", params={"tenant": "acme"}, headers=operator)
    assert seen.status_code == 200, seen.text
    assert (await client.get(f"{JOBS}/{job_id}", headers=operator)).status_code == 404
