"""Re-running a job's handler locally on its recorded payload, writing nothing, to debug it.

(Submitting a job again as a new job is `submission.Submitter.resubmit`.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any, Literal

import asyncpg
import msgspec

from ledger import events as ev
from ledger import jobtypes, lifecycle


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """How a run ended: `completed` with a result, `failed` with an error, or `snoozed`
    (the handler asked to wait `snooze_seconds`; `error` says why, if it did)."""

    status: Literal["completed", "failed", "snoozed"]
    result: Any = None
    error: str | None = None
    permanent: bool = False
    snooze_seconds: float | None = None


def recorded_outcome(state: lifecycle.JobState) -> Outcome | None:
    """What the ledger recorded for the job's last finished attempt (None: it has not finished)."""
    if state.status == "completed":
        return Outcome(status="completed", result=state.result)
    if state.error is not None:
        return Outcome(status="failed", error=state.error, permanent=state.status == "failed")
    return None


def recorded_upstream(history: Sequence[ev.Event]) -> dict[str, Any]:
    """The dependencies' results a workflow job last ran with: its latest unblocking's."""
    for event in reversed(history):
        if isinstance(event, ev.JobUnblocked):
            return event.upstream
    return {}


async def run_locally(
    state: lifecycle.JobState,
    *,
    storage_root: Path,
    pool: asyncpg.Pool | None = None,
    registry: jobtypes.Registry = jobtypes.REGISTRY,
    upstream: dict[str, Any] | None = None,
) -> Outcome:
    """Run the job's registered handler in this process on its recorded payload.

    Nothing is written to the ledger: this is a debugging aid, the job's history
    stays exactly as it was. The handler sees the same job id (so the same
    idempotency key), the attempt the job last reached and, for a workflow's job, the
    dependencies' results it ran with (`upstream`: see `recorded_upstream`).
    """
    job = registry.get(state.type)
    payload = job.validate(state.payload)
    context = jobtypes.JobContext(
        job_id=state.job_id,
        job_type=state.type,
        attempt=max(state.attempt, 1),
        max_attempts=state.max_attempts,
        storage_root=storage_root,
        pool=pool,
        tenant=state.tenant,
        upstream=upstream or {},
    )
    try:
        if job.is_async:
            pending = job.handler(payload, context)
            assert isinstance(pending, Awaitable)
            value = await asyncio.wait_for(pending, timeout=state.timeout_seconds)
        else:
            value = await asyncio.to_thread(job.handler, payload, context)
    except jobtypes.Snooze as exc:
        value = exc
    except jobtypes.Permanent as exc:
        return Outcome(status="failed", error=str(exc) or type(exc).__name__, permanent=True)
    except jobtypes.Retryable as exc:
        return Outcome(status="failed", error=str(exc) or type(exc).__name__)
    except TimeoutError:
        return Outcome(status="failed", error=f"timed out after {state.timeout_seconds}s")
    except Exception as exc:  # noqa: BLE001 - the handler's failure is the outcome being shown
        text = str(exc)
        return Outcome(
            status="failed", error=f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        )
    if isinstance(value, jobtypes.Snooze):
        return Outcome(status="snoozed", error=value.reason, snooze_seconds=value.seconds)
    try:
        result = msgspec.to_builtins(value)
    except TypeError as exc:
        return Outcome(status="failed", error=f"result is not JSON: {exc}", permanent=True)
    return Outcome(status="completed", result=result)
