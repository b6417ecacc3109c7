"""The README's retry-policy example, run as written with a real worker pool: its job
type's and its submission's policies decide, and the timeline says why."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from ledger import events as ev
from ledger import jobtypes, lifecycle, store
from projections import current, timeline
from tests.workers import jobs
from tests.workers.conftest import PoolStarter, eventually

ROOT = Path(__file__).resolve().parents[2]
START, END = "<!-- readme-retry-example: start -->", "<!-- readme-retry-example: end -->"


@pytest.fixture
def example() -> Iterator[dict[str, Any]]:
    """The example's namespace; its job type leaves the global registry afterwards."""
    text = (ROOT / "README.md").read_text()
    block = text[text.index(START) : text.index(END)]
    code = block.split("```python\n", 1)[1].rsplit("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    try:
        yield namespace
    finally:
        jobtypes.REGISTRY._types.pop("fetch_quote", None)


@pytest.fixture
def registry(example: dict[str, Any]) -> jobtypes.Registry:
    registry = jobs.register(jobtypes.Registry())
    registry.add(jobtypes.REGISTRY.get("fetch_quote"))
    return registry


async def _until(conn: asyncpg.Connection, job_id: Any, *statuses: str) -> lifecycle.JobState:
    async def probe() -> lifecycle.JobState | None:
        state = await current.get(conn, job_id)
        return state if state is not None and state.status in statuses else None

    return await eventually(probe)


async def test_the_readme_policies_retry_a_rate_limit_and_fail_an_unknown_symbol_at_once(
    start_pool: PoolStarter,
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    example: dict[str, Any],
) -> None:
    submit_quote = example["submit_quote"]
    ok = await submit_quote(conn, "ACME")
    busy = await submit_quote(conn, "BUSY")
    unknown = await submit_quote(conn, "NOPE")
    await start_pool()

    assert (await _until(conn, ok.job_id, "completed")).result == {"symbol": "ACME", "price": 42}
    failed = await _until(conn, unknown.job_id, "failed")
    assert (failed.attempt, failed.error) == (1, "KeyError: 'NOPE'")
    waiting = await _until(conn, busy.job_id, "retrying")

    history = await event_store.history(conn, busy.job_id)
    scheduled = history[-1].event
    assert isinstance(scheduled, ev.JobRetryScheduled)
    assert scheduled.requested_delay_seconds == 30
    assert waiting.run_at == scheduled.next_attempt_at
    policy = scheduled.policy
    assert policy is not None
    assert (policy.maximum_attempts, policy.backoff_coefficient, policy.jitter) == (8, 3, "full")
    assert policy.sources["jitter"] == policy.sources["max_elapsed_seconds"] == "submission"
    assert policy.sources["maximum_attempts"] == "job_type"

    shown = timeline.render(timeline.build(busy.job_id, history))
    assert "why: attempt 1 failed: rate limited; retry in 30s (the handler asked for it)" in shown
    assert "max elapsed 1h" in shown
    stopped = timeline.build(unknown.job_id, await event_store.history(conn, unknown.job_id))
    assert stopped.steps[-1].note == (
        "attempt 1 failed: KeyError: 'NOPE'; stopped retrying: KeyError is non-retryable"
    )
