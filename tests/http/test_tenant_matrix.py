"""The isolation matrix of issue #15: every /api/v1 route × every kind of caller.

The world: tenant acme has job A in queue `emails` (configured, concurrency 7) and a
signed checkpoint; tenant beta has job B; tenant default has job D. Each caller kind
calls every route about acme's objects:

- own: acme's token: the route works;
- other: beta's token: 404 exactly like a missing job, empty lists, not its queue;
  its writes act in beta;
- no claim, TENANCY=optional: acts as `default` (the same as a stranger to acme);
- no claim, TENANCY=required: 401 everywhere;
- tenants:admin with `?tenant=acme`: reads acme's; a write naming a tenant is a 400;
- `?tenant=acme` without tenants:admin: 403 on reads, 400 on writes.

Every answer is checked for its status and its body, and no body holds an id, event
hash or checkpoint root of a tenant other than the one the caller acts in. Row-level
security is on (sql/0068): a route that read outside a transaction acting in its
tenant would see nothing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import asyncpg
import httpx
import msgspec
import pytest
from litestar import Litestar

from ledger import auth, config, jobtypes
from service import app as app_module
from tests.conftest import Databases
from tests.http.conftest import SECRET, running
from tests.http.test_audit_api import served, sse

__all__ = ["served"]  # the fixture, imported for this module's `app`

API: Final = "/api/v1"
EVERY_SCOPE: Final = ("jobs:read", "jobs:write", "jobs:cancel", "audit:read", "admin")
NOOP: Final = {"type": "noop", "payload": {}}


@dataclasses.dataclass
class World:
    """What was seeded: acme's job, queue and checkpoint, and one job each of beta and default."""

    a: str
    b: str
    d: str
    a_cursor: str
    a_tree_size: int
    missing: str = dataclasses.field(default_factory=lambda: str(uuid.uuid4()))


@dataclasses.dataclass(frozen=True)
class Caller:
    """A kind of caller: its token, the `?tenant=` it sends, its app's TENANCY and what it
    acts in (None: refused with `refused_read`/`refused_write`)."""

    name: str
    claim: str | None
    scopes: tuple[str, ...] = EVERY_SCOPE
    param: str | None = None
    tenancy: str = "optional"
    reads_as: str | None = None
    writes_as: str | None = None
    refused_read: tuple[int, str] | None = None
    refused_write: tuple[int, str] | None = None


CALLERS: Final = [
    Caller("own", "acme", reads_as="acme", writes_as="acme"),
    Caller("other", "beta", reads_as="beta", writes_as="beta"),
    Caller("no claim, optional", None, reads_as="default", writes_as="default"),
    Caller(
        "no claim, required",
        None,
        tenancy="required",
        refused_read=(401, "tenant-required"),
        refused_write=(401, "tenant-required"),
    ),
    Caller(
        "tenants:admin ?tenant=",
        "beta",
        scopes=(*EVERY_SCOPE, "tenants:admin"),
        param="acme",
        reads_as="acme",
        refused_write=(400, "tenant-parameter-on-write"),
    ),
    Caller(
        "?tenant= without tenants:admin",
        "acme",
        param="acme",
        refused_read=(403, "forbidden"),
        refused_write=(400, "tenant-parameter-on-write"),
    ),
]


