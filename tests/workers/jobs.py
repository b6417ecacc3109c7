"""Job types the worker tests run, registered into whichever registry a test gives.

`plugin_jobs` registers them into the global registry, as any LEDGER_HANDLERS
module would; in-process pool tests use a private registry instead, so the
service's own registry never sees test types.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import msgspec

from ledger import jobtypes


class Count(msgspec.Struct, frozen=True):
    n: int = 0


class Gate(msgspec.Struct, frozen=True):
    """A file whose appearance lets the job finish; `<gate>.started` and `<gate>.cancelled` report."""

    gate: str
    seconds: float = 0.0


class Failures(msgspec.Struct, frozen=True):
    failures: int


async def noop(payload: Count, context: jobtypes.JobContext) -> dict[str, int]:
    return {"n": payload.n, "attempt": context.attempt}


def sync_noop(payload: Count, context: jobtypes.JobContext) -> dict[str, object]:
    return {"n": payload.n, "thread": threading.current_thread().name}


async def gated(payload: Gate, context: jobtypes.JobContext) -> dict[str, int]:
    """Runs until the gate file exists (a test opens it); `seconds` > 0 just waits that long."""
    gate = Path(payload.gate)
    await asyncio.to_thread(Path(f"{gate}.started").write_text, str(context.attempt))
    try:
        if payload.seconds > 0:
            await asyncio.sleep(payload.seconds)
        else:
            # Another process opens the gate: a file is the simplest signal across processes.
            while not await asyncio.to_thread(gate.exists):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    except asyncio.CancelledError:
        await asyncio.to_thread(Path(f"{gate}.cancelled").write_text, str(context.attempt))
        raise
    return {"attempt": context.attempt}


async def hang_first_attempt(payload: Count, context: jobtypes.JobContext) -> dict[str, int]:
    """The first attempt never ends (its worker is killed); later attempts succeed."""
    if context.attempt == 1:
        await asyncio.Event().wait()
    return {"attempt": context.attempt}


async def fail_times(payload: Failures, context: jobtypes.JobContext) -> dict[str, int]:
    if context.attempt <= payload.failures:
        raise jobtypes.Retryable(f"failure {context.attempt} of {payload.failures}")
    return {"attempt": context.attempt}


async def permanent(payload: Count, context: jobtypes.JobContext) -> None:
    raise jobtypes.Permanent(f"payload {payload.n} can never succeed")


async def crash(payload: Count, context: jobtypes.JobContext) -> None:
    raise ValueError("unexpected")


def register(registry: jobtypes.Registry) -> jobtypes.Registry:
    fast = {"backoff_base_seconds": 0.05, "backoff_cap_seconds": 0.2}
    jobtypes.job_type("test.noop", Count, registry=registry, **fast)(noop)
    jobtypes.job_type("test.sync_noop", Count, registry=registry, **fast)(sync_noop)
    jobtypes.job_type("test.gated", Gate, registry=registry, **fast)(gated)
    jobtypes.job_type("test.hang_first_attempt", Count, registry=registry, **fast)(
        hang_first_attempt
    )
    jobtypes.job_type("test.fail_times", Failures, registry=registry, **fast)(fail_times)
    jobtypes.job_type("test.permanent", Count, registry=registry, **fast)(permanent)
    jobtypes.job_type("test.crash", Count, registry=registry, **fast)(crash)
    return registry
