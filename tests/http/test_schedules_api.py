"""The schedules API through the real app and a real PostgreSQL: changes by events,
RFC 9457 problems for bad schedules, slots with their outcome, tenant isolation."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from ledger import auth
from tests.http.test_jobs_api import assert_problem

SCHEDULES = "/api/v1/schedules"


def token(config_: auth.AuthConfig, *scopes: str, tenant: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {config_.mint('ops', scopes, tenant=tenant)}"}


def body(**fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"id": "nightly", "cron": "0 3 * * *", "timezone": "Europe/Paris"}
    out["job"] = {"type": "noop", "payload": {"n": 1}}
    out.update(fields)
    return out


async def test_a_schedule_is_created_paused_resumed_triggered_and_deleted(
    client: httpx.AsyncClient, auth_config: auth.AuthConfig
) -> None:
    admin = token(auth_config, "admin")
    created = await client.post(SCHEDULES, json=body(), headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["next_slot"].endswith("T01:00:00Z") or created.json()["next_slot"]
    again = await client.post(SCHEDULES, json=body(), headers=admin)
    assert again.status_code == 409
    paused = await client.post(
        f"{SCHEDULES}/nightly/pause", json={"note": "migration"}, headers=admin
    )
    assert (paused.json()["paused"], paused.json()["note"]) == (True, "migration")
    resumed = await client.post(f"{SCHEDULES}/nightly/resume", headers=admin)
    assert resumed.json()["paused"] is False
    fired = await client.post(f"{SCHEDULES}/nightly/trigger", headers=admin)
    assert fired.status_code == 201, fired.text
    assert fired.json()["job"]["schedule_id"] == "nightly"
    listed = await client.get(SCHEDULES, headers=token(auth_config, "jobs:read"))
    assert [s["id"] for s in listed.json()["schedules"]] == ["nightly"]
    slots = await client.get(
        f"{SCHEDULES}/nightly/slots",
        params={"from": "2099-01-01T00:00:00Z", "to": "2099-01-03T00:00:00Z"},
        headers=admin,
    )
    assert [s["outcome"] for s in slots.json()["slots"]] == ["pending", "pending"], slots.text
    gone = await client.delete(f"{SCHEDULES}/nightly", headers=admin)
    assert gone.status_code == 200
    missing = await client.get(f"{SCHEDULES}/nightly", headers=admin)
    assert_problem(missing, 404)


async def test_writes_need_schedules_write(
    client: httpx.AsyncClient, auth_config: auth.AuthConfig
) -> None:
    refused = await client.post(SCHEDULES, json=body(), headers=token(auth_config, "jobs:write"))
    assert_problem(refused, 403)
    allowed = await client.post(
        SCHEDULES, json=body(), headers=token(auth_config, "schedules:write")
    )
    assert allowed.status_code == 201, allowed.text


@pytest.mark.parametrize(
    "fields",
    [
        {"cron": "61 * * * *"},
        {"timezone": "Mars/Olympus"},
        {"interval_seconds": 60},
        {
            "cron": None,
            "interval_seconds": 60,
            "start_at": "2026-02-01T00:00:00Z",
            "end_at": "2026-01-01T00:00:00Z",
        },
        {"overlap": "sometimes"},
        {"job": {"type": "noop", "payload": {}, "run_at": "2026-01-01T00:00:00Z"}},
    ],
)
async def test_bad_schedules_are_problems(
    client: httpx.AsyncClient, auth_config: auth.AuthConfig, fields: dict[str, Any]
) -> None:
    answer = await client.post(SCHEDULES, json=body(**fields), headers=token(auth_config, "admin"))
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")


async def test_a_tenant_sees_only_its_own_schedules(
    client: httpx.AsyncClient, auth_config: auth.AuthConfig
) -> None:
    acme = token(auth_config, "admin", tenant="acme")
    globex = token(auth_config, "admin", tenant="globex")
    assert (await client.post(SCHEDULES, json=body(), headers=acme)).status_code == 201
    assert_problem(await client.get(f"{SCHEDULES}/nightly", headers=globex), 404)
    assert (await client.get(SCHEDULES, headers=globex)).json() == {"schedules": []}
    assert (await client.post(SCHEDULES, json=body(), headers=globex)).status_code == 201


async def test_recent_slots_answer_the_last_outcomes_and_check_their_limit(
    client: httpx.AsyncClient, auth_config: auth.AuthConfig
) -> None:
    admin = token(auth_config, "admin")
    assert (await client.post(SCHEDULES, json=body(), headers=admin)).status_code == 201
    recent = await client.get(f"{SCHEDULES}/nightly/slots/recent", headers=admin)
    assert recent.status_code == 200, recent.text
    assert recent.json() == {"slots": []}
    assert_problem(await client.get(f"{SCHEDULES}/nowhere/slots/recent", headers=admin), 404)
    too_many = await client.get(
        f"{SCHEDULES}/nightly/slots/recent", params={"limit": 101}, headers=admin
    )
    assert 400 <= too_many.status_code < 500
    assert too_many.headers["content-type"].startswith("application/problem+json")
