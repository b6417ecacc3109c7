"""The workflows API through the real app and a real PostgreSQL: submit, read, list, cancel,
retry, the 422s that name the job and field, and two tenants that never see each other's."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx

from ledger import auth, commands, store
from tests.conftest import IN_DEFAULT, Databases
from tests.http.conftest import Mint
from tests.http.test_jobs_api import assert_problem, paths
from tests.process.metrics_scrape import Scrape

WORKFLOWS = "/api/v1/workflows"
SCOPES = ("jobs:write", "jobs:read", "jobs:cancel")


def noop(name: str, *deps: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "noop", "payload": {}, "depends_on": list(deps), **extra}


def in_tenant(config: auth.AuthConfig, tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {config.mint('alice', SCOPES, tenant=tenant)}"}


async def test_a_workflow_is_created_read_and_listed(
    client: httpx.AsyncClient, bearer: Mint
) -> None:
    wanted = str(uuid.uuid4())
    body = {"id": wanted, "jobs": [noop("a"), noop("b", "a"), noop("c", "a", "b")]}
    created = await client.post(WORKFLOWS, json=body, headers=bearer())
    assert created.status_code == 201, created.text
    out = created.json()
    assert out["id"] == wanted and out["status"] == "running"
    assert created.headers["Location"] == f"{WORKFLOWS}/{wanted}"
    assert [(j["name"], j["status"], j["depends_on"]) for j in out["jobs"]] == [
        ("a", "pending", []),
        ("b", "blocked", ["a"]),
        ("c", "blocked", ["a", "b"]),
    ]
    read = await client.get(f"{WORKFLOWS}/{wanted}", headers=bearer())
    assert read.status_code == 200
    assert set(read.json()["jobs"][0]) == {
        "name", "job_id", "status", "depends_on", "on_upstream_failure", "result", "error",
    }  # fmt: skip
    assert read.json()["jobs"] == out["jobs"]
    listed = await client.get(WORKFLOWS, params={"status": "running"}, headers=bearer())
    assert [w["id"] for w in listed.json()["workflows"]] == [wanted]
    none = await client.get(WORKFLOWS, params={"status": "completed"}, headers=bearer())
    assert none.json()["workflows"] == []
    again = await client.post(WORKFLOWS, json=body, headers=bearer())
    assert_problem(again, 409)


async def test_an_invalid_workflow_answers_422_naming_the_job_and_stores_nothing(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection
) -> None:
    cases = [
        ([noop("a", "c"), noop("b", "a"), noop("c", "b")], ["jobs[0].depends_on"], "a → c → b → a"),
        ([noop("a"), noop("b", "zz")], ["jobs[1].depends_on[0]"], "zz"),
        ([noop("a"), noop("a")], ["jobs[1].name"], "taken"),
        (
            [noop("a"), noop("b"), noop("c"), {**noop("d", "a"), "payload": {"n": "x"}}],
            ["jobs[3].payload.n"],
            "int",
        ),
        ([noop(f"j{i}") for i in range(1001)], ["jobs"], "1000"),
    ]
    for jobs, where, words in cases:
        response = await client.post(WORKFLOWS, json={"jobs": jobs}, headers=bearer())
        problem = assert_problem(response, 422)
        assert paths(problem) == where, problem
        assert words in problem["errors"][0]["message"], problem
    assert await conn.fetchval("SELECT count(*) FROM events") == 0


async def test_a_workflow_of_1000_jobs_is_one_request(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection
) -> None:
    jobs = [noop("j0")] + [noop(f"j{i}", f"j{i - 1}") for i in range(1, 1000)]
    response = await client.post(WORKFLOWS, json={"jobs": jobs}, headers=bearer())
    assert response.status_code == 201, response.text
    assert await conn.fetchval("SELECT count(DISTINCT txid) FROM events") == 1
    assert await conn.fetchval("SELECT count(*) FROM jobs WHERE status = 'blocked'") == 999


async def test_cancel_and_retry_a_workflow_over_http(
    client: httpx.AsyncClient, bearer: Mint, dbs: Databases
) -> None:
    created = await client.post(
        WORKFLOWS, json={"jobs": [noop("a"), noop("b", "a")]}, headers=bearer()
    )
    out = created.json()
    cancelled = await client.post(f"{WORKFLOWS}/{out['id']}/cancel", headers=bearer())
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert {j["status"] for j in cancelled.json()["jobs"]} == {"cancelled"}
    nothing_failed = await client.post(f"{WORKFLOWS}/{out['id']}/retry", headers=bearer())
    assert_problem(nothing_failed, 409)
    unknown = await client.post(
        f"{WORKFLOWS}/{out['id']}/retry", json={"from": "nope"}, headers=bearer()
    )
    assert paths(assert_problem(unknown, 422)) == ["from"]
    retried = await client.post(
        f"{WORKFLOWS}/{out['id']}/retry", json={"from": "a"}, headers=bearer()
    )
    assert retried.status_code == 200, retried.text
    assert [(j["name"], j["status"]) for j in retried.json()["jobs"]] == [
        ("a", "pending"),
        ("b", "blocked"),
    ]
    conn = await asyncpg.connect(dbs.app, server_settings=IN_DEFAULT)
    try:
        a = uuid.UUID(out["jobs"][0]["job_id"])
        s = store.EventStore()
        await s.execute(conn, a, commands.ClaimJob(worker_id="w", lease_seconds=60), actor="w")
        await s.execute(conn, a, commands.CompleteJob(worker_id="w", result=5), actor="w")
    finally:
        await conn.close()
    read = (await client.get(f"{WORKFLOWS}/{out['id']}", headers=bearer())).json()
    assert [(j["name"], j["status"], j["result"]) for j in read["jobs"]] == [
        ("a", "completed", 5),
        ("b", "pending", None),
    ]


async def test_another_tenant_s_workflow_is_unknown(
    client: httpx.AsyncClient, auth_config: auth.AuthConfig
) -> None:
    acme, beta = in_tenant(auth_config, "acme"), in_tenant(auth_config, "beta")
    created = await client.post(WORKFLOWS, json={"jobs": [noop("a"), noop("b", "a")]}, headers=acme)
    assert created.status_code == 201, created.text
    workflow = created.json()["id"]
    assert (await client.get(f"{WORKFLOWS}/{workflow}", headers=acme)).status_code == 200
    assert_problem(await client.get(f"{WORKFLOWS}/{workflow}", headers=beta), 404)
    assert_problem(await client.post(f"{WORKFLOWS}/{workflow}/cancel", headers=beta), 404)
    assert_problem(await client.post(f"{WORKFLOWS}/{workflow}/retry", headers=beta), 404)
    assert (await client.get(WORKFLOWS, headers=beta)).json()["workflows"] == []
    listed = (await client.get(WORKFLOWS, headers=acme)).json()["workflows"]
    assert [w["id"] for w in listed] == [workflow]
    # The same client id in another tenant is that tenant's own workflow.
    same = await client.post(WORKFLOWS, json={"id": workflow, "jobs": [noop("x")]}, headers=beta)
    assert same.status_code == 201, same.text


async def test_metrics_count_blocked_jobs_in_the_queue_depth(
    client: httpx.AsyncClient, bearer: Mint
) -> None:
    body = {"jobs": [noop("a", queue="flow"), noop("b", "a", queue="flow"), noop("c", "b")]}
    assert (await client.post(WORKFLOWS, json=body, headers=bearer())).status_code == 201

    response = await client.get("/metrics")

    metrics = Scrape(response.text)
    assert metrics.value("ledger_queue_depth", queue="flow", status="pending") == 1
    assert metrics.value("ledger_queue_depth", queue="flow", status="blocked") == 1
    assert metrics.value("ledger_queue_depth", queue="default", status="blocked") == 1
    assert metrics.value("ledger_queue_depth", queue="default", status="pending") == 0
