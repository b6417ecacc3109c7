"""Unique jobs over HTTP: 200 with `deduplicated` for a duplicate, 409 problem details
naming the job holding the key, batches, racing requests, and the count on /metrics."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx
from litestar import Litestar

from ledger import auth, jobtypes
from service import app as app_module
from tests.conftest import Databases
from tests.http.conftest import Mint, running
from tests.http.test_jobs_api import assert_problem
from tests.process.metrics_scrape import Scrape

JOBS = "/api/v1/jobs"
RACERS = 50


def job(n: int = 1, *, amount: int = 0, **unique: Any) -> dict[str, Any]:
    return {
        "type": "noop",
        "payload": {"n": n} if not amount else {"n": n, "amount": amount},
        "unique": {"by": ["type", "payload.n"], **unique},
    }


async def test_a_duplicate_answers_200_with_the_job_holding_the_key(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection
) -> None:
    first = await client.post(JOBS, json=job(), headers=bearer())
    again = await client.post(JOBS, json=job(), headers=bearer(sub="bob"))
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["deduplicated"] is False
    assert again.json()["deduplicated"] is True
    assert again.json()["job_id"] == first.json()["job_id"]
    assert again.headers["location"] == first.headers["location"]
    assert len(again.json()["unique_key"]) == 64
    read = await client.get(f"{JOBS}/{first.json()['job_id']}", headers=bearer())
    assert read.json()["unique_key"] == first.json()["unique_key"]
    assert "deduplicated" not in read.json()  # only in the answer to a unique submission
    assert await conn.fetchval("SELECT count(*) FROM events") == 1
    metrics = Scrape((await client.get("/metrics")).text)
    deduplicated = metrics.value(
        "ledger_jobs_deduplicated_total",
        job_type="noop",
        queue="default",
        on_conflict="return_existing",
    )
    assert deduplicated == 1


async def test_on_conflict_error_answers_409_naming_the_existing_job(
    client: httpx.AsyncClient, bearer: Mint
) -> None:
    first = await client.post(JOBS, json=job(on_conflict="error"), headers=bearer())
    refused = await client.post(JOBS, json=job(on_conflict="error"), headers=bearer())
    problem = assert_problem(refused, 409)
    assert problem["type"] == "urn:job-ledger:problem:duplicate-job"
    assert problem["existing_job_id"] == first.json()["job_id"]
    assert first.json()["job_id"] in problem["detail"]


async def test_on_conflict_replace_answers_the_replaced_job(
    client: httpx.AsyncClient, bearer: Mint
) -> None:
    first = await client.post(
        JOBS, json={**job(on_conflict="replace"), "delay_seconds": 600}, headers=bearer()
    )
    replaced = await client.post(JOBS, json=job(amount=5, on_conflict="replace"), headers=bearer())
    assert replaced.status_code == 200
    body = replaced.json()
    assert (body["deduplicated"], body["replaced"]) == (True, True)
    assert body["payload"] == {"n": 1, "amount": 5}
    assert body["next_attempt_at"] < first.json()["next_attempt_at"]
    history = await client.get(f"{JOBS}/{body['job_id']}/events", headers=bearer("audit:read"))
    assert [e["type"] for e in history.json()["events"]] == [
        "job.submitted.v1",
        "job.replaced.v1",
    ]


async def test_invalid_unique_options_answer_422_naming_the_field(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection
) -> None:
    cases = [
        ({"by": ["type", "colour"]}, "unique.by[1]"),
        ({"states": []}, "unique.states"),
        ({"states": ["pending", "done"]}, "unique.states[1]"),
        ({"states": ["completed"]}, "unique.states"),
        ({"period_seconds": 0}, "unique.period_seconds"),
        ({"on_conflict": "merge"}, "unique.on_conflict"),
    ]
    for unique, path in cases:
        body = {"type": "noop", "payload": {}, "unique": unique}
        problem = assert_problem(await client.post(JOBS, json=body, headers=bearer()), 422)
        assert [e["path"] for e in problem["errors"]] == [path], unique
    batch = {"jobs": [job(), {"type": "noop", "payload": {}, "unique": {"by": ["x"]}}]}
    problem = assert_problem(await client.post(f"{JOBS}/batch", json=batch, headers=bearer()), 422)
    assert [e["path"] for e in problem["errors"]] == ["jobs[1].unique.by[0]"]
    assert await conn.fetchval("SELECT count(*) FROM events") == 0


async def test_a_batch_answers_its_duplicates_and_200_when_it_created_nothing(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection
) -> None:
    stored = (await client.post(JOBS, json=job(1), headers=bearer())).json()
    batch = {"jobs": [job(1), job(2), job(2, amount=3)]}
    answer = await client.post(f"{JOBS}/batch", json=batch, headers=bearer())
    assert answer.status_code == 201
    jobs = answer.json()["jobs"]
    assert [j["deduplicated"] for j in jobs] == [True, False, True]
    assert jobs[0]["job_id"] == stored["job_id"]
    assert jobs[2]["job_id"] == jobs[1]["job_id"]
    again = await client.post(f"{JOBS}/batch", json=batch, headers=bearer())
    assert again.status_code == 200
    assert [j["job_id"] for j in again.json()["jobs"]] == [j["job_id"] for j in jobs]
    assert await conn.fetchval("SELECT count(*) FROM jobs") == 2


async def test_fifty_racing_requests_create_exactly_one_job(
    dbs: Databases,
    auth_config: auth.AuthConfig,
    registry: jobtypes.Registry,
    bearer: Mint,
    conn: asyncpg.Connection,
) -> None:
    app: Litestar = app_module.create_app(
        dbs.app, auth_config=auth_config, registry=registry, pool_size=8
    )
    async with running(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            for on_conflict in ("return_existing", "replace", "error"):
                by = ["type", "queue", "payload.n"]
                body = job(amount=1, on_conflict=on_conflict, by=by) | {"queue": on_conflict}
                answers = await asyncio.gather(
                    *(http.post(JOBS, json=body, headers=bearer()) for _ in range(RACERS))
                )
                statuses = sorted(a.status_code for a in answers)
                refused = 409 if on_conflict == "error" else 200
                assert statuses == sorted([201] + [refused] * (RACERS - 1)), on_conflict
                created = [a.json()["job_id"] for a in answers if a.status_code == 201]
                held = {
                    a.json().get("job_id") or a.json()["existing_job_id"]
                    for a in answers
                    if a.status_code != 201
                }
                assert held == set(created)
                count = await conn.fetchval(
                    "SELECT count(*) FROM jobs WHERE queue = $1", on_conflict
                )
                assert count == 1
