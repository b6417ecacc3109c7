"""The tenant a request acts in, from the token to the request (the database does not
isolate tenants yet: these tests check what the guard decides and what /stats reports)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import jwt
import pytest

from ledger import auth, config, jobtypes
from service import app as app_module
from tests.conftest import Databases
from tests.http.conftest import SECRET, running

STATS = "/api/v1/stats"
JOBS = "/api/v1/jobs"
BODY = {"type": "noop", "payload": {}}


def token(
    config_: auth.AuthConfig, *scopes: str, tenant: str | None = None, sub: str = "alice"
) -> dict[str, str]:
    return {"Authorization": f"Bearer {config_.mint(sub, scopes, tenant=tenant)}"}


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = response.json()
    assert (problem["status"], problem["type"]) == (status, f"urn:job-ledger:problem:{slug}")
    return problem


@contextlib.asynccontextmanager
async def serving(
    dbs: Databases, registry: jobtypes.Registry, env: dict[str, str]
) -> AsyncIterator[tuple[httpx.AsyncClient, auth.AuthConfig]]:
    """The app as `ledger api` builds it from the environment `env`, and its auth config."""
    settings = config.from_env({"JWT_SECRET": SECRET, **env})
    app = app_module.create_app(dbs.app, registry=registry, settings=settings, pool_size=2)
    async with running(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http, auth.from_settings(settings)


async def test_stats_show_the_tenant_the_token_acts_in(
    client: httpx.AsyncClient, auth_config: auth.AuthConfig
) -> None:
    without = await client.get(STATS, headers=token(auth_config, "jobs:read"))
    assert without.status_code == 200, without.text
    assert without.json()["tenant"] == "default"

    acme = await client.get(STATS, headers=token(auth_config, "jobs:read", tenant="acme"))
    assert acme.status_code == 200, acme.text
    assert acme.json()["tenant"] == "acme"
    assert acme.json()["by_status"] == without.json()["by_status"]  # the overview is unchanged


async def test_tenants_admin_reads_another_tenant_with_the_query_parameter(
    client: httpx.AsyncClient, auth_config: auth.AuthConfig
) -> None:
    operator = token(auth_config, "jobs:read", "tenants:admin", tenant="acme")
    response = await client.get(STATS, params={"tenant": "globex"}, headers=operator)
    assert response.status_code == 200, response.text
    assert response.json()["tenant"] == "globex"

    unclaimed = token(auth_config, "jobs:read", "tenants:admin")
    assert (await client.get(STATS, headers=unclaimed)).json()["tenant"] == "default"
    listed = await client.get(JOBS, params={"tenant": "globex"}, headers=unclaimed)
    assert listed.status_code == 200, listed.text

    malformed = await client.get(STATS, params={"tenant": "glo bex"}, headers=operator)
    assert_problem(malformed, 400, "invalid-tenant")
    twice = await client.get(
        STATS, params=[("tenant", "globex"), ("tenant", "initech")], headers=operator
    )
    assert_problem(twice, 400, "invalid-tenant")


@pytest.mark.parametrize(
    "scopes", [("jobs:read",), ("admin",)], ids=["without tenants:admin", "with admin"]
)
async def test_the_query_parameter_needs_tenants_admin(
    client: httpx.AsyncClient, auth_config: auth.AuthConfig, scopes: tuple[str, ...]
) -> None:
    for tenant in ("globex", "acme"):  # another tenant, or its own: both need the scope
        response = await client.get(
            STATS, params={"tenant": tenant}, headers=token(auth_config, *scopes, tenant="acme")
        )
        problem = assert_problem(response, 403, "forbidden")
        assert "tenants:admin" in problem["detail"]
        challenge = response.headers["www-authenticate"]
        assert 'error="insufficient_scope"' in challenge and 'scope="tenants:admin"' in challenge


async def test_admin_still_grants_every_other_scope(
    client: httpx.AsyncClient, auth_config: auth.AuthConfig
) -> None:
    admin = token(auth_config, "admin", tenant="acme")
    assert (await client.get(STATS, headers=admin)).json()["tenant"] == "acme"
    assert (await client.post(JOBS, json=BODY, headers=admin)).status_code == 201
    assert (await client.get("/api/v1/events", headers=admin)).status_code == 200


@pytest.mark.parametrize(
    "scopes",
    [("jobs:write", "tenants:admin"), ("jobs:write",)],
    ids=["with tenants:admin", "without tenants:admin"],
)
async def test_a_write_naming_a_tenant_is_refused_and_writes_nothing(
    client: httpx.AsyncClient,
    auth_config: auth.AuthConfig,
    conn: asyncpg.Connection,
    scopes: tuple[str, ...],
) -> None:
    response = await client.post(
        JOBS, params={"tenant": "globex"}, json=BODY, headers=token(auth_config, *scopes)
    )
    problem = assert_problem(response, 400, "tenant-parameter-on-write")
    assert "POST" in problem["detail"]
    assert await conn.fetchval("SELECT count(*) FROM events") == 0


@pytest.mark.parametrize(
    "claim", ["", "acme corp", "-acme", "x" * 129, 42, ["acme"], None], ids=repr
)
async def test_a_token_whose_tenant_claim_is_not_a_tenant_id_is_refused(
    client: httpx.AsyncClient, conn: asyncpg.Connection, claim: object
) -> None:
    minted = auth.AuthConfig(algorithms=("HS256",), secret=SECRET).mint("alice", ["jobs:write"])
    claims = jwt.decode(minted, SECRET, algorithms=["HS256"])
    claims["tenant"] = claim
    forged = jwt.encode(claims, SECRET, algorithm="HS256")

    response = await client.post(JOBS, json=BODY, headers={"Authorization": f"Bearer {forged}"})

    problem = assert_problem(response, 401, "unauthorized")
    assert "'tenant' claim must be a tenant id" in problem["detail"]
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert await conn.fetchval("SELECT count(*) FROM events") == 0


async def test_jwt_tenant_claim_names_the_claim_read(
    dbs: Databases, registry: jobtypes.Registry
) -> None:
    async with serving(dbs, registry, {"JWT_TENANT_CLAIM": "org_id"}) as (http, minter):
        assert minter.tenant_claim == "org_id"
        claims = jwt.decode(minter.mint("alice", ["jobs:read"]), SECRET, algorithms=["HS256"])
        both = jwt.encode({**claims, "org_id": "acme", "tenant": "globex"}, SECRET, "HS256")
        response = await http.get(STATS, headers={"Authorization": f"Bearer {both}"})
        assert response.status_code == 200, response.text
        assert response.json()["tenant"] == "acme"  # `tenant` is just another claim here
        minted = await http.get(STATS, headers=token(minter, "jobs:read", tenant="initech"))
        assert minted.json()["tenant"] == "initech"


async def test_tenancy_required_refuses_a_token_without_the_claim(
    dbs: Databases, registry: jobtypes.Registry, conn: asyncpg.Connection
) -> None:
    async with serving(dbs, registry, {"TENANCY": "required"}) as (http, minter):
        unclaimed = token(minter, "jobs:read", "jobs:write")
        for method, path in (("GET", STATS), ("GET", JOBS), ("POST", JOBS)):
            body = BODY if method == "POST" else None
            response = await http.request(method, path, json=body, headers=unclaimed)
            problem = assert_problem(response, 401, "tenant-required")
            assert "'tenant' claim" in problem["detail"]
            challenge = response.headers["www-authenticate"]
            assert challenge.startswith('Bearer realm="job-ledger", error="invalid_token"')
        assert await conn.fetchval("SELECT count(*) FROM events") == 0

        claimed = token(minter, "jobs:read", "jobs:write", tenant="acme")
        assert (await http.post(JOBS, json=BODY, headers=claimed)).status_code == 201
        assert (await http.get(STATS, headers=claimed)).json()["tenant"] == "acme"
        operator = token(minter, "jobs:read", "tenants:admin")
        assert (await http.get(STATS, headers=operator)).json()["tenant"] == "default"
