"""Retry policies with real workers against the real database: precedence (submission >
queue > job type), non-retryable error types, `Retryable(after=)`, max elapsed, unlimited
attempts, lease expiry, and the reasons each decision's event records."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import msgspec
import pytest

from ledger import events as ev
from ledger import jobtypes, lifecycle, metrics, retrypolicy, store, submission, wire
from projections import current, metering, timeline
from tests.workers import jobs
from tests.workers.conftest import PoolStarter, eventually
from workers import claims, leases, retry

FAST = retrypolicy.RetryPolicy(
    initial_interval_seconds=0.01, maximum_interval_seconds=0.02, jitter="none"
)


class Failing(msgspec.Struct, frozen=True):
    """Fail the first `failures` attempts (-1: all) with `error`; `after` asks for a delay."""

    failures: int = -1
    error: str = "retryable"
    after: float | None = None


class Refused(ConnectionRefusedError):
    pass


async def failing(payload: Failing, context: jobtypes.JobContext) -> dict[str, int]:
    if payload.failures < 0 or context.attempt <= payload.failures:
        message = f"failure {context.attempt}"
        if payload.error == "refused":
            raise Refused(message)
        if payload.error == "value":
            raise ValueError(message)
        raise jobtypes.Retryable(message, after=payload.after)
    return {"attempt": context.attempt}


@pytest.fixture
def registry() -> jobtypes.Registry:
    registry = jobs.register(jobtypes.Registry())
    policy = msgspec.structs.replace(FAST, maximum_attempts=2)
    jobtypes.job_type("test.failing", Failing, retry_policy=policy, registry=registry)(failing)
    return registry


@pytest.fixture
def submitter(registry: jobtypes.Registry, event_store: store.EventStore) -> submission.Submitter:
    return submission.Submitter(registry, event_store)


async def _finished(conn: asyncpg.Connection, job_id: uuid.UUID) -> lifecycle.JobState:
    async def probe() -> lifecycle.JobState | None:
        state = await current.get(conn, job_id)
        return state if state is not None and state.status in lifecycle.TERMINAL else None

    return await eventually(probe)


async def _events(
    event_store: store.EventStore, conn: asyncpg.Connection, job_id: uuid.UUID
) -> list[ev.JobEvent]:
    return [r.event for r in await event_store.history(conn, job_id)]


async def _submit(
    submitter: submission.Submitter, conn: asyncpg.Connection, **fields: Any
) -> uuid.UUID:
    payload = fields.pop("payload", {})
    job = await submitter.submit(conn, "test.failing", payload, actor="alice", **fields)
    return job.job_id


async def test_the_submission_wins_over_the_queue_which_wins_over_the_job_type(
    start_pool: PoolStarter,
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    submitter: submission.Submitter,
) -> None:
    await submitter.configure_queue(
        conn,
        "patient",
        wire.QueueSettings(retry_policy=retrypolicy.RetryPolicy(maximum_attempts=3)),
        actor="ops",
    )
    own = await _submit(
        submitter,
        conn,
        queue="patient",
        retry_policy=retrypolicy.RetryPolicy(maximum_attempts=4),
    )
    queued = await _submit(submitter, conn, queue="patient")
    typed = await _submit(submitter, conn)
    await start_pool()

    for job_id, attempts, source in (
        (own, 4, "submission"),
        (queued, 3, "queue"),
        (typed, 2, "job_type"),
    ):
        state = await _finished(conn, job_id)
        assert (state.status, state.attempt) == ("failed", attempts)
        history = await _events(event_store, conn, job_id)
        stop = history[-1]
        assert isinstance(stop, ev.JobFailed)
        assert (stop.reason, stop.attempt, stop.error_type) == (
            "max_attempts",
            attempts,
            "Retryable",
        )
        assert stop.policy is not None and stop.policy.maximum_attempts == attempts
        assert stop.policy.sources["maximum_attempts"] == source
        # The job type's intervals apply wherever nothing nearer names them.
        assert stop.policy.sources["initial_interval_seconds"] == "job_type"
        retries = [e for e in history if isinstance(e, ev.JobRetryScheduled)]
        assert [e.attempt for e in retries] == list(range(1, attempts))
        for e in retries:
            assert e.attempt is not None
            backoff = min(0.02, 0.01 * 2 ** (e.attempt - 1))  # FAST: no jitter
            assert e.delay_seconds == e.jittered_delay_seconds == pytest.approx(backoff)
            assert e.policy == stop.policy


async def test_an_error_type_the_policy_names_non_retryable_fails_the_job_at_once(
    start_pool: PoolStarter,
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    submitter: submission.Submitter,
) -> None:
    # ConnectionError is a base class of the error raised (Refused): names match the MRO.
    policy = retrypolicy.RetryPolicy(maximum_attempts=5, non_retryable_errors=("ConnectionError",))
    refused = await _submit(submitter, conn, payload={"error": "refused"}, retry_policy=policy)
    other = await _submit(
        submitter, conn, payload={"error": "value", "failures": 1}, retry_policy=policy
    )
    await start_pool()

    state = await _finished(conn, refused)
    assert (state.status, state.attempt, state.error) == ("failed", 1, "Refused: failure 1")
    stop = (await _events(event_store, conn, refused))[-1]
    assert isinstance(stop, ev.JobFailed)
    assert (stop.reason, stop.error_type) == ("non_retryable", "Refused")
    assert (await _finished(conn, other)).status == "completed"


async def test_a_handler_asking_for_a_delay_waits_exactly_that(
    start_pool: PoolStarter,
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    submitter: submission.Submitter,
) -> None:
    job_id = await _submit(submitter, conn, payload={"failures": 1, "after": 0.4})
    await start_pool()

    assert (await _finished(conn, job_id)).status == "completed"
    history = await _events(event_store, conn, job_id)
    scheduled = history[2]
    assert isinstance(scheduled, ev.JobRetryScheduled)
    assert scheduled.requested_delay_seconds == scheduled.jittered_delay_seconds == 0.4
    # Decided a moment before the database stamped the event: 0.4 s from the decision.
    wait = scheduled.next_attempt_at - scheduled.occurred_at
    assert timedelta(seconds=0.3) < wait <= timedelta(seconds=0.4)
    claimed = history[3]
    assert isinstance(claimed, ev.JobClaimed)
    assert claimed.occurred_at >= scheduled.next_attempt_at


async def test_a_job_stops_retrying_once_the_next_attempt_would_start_past_max_elapsed(
    start_pool: PoolStarter,
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    submitter: submission.Submitter,
) -> None:
    policy = retrypolicy.RetryPolicy(
        maximum_attempts=0,
        initial_interval_seconds=0.1,
        backoff_coefficient=1,
        maximum_interval_seconds=0.1,
        max_elapsed_seconds=0.5,
    )
    job_id = await _submit(submitter, conn, retry_policy=policy)
    await start_pool()

    state = await _finished(conn, job_id)
    assert state.status == "failed"
    history = await _events(event_store, conn, job_id)
    stop = history[-1]
    assert isinstance(stop, ev.JobFailed) and stop.reason == "max_elapsed"
    assert stop.policy is not None and stop.policy.max_elapsed_seconds == 0.5
    submitted = history[0].occurred_at
    for e in history:
        if isinstance(e, ev.JobRetryScheduled):
            assert e.next_attempt_at - submitted <= timedelta(seconds=0.5)
    note = timeline.why(stop)
    assert note is not None and note.endswith("stopped retrying: max_elapsed 0.5 s reached")


async def test_unlimited_attempts_retry_past_the_job_types_maximum(
    start_pool: PoolStarter,
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    submitter: submission.Submitter,
) -> None:
    job_id = await _submit(
        submitter,
        conn,
        payload={"failures": 5},
        retry_policy=retrypolicy.RetryPolicy(maximum_attempts=0),
    )
    assert (await current.get(conn, job_id)).max_attempts == 0  # type: ignore[union-attr]
    await start_pool()

    state = await _finished(conn, job_id)
    assert (state.status, state.attempt) == ("completed", 6)


async def test_an_expired_lease_is_decided_by_the_jobs_policy_with_its_reason(
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    submitter: submission.Submitter,
    registry: jobtypes.Registry,
) -> None:
    once = retrypolicy.RetryPolicy(non_retryable_errors=("LeaseExpired",))
    never_twice = await _submit(submitter, conn, retry_policy=once)
    again = await _submit(submitter, conn)
    await claims.claim(
        conn, event_store, worker_id="w", lease_seconds=0.05, types=["test.failing"], limit=2
    )
    policies = retry.Policies(registry)

    async def expired() -> list[uuid.UUID]:
        return await leases.recover_expired(conn, event_store, actor="r", policies=policies)

    recovered = set(await eventually(expired))
    if len(recovered) < 2:
        recovered |= set(await eventually(expired))
    assert recovered == {never_twice, again}

    stopped = (await _events(event_store, conn, never_twice))[-1]
    assert isinstance(stopped, ev.JobLeaseExpired)
    assert (stopped.next_attempt_at, stopped.reason, stopped.error_type) == (
        None,
        "non_retryable",
        "LeaseExpired",
    )
    retried = (await _events(event_store, conn, again))[-1]
    assert isinstance(retried, ev.JobLeaseExpired) and retried.next_attempt_at is not None
    assert retried.attempt == 1 and retried.reason is None
    assert retried.policy is not None and retried.policy.sources["maximum_attempts"] == "job_type"


async def test_retry_decisions_are_counted_by_outcome_and_reason(
    start_pool: PoolStarter,
    conn: asyncpg.Connection,
    submitter: submission.Submitter,
) -> None:
    counted = metrics.Metrics(process=False)
    observed = submission.Submitter(
        submitter.registry, store.EventStore([metering.JobMetrics(counted)])
    )
    job_id = await _submit(observed, conn, payload={"failures": 1, "after": 0.05})
    doomed = await _submit(observed, conn)
    await start_pool(event_store=observed.store)  # counts what the pool appends
    await _finished(conn, job_id)
    await _finished(conn, doomed)

    def value(outcome: str, reason: str) -> float:
        sample = counted.registry.get_sample_value(
            "ledger_retry_decisions_total",
            {"job_type": "test.failing", "queue": "default", "outcome": outcome, "reason": reason},
        )
        return sample or 0.0

    assert value("retry", "after") == 1
    assert value("retry", "backoff") == 1
    assert value("gave_up", "max_attempts") == 1
