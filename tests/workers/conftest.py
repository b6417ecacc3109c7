"""Fixtures for the worker pool: a private registry of test job types and in-process pools."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from ledger import jobtypes
from tests.conftest import Databases
from tests.workers import jobs
from workers import pool


async def eventually[T](
    probe: Callable[[], Awaitable[T]], *, within: float = 20.0, every: float = 0.02
) -> T:
    """Poll `probe` until it returns something truthy; fail after `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = await probe()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within}s (last: {value!r})")
        await asyncio.sleep(every)


@pytest.fixture
def registry() -> jobtypes.Registry:
    return jobs.register(jobtypes.Registry())


PoolStarter = Callable[..., Awaitable[pool.Pool]]


@pytest_asyncio.fixture(loop_scope="session")
async def start_pool(
    dbs: Databases, registry: jobtypes.Registry, tmp_path: Path
) -> AsyncIterator[PoolStarter]:
    """Start in-process pools (stopped, and awaited, at the end of the test)."""
    running: list[tuple[pool.Pool, asyncio.Task[None]]] = []

    async def start(listen_dsn: str | None = None, **settings: Any) -> pool.Pool:
        fields: dict[str, Any] = {
            "slots": 5,
            "lease_seconds": 30.0,
            "poll_seconds": 3600.0,  # a test that passes did not wait for a poll
            "grace_seconds": 5.0,
            "storage_root": tmp_path,
        }
        event_store = settings.pop("event_store", None)  # a store of the test's own
        fields.update(settings)
        workers = pool.Pool(
            dbs.app,
            listen_dsn=listen_dsn,
            settings=pool.PoolSettings(**fields),
            registry=registry,
            event_store=event_store,
        )
        task = asyncio.create_task(workers.run())
        running.append((workers, task))
        done, _ = await asyncio.wait(
            {task, asyncio.ensure_future(workers.started.wait())},
            timeout=20,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if task in done:
            task.result()
        await asyncio.wait_for(workers.listener.connected.wait(), timeout=20)
        return workers

    try:
        yield start
    finally:
        for workers, _task in running:
            workers.request_stop()
        for _workers, task in running:
            with contextlib.suppress(asyncio.CancelledError):
                try:
                    await asyncio.wait_for(task, timeout=30)
                except TimeoutError:
                    task.cancel()
                    raise
