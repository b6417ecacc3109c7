"""POST /api/v1/jobs/retry and /cancel through the real app: the token's tenant only, the
request id and its repeat, scopes, and bad input as problem details naming the field."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from ledger import auth

JOBS = "/api/v1/jobs"
PROBLEM = "application/problem+json"
ALL = ("jobs:write", "jobs:read", "jobs:cancel", "audit:read")


def _token(config: auth.AuthConfig, tenant: str, *scopes: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {config.mint('alice', scopes or ALL, tenant=tenant)}"}


async def _submit(client: httpx.AsyncClient, headers: dict[str, str], count: int) -> list[str]:
    ids = []
    for n in range(count):
        body = {"type": "noop", "payload": {"n": n}}
        response = await client.post(JOBS, json=body, headers=headers)
        assert response.status_code == 201, response.text
        ids.append(response.json()["job_id"])
    return ids


async def _statuses(client: httpx.AsyncClient, headers: dict[str, str], ids: list[str]) -> set[str]:
    found = set()
    for job_id in ids:
        response = await client.get(f"{JOBS}/{job_id}", headers=headers)
        assert response.status_code == 200, response.text
        found.add(response.json()["status"])
    return found


async def test_bulk_cancel_and_retry_change_only_the_tokens_tenants_jobs(
    client: httpx.AsyncClient, auth_config: auth.AuthConfig
) -> None:
    acme, globex = _token(auth_config, "acme"), _token(auth_config, "globex")
    acme_jobs = await _submit(client, acme, 3)
    globex_jobs = await _submit(client, globex, 2)

    cancelled = await client.post(
        f"{JOBS}/cancel",
        json={"filter": {"status": "pending", "type": "noop"}, "reason": "tidy"},
        headers={**acme, "Idempotency-Key": "tidy-1"},
    )
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert (body["matched"], body["changed"], body["repeated"]) == (3, 3, False)
    assert (body["request_id"], body["action"]) == ("tidy-1", "cancel")
    assert sorted(body["job_ids"]) == sorted(acme_jobs)
    assert await _statuses(client, acme, acme_jobs) == {"cancelled"}
    assert await _statuses(client, globex, globex_jobs) == {"pending"}

    retried = await client.post(
        f"{JOBS}/retry", json={"filter": {"status": "cancelled"}, "limit": 2}, headers=acme
    )
    assert retried.status_code == 200, retried.text
    assert (retried.json()["matched"], retried.json()["changed"]) == (2, 2)
    assert retried.json()["job_ids"] == acme_jobs[:2]  # the oldest first
    history = await client.get(f"{JOBS}/{acme_jobs[0]}/events", headers=acme)
    last = history.json()["events"][-1]
    assert last["type"] == "job.retried.v1"
    assert last["data"]["bulk_request_id"] == retried.json()["request_id"]

    # globex's cancel of its own jobs, under the same request id: another tenant's request.
    theirs = await client.post(
        f"{JOBS}/cancel",
        json={"filter": {"status": "pending"}},
        headers={**globex, "Idempotency-Key": "tidy-1"},
    )
    assert (theirs.json()["changed"], theirs.json()["repeated"]) == (2, False)


async def test_a_repeated_request_id_changes_nothing_more_and_says_so(
    client: httpx.AsyncClient, auth_config: auth.AuthConfig
) -> None:
    acme = _token(auth_config, "acme")
    first = await _submit(client, acme, 2)
    request = {
        "json": {"filter": {"status": "pending"}},
        "headers": {**acme, "Idempotency-Key": "k"},
    }
    done = await client.post(f"{JOBS}/cancel", **request)
    assert done.json()["changed"] == 2
    later = await _submit(client, acme, 1)

    again = await client.post(f"{JOBS}/cancel", **request)

    assert again.status_code == 200, again.text
    body = again.json()
    assert (body["matched"], body["changed"], body["repeated"]) == (0, 0, True)
    assert sorted(body["job_ids"]) == sorted(first)
    assert await _statuses(client, acme, later) == {"pending"}
    other_action = await client.post(
        f"{JOBS}/retry",
        json={"filter": {"status": "cancelled"}},
        headers={**acme, "Idempotency-Key": "k"},
    )
    assert other_action.status_code == 409, other_action.text


@pytest.mark.parametrize(
    ("route", "body", "status", "path"),
    [
        ("retry", {"filter": {"status": "failed"}, "limit": 1001}, 400, "limit"),
        ("retry", {"filter": {}}, 400, "filter.status"),
        ("retry", {"filter": {"status": "pending"}}, 400, "filter.status"),
        ("cancel", {"filter": {"status": "failed"}}, 400, "filter.status"),
        ("cancel", {"filter": {"status": "bogus"}}, 422, "filter.status"),
        ("retry", {"filter": {"status": "failed", "owner": "x"}}, 422, "filter.owner"),
        (
            "retry",
            {"filter": {"status": "failed", "failed_before": "yesterday"}},
            422,
            "filter.failed_before",
        ),
        (
            "retry",
            {"filter": {"status": "failed", "failed_after": "2024-05-01T10:00:00"}},
            422,
            "filter.failed_after",
        ),
        ("retry", {"limit": 5}, 422, "filter"),
        ("retry", {"filter": {"status": "failed"}, "reason": "x"}, 422, "reason"),
    ],
    ids=[
        "limit past the most",
        "empty filter",
        "status retry cannot change",
        "status cancel cannot change",
        "unknown status",
        "unknown filter field",
        "bad timestamp",
        "timestamp without offset",
        "no filter",
        "unknown field",
    ],
)
async def test_a_bad_bulk_request_is_a_problem_naming_the_field(
    client: httpx.AsyncClient,
    auth_config: auth.AuthConfig,
    route: str,
    body: dict[str, Any],
    status: int,
    path: str,
) -> None:
    response = await client.post(f"{JOBS}/{route}", json=body, headers=_token(auth_config, "acme"))
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert path in [e["path"] for e in response.json()["errors"]], response.text


@pytest.mark.parametrize(
    ("route", "scopes"),
    [("retry", ("jobs:read", "jobs:cancel")), ("cancel", ("jobs:read", "jobs:write"))],
)
async def test_bulk_actions_need_the_single_job_routes_scopes(
    client: httpx.AsyncClient, auth_config: auth.AuthConfig, route: str, scopes: tuple[str, ...]
) -> None:
    status = "failed" if route == "retry" else "pending"
    response = await client.post(
        f"{JOBS}/{route}",
        json={"filter": {"status": status}},
        headers=_token(auth_config, "acme", *scopes),
    )
    assert response.status_code == 403, response.text
