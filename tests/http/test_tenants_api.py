"""The tenants API and the quota's 429 through the real app and a real PostgreSQL:
settings by events in their tenant, the tenants:admin scope, strict bodies, and
submissions past `max_queued` refused with nothing stored."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx
import pytest
from litestar import Litestar

from ledger import auth, tenants
from tests.http.test_jobs_api import assert_problem, paths

TENANTS = "/api/v1/tenants"
JOBS = "/api/v1/jobs"


def token(
    config_: auth.AuthConfig, *scopes: str, sub: str = "ops", tenant: str | None = None
) -> dict[str, str]:
    return {"Authorization": f"Bearer {config_.mint(sub, scopes, tenant=tenant)}"}


def noop(n: int = 0) -> dict[str, Any]:
    return {"type": "noop", "payload": {"n": n}}


async def test_put_changes_settings_by_an_event_in_that_tenant_and_answers_its_version(
    client: httpx.AsyncClient, auth_config: auth.AuthConfig, admin_conn: asyncpg.Connection
) -> None:
    operator = token(auth_config, "tenants:admin", sub="ops")

    first = await client.put(f"{TENANTS}/acme", json={"max_queued": 100}, headers=operator)
    second = await client.put(
        f"{TENANTS}/acme", json={"max_running": 4, "weight": 3}, headers=operator
    )
    cleared = await client.put(f"{TENANTS}/acme", json={"max_queued": None}, headers=operator)
    same = await client.put(f"{TENANTS}/acme", json={"weight": 3}, headers=operator)

    assert first.status_code == 200, first.text
    assert first.json() == {
        "tenant": "acme",
        "max_queued": 100,
        "max_running": None,
        "weight": 1,
        "version": 1,
        "updated_by": "ops",
        "updated_at": first.json()["updated_at"],
    }
    assert {k: second.json()[k] for k in ("max_queued", "max_running", "weight", "version")} == {
        "max_queued": 100,
        "max_running": 4,
        "weight": 3,
        "version": 2,
    }
    assert (cleared.json()["max_queued"], cleared.json()["version"]) == (None, 3)
    assert same.json() == cleared.json()  # nothing changed: no event
    rows = await admin_conn.fetch(
        "SELECT type, actor, tenant, version FROM events WHERE job_id = $1 ORDER BY version",
        tenants.stream_id("acme"),
    )
    assert [tuple(r) for r in rows] == [
        ("tenant.configured.v1", "ops", "acme", v) for v in (1, 2, 3)
    ]

    # acme's auditor sees its settings' changes in its feed; beta's sees none of them.
    acme_feed = await client.get(
        "/api/v1/events", headers=token(auth_config, "audit:read", tenant="acme")
    )
    assert [e["type"] for e in acme_feed.json()["events"]] == ["tenant.configured.v1"] * 3
    beta_feed = await client.get(
        "/api/v1/events", headers=token(auth_config, "audit:read", tenant="beta")
    )
    assert beta_feed.json()["events"] == []

    shown = await client.get(f"{TENANTS}/acme", headers=operator)
    assert shown.json() == cleared.json()
    never = await client.get(f"{TENANTS}/beta", headers=operator)
    assert never.json() == {
        "tenant": "beta",
        "max_queued": None,
        "max_running": None,
        "weight": 1,
        "version": 0,
        "updated_by": None,
        "updated_at": None,
    }
    await client.put(f"{TENANTS}/beta", json={"max_queued": 5}, headers=operator)
    listed = await client.get(TENANTS, headers=operator)
    assert [(t["tenant"], t["max_queued"]) for t in listed.json()["tenants"]] == [
        ("acme", None),
        ("beta", 5),
    ]


@pytest.mark.parametrize(
    ("method", "path"), [("PUT", f"{TENANTS}/acme"), ("GET", TENANTS), ("GET", f"{TENANTS}/acme")]
)
async def test_the_tenants_routes_need_tenants_admin_which_admin_does_not_grant(
    client: httpx.AsyncClient,
    auth_config: auth.AuthConfig,
    admin_conn: asyncpg.Connection,
    method: str,
    path: str,
) -> None:
    body = {"json": {"max_queued": 1}} if method == "PUT" else {}
    anonymous = await client.request(method, path, **body)
    assert_problem(anonymous, 401)
    admin = await client.request(method, path, headers=token(auth_config, "admin"), **body)
    problem = assert_problem(admin, 403)
    assert "tenants:admin" in problem["detail"]
    everything = [s for s in auth.SCOPES if s != "tenants:admin"]
    assert_problem(
        await client.request(method, path, headers=token(auth_config, *everything), **body), 403
    )
    assert await admin_conn.fetchval("SELECT count(*) FROM events") == 0
    allowed = await client.request(
        method, path, headers=token(auth_config, "tenants:admin"), **body
    )
    assert allowed.status_code == 200, allowed.text


async def test_bad_tenant_ids_and_bodies_are_problems_and_write_nothing(
    client: httpx.AsyncClient, auth_config: auth.AuthConfig, admin_conn: asyncpg.Connection
) -> None:
    operator = token(auth_config, "tenants:admin")
    bad_id = await client.put(f"{TENANTS}/-acme", json={"weight": 2}, headers=operator)
    assert paths(assert_problem(bad_id, 400)) == ["tenant"]
    assert_problem(await client.get(f"{TENANTS}/a%20b", headers=operator), 400)
    unknown = await client.put(f"{TENANTS}/acme", json={"quota": 1}, headers=operator)
    assert paths(assert_problem(unknown, 422)) == ["quota"]
    for body in ({"weight": 0}, {"weight": None}, {"max_queued": -1}, {"max_running": "2"}):
        refused = await client.put(f"{TENANTS}/acme", json=body, headers=operator)
        assert paths(assert_problem(refused, 422)) == list(body), body
    not_json = await client.put(
        f"{TENANTS}/acme", content=b"{", headers={**operator, "Content-Type": "application/json"}
    )
    assert_problem(not_json, 400)
    assert await admin_conn.fetchval("SELECT count(*) FROM events") == 0


async def _refusals(client: httpx.AsyncClient) -> float:
    scraped = (await client.get("/metrics")).text
    for line in scraped.splitlines():
        if line.startswith("ledger_submissions_refused_over_quota_total "):
            return float(line.split()[1])
    raise AssertionError("no ledger_submissions_refused_over_quota_total in /metrics")


async def test_a_submission_past_max_queued_answers_429_with_retry_after_and_stores_nothing(
    client: httpx.AsyncClient, auth_config: auth.AuthConfig, admin_conn: asyncpg.Connection
) -> None:
    await client.put(
        f"{TENANTS}/acme", json={"max_queued": 2}, headers=token(auth_config, "tenants:admin")
    )
    acme = token(auth_config, "jobs:write", "jobs:read", sub="alice", tenant="acme")
    beta = token(auth_config, "jobs:write", sub="alice", tenant="beta")
    assert await _refusals(client) == 0
    keyed = await client.post(JOBS, json=noop(1), headers={**acme, "Idempotency-Key": "k1"})
    assert keyed.status_code == 201, keyed.text
    assert (await client.post(JOBS, json=noop(2), headers=acme)).status_code == 201
    before = await admin_conn.fetchval("SELECT count(*) FROM events")

    refused = await client.post(JOBS, json=noop(3), headers=acme)
    problem = assert_problem(refused, 429)
    assert problem["type"] == "urn:job-ledger:problem:tenant-quota-exceeded"
    assert "max_queued" in problem["detail"]
    assert int(refused.headers["retry-after"]) > 0
    keyed_refused = await client.post(JOBS, json=noop(3), headers={**acme, "Idempotency-Key": "k2"})
    assert_problem(keyed_refused, 429)
    batch = await client.post(f"{JOBS}/batch", json={"jobs": [noop(4)]}, headers=acme)
    assert_problem(batch, 429)
    assert batch.headers["retry-after"]
    assert await admin_conn.fetchval("SELECT count(*) FROM events") == before
    assert await _refusals(client) == 3

    # The stored submission repeated answers the stored job, quota or not.
    again = await client.post(JOBS, json=noop(1), headers={**acme, "Idempotency-Key": "k1"})
    assert again.status_code == 201 and again.json() == keyed.json()
    assert again.headers["idempotent-replayed"] == "true"
    # beta is not held by acme's quota: a batch of five goes in.
    five = await client.post(
        f"{JOBS}/batch", json={"jobs": [noop(i) for i in range(5)]}, headers=beta
    )
    assert five.status_code == 201, five.text
    counted = await admin_conn.fetch("SELECT tenant, count(*) FROM jobs GROUP BY 1 ORDER BY 1")
    assert [tuple(r) for r in counted] == [("acme", 2), ("beta", 5)]


async def test_a_batch_over_the_quota_stores_nothing_and_one_within_it_goes_in(
    client: httpx.AsyncClient, auth_config: auth.AuthConfig, admin_conn: asyncpg.Connection
) -> None:
    await client.put(
        f"{TENANTS}/acme", json={"max_queued": 3}, headers=token(auth_config, "tenants:admin")
    )
    acme = token(auth_config, "jobs:write", tenant="acme")
    over = await client.post(
        f"{JOBS}/batch", json={"jobs": [noop(i) for i in range(4)]}, headers=acme
    )
    assert_problem(over, 429)
    assert await admin_conn.fetchval("SELECT count(*) FROM jobs") == 0
    within = await client.post(
        f"{JOBS}/batch", json={"jobs": [noop(i) for i in range(3)]}, headers=acme
    )
    assert within.status_code == 201, within.text
    assert await admin_conn.fetchval("SELECT count(*) FROM jobs") == 3


async def test_concurrent_submissions_sharing_a_commit_are_admitted_up_to_the_quota(
    client: httpx.AsyncClient,
    auth_config: auth.AuthConfig,
    admin_conn: asyncpg.Connection,
    app: Litestar,
) -> None:
    await client.put(
        f"{TENANTS}/acme", json={"max_queued": 5}, headers=token(auth_config, "tenants:admin")
    )
    acme = token(auth_config, "jobs:write", tenant="acme")
    answers = await asyncio.gather(
        *(client.post(JOBS, json=noop(i), headers=acme) for i in range(8))
    )
    assert sorted(a.status_code for a in answers) == [201] * 5 + [429] * 3
    assert await admin_conn.fetchval("SELECT count(*) FROM jobs") == 5