@contextlib.asynccontextmanager
async def serving(
    dbs: Databases, registry: jobtypes.Registry, key: Path, tenancy: str
) -> AsyncIterator[tuple[httpx.AsyncClient, auth.AuthConfig]]:
    env = {
        "JWT_SECRET": SECRET,
        "TENANCY": tenancy,
        "LEDGER_AUDIT_KEY": str(key),
        "AUDIT_CHECKPOINT_INTERVAL_SECONDS": "0",
    }
    settings = config.from_env(env)
    app = app_module.create_app(dbs.app, registry=registry, settings=settings, pool_size=2)
    async with running(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http, auth.from_settings(settings)


def headers(minter: auth.AuthConfig, claim: str | None, scopes: tuple[str, ...]) -> dict[str, str]:
    return {"Authorization": f"Bearer {minter.mint('alice', scopes, tenant=claim)}"}


async def seed(
    http: httpx.AsyncClient, minter: auth.AuthConfig, admin: asyncpg.Connection
) -> World:
    acme = headers(minter, "acme", EVERY_SCOPE)
    ids = {}
    for name, claim, body in (
        ("a", "acme", {**NOOP, "queue": "emails"}),
        ("b", "beta", NOOP),
        ("d", None, NOOP),
    ):
        response = await http.post(
            f"{API}/jobs", json=body, headers=headers(minter, claim, EVERY_SCOPE)
        )
        assert response.status_code == 201, response.text
        ids[name] = response.json()["job_id"]
    configured = await http.put(f"{API}/queues/emails", json={"concurrency": 7}, headers=acme)
    assert configured.status_code == 200, configured.text
    signed = await http.post(f"{API}/audit/checkpoints", headers=acme)
    assert signed.status_code == 201, signed.text
    row = await admin.fetchrow(
        "SELECT txid, position FROM events WHERE job_id = $1 AND version = 1", uuid.UUID(ids["a"])
    )
    return World(
        a=ids["a"],
        b=ids["b"],
        d=ids["d"],
        a_cursor=f"{row['txid']}.{row['position']}",
        a_tree_size=signed.json()["tree_size"],
    )


async def foreign_values(admin: asyncpg.Connection, tenant: str | None) -> set[str]:
    """Ids, event hashes and checkpoint roots of every tenant but `tenant` (None: all)."""
    values: set[str] = set()
    for row in await admin.fetch(
        "SELECT job_id, hash FROM events WHERE tenant IS DISTINCT FROM $1", tenant
    ):
        values |= {str(row["job_id"]), bytes(row["hash"]).hex()}
    for row in await admin.fetch(
        "SELECT digest FROM audit_checkpoints WHERE tenant IS DISTINCT FROM $1", tenant
    ):
        digest = bytes(row["digest"])
        values |= {digest.hex(), base64.b64encode(digest).decode()}
    return values


@dataclasses.dataclass(frozen=True)
class Route:
    """A route about acme's objects: how to call it, and what its answer must be for a
    caller acting in `tenant` (`acme` owns them)."""

    name: str
    method: str
    path: Callable[[World], str]
    check: Callable[[httpx.Response, World, str, asyncpg.Connection], Awaitable[None]]
    params: Callable[[World], dict[str, Any]] = lambda _w: {}
    body: Any = None


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


async def like_missing(
    response: httpx.Response, world: World, http: httpx.AsyncClient, request: httpx.Request
) -> None:
    """The answer is the one a job that does not exist gets, but for the id."""
    assert response.status_code == 404, response.text
    missing_url = str(request.url).replace(world.a, world.missing)
    missing = await http.request(
        request.method, missing_url, headers=request.headers, content=request.content
    )
    assert missing.status_code == 404, missing.text
    assert response.json() == msgspec.json.decode(missing.text.replace(world.missing, world.a))


def tenant_jobs(tenant: str, world: World) -> set[str]:
    return {"acme": {world.a}, "beta": {world.b}, "default": {world.d}}[tenant]


# -- the checks: `tenant` is the tenant the caller acts in ------------------------------


async def check_job(r: httpx.Response, w: World, tenant: str, _a: asyncpg.Connection) -> None:
    assert tenant == "acme"  # others: like_missing
    assert ok(r)["job_id"] == w.a


async def check_history(r: httpx.Response, w: World, tenant: str, _a: asyncpg.Connection) -> None:
    assert tenant == "acme"
    assert {e["job_id"] for e in ok(r)["events"]} == {w.a}


async def check_list(r: httpx.Response, w: World, tenant: str, _a: asyncpg.Connection) -> None:
    assert {j["job_id"] for j in ok(r)["jobs"]} == tenant_jobs(tenant, w)


async def check_feed(r: httpx.Response, w: World, tenant: str, admin: asyncpg.Connection) -> None:
    got = [e["hash"] for e in ok(r)["events"]]
    own = [
        bytes(h).hex()
        for h in await admin.fetchval(
            "SELECT array_agg(hash ORDER BY txid, position) FROM events WHERE tenant = $1", tenant
        )
    ]
    assert got == own


async def check_stats(r: httpx.Response, w: World, tenant: str, _a: asyncpg.Connection) -> None:
    body = ok(r)
    assert body["tenant"] == tenant
    assert sum(body["by_status"].values()) == len(tenant_jobs(tenant, w))


async def check_verify(r: httpx.Response, w: World, tenant: str, admin: asyncpg.Connection) -> None:
    body = ok(r)
    jobs, events = await admin.fetchrow(
        "SELECT count(DISTINCT job_id), count(*) FROM events WHERE tenant = $1", tenant
    )
    assert (body["ok"], body["jobs"], body["events"]) == (True, jobs, events)
    report = body["checkpoints"]
    assert (report["findings"], report["checkpoints"]) == ([], 1 if tenant == "acme" else 0)
    assert report["events"] == events


async def check_verify_job(
    r: httpx.Response, w: World, tenant: str, _a: asyncpg.Connection
) -> None:
    assert tenant == "acme"
    body = ok(r)
    assert (body["ok"], body["jobs"], body["events"]) == (True, 1, 1)


async def check_checkpoints(
    r: httpx.Response, w: World, tenant: str, _a: asyncpg.Connection
) -> None:
    sizes = [cp["tree_size"] for cp in ok(r)["checkpoints"]]
    assert sizes == ([w.a_tree_size] if tenant == "acme" else [])


async def check_inclusion(r: httpx.Response, w: World, tenant: str, _a: asyncpg.Connection) -> None:
    if tenant == "acme":
        assert ok(r)["tree_size"] == w.a_tree_size
    else:  # neither the event nor a tree of that size is in the caller's log
        assert r.status_code in (400, 404), r.text
        assert r.headers["content-type"].startswith("application/problem+json")


async def check_consistency(
    r: httpx.Response, w: World, tenant: str, _a: asyncpg.Connection
) -> None:
    if tenant == "acme":
        assert len(ok(r)["hashes"]) >= 1
    else:  # no tree of that size is in the caller's log
        assert r.status_code == 400, r.text
        assert r.json()["type"] == "urn:job-ledger:problem:bad-tree-size"


async def check_queues(r: httpx.Response, w: World, tenant: str, _a: asyncpg.Connection) -> None:
    queues = {q["name"]: q for q in ok(r)["queues"]}
    if tenant == "acme":
        assert queues["emails"]["concurrency"] == 7
    else:
        assert set(queues) == {"default"}


async def check_queue(r: httpx.Response, w: World, tenant: str, _a: asyncpg.Connection) -> None:
    if tenant == "acme":
        assert ok(r)["concurrency"] == 7
    else:
        assert r.status_code == 404, r.text
        assert r.json()["type"] == "urn:job-ledger:problem:unknown-queue"


async def stored_tenant(admin: asyncpg.Connection, job_id: str) -> str:
    tenant: str = await admin.fetchval(
        "SELECT tenant FROM jobs WHERE job_id = $1", uuid.UUID(job_id)
    )
    return tenant


async def check_submit(r: httpx.Response, w: World, tenant: str, admin: asyncpg.Connection) -> None:
    assert await stored_tenant(admin, ok(r, 201)["job_id"]) == tenant


async def check_batch(r: httpx.Response, w: World, tenant: str, admin: asyncpg.Connection) -> None:
    (job,) = ok(r, 201)["jobs"]
    assert await stored_tenant(admin, job["job_id"]) == tenant


async def check_cancel(r: httpx.Response, w: World, tenant: str, _a: asyncpg.Connection) -> None:
    assert tenant == "acme"
    assert ok(r)["status"] == "cancelled"


async def check_retry(r: httpx.Response, w: World, tenant: str, _a: asyncpg.Connection) -> None:
    assert tenant == "acme"
    assert ok(r)["status"] == "pending"  # after the cancel above


async def check_replay(r: httpx.Response, w: World, tenant: str, admin: asyncpg.Connection) -> None:
    assert tenant == "acme"
    body = ok(r, 201)
    assert body["replay_of"] == w.a
    assert await stored_tenant(admin, body["job"]["job_id"]) == "acme"


async def check_take_checkpoint(
    r: httpx.Response, w: World, tenant: str, admin: asyncpg.Connection
) -> None:
    events = await admin.fetchval("SELECT count(*) FROM events WHERE tenant = $1", tenant)
    body = ok(r, 200 if tenant == "acme" and events == w.a_tree_size else 201)
    assert body["tree_size"] == events


async def queue_settings(admin: asyncpg.Connection, tenant: str) -> tuple[Any, ...] | None:
    row = await admin.fetchrow(
        "SELECT version, concurrency, paused FROM queues WHERE tenant = $1 AND name = 'emails'",
        tenant,
    )
    return None if row is None else tuple(row)


def queue_check(
    version: int, paused: bool
) -> Callable[[httpx.Response, World, str, asyncpg.Connection], Awaitable[None]]:
    """The queue changed in the caller's tenant (its `version`-th change there; acme's had
    one more, from the seed), and acme's untouched unless the caller is acme."""

    async def check(r: httpx.Response, w: World, tenant: str, admin: asyncpg.Connection) -> None:
        body = ok(r)
        expected = (version + 1 if tenant == "acme" else version, 3, paused)
        assert (body["version"], body["concurrency"], body["paused"]) == expected
        if tenant != "acme":
            assert await queue_settings(admin, "acme") == (1, 7, False)

    return check


READS: Final = [
    Route("job", "GET", lambda w: f"{API}/jobs/{w.a}", check_job),
    Route(
        "job as of",
        "GET",
        lambda w: f"{API}/jobs/{w.a}",
        check_job,
        params=lambda _w: {"as_of": "2999-01-01T00:00:00Z"},
    ),
    Route("history", "GET", lambda w: f"{API}/jobs/{w.a}/events", check_history),
    Route("list", "GET", lambda w: f"{API}/jobs", check_list),
    Route("feed", "GET", lambda w: f"{API}/events", check_feed),
    Route("stats", "GET", lambda w: f"{API}/stats", check_stats),
    Route("verify", "GET", lambda w: f"{API}/audit/verify", check_verify),
    Route(
        "verify job",
        "GET",
        lambda w: f"{API}/audit/verify",
        check_verify_job,
        params=lambda w: {"job_id": w.a},
    ),
    Route("checkpoints", "GET", lambda w: f"{API}/audit/checkpoints", check_checkpoints),
    Route(
        "inclusion proof",
        "GET",
        lambda w: f"{API}/audit/proofs/inclusion",
        check_inclusion,
        params=lambda w: {"cursor": w.a_cursor, "tree_size": w.a_tree_size},
    ),
    Route(
        "consistency proof",
        "GET",
        lambda w: f"{API}/audit/proofs/consistency",
        check_consistency,
        params=lambda w: {"from": 1, "to": w.a_tree_size},
    ),
    Route("queues", "GET", lambda w: f"{API}/queues", check_queues),
    Route("queue", "GET", lambda w: f"{API}/queues/emails", check_queue),
]
# In this order: the retry follows the cancel, and each queue change the previous one.
WRITES: Final = [
    Route("submit", "POST", lambda w: f"{API}/jobs", check_submit, body=NOOP),
    Route("batch", "POST", lambda w: f"{API}/jobs/batch", check_batch, body={"jobs": [NOOP]}),
    Route("cancel", "POST", lambda w: f"{API}/jobs/{w.a}/cancel", check_cancel),
    Route("retry", "POST", lambda w: f"{API}/jobs/{w.a}/retry", check_retry),
    Route("replay", "POST", lambda w: f"{API}/jobs/{w.a}/replay", check_replay),
    Route("take checkpoint", "POST", lambda w: f"{API}/audit/checkpoints", check_take_checkpoint),
    Route(
        "configure queue",
        "PUT",
        lambda w: f"{API}/queues/emails",
        queue_check(1, False),
        body={"concurrency": 3},
    ),
    Route("pause queue", "POST", lambda w: f"{API}/queues/emails/pause", queue_check(2, True)),
    Route("resume queue", "POST", lambda w: f"{API}/queues/emails/resume", queue_check(3, False)),
]
# The routes about acme's job itself: anyone else gets the answer of a missing job.
ABOUT_JOB_A: Final = {"job", "job as of", "history", "verify job", "cancel", "retry", "replay"}


@pytest.mark.parametrize("caller", CALLERS, ids=[c.name for c in CALLERS])
async def test_every_route_answers_each_caller_within_its_own_tenant(
    dbs: Databases, registry: jobtypes.Registry, tmp_path: Path, caller: Caller
) -> None:
    key = tmp_path / "audit.key"
    admin = await asyncpg.connect(dbs.admin)
    try:
        async with serving(dbs, registry, key, "optional") as (http, minter):
            world = await seed(http, minter, admin)
        async with serving(dbs, registry, key, caller.tenancy) as (http, minter):
            auth_headers = headers(minter, caller.claim, caller.scopes)
            failures: list[str] = []
            for route in READS + WRITES:
                write = route.method != "GET"
                params = route.params(world)
                if caller.param is not None:
                    params["tenant"] = caller.param
                response = await http.request(
                    route.method,
                    route.path(world),
                    params=params,
                    json=route.body,
                    headers=auth_headers,
                )
                acting = caller.writes_as if write else caller.reads_as
                try:
                    await check(response, route, world, caller, acting, http, admin)
                except (AssertionError, KeyError, TypeError) as exc:
                    failures.append(f"{route.method} {route.name}: {exc}")
            assert not failures, "\n".join(failures)
    finally:
        await admin.close()


async def check(
    response: httpx.Response,
    route: Route,
    world: World,
    caller: Caller,
    acting: str | None,
    http: httpx.AsyncClient,
    admin: asyncpg.Connection,
) -> None:
    """The answer's status and body, and that it holds nothing of another tenant's."""
    if acting is None:
        refused = caller.refused_write if route.method != "GET" else caller.refused_read
        assert refused is not None
        status, slug = refused
        assert response.status_code == status, response.text
        assert response.json()["type"] == f"urn:job-ledger:problem:{slug}"
    elif acting != "acme" and route.name in ABOUT_JOB_A:
        await like_missing(response, world, http, response.request)
    else:
        await route.check(response, world, acting, admin)
    asked = str(response.request.url)
    leaked = {v for v in await foreign_values(admin, acting) if v in response.text}
    assert not {v for v in leaked if v not in asked}, (
        f"another tenant's {leaked} in {response.text}"
    )


@pytest.fixture
def app(dbs: Databases, auth_config: auth.AuthConfig, registry: jobtypes.Registry) -> Litestar:
    """The app behind `served` (a real socket: the stream), polling the feed once an hour."""
    settings = config.Settings(feed_poll_seconds=3600)
    return app_module.create_app(
        dbs.app, auth_config=auth_config, registry=registry, settings=settings, pool_size=4
    )


async def test_the_live_stream_carries_only_its_tenants_events(
    dbs: Databases, served: str, auth_config: auth.AuthConfig
) -> None:
    acme, beta = (headers(auth_config, t, EVERY_SCOPE) for t in ("acme", "beta"))
    async with httpx.AsyncClient(base_url=served, timeout=10) as http:

        async def submit(tenant_headers: dict[str, str]) -> str:
            job_id: str = ok(
                await http.post(f"{API}/jobs", json=NOOP, headers=tenant_headers), 201
            )["job_id"]
            return job_id

        first_b, first_a = await submit(beta), await submit(acme)
        async with asyncio.timeout(20), sse(served, acme) as stream:
            first = msgspec.json.decode((await stream.next_event())["data"])
            assert first["job_id"] == first_a  # beta's earlier job is not in acme's feed
            await submit(beta)
            second_a = await submit(acme)  # after beta's: its wake-up reads past beta's event
            second = await stream.next_event()
            assert msgspec.json.decode(second["data"])["job_id"] == second_a
    assert first_b not in (first["job_id"], second["data"])
