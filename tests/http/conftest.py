"""The real app (real PostgreSQL, real tokens) behind an in-process HTTP client."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Annotated, Any

import httpx
import msgspec
import pytest
import pytest_asyncio
from litestar import Litestar

from ledger import auth, jobtypes
from service import app as app_module
from tests.conftest import Databases

SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"


class ImageResize(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    image_url: Annotated[str, msgspec.Meta(min_length=1)]
    width: Annotated[int, msgspec.Meta(gt=0, le=10_000)]
    height: Annotated[int, msgspec.Meta(gt=0, le=10_000)]
    format: str = "png"


class Noop(msgspec.Struct, frozen=True):
    n: int = 0


class Explosive(msgspec.Struct, frozen=True):
    """A payload whose validation fails unexpectedly: the app must answer a bare 500."""

    def __post_init__(self) -> None:
        raise RuntimeError("secret internals")


def _run(payload: Any, ctx: jobtypes.JobContext) -> None:
    return None


@pytest.fixture
def registry() -> jobtypes.Registry:
    """Job types of the tests' own, in a registry of their own."""
    reg = jobtypes.Registry()
    jobtypes.job_type(
        "image_resize", ImageResize, timeout_seconds=60, max_attempts=4, registry=reg
    )(_run)
    jobtypes.job_type("noop", Noop, registry=reg)(_run)
    jobtypes.job_type("explode", Explosive, registry=reg)(_run)
    return reg


@pytest.fixture
def auth_config() -> auth.AuthConfig:
    return auth.AuthConfig(algorithms=("HS256",), secret=SECRET)


Mint = Callable[..., dict[str, str]]


@pytest.fixture
def bearer(auth_config: auth.AuthConfig) -> Mint:
    """Authorization headers for a subject with scopes (default: alice, every jobs scope)."""

    def headers(
        *scopes: str, sub: str = "alice", ttl: timedelta = timedelta(minutes=5)
    ) -> dict[str, str]:
        chosen = scopes or ("jobs:write", "jobs:read", "jobs:cancel")
        return {"Authorization": f"Bearer {auth_config.mint(sub, chosen, ttl=ttl)}"}

    return headers


@pytest.fixture
def app(dbs: Databases, auth_config: auth.AuthConfig, registry: jobtypes.Registry) -> Litestar:
    return app_module.create_app(
        dbs.app, auth_config=auth_config, registry=registry, max_body_bytes=64 * 1024, pool_size=4
    )


@pytest_asyncio.fixture(loop_scope="session")
async def client(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the app in this event loop (requests really run concurrently)."""
    async with running(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@contextlib.asynccontextmanager
async def running(app: Litestar) -> AsyncIterator[None]:
    """The app's lifespan (startup, then shutdown on exit), held by one task of its own.

    Litestar's lifespan opens a task group, which must be left by the task that entered
    it; a fixture's teardown runs in another task, so a dedicated task holds it.
    """
    started, stop = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with app.lifespan():
            started.set()
            await stop.wait()

    task = asyncio.create_task(hold())
    waiter = asyncio.create_task(started.wait())
    await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        waiter.cancel()
        task.result()  # startup failed: raise its error
    try:
        yield
    finally:
        stop.set()
        await task
