"""Bad input through the real app and a real PostgreSQL: each is a 4xx problem, never a 500,
and nothing is written; and idempotent repeats recognise every number they were sent."""

from __future__ import annotations

import base64
import math
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
import pytest_asyncio
from litestar import Litestar

from ledger import auth, jobtypes
from service import app as app_module
from tests.conftest import Databases
from tests.http.conftest import SECRET, Mint, running
from workers.handlers import email_send

JOBS = "/api/v1/jobs"
PROBLEM = "application/problem+json"
# Instants Python can parse but not carry to UTC (so not to PostgreSQL): year 0 and 10000.
UNSTORABLE_INSTANTS = ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00")


def assert_problem(response: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert response.status_code in statuses, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == response.status_code
    return body


def paths(problem: dict[str, Any]) -> list[str]:
    return [e["path"] for e in problem.get("errors", [])]


async def event_count(conn: asyncpg.Connection) -> int:
    count: int = await conn.fetchval("SELECT count(*) FROM events")
    return count


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def nested_text(depth: int) -> bytes:
    """A JSON body `{"type": "noop", "payload": {"a": [[[...]]]}}` built as text (a Python
    encoder would hit its own recursion limit first)."""
    return b'{"type": "noop", "payload": {"a": ' + b"[" * depth + b"]" * depth + b"}}"


# --- 4. deep nesting ----------------------------------------------------------------------


@pytest.mark.parametrize("depth", [101, 1000])
async def test_a_payload_nested_too_deeply_answers_422(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection, depth: int
) -> None:
    body = {"type": "noop", "payload": nested(depth)}
    problem = assert_problem(await client.post(JOBS, json=body, headers=bearer()), 422)
    assert paths(problem) == ["payload"]
    batch = {"jobs": [{"type": "noop", "payload": {}}, body]}
    problem = assert_problem(await client.post(f"{JOBS}/batch", json=batch, headers=bearer()), 422)
    assert paths(problem) == ["jobs[1].payload"]
    assert await event_count(conn) == 0


async def test_a_payload_at_the_depth_limit_is_accepted(
    client: httpx.AsyncClient, bearer: Mint
) -> None:
    response = await client.post(
        JOBS, json={"type": "noop", "payload": nested(99)}, headers=bearer()
    )
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("depth", [1000, 2000, 20_000])
async def test_a_body_nested_beyond_the_decoder_answers_4xx(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection, depth: int
) -> None:
    headers = {**bearer(), "content-type": "application/json"}
    text = nested_text(depth)
    assert_problem(await client.post(JOBS, content=text, headers=headers), 400, 422)
    batch = b'{"jobs": [' + text + b"]}"
    assert_problem(await client.post(f"{JOBS}/batch", content=batch, headers=headers), 400, 422)
    reason = b'{"reason": ' + b"[" * depth + b"]" * depth + b"}"
    job_id = uuid.uuid4()
    for action in ("cancel", "retry"):
        response = await client.post(f"{JOBS}/{job_id}/{action}", content=reason, headers=headers)
        assert_problem(response, 400, 422)
    assert await event_count(conn) == 0


# --- 4. instants PostgreSQL cannot be given -----------------------------------------------


def list_cursor(created_at: str) -> str:
    raw = f"{created_at}|{uuid.uuid4()}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize("instant", UNSTORABLE_INSTANTS)
async def test_a_list_cursor_at_an_unstorable_instant_answers_400(
    client: httpx.AsyncClient, bearer: Mint, instant: str
) -> None:
    response = await client.get(JOBS, params={"cursor": list_cursor(instant)}, headers=bearer())
    assert_problem(response, 400)


@pytest.mark.parametrize("instant", UNSTORABLE_INSTANTS)
async def test_as_of_an_unstorable_instant_answers_400(
    client: httpx.AsyncClient, bearer: Mint, instant: str
) -> None:
    response = await client.get(
        f"{JOBS}/{uuid.uuid4()}", params={"as_of": instant}, headers=bearer()
    )
    assert paths(assert_problem(response, 400)) == ["as_of"]


@pytest.mark.parametrize("instant", UNSTORABLE_INSTANTS)
@pytest.mark.parametrize("name", ["since", "until"])
async def test_feed_filters_at_an_unstorable_instant_answer_400(
    client: httpx.AsyncClient, bearer: Mint, instant: str, name: str
) -> None:
    headers = bearer("audit:read")
    response = await client.get("/api/v1/events", params={name: instant}, headers=headers)
    assert paths(assert_problem(response, 400)) == [name]
    # The live feed refuses them before it starts streaming.
    response = await client.get("/api/v1/events/stream", params={name: instant}, headers=headers)
    assert paths(assert_problem(response, 400)) == [name]


# --- 5. idempotent repeats and numbers ----------------------------------------------------

NUMBERS = [
    1e23,
    -1e23,
    1e300,
    1e-300,
    1.5e-7,
    0.1,
    1e16,
    2.5,
    10**30,
    -(2**63),
    123456789012345678901234567890.0,
]


@pytest.mark.parametrize("number", NUMBERS, ids=repr)
async def test_an_idempotent_repeat_recognises_every_number_it_was_sent(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection, number: float
) -> None:
    body = {"type": "noop", "payload": {"x": number, "deep": {"list": [number, {"y": number}]}}}
    headers = {**bearer(), "Idempotency-Key": f"numbers-{number!r}"}
    first = await client.post(JOBS, json=body, headers=headers)
    again = await client.post(JOBS, json=body, headers=headers)
    assert first.status_code == again.status_code == 201, again.text
    assert again.json()["job_id"] == first.json()["job_id"]
    assert again.headers["idempotent-replayed"] == "true"

    batch = {"jobs": [{"type": "noop", "payload": {}}, body]}
    headers = {**bearer(), "Idempotency-Key": f"batch-{number!r}"}
    first = await client.post(f"{JOBS}/batch", json=batch, headers=headers)
    again = await client.post(f"{JOBS}/batch", json=batch, headers=headers)
    assert first.status_code == again.status_code == 201, again.text
    assert [j["job_id"] for j in again.json()["jobs"]] == [
        j["job_id"] for j in first.json()["jobs"]
    ]
    assert again.headers["idempotent-replayed"] == "true"
    assert await event_count(conn) == 3


@pytest.mark.parametrize(
    ("sent", "then"),
    [(1e23, 1e22), (1e23, math.nextafter(1e23, math.inf)), (1, True), (0, False), (1, "1")],
    ids=repr,
)
async def test_an_idempotent_repeat_still_refuses_another_number(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection, sent: Any, then: Any
) -> None:
    headers = {**bearer(), "Idempotency-Key": f"other-{sent!r}-{then!r}"}
    first = await client.post(JOBS, json={"type": "noop", "payload": {"x": sent}}, headers=headers)
    assert first.status_code == 201, first.text
    again = await client.post(JOBS, json={"type": "noop", "payload": {"x": then}}, headers=headers)
    assert_problem(again, 409)
    batch = {"jobs": [{"type": "noop", "payload": {"x": sent}}]}
    headers = {**headers, "Idempotency-Key": f"batch-other-{sent!r}-{then!r}"}
    assert (await client.post(f"{JOBS}/batch", json=batch, headers=headers)).status_code == 201
    batch = {"jobs": [{"type": "noop", "payload": {"x": then}}]}
    assert_problem(await client.post(f"{JOBS}/batch", json=batch, headers=headers), 409)
    assert await event_count(conn) == 2


# --- 7. Content-Type ----------------------------------------------------------------------

BODY = b'{"type": "noop", "payload": {}}'


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "application/xml", "text/json"],
)
async def test_a_body_that_is_not_declared_json_answers_415(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection, content_type: str | None
) -> None:
    headers = bearer()
    if content_type is not None:
        headers["content-type"] = content_type
    assert_problem(await client.post(JOBS, content=BODY, headers=headers), 415)
    batch = b'{"jobs": [' + BODY + b"]}"
    assert_problem(await client.post(f"{JOBS}/batch", content=batch, headers=headers), 415)
    for action in ("cancel", "retry"):
        response = await client.post(
            f"{JOBS}/{uuid.uuid4()}/{action}", content=b"{}", headers=headers
        )
        assert_problem(response, 415)
    assert await event_count(conn) == 0


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/vnd.x+json",
    ],
)
async def test_json_and_json_suffixed_bodies_are_accepted(
    client: httpx.AsyncClient, bearer: Mint, content_type: str
) -> None:
    headers = {**bearer(), "content-type": content_type}
    response = await client.post(JOBS, content=BODY, headers=headers)
    assert response.status_code == 201, response.text


