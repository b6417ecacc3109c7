"""`ledger.client` without a server: problem details to typed errors, the stream's lines,
and a client process that never loads the server's code."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import msgspec
import pytest

from ledger import client
from ledger.client import errors, waiting


def problem(status: int, slug: str | None, **headers: str) -> httpx.Response:
    body = {
        "type": f"urn:job-ledger:problem:{slug}" if slug else "about:blank",
        "title": "t",
        "status": status,
        "detail": "d",
    }
    return httpx.Response(
        status,
        content=msgspec.json.encode(body),
        headers={"Content-Type": "application/problem+json", **headers},
    )


@pytest.mark.parametrize(
    ("status", "slug", "kind"),
    [
        (404, "unknown-job", client.UnknownJob),
        (409, "invalid-transition", client.InvalidTransition),
        (409, "idempotency-key-reused", client.IdempotencyConflict),
        (409, "version-conflict", client.VersionConflict),
        (409, "checkpoint-base-altered", client.Conflict),
        (422, "invalid-payload", client.InvalidRequest),
        (400, "bad-cursor", client.InvalidRequest),
        (400, None, client.InvalidRequest),
        (401, "unauthorized", client.Unauthorized),
        (403, "forbidden", client.Forbidden),
        (404, None, client.NotFound),
        (413, None, client.TooLarge),
        (503, "database-unavailable", client.Unavailable),
        (431, None, client.ApiError),
        (500, None, client.ApiError),
    ],
)
def test_a_problem_maps_to_the_error_of_its_type_else_of_its_status(
    status: int, slug: str | None, kind: type[client.ApiError]
) -> None:
    error = errors.error_of(problem(status, slug))

    assert type(error) is kind
    assert isinstance(error, client.ClientError)
    assert (error.status, error.problem.detail) == (status, "d")


def test_an_answer_that_is_not_problem_details_maps_by_its_status() -> None:
    page = httpx.Response(502, content=b"<html>Bad Gateway</html>")
    not_found = httpx.Response(404, content=b"")

    assert type(errors.error_of(page)) is client.ApiError
    assert errors.error_of(page).problem.title == "Bad Gateway"
    assert type(errors.error_of(not_found)) is client.NotFound


def test_unavailable_carries_retry_after_in_either_form() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)

    seconds = errors.error_of(problem(503, "database-unavailable", **{"Retry-After": "5"}))
    dated = errors.error_of(problem(503, None, **{"Retry-After": later}))

    assert isinstance(seconds, client.Unavailable) and seconds.retry_after == 5.0
    assert isinstance(dated, client.Unavailable) and 100 < (dated.retry_after or 0) <= 120
    assert isinstance(errors.error_of(problem(503, None)), client.Unavailable)
    assert errors.error_of(problem(503, None)).retry_after is None  # type: ignore[attr-defined]


def test_the_wait_picks_its_jobs_events_out_of_the_stream() -> None:
    mine, other = uuid.uuid4(), uuid.uuid4()
    wait = waiting.Wait(mine, timeout=60)
    wait.stream()

    def event(job_id: uuid.UUID, cursor: str) -> list[str]:
        data = {
            "cursor": cursor,
            "position": 1,
            "job_id": str(job_id),
            "version": 2,
            "type": "job.claimed.v1",
            "data": {},
            "actor": "w",
            "occurred_at": "2026-01-01T00:00:00Z",
            "prev_hash": "00",
            "hash": "11",
        }
        return [
            f"id: {cursor}",
            "event: job.claimed.v1",
            f"data: {msgspec.json.encode(data).decode()}",
        ]

    said = [wait.line(line) for line in ["event: ready", "retry: 500", ""]]
    said += [wait.line(line) for line in [": a comment", *event(other, "7.1"), ""]]
    assert said == [None] * 8 and wait.last_id == "7.1" and wait.reconnect_delay == 0.5

    said = [wait.line(line) for line in [*event(mine, "7.2"), ""]]
    assert said == [None, None, None, True] and wait.last_id == "7.2"
    assert wait.stream().headers["Last-Event-ID"] == "7.2"


def test_importing_the_client_loads_no_server_code() -> None:
    probe = "import json, sys, ledger.client; print(json.dumps(sorted(sys.modules)))"
    ran = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = json.loads(ran.stdout)

    server = ("litestar", "asyncpg", "uvicorn", "projections", "audit", "workers", "service")
    server += ("ledger.store", "ledger.database", "ledger.auth")
    assert [m for m in loaded if m in server or m.startswith(tuple(f"{s}." for s in server))] == []
    assert "ledger.client" in loaded
