"""The queues API through the real app and a real PostgreSQL: settings by events, reads
from the counters, strict bodies, scopes, and jobs' concurrency_key."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest

from ledger import lifecycle, queues
from tests.http.conftest import Mint
from tests.http.test_jobs_api import assert_problem, paths

QUEUES = "/api/v1/queues"
JOBS = "/api/v1/jobs"


def noop(**extra: Any) -> dict[str, Any]:
    return {"type": "noop", "payload": {}, "priority": "normal", **extra}


async def stream_events(conn: asyncpg.Connection, name: str) -> list[tuple[str, str, Any]]:
    rows = await conn.fetch(
        "SELECT type, actor, data FROM events WHERE job_id = $1 ORDER BY version",
        queues.stream_id(name),
    )
    return [(r["type"], r["actor"], r["data"]) for r in rows]


async def test_put_sets_the_limits_by_an_event_in_the_feed_with_its_actor(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection
) -> None:
    body = {
        "concurrency": 5,
        "rate_limit": {"limit": 50, "period_seconds": 1},
        "per_key_concurrency": 2,
        "fairness": "round_robin",
    }
    response = await client.put(f"{QUEUES}/mail", json=body, headers=bearer("admin", sub="ops"))

    assert response.status_code == 200, response.text
    queue = response.json()
    assert queue == {
        "name": "mail",
        "concurrency": 5,
        "rate_limit": {"limit": 50, "period_seconds": 1.0, "burst": 50},
        "per_key_concurrency": 2,
        "fairness": "round_robin",
        "paused": False,
        "counts": dict.fromkeys(
            lifecycle.STATUSES,  # every status, blocked and skipped (workflows) included
            0,
        ),
        "running": 0,
        "version": 1,
        "updated_by": "ops",
        "updated_at": queue["updated_at"],
    }
    read = await client.get(f"{QUEUES}/mail", headers=bearer("jobs:read"))
    assert read.status_code == 200 and read.json() == queue

    feed = await client.get(
        "/api/v1/events", params={"type": "queue.configured.v1"}, headers=bearer("audit:read")
    )
    assert feed.status_code == 200, feed.text
    [event] = feed.json()["events"]
    assert (event["actor"], event["version"], event["job_id"]) == (
        "ops",
        1,
        str(queues.stream_id("mail")),
    )
    assert event["data"]["queue"] == "mail"
    assert event["data"]["rate_limit"] == {"limit": 50, "period_seconds": 1.0, "burst": 50}

    # The same settings again change nothing and append nothing; fewer fields clear the rest.
    again = await client.put(f"{QUEUES}/mail", json=body, headers=bearer("admin", sub="ops"))
    assert again.json()["version"] == 1
    cleared = await client.put(f"{QUEUES}/mail", json={}, headers=bearer("admin", sub="root"))
    assert cleared.status_code == 200
    assert {k: cleared.json()[k] for k in ("concurrency", "rate_limit", "fairness", "version")} == {
        "concurrency": None,
        "rate_limit": None,
        "fairness": "fifo",
        "version": 2,
    }
    assert [(t, a) for t, a, _ in await stream_events(conn, "mail")] == [
        ("queue.configured.v1", "ops"),
        ("queue.configured.v1", "root"),
    ]


async def test_pause_and_resume_answer_the_queue_and_record_the_reason(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection
) -> None:
    admin = bearer("admin", sub="ops")
    paused = await client.post(f"{QUEUES}/reports/pause", headers=admin)  # no body at all
    assert paused.status_code == 200, paused.text
    assert (paused.json()["paused"], paused.json()["version"]) == (True, 1)
    resumed = await client.post(f"{QUEUES}/reports/resume", json={}, headers=admin)
    assert resumed.status_code == 200, resumed.text
    assert (resumed.json()["paused"], resumed.json()["version"]) == (False, 2)
    again = await client.post(
        f"{QUEUES}/reports/pause", json={"reason": "incident 42"}, headers=admin
    )
    assert (again.json()["paused"], again.json()["version"]) == (True, 3)
    # Pausing a paused queue appends nothing and answers it as it is.
    twice = await client.post(f"{QUEUES}/reports/pause", json={"reason": "x"}, headers=admin)
    assert (twice.status_code, twice.json()["version"]) == (200, 3)

    recorded = await stream_events(conn, "reports")
    assert [(t, a) for t, a, _ in recorded] == [
        ("queue.paused.v1", "ops"),
        ("queue.resumed.v1", "ops"),
        ("queue.paused.v1", "ops"),
    ]
    assert '"incident 42"' in recorded[2][2]


async def test_the_list_shows_every_queue_with_settings_or_jobs_and_its_counts(
    client: httpx.AsyncClient, bearer: Mint
) -> None:
    for queue in ("bulk", "bulk", "default"):
        response = await client.post(JOBS, json=noop(queue=queue), headers=bearer())
        assert response.status_code == 201
    await client.post(f"{QUEUES}/idle/pause", headers=bearer("admin"))

    listed = await client.get(QUEUES, headers=bearer("jobs:read"))

    assert listed.status_code == 200, listed.text
    by_name = {q["name"]: q for q in listed.json()["queues"]}
    assert list(by_name) == ["bulk", "default", "idle"]
    assert (by_name["bulk"]["counts"]["pending"], by_name["bulk"]["version"]) == (2, 0)
    assert by_name["bulk"]["updated_by"] is None and by_name["bulk"]["running"] == 0
    assert by_name["idle"]["paused"] is True and sum(by_name["idle"]["counts"].values()) == 0
    one = await client.get(f"{QUEUES}/bulk", headers=bearer("jobs:read"))
    assert one.json() == by_name["bulk"]


async def test_an_unknown_queue_is_a_404_problem(client: httpx.AsyncClient, bearer: Mint) -> None:
    problem = assert_problem(await client.get(f"{QUEUES}/nowhere", headers=bearer()), 404)
    assert problem["type"] == "urn:job-ledger:problem:unknown-queue"
    assert "nowhere" in problem["detail"]


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"concurrency": 2, "burst": 3}, "burst"),
        ({"concurrency": -1}, "concurrency"),
        ({"concurrency": "5"}, "concurrency"),
        ({"concurrency": 1.5}, "concurrency"),
        ({"per_key_concurrency": 0}, "per_key_concurrency"),
        ({"fairness": "lifo"}, "fairness"),
        ({"rate_limit": {"limit": 5}}, "rate_limit.period_seconds"),
        ({"rate_limit": {"limit": 5, "period_seconds": 0}}, "rate_limit.period_seconds"),
        ({"rate_limit": {"limit": 5, "period_seconds": 1, "every": 2}}, "rate_limit.every"),
        ({"rate_limit": {"limit": 0, "period_seconds": 1}}, "rate_limit.limit"),
        ({"paused": True}, "paused"),
    ],
)
async def test_a_bad_settings_body_is_a_422_naming_the_field_and_nothing_is_written(
    client: httpx.AsyncClient,
    bearer: Mint,
    conn: asyncpg.Connection,
    body: dict[str, Any],
    path: str,
) -> None:
    response = await client.put(f"{QUEUES}/mail", json=body, headers=bearer("admin"))
    problem = assert_problem(response, 422)
    assert paths(problem) == [path], problem
    assert await conn.fetchval("SELECT count(*) FROM events") == 0


async def test_a_bad_body_or_queue_name_is_refused(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection
) -> None:
    admin = bearer("admin")
    not_json = await client.put(
        f"{QUEUES}/mail", content=b"{", headers={**admin, "Content-Type": "application/json"}
    )
    assert_problem(not_json, 400)
    as_text = await client.put(
        f"{QUEUES}/mail", content=b"{}", headers={**admin, "Content-Type": "text/plain"}
    )
    assert_problem(as_text, 415)
    reason = await client.post(f"{QUEUES}/mail/pause", json={"reason": 7}, headers=admin)
    assert paths(assert_problem(reason, 422)) == ["reason"]
    extra = await client.post(f"{QUEUES}/mail/resume", json={"now": True}, headers=admin)
    assert paths(assert_problem(extra, 422)) == ["now"]
    for bad in ("no%20spaces", "x" * 65, "caf%C3%A9"):
        for method, url in (
            ("GET", f"{QUEUES}/{bad}"),
            ("PUT", f"{QUEUES}/{bad}"),
            ("POST", f"{QUEUES}/{bad}/pause"),
        ):
            response = await client.request(method, url, json={}, headers=admin)
            problem = assert_problem(response, 400)
            assert paths(problem) == ["name"], (method, url, problem)
    assert await conn.fetchval("SELECT count(*) FROM events") == 0


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("GET", QUEUES, "jobs:read"),
        ("GET", f"{QUEUES}/default", "jobs:read"),
        ("PUT", f"{QUEUES}/default", "admin"),
        ("POST", f"{QUEUES}/default/pause", "admin"),
        ("POST", f"{QUEUES}/default/resume", "admin"),
    ],
)
async def test_each_queue_route_needs_a_token_and_its_scope(
    client: httpx.AsyncClient,
    bearer: Mint,
    conn: asyncpg.Connection,
    method: str,
    path: str,
    scope: str,
) -> None:
    body = {} if method != "GET" else None
    anonymous = await client.request(method, path, json=body)
    assert_problem(anonymous, 401)
    assert anonymous.headers["www-authenticate"] == 'Bearer realm="job-ledger"'
    others = [s for s in ("jobs:write", "jobs:read", "jobs:cancel", "audit:read") if s != scope]
    lacking = await client.request(method, path, json=body, headers=bearer(*others))
    assert_problem(lacking, 403)
    assert f'scope="{scope}"' in lacking.headers["www-authenticate"]
    assert await conn.fetchval("SELECT count(*) FROM events") == 0
    await client.post(JOBS, json=noop(), headers=bearer())  # `default` exists: a read answers
    allowed = await client.request(method, path, json=body, headers=bearer(scope))
    assert allowed.status_code == 200, allowed.text


async def test_a_job_carries_its_concurrency_key_from_submission_to_reads(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection
) -> None:
    response = await client.post(JOBS, json=noop(concurrency_key="acme"), headers=bearer())
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["concurrency_key"] == "acme"
    read = await client.get(f"{JOBS}/{job['job_id']}", headers=bearer("jobs:read"))
    assert read.json()["concurrency_key"] == "acme"
    stored = await conn.fetchval("SELECT concurrency_key FROM jobs")
    assert stored == "acme"
    without = await client.post(JOBS, json=noop(), headers=bearer())
    assert without.json()["concurrency_key"] is None
    for bad in ("", 5, "a" * 201):
        refused = await client.post(JOBS, json=noop(concurrency_key=bad), headers=bearer())
        assert paths(assert_problem(refused, 422)) == ["concurrency_key"]
