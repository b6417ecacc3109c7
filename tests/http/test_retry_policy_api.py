"""Retry policies through the HTTP API: on a submission (alone and in a batch) and on a
queue; invalid or contradicting fields answer problem details naming the field."""

from __future__ import annotations

import json

import asyncpg
import httpx

from tests.http.conftest import Mint
from tests.http.test_jobs_api import JOBS, assert_problem, paths, resize

QUEUES = "/api/v1/queues"


async def test_a_submissions_policy_is_stored_on_the_job_with_its_aliases_mapped_in(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection
) -> None:
    body = resize(
        max_attempts=5,
        retry_policy={"jitter": "full", "non_retryable_errors": ["ValueError"]},
    )
    response = await client.post(JOBS, json=body, headers=bearer())
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["max_attempts"] == 5
    stored = await conn.fetchval(
        "SELECT retry_policy FROM jobs WHERE job_id = $1::uuid", job["job_id"]
    )
    assert json.loads(stored) == {
        "jitter": "full",
        "maximum_attempts": 5,
        "non_retryable_errors": ["ValueError"],
    }
    plain = (await client.post(JOBS, json=resize(), headers=bearer())).json()
    none = await conn.fetchval(
        "SELECT retry_policy FROM jobs WHERE job_id = $1::uuid", plain["job_id"]
    )
    assert none is None  # no policy given: nothing stored


async def test_an_invalid_policy_answers_422_naming_the_field(
    client: httpx.AsyncClient, bearer: Mint
) -> None:
    for policy, field in (
        ({"backoff_coefficient": 0.5}, "retry_policy.backoff_coefficient"),
        ({"jitter": "some"}, "retry_policy.jitter"),
        ({"maximum_attempts": -1}, "retry_policy.maximum_attempts"),
        ({"tries": 3}, "retry_policy.tries"),
        (
            {"initial_interval_seconds": 10, "maximum_interval_seconds": 1},
            "retry_policy.maximum_interval_seconds",
        ),
    ):
        problem = assert_problem(
            await client.post(JOBS, json=resize(retry_policy=policy), headers=bearer()), 422
        )
        assert paths(problem) == [field], (policy, problem)


async def test_an_alias_contradicting_its_policy_field_answers_422_naming_the_alias(
    client: httpx.AsyncClient, bearer: Mint
) -> None:
    body = resize(max_attempts=3, retry_policy={"maximum_attempts": 4})
    problem = assert_problem(await client.post(JOBS, json=body, headers=bearer()), 422)
    assert paths(problem) == ["max_attempts"]
    batch = {
        "jobs": [
            resize(),
            resize(backoff_base_seconds=1, retry_policy={"initial_interval_seconds": 2}),
        ]
    }
    problem = assert_problem(await client.post(f"{JOBS}/batch", json=batch, headers=bearer()), 422)
    assert paths(problem) == ["jobs[1].backoff_base_seconds"]


async def test_a_queues_policy_is_set_by_put_and_shown(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection
) -> None:
    policy = {"maximum_attempts": 10, "initial_interval_seconds": 5.0, "jitter": "none"}
    response = await client.put(
        f"{QUEUES}/mail", json={"retry_policy": policy}, headers=bearer("admin")
    )
    assert response.status_code == 200, response.text
    assert response.json()["retry_policy"] == policy
    shown = (await client.get(f"{QUEUES}/mail", headers=bearer("jobs:read"))).json()
    assert shown["retry_policy"] == policy
    data = await conn.fetchval(
        "SELECT data FROM events WHERE type = 'queue.configured.v1' ORDER BY position DESC LIMIT 1"
    )
    assert json.loads(data)["retry_policy"] == policy
    # A PUT sets every setting: one without a policy clears it.
    cleared = await client.put(f"{QUEUES}/mail", json={}, headers=bearer("admin"))
    assert "retry_policy" not in cleared.json()
    problem = assert_problem(
        await client.put(
            f"{QUEUES}/mail",
            json={"retry_policy": {"backoff_coefficient": 0}},
            headers=bearer("admin"),
        ),
        422,
    )
    assert paths(problem) == ["retry_policy.backoff_coefficient"]