async def test_cancel_without_a_body_needs_no_content_type(
    client: httpx.AsyncClient, bearer: Mint
) -> None:
    job = (await client.post(JOBS, json={"type": "noop", "payload": {}}, headers=bearer())).json()
    response = await client.post(f"{JOBS}/{job['job_id']}/cancel", headers=bearer())
    assert response.status_code == 200, response.text


# --- 7. no loose coercion -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("delay_seconds", "5"),
        ("run_at", 1_700_000_000),
        ("run_at", 1.7e9),
        ("max_attempts", "3"),
        ("timeout_seconds", "60"),
        ("backoff_base_seconds", "1"),
        ("priority", 1),
        ("queue", 5),
    ],
)
async def test_a_field_of_the_wrong_json_type_answers_422(
    client: httpx.AsyncClient, bearer: Mint, conn: asyncpg.Connection, field: str, value: Any
) -> None:
    body = {"type": "noop", "payload": {}, field: value}
    problem = assert_problem(await client.post(JOBS, json=body, headers=bearer()), 422)
    assert paths(problem) == [field]
    batch = {"jobs": [{"type": "noop", "payload": {}}, body]}
    problem = assert_problem(await client.post(f"{JOBS}/batch", json=batch, headers=bearer()), 422)
    assert paths(problem) == [f"jobs[1].{field}"]
    assert await event_count(conn) == 0


