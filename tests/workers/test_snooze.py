"""A handler's Snooze puts its attempt back to wait without counting it, up to its job type's cap.

Real pools against the real database; every pool polls once an hour, so a snoozed
job that runs again was woken by the retry clock at the snooze's end.
"""

from __future__ import annotations

import collections
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest

from ledger import commands, jobtypes, lifecycle, rerun, store
from ledger import events as ev
from projections import current, timeline
from tests import factories
from tests.workers import jobs
from tests.workers.conftest import PoolStarter, eventually

_snoozed: collections.Counter[uuid.UUID] = collections.Counter()


class Snoozes(msgspec.Struct, frozen=True):
    times: int
    seconds: float = 0.05
    returned: bool = False  # return the Snooze instead of raising it


async def snooze_then_finish(payload: Snoozes, context: jobtypes.JobContext) -> dict[str, int]:
    """Snoozes `times` times (counted per job in this process), then completes."""
    if _snoozed[context.job_id] < payload.times:
        _snoozed[context.job_id] += 1
        wait = jobtypes.Snooze(payload.seconds, f"not yet ({_snoozed[context.job_id]})")
        if payload.returned:
            return wait  # type: ignore[return-value]
        raise wait
    return {"attempt": context.attempt, "snoozed": _snoozed[context.job_id]}


async def snooze_after_failing_once(
    payload: Snoozes, context: jobtypes.JobContext
) -> dict[str, int]:
    """Attempt 1 fails; attempt 2 snoozes `times` times, then completes."""
    if context.attempt == 1:
        raise jobtypes.Retryable("first attempt fails")
    return await snooze_then_finish(payload, context)


@pytest.fixture
def registry() -> jobtypes.Registry:
    registry = jobs.register(jobtypes.Registry())
    fast = {"backoff_base_seconds": 0.02, "backoff_cap_seconds": 0.05}
    jobtypes.job_type("test.snooze", Snoozes, registry=registry, **fast)(snooze_then_finish)
    jobtypes.job_type("test.snooze_capped", Snoozes, registry=registry, max_snoozes=2, **fast)(
        snooze_then_finish
    )
    jobtypes.job_type("test.fail_then_snooze", Snoozes, registry=registry, **fast)(
        snooze_after_failing_once
    )
    return registry


async def _finished(conn: asyncpg.Connection, job_id: uuid.UUID) -> lifecycle.JobState:
    async def probe() -> lifecycle.JobState | None:
        state = await current.get(conn, job_id)
        return state if state is not None and state.status in lifecycle.TERMINAL else None

    return await eventually(probe)


