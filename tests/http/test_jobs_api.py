"""The jobs API through the real app and a real PostgreSQL: every route, status code and error shape."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from ledger import auth, commands, store
from projections import joblist, rebuild
from service import app as app_module
from tests.conftest import Databases
from tests.http.conftest import Mint, running

JOBS = "/api/v1/jobs"
PROBLEM = "application/problem+json"


def resize(width: Any = 640, height: Any = 480, **extra: Any) -> dict[str, Any]:
    return {
        "type": "image_resize",
        "payload": {"image_url": "https://example.test/cat.png", "width": width, "height": height},
        "priority": "normal",
        **extra,
    }


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The response is RFC 9457 problem details with this status; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert isinstance(body["type"], str) and isinstance(body["title"], str)
    return body


def paths(problem: dict[str, Any]) -> list[str]:
    return [e["path"] for e in problem.get("errors", [])]


async def event_count(conn: asyncpg.Connection) -> int:
    count: int = await conn.fetchval("SELECT count(*) FROM events")
    return count


async def submit(client: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = await client.post(JOBS, json=body or resize(), headers=headers)
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


# --- submit -------------------------------------------------------------------------------


async def test_submit_answers_201_with_the_job_and_its_location(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection
) -> None:
    response = await client.post(JOBS, json=resize(priority="high"), headers=bearer())

    assert response.status_code == 201
    job = response.json()
    assert response.headers["location"] == f"{JOBS}/{job['job_id']}"
    assert job["status"] == "pending"
    assert (job["type"], job["queue"], job["priority"]) == ("image_resize", "default", "high")
    assert job["payload"]["width"] == 640
    assert (job["attempt"], job["result"], job["error"]) == (0, None, None)
    assert job["created_at"] and job["next_attempt_at"]
    assert job["started_at"] is None and job["completed_at"] is None
    again = await client.get(response.headers["location"], headers=bearer("jobs:read"))
    assert again.status_code == 200
    # The read adds the webhook deliveries that report the job (none here).
    assert again.json() == {**job, "webhook_deliveries": []}
    actors = await conn.fetch("SELECT actor, type FROM events")
    assert [(r["actor"], r["type"]) for r in actors] == [("alice", "job.submitted.v1")]


async def test_submit_takes_the_job_types_defaults_unless_the_request_overrides_them(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection
) -> None:
    default = await submit(client, bearer())
    custom = await submit(
        client, bearer(), **resize(max_attempts=7, timeout_seconds=5, queue="thumbs")
    )

    assert default["max_attempts"] == 4  # the registered image_resize default
    assert (custom["max_attempts"], custom["queue"]) == (7, "thumbs")
    timeouts = dict(await conn.fetch("SELECT job_id::text, timeout_seconds FROM jobs"))
    assert timeouts == {default["job_id"]: 60.0, custom["job_id"]: 5.0}


async def test_submit_sets_this_jobs_backoff_or_takes_the_types(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection
) -> None:
    default = await submit(client, bearer())
    custom = await submit(
        client, bearer(), **resize(backoff_base_seconds=0, backoff_cap_seconds=90.5)
    )
    rows = await conn.fetch(
        "SELECT job_id::text, backoff_base_seconds, backoff_cap_seconds FROM jobs"
    )
    backoff = {r["job_id"]: (r["backoff_base_seconds"], r["backoff_cap_seconds"]) for r in rows}
    assert backoff[custom["job_id"]] == (0.0, 90.5)
    assert backoff[default["job_id"]] != (0.0, 90.5)
    problem = assert_problem(
        await client.post(JOBS, json=resize(backoff_cap_seconds=-1), headers=bearer()), 422
    )
    assert paths(problem) == ["backoff_cap_seconds"]


async def test_delay_seconds_and_run_at_schedule_the_first_attempt(
    client: httpx.AsyncClient, bearer: Mint
) -> None:
    before = datetime.now(UTC)
    delayed = await submit(client, bearer(), **resize(delay_seconds=3600))
    at = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    scheduled = await submit(client, bearer(), **resize(run_at=at.isoformat()))

    due = datetime.fromisoformat(delayed["next_attempt_at"])
    assert before + timedelta(seconds=3600) <= due <= datetime.now(UTC) + timedelta(seconds=3600)
    assert datetime.fromisoformat(scheduled["next_attempt_at"]) == at


@pytest.mark.parametrize(
    "run_at", ["2099-01-01T00:00:00Z", "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+05:00"]
)
async def test_run_at_beyond_the_scheduling_horizon_answers_422(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection, run_at: str
) -> None:
    problem = assert_problem(
        await client.post(JOBS, json=resize(run_at=run_at), headers=bearer()), 422
    )
    assert paths(problem) == ["run_at"]
    assert await event_count(conn) == 0


async def test_run_at_and_delay_seconds_together_answer_422(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection
) -> None:
    body = resize(run_at="2031-01-01T00:00:00Z", delay_seconds=5)
    problem = assert_problem(await client.post(JOBS, json=body, headers=bearer()), 422)
    assert paths(problem) == ["delay_seconds"]
    assert await event_count(conn) == 0


async def test_unknown_job_type_answers_422_naming_the_type_field(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection
) -> None:
    body = {"type": "teleport", "payload": {}, "priority": "normal"}
    problem = assert_problem(await client.post(JOBS, json=body, headers=bearer()), 422)
    assert paths(problem) == ["type"]
    assert "teleport" in problem["detail"]
    assert await event_count(conn) == 0


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        ({"image_url": "u", "width": "wide", "height": 1}, "payload.width"),
        ({"image_url": "u", "width": 0, "height": 1}, "payload.width"),
        ({"image_url": "u", "width": 1}, "payload"),
        ({"image_url": "u", "width": 1, "height": 1, "dpi": 300}, "payload"),
    ],
)
async def test_invalid_payload_answers_422_with_the_field_path(
    client: httpx.AsyncClient,
    bearer: Mint,
    conn: asyncpg.Connection,
    payload: dict[str, Any],
    path: str,
) -> None:
    body = {"type": "image_resize", "payload": payload, "priority": "normal"}
    problem = assert_problem(await client.post(JOBS, json=body, headers=bearer()), 422)
    assert paths(problem) == [path]
    assert problem["type"].endswith("invalid-request")
    assert await event_count(conn) == 0


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"payload": {}}, "type"),
        ({"type": "noop"}, "payload"),
        ({"type": "noop", "payload": {}, "priority": "urgent"}, "priority"),
        ({"type": "noop", "payload": {}, "queue": "no spaces"}, "queue"),
        ({"type": "noop", "payload": {}, "max_attempts": 0}, "max_attempts"),
        ({"type": "noop", "payload": {}, "run_at": "2031-01-01T00:00:00"}, "run_at"),
        ({"type": "noop", "payload": {}, "surprise": 1}, "surprise"),
        ({"type": "noop", "payload": []}, "payload"),
        ({"type": "noop", "payload": {"note": "a\u0000b"}}, "payload.note"),
        ({"type": "noop", "payload": {"deep": [{"x": "\u0000"}]}}, "payload.deep[0].x"),
    ],
)
async def test_a_body_breaking_the_schema_answers_422_naming_the_field(
    client: httpx.AsyncClient,
    bearer: Mint,
    conn: asyncpg.Connection,
    body: dict[str, Any],
    path: str,
) -> None:
    problem = assert_problem(await client.post(JOBS, json=body, headers=bearer()), 422)
    assert paths(problem) == [path]
    assert await event_count(conn) == 0


async def test_a_body_that_is_not_json_answers_400(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection
) -> None:
    headers = {**bearer(), "content-type": "application/json"}
    assert_problem(await client.post(JOBS, content=b"{not json", headers=headers), 400)
    assert await event_count(conn) == 0


async def test_a_body_over_the_size_limit_answers_413(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection
) -> None:
    big = resize()
    big["payload"]["image_url"] = "x" * (65 * 1024)  # the test app's limit is 64 KiB
    assert_problem(await client.post(JOBS, json=big, headers=bearer()), 413)
    assert await event_count(conn) == 0


async def test_an_unexpected_error_is_a_bare_500_without_internals(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection
) -> None:
    body = {"type": "explode", "payload": {}, "priority": "normal"}
    problem = assert_problem(await client.post(JOBS, json=body, headers=bearer()), 500)
    assert problem == {"type": "about:blank", "title": "Internal Server Error", "status": 500}
    assert await event_count(conn) == 0


# --- idempotency --------------------------------------------------------------------------


async def test_a_repeated_submission_with_one_idempotency_key_returns_the_first_job(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection
) -> None:
    headers = {**bearer(), "Idempotency-Key": "order-42"}
    first = await client.post(JOBS, json=resize(), headers=headers)
    second = await client.post(JOBS, json=resize(), headers=headers)

    assert first.status_code == second.status_code == 201
    assert second.json()["job_id"] == first.json()["job_id"]
    assert second.headers["location"] == first.headers["location"]
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert await event_count(conn) == 1


async def test_the_same_idempotency_key_with_another_body_answers_409(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection
) -> None:
    headers = {**bearer(), "Idempotency-Key": "order-43"}
    await submit(client, headers)
    for changed in (resize(width=641), resize(priority="high"), resize(queue="other")):
        assert_problem(await client.post(JOBS, json=changed, headers=headers), 409)
    assert await event_count(conn) == 1


async def test_idempotency_keys_belong_to_their_submitter(
    client: httpx.AsyncClient, bearer: Mint
) -> None:
    alice = await submit(client, {**bearer(sub="alice"), "Idempotency-Key": "k"})
    bob = await submit(client, {**bearer(sub="bob"), "Idempotency-Key": "k"})
    assert alice["job_id"] != bob["job_id"]


async def test_racing_submissions_with_one_key_create_one_job(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection
) -> None:
    headers = {**bearer(), "Idempotency-Key": "race"}
    responses = await asyncio.gather(
        *(client.post(JOBS, json=resize(), headers=headers) for _ in range(6))
    )

    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["job_id"] for r in responses}) == 1
    assert await conn.fetchval("SELECT count(*) FROM jobs") == 1
    assert await event_count(conn) == 1


async def test_a_blank_idempotency_key_answers_422(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection
) -> None:
    headers = {**bearer(), "Idempotency-Key": "  "}
    problem = assert_problem(await client.post(JOBS, json=resize(), headers=headers), 422)
    assert paths(problem) == ["Idempotency-Key"]
    assert await event_count(conn) == 0


# --- batch --------------------------------------------------------------------------------


async def test_a_batch_is_submitted_in_one_transaction(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection
) -> None:
    body = {"jobs": [resize(width=w) for w in (1, 2, 3)]}
    response = await client.post(f"{JOBS}/batch", json=body, headers=bearer())

    assert response.status_code == 201, response.text
    jobs = response.json()["jobs"]
    assert [j["payload"]["width"] for j in jobs] == [1, 2, 3]
    rows = await conn.fetch("SELECT job_id::text, txid::text, actor FROM events")
    assert {r["job_id"] for r in rows} == {j["job_id"] for j in jobs}
    assert len({r["txid"] for r in rows}) == 1
    assert {r["actor"] for r in rows} == {"alice"}


async def test_a_repeated_batch_with_one_idempotency_key_returns_the_first_jobs(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection
) -> None:
    headers = {**bearer(), "Idempotency-Key": "import-7"}
    body = {"jobs": [resize(width=w) for w in (1, 2, 3)]}
    first = await client.post(f"{JOBS}/batch", json=body, headers=headers)
    second = await client.post(f"{JOBS}/batch", json=body, headers=headers)

    assert first.status_code == second.status_code == 201, second.text
    ids = [j["job_id"] for j in first.json()["jobs"]]
    assert [j["job_id"] for j in second.json()["jobs"]] == ids
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert await event_count(conn) == 3
    keys = await conn.fetch("SELECT idempotency_key FROM jobs ORDER BY idempotency_key")
    assert [r["idempotency_key"] for r in keys] == ["import-7/0", "import-7/1", "import-7/2"]


async def test_the_same_batch_key_with_another_batch_answers_409_and_writes_nothing(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection
) -> None:
    headers = {**bearer(), "Idempotency-Key": "import-8"}
    body = {"jobs": [resize(width=w) for w in (1, 2)]}
    assert (await client.post(f"{JOBS}/batch", json=body, headers=headers)).status_code == 201
    for changed in (
        {"jobs": [resize(width=1), resize(width=3)]},  # an item differs
        {"jobs": [resize(width=1), resize(width=2), resize(width=3)]},  # one more item
        {"jobs": [resize(width=1)]},  # one item fewer
    ):
        response = await client.post(f"{JOBS}/batch", json=changed, headers=headers)
        assert_problem(response, 409)
    assert await event_count(conn) == 2


async def test_racing_batches_with_one_key_create_one_batch(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection
) -> None:
    headers = {**bearer(), "Idempotency-Key": "import-race"}
    body = {"jobs": [resize(width=w) for w in range(1, 6)]}
    responses = await asyncio.gather(
        *(client.post(f"{JOBS}/batch", json=body, headers=headers) for _ in range(4))
    )

    assert {r.status_code for r in responses} == {201}
    assert len({tuple(j["job_id"] for j in r.json()["jobs"]) for r in responses}) == 1
    assert await conn.fetchval("SELECT count(*) FROM jobs") == 5


async def test_a_batch_with_invalid_items_is_refused_whole_naming_each_item(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection
) -> None:
    body = {
        "jobs": [
            resize(),
            resize(width="wide"),
            {"type": "teleport", "payload": {}},
            resize(run_at="2031-01-01T00:00:00Z", delay_seconds=1),
        ]
    }
    problem = assert_problem(await client.post(f"{JOBS}/batch", json=body, headers=bearer()), 422)
    assert paths(problem) == ["jobs[1].payload.width", "jobs[2].type", "jobs[3].delay_seconds"]
    assert await event_count(conn) == 0


async def test_a_batch_over_1000_jobs_answers_422(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection
) -> None:
    body = {"jobs": [{"type": "noop", "payload": {}}] * 1001}
    problem = assert_problem(await client.post(f"{JOBS}/batch", json=body, headers=bearer()), 422)
    assert paths(problem) == ["jobs"]
    assert await event_count(conn) == 0


async def test_a_batch_of_1000_jobs_is_accepted(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection
) -> None:
    body = {"jobs": [{"type": "noop", "payload": {"n": i}} for i in range(1000)]}
    response = await client.post(f"{JOBS}/batch", json=body, headers=bearer())
    assert response.status_code == 201, response.text
    assert len(response.json()["jobs"]) == 1000
    assert await conn.fetchval("SELECT count(*) FROM jobs") == 1000
    assert await rebuild.verify(conn) == []  # invariant 3 after the heaviest write


# --- read and list ------------------------------------------------------------------------


async def test_reading_an_unknown_job_answers_404(client: httpx.AsyncClient, bearer: Mint) -> None:
    problem = assert_problem(await client.get(f"{JOBS}/{uuid.uuid4()}", headers=bearer()), 404)
    assert problem["type"].endswith("unknown-job")
    assert_problem(await client.get(f"{JOBS}/not-a-uuid", headers=bearer()), 404)


async def test_listing_pages_newest_first_by_cursor_without_repeats_or_gaps(
    client: httpx.AsyncClient, bearer: Mint
) -> None:
    body = {"jobs": [{"type": "noop", "payload": {"n": i}} for i in range(7)]}
    await client.post(f"{JOBS}/batch", json=body, headers=bearer())
    singles = [
        await submit(client, bearer(), type="noop", payload={"n": 100 + i}) for i in range(3)
    ]

    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 4} | ({"cursor": cursor} if cursor else {})
        response = await client.get(JOBS, params=params, headers=bearer("jobs:read"))
        assert response.status_code == 200
        page = response.json()
        seen.extend(page["jobs"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert len(seen) == 10 and len({j["job_id"] for j in seen}) == 10
    keys = [(j["created_at"], j["job_id"]) for j in seen]
    assert keys == sorted(keys, reverse=True)
    assert [j["job_id"] for j in seen[:3]] == [s["job_id"] for s in reversed(singles)]


async def test_listing_filters_by_status_type_and_queue(
    client: httpx.AsyncClient, bearer: Mint
) -> None:
    a = await submit(client, bearer(), **resize(queue="q1"))
    b = await submit(client, bearer(), type="noop", payload={}, queue="q1")
    c = await submit(client, bearer(), type="noop", payload={}, queue="q2")
    await client.post(f"{JOBS}/{c['job_id']}/cancel", headers=bearer())

    async def ids(**params: Any) -> set[str]:
        response = await client.get(JOBS, params=params, headers=bearer())
        assert response.status_code == 200, response.text
        return {j["job_id"] for j in response.json()["jobs"]}

    assert await ids(status="pending") == {a["job_id"], b["job_id"]}
    assert await ids(status="cancelled") == {c["job_id"]}
    assert await ids(type="noop") == {b["job_id"], c["job_id"]}
    assert await ids(queue="q1") == {a["job_id"], b["job_id"]}
    assert await ids(type="noop", queue="q1", status="pending") == {b["job_id"]}
    assert await ids(status="failed") == set()


async def test_list_limit_is_capped(client: httpx.AsyncClient, bearer: Mint) -> None:
    body = {"jobs": [{"type": "noop", "payload": {"n": i}} for i in range(joblist.MAX_LIMIT + 5)]}
    assert (await client.post(f"{JOBS}/batch", json=body, headers=bearer())).status_code == 201
    response = await client.get(JOBS, params={"limit": 100_000}, headers=bearer())
    page = response.json()
    assert len(page["jobs"]) == joblist.MAX_LIMIT
    assert page["next_cursor"] is not None


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": "not-a-cursor"},
        {"limit": "many"},
        {"limit": 0},
        {"status": "sleeping"},
        {"queue": "q\u0000"},
        {"type": "noop\u0000"},
    ],
)
async def test_bad_list_parameters_answer_400(
    client: httpx.AsyncClient, bearer: Mint, params: dict[str, Any]
) -> None:
    assert_problem(await client.get(JOBS, params=params, headers=bearer()), 400)


# --- cancel and retry ---------------------------------------------------------------------


async def test_cancelling_a_pending_job_records_who_and_why(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection
) -> None:
    job = await submit(client, bearer())
    response = await client.post(
        f"{JOBS}/{job['job_id']}/cancel",
        json={"reason": "not needed"},
        headers=bearer("jobs:cancel", sub="carol"),
    )

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    assert response.json()["completed_at"] is not None
    row = await conn.fetchrow("SELECT actor, data FROM events WHERE version = 2")
    assert row is not None and row["actor"] == "carol"
    assert "not needed" in row["data"]


async def test_a_cancel_reason_postgresql_cannot_store_answers_422(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection
) -> None:
    job = await submit(client, bearer())
    body = {"reason": "nul\u0000"}
    problem = assert_problem(
        await client.post(f"{JOBS}/{job['job_id']}/cancel", json=body, headers=bearer()), 422
    )
    assert paths(problem) == ["reason"]
    assert await event_count(conn) == 1


async def test_racing_cancels_record_one_cancellation_and_the_rest_conflict(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection
) -> None:
    job = await submit(client, bearer())
    responses = await asyncio.gather(
        *(client.post(f"{JOBS}/{job['job_id']}/cancel", headers=bearer()) for _ in range(5))
    )

    assert sorted(r.status_code for r in responses) == [200, 409, 409, 409, 409]
    for refused in (r for r in responses if r.status_code == 409):
        assert_problem(refused, 409)
    assert await conn.fetchval("SELECT count(*) FROM events WHERE type = 'job.cancelled.v1'") == 1


async def test_a_processing_job_can_be_cancelled(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    job = await submit(client, bearer())
    job_id = uuid.UUID(job["job_id"])
    claim = commands.ClaimJob(worker_id="w1", lease_seconds=30)
    await event_store.execute(conn, job_id, claim, actor="worker:w1")

    response = await client.post(f"{JOBS}/{job_id}/cancel", headers=bearer())
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"


async def test_cancelling_a_finished_job_answers_409(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    job = await submit(client, bearer())
    job_id = uuid.UUID(job["job_id"])
    await event_store.execute(
        conn, job_id, commands.ClaimJob(worker_id="w1", lease_seconds=30), actor="worker:w1"
    )
    await event_store.execute(
        conn, job_id, commands.CompleteJob(worker_id="w1", result={"ok": True}), actor="worker:w1"
    )

    problem = assert_problem(await client.post(f"{JOBS}/{job_id}/cancel", headers=bearer()), 409)
    assert "completed" in problem["detail"]
    assert await conn.fetchval("SELECT max(version) FROM events") == 3


async def test_cancelling_or_retrying_an_unknown_job_answers_404(
    client: httpx.AsyncClient, bearer: Mint
) -> None:
    for action in ("cancel", "retry"):
        assert_problem(await client.post(f"{JOBS}/{uuid.uuid4()}/{action}", headers=bearer()), 404)


async def test_retrying_a_failed_job_resets_attempts_and_keeps_history(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    job = await submit(client, bearer(), **resize(max_attempts=1))
    job_id = uuid.UUID(job["job_id"])
    await event_store.execute(
        conn, job_id, commands.ClaimJob(worker_id="w1", lease_seconds=30), actor="worker:w1"
    )
    fail = commands.FailAttempt(
        worker_id="w1", error="boom", permanent=False, retry_delay=timedelta(seconds=1)
    )
    await event_store.execute(conn, job_id, fail, actor="worker:w1")
    failed = (await client.get(f"{JOBS}/{job_id}", headers=bearer())).json()
    assert (failed["status"], failed["attempt"], failed["error"]) == ("failed", 1, "boom")

    response = await client.post(
        f"{JOBS}/{job_id}/retry", json={"max_attempts": 3}, headers=bearer(sub="dave")
    )

    assert response.status_code == 200, response.text
    retried = response.json()
    assert (retried["status"], retried["attempt"], retried["max_attempts"]) == ("pending", 0, 3)
    assert retried["error"] is None and retried["next_attempt_at"] is not None
    history = await conn.fetch("SELECT type, actor FROM events ORDER BY version")
    assert [(r["type"], r["actor"]) for r in history] == [
        ("job.submitted.v1", "alice"),
        ("job.claimed.v1", "worker:w1"),
        ("job.failed.v1", "worker:w1"),
        ("job.retried.v1", "dave"),
    ]


async def test_retrying_a_cancelled_job_runs_it_again(
    client: httpx.AsyncClient, bearer: Mint
) -> None:
    job = await submit(client, bearer())
    await client.post(f"{JOBS}/{job['job_id']}/cancel", headers=bearer())
    response = await client.post(f"{JOBS}/{job['job_id']}/retry", headers=bearer())
    assert response.status_code == 200
    assert response.json()["status"] == "pending"


async def test_retrying_a_job_that_has_not_finished_answers_409(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection
) -> None:
    job = await submit(client, bearer())
    assert_problem(await client.post(f"{JOBS}/{job['job_id']}/retry", headers=bearer()), 409)
    assert await event_count(conn) == 1


async def test_the_default_app_validates_payloads_against_the_built_in_job_types(
    dbs: Databases, auth_config: auth.AuthConfig, bearer: Mint, conn: asyncpg.Connection
) -> None:
    app = app_module.create_app(dbs.app, auth_config=auth_config, pool_size=2)
    async with running(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            bad = await http.post(JOBS, json=resize(width="wide"), headers=bearer())
            good = await http.post(JOBS, json=resize(), headers=bearer())

    assert paths(assert_problem(bad, 422)) == ["payload.width"]
    assert good.status_code == 201, good.text
    assert good.json()["max_attempts"] == 3  # image_resize's registered default
    assert await event_count(conn) == 1