async def test_retry_with_max_attempts_as_text_answers_422(
    client: httpx.AsyncClient, bearer: Mint
) -> None:
    response = await client.post(
        f"{JOBS}/{uuid.uuid4()}/retry", json={"max_attempts": "3"}, headers=bearer()
    )
    assert paths(assert_problem(response, 422)) == ["max_attempts"]


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
async def test_a_token_whose_time_claim_is_text_answers_401(
    client: httpx.AsyncClient, conn: asyncpg.Connection, claim: str
) -> None:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": "alice", "scope": "jobs:write", "exp": now + 300}
    claims[claim] = str(now + 300 if claim == "exp" else now - 10)
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    response = await client.post(
        JOBS,
        json={"type": "noop", "payload": {}},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert_problem(response, 401)
    assert await event_count(conn) == 0


# --- 7. email header fields ---------------------------------------------------------------

LINE_BREAKS = ["\r", "\n", "\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e"]


@pytest.fixture
def email_app(dbs: Databases, auth_config: auth.AuthConfig) -> Litestar:
    registry = jobtypes.Registry()
    registry.add(jobtypes.REGISTRY.get("email_send"))
    assert registry.get("email_send").payload_type is email_send.EmailSendPayload
    return app_module.create_app(dbs.app, auth_config=auth_config, registry=registry, pool_size=2)


@pytest_asyncio.fixture(loop_scope="session")
async def email_client(email_app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    async with running(email_app):
        transport = httpx.ASGITransport(app=email_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


def email(**fields: Any) -> dict[str, Any]:
    payload = {"to": ["bob@example.test"], "subject": "hello", "body": "hi", **fields}
    return {"type": "email_send", "payload": payload}


@pytest.mark.parametrize("char", LINE_BREAKS, ids=lambda c: f"U+{ord(c):04X}")
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("subject", "hello{}Bcc: eve@example.test"),
        ("from", "alice{}@example.test"),
        ("reply_to", "alice@example.test{}"),
        ("to", ["bob{}@example.test"]),
        ("cc", ["carol@exa{}mple.test"]),
    ],
)
async def test_an_email_header_field_with_a_line_break_answers_422(
    email_client: httpx.AsyncClient,
    bearer: Mint,
    conn: asyncpg.Connection,
    char: str,
    field: str,
    value: Any,
) -> None:
    filled = [v.format(char) for v in value] if isinstance(value, list) else value.format(char)
    response = await email_client.post(JOBS, json=email(**{field: filled}), headers=bearer())
    problem = assert_problem(response, 422)
    assert paths(problem)[0].startswith(f"payload.{field}")
    assert await event_count(conn) == 0


async def test_an_email_with_a_plain_unicode_subject_is_accepted(
    email_client: httpx.AsyncClient, bearer: Mint
) -> None:
    response = await email_client.post(
        JOBS, json=email(subject="Grüße\tà tous — ✓"), headers=bearer()
    )
    assert response.status_code == 201, response.text