async def test_a_snooze_does_not_consume_an_attempt_even_with_one_attempt_allowed(
    start_pool: PoolStarter, conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await start_pool()
    job_id = await factories.submit(
        event_store, conn, job_type="test.snooze", payload={"times": 3}, max_attempts=1
    )
    done = await _finished(conn, job_id)

    assert (done.status, done.attempt, done.snoozes) == ("completed", 1, 3)
    assert done.result == {"attempt": 1, "snoozed": 3}
    history = [r.event for r in await event_store.history(conn, job_id)]
    assert [ev.type_tag(e) for e in history] == [
        "job.submitted.v1",
        *["job.claimed.v1", "job.snoozed.v1"] * 3,
        "job.claimed.v1",
        "job.completed.v1",
    ]
    claims = [e for e in history if isinstance(e, ev.JobClaimed)]
    snoozes = [e for e in history if isinstance(e, ev.JobSnoozed)]
    assert [c.attempt for c in claims] == [1, 1, 1, 1]
    assert [(s.attempt, s.snooze, s.max_snoozes) for s in snoozes] == [
        (1, 1, 100),
        (1, 2, 100),
        (1, 3, 100),
    ]
    assert [s.reason for s in snoozes] == ["not yet (1)", "not yet (2)", "not yet (3)"]
    for snoozed, next_claim in zip(snoozes, claims[1:], strict=True):
        assert snoozed.seconds == pytest.approx(0.05)
        # run_at is the worker's clock plus the snooze, taken just before the append
        # (whose time is the database's): at most the snooze after the event's time.
        assert (snoozed.run_at - snoozed.occurred_at).total_seconds() <= 0.05
        assert next_claim.occurred_at >= snoozed.run_at  # woken at its end, not before


async def test_a_returned_snooze_is_a_snooze(
    start_pool: PoolStarter, conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await start_pool()
    job_id = await factories.submit(
        event_store, conn, job_type="test.snooze", payload={"times": 1, "returned": True}
    )
    done = await _finished(conn, job_id)

    assert (done.status, done.attempt, done.snoozes) == ("completed", 1, 1)
    assert "job.snoozed.v1" in [
        ev.type_tag(r.event) for r in await event_store.history(conn, job_id)
    ]


async def test_attempt_numbers_stay_exact_around_failures_and_snoozes(
    start_pool: PoolStarter, conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await start_pool()
    job_id = await factories.submit(
        event_store, conn, job_type="test.fail_then_snooze", payload={"times": 2}, max_attempts=2
    )
    done = await _finished(conn, job_id)

    assert (done.status, done.attempt, done.snoozes) == ("completed", 2, 2)
    history = [r.event for r in await event_store.history(conn, job_id)]
    assert [(ev.type_tag(e), getattr(e, "attempt", None)) for e in history[1:]] == [
        ("job.claimed.v1", 1),
        ("job.retry_scheduled.v1", 1),  # the attempt that failed (retry reasons)
        ("job.claimed.v1", 2),
        ("job.snoozed.v1", 2),
        ("job.claimed.v1", 2),
        ("job.snoozed.v1", 2),
        ("job.claimed.v1", 2),
        ("job.completed.v1", None),
    ]


async def test_a_job_past_its_snooze_cap_fails_saying_so(
    start_pool: PoolStarter, conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await start_pool()
    job_id = await factories.submit(
        event_store, conn, job_type="test.snooze_capped", payload={"times": 10}, max_attempts=5
    )
    failed = await _finished(conn, job_id)

    assert (failed.status, failed.attempt, failed.snoozes) == ("failed", 1, 2)
    assert failed.error is not None
    assert "snoozed 2 times, the most its job type allows (max_snoozes 2)" in failed.error
    assert "not yet (3)" in failed.error  # the snooze that was refused, and why it was asked
    types = [ev.type_tag(r.event) for r in await event_store.history(conn, job_id)]
    assert types[-6:] == [
        "job.claimed.v1",
        "job.snoozed.v1",
        "job.claimed.v1",
        "job.snoozed.v1",
        "job.claimed.v1",
        "job.failed.v1",
    ]


async def test_a_manual_retry_starts_the_snooze_count_again(
    start_pool: PoolStarter, conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    job_id = await factories.submit(
        event_store, conn, job_type="test.snooze_capped", payload={"times": 10}
    )
    await start_pool()
    failed = await _finished(conn, job_id)
    assert failed.snoozes == 2

    await event_store.execute(conn, job_id, commands.RetryJob(), actor="alice")
    retried = await current.get(conn, job_id)
    assert retried is not None and (retried.status, retried.snoozes) == ("pending", 0)
    _snoozed[job_id] = 10  # the handler no longer snoozes this job
    done = await _finished(conn, job_id)
    assert (done.status, done.attempt, done.snoozes) == ("completed", 1, 0)


async def test_the_timeline_says_why_a_job_waited(
    start_pool: PoolStarter, conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await start_pool()
    job_id = await factories.submit(
        event_store, conn, job_type="test.snooze", payload={"times": 1, "seconds": 90.0}
    )

    async def snoozed() -> lifecycle.JobState | None:
        state = await current.get(conn, job_id)
        return state if state is not None and state.snoozes == 1 else None

    state = await eventually(snoozed)
    assert state.status == "pending" and state.attempt == 0
    line = timeline.build(job_id, await event_store.history(conn, job_id))
    (step,) = [s for s in line.steps if s.event == "job.snoozed.v1"]
    assert step.note is not None
    assert step.note.startswith("attempt 1 snoozed 1m30s until ")
    assert step.note.endswith("(snooze 1 of 100; not counted as an attempt): not yet (1)")
    assert "why: attempt 1 snoozed 1m30s" in timeline.render(line)


README = Path(__file__).resolve().parents[2] / "README.md"
START, END = "<!-- readme-snooze-example: start -->", "<!-- readme-snooze-example: end -->"


async def test_the_readme_snooze_example_waits_without_using_an_attempt(
    registry: jobtypes.Registry,
    start_pool: PoolStarter,
    conn: asyncpg.Connection,
    event_store: store.EventStore,
) -> None:
    text = README.read_text()
    code = text[text.index(START) : text.index(END)].split("```python\n", 1)[1]
    namespace: dict[str, Any] = {}
    exec(compile(code.rsplit("```", 1)[0], "README.md", "exec"), namespace)
    registry.add(jobtypes.REGISTRY.get("fetch_report"))  # the example registers globally
    await start_pool()
    job_id = await factories.submit(
        event_store, conn, job_type="fetch_report", payload={"report_id": "r-7"}
    )

    async def snoozed_twice() -> bool:
        state = await current.get(conn, job_id)
        return state is not None and state.snoozes >= 2

    await eventually(snoozed_twice)
    namespace["READY"].add("r-7")
    done = await _finished(conn, job_id)

    assert (done.status, done.attempt, done.result) == (
        "completed",
        1,
        {"report": "r-7", "attempt": "1"},
    )
    assert done.snoozes >= 2


async def test_replaying_a_snoozing_job_locally_reports_the_snooze(
    registry: jobtypes.Registry,
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    tmp_path: Path,
) -> None:
    job_id = await factories.submit(
        event_store, conn, job_type="test.snooze", payload={"times": 1, "seconds": 30.0}
    )
    state = await current.get(conn, job_id)
    assert state is not None

    outcome = await rerun.run_locally(state, storage_root=tmp_path, registry=registry)

    assert (outcome.status, outcome.snooze_seconds, outcome.error) == (
        "snoozed",
        30.0,
        "not yet (1)",
    )
    assert (await current.get(conn, job_id)) == state  # nothing written
