"""Job metrics counted from the events the store appends, with the right labels and values."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from ledger import commands, errors, lifecycle, metrics, store
from projections import current, metering
from tests import factories

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def registry() -> metrics.Metrics:
    return metrics.Metrics(process=False)


@pytest.fixture
def metered(registry: metrics.Metrics, clock: Clock) -> store.EventStore:
    return store.EventStore([metering.JobMetrics(registry)], clock=clock)


def value(registry: metrics.Metrics, name: str, **labels: str) -> float:
    found = registry.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


async def run(
    event_store: store.EventStore, conn: asyncpg.Connection, job_id: uuid.UUID, cmd: object
) -> None:
    await event_store.execute(conn, job_id, cmd, actor="w1")  # type: ignore[arg-type]


async def test_a_completed_job_counts_its_submission_wait_run_and_events(
    conn: asyncpg.Connection, metered: store.EventStore, registry: metrics.Metrics, clock: Clock
) -> None:
    job = await factories.submit(metered, conn, job_type="report", queue="bulk")
    clock.advance(2)
    await run(metered, conn, job, commands.ClaimJob(worker_id="w1", lease_seconds=30))
    clock.advance(0.5)
    await run(metered, conn, job, commands.CompleteJob(worker_id="w1", result=None))

    labels = {"job_type": "report", "queue": "bulk"}
    assert value(registry, "ledger_jobs_submitted_total", **labels) == 1
    assert value(registry, "ledger_jobs_completed_total", **labels) == 1
    assert value(registry, "ledger_jobs_failed_total", **labels) == 0
    wait = {"job_type": "report"}
    assert value(registry, "ledger_job_queue_wait_seconds_count", **wait) == 1
    assert value(registry, "ledger_job_queue_wait_seconds_sum", **wait) == 2.0
    assert value(registry, "ledger_job_run_duration_seconds_sum", **wait) == 0.5
    assert value(registry, "ledger_job_run_duration_seconds_bucket", le="0.5", **wait) == 1
    assert value(registry, "ledger_job_run_duration_seconds_bucket", le="0.25", **wait) == 0
    for tag in ("job.submitted.v1", "job.claimed.v1", "job.completed.v1"):
        assert value(registry, "ledger_events_appended_total", type=tag) == 1


async def test_retries_failures_cancellations_and_lease_recoveries_are_counted(
    conn: asyncpg.Connection, metered: store.EventStore, registry: metrics.Metrics, clock: Clock
) -> None:
    labels = {"job_type": "noop", "queue": "default"}
    flaky = await factories.submit(metered, conn, max_attempts=2)
    claim = commands.ClaimJob(worker_id="w1", lease_seconds=30)
    await run(metered, conn, flaky, claim)
    clock.advance(1)
    fail = commands.FailAttempt(
        worker_id="w1", error="boom", permanent=False, retry_delay=timedelta(seconds=10)
    )
    await run(metered, conn, flaky, fail)
    assert value(registry, "ledger_jobs_retried_total", **labels) == 1
    clock.advance(15)  # claimed 5 s after the retry became due
    await run(metered, conn, flaky, claim)
    await run(metered, conn, flaky, commands.ExpireLease(retry_delay=timedelta(0)))  # none left
    assert value(registry, "ledger_lease_recoveries_total", **labels) == 1
    assert value(registry, "ledger_jobs_failed_total", **labels) == 1
    assert value(registry, "ledger_job_queue_wait_seconds_sum", job_type="noop") == 5.0
    assert value(registry, "ledger_job_run_duration_seconds_count", job_type="noop") == 1

    await run(metered, conn, flaky, commands.RetryJob())  # a manual retry
    assert value(registry, "ledger_jobs_retried_total", **labels) == 2
    await run(metered, conn, flaky, commands.CancelJob(reason="enough"))
    assert value(registry, "ledger_jobs_cancelled_total", **labels) == 1
    assert value(registry, "ledger_events_appended_total", type="job.lease_expired.v1") == 1


async def test_a_losing_writer_counts_nothing(
    conn: asyncpg.Connection, metered: store.EventStore, registry: metrics.Metrics
) -> None:
    job = await factories.submit(metered, conn)
    stale = store.EventStore([metering.JobMetrics(registry)])
    state = await stale.load(conn, job)
    assert state is not None
    await run(metered, conn, job, commands.CancelJob())
    decided = commands.decide(
        state, commands.CancelJob(), job_id=job, actor="late", now=datetime.now(UTC)
    )
    with pytest.raises(errors.VersionConflict):
        await stale.append(conn, decided)
    assert value(registry, "ledger_jobs_cancelled_total", job_type="noop", queue="default") == 1
    assert value(registry, "ledger_events_appended_total", type="job.cancelled.v1") == 1


async def test_several_events_of_one_job_in_one_append_are_measured_in_order(
    conn: asyncpg.Connection, registry: metrics.Metrics
) -> None:
    job = uuid.uuid4()
    submitted = commands.decide(
        None, factories.submit_command(job_type="t"), job_id=job, actor="a", now=T0
    )
    state = lifecycle.fold(submitted)
    claimed = commands.decide(
        state,
        commands.ClaimJob(worker_id="w", lease_seconds=5),
        job_id=job,
        actor="w",
        now=T0 + timedelta(seconds=3),
    )
    event_store = store.EventStore([metering.JobMetrics(registry)])
    await event_store.append(conn, [*submitted, *claimed])
    assert value(registry, "ledger_jobs_submitted_total", job_type="t", queue="default") == 1
    assert value(registry, "ledger_job_queue_wait_seconds_sum", job_type="t") == 3.0


@pytest.mark.parametrize("caller_knows_the_state", [True, False])
async def test_wait_and_run_time_are_the_same_whether_the_caller_passes_the_state_or_not(
    conn: asyncpg.Connection,
    metered: store.EventStore,
    registry: metrics.Metrics,
    clock: Clock,
    caller_knows_the_state: bool,
) -> None:
    job = await factories.submit(metered, conn, job_type="report", queue="bulk")
    for seconds, cmd in (
        (3, commands.ClaimJob(worker_id="w1", lease_seconds=30)),
        (5, commands.CompleteJob(worker_id="w1", result=None)),
    ):
        clock.advance(seconds)
        async with conn.transaction():
            state = await current.get(conn, job)
            decided = commands.decide(state, cmd, job_id=job, actor="w1", now=clock())
            known = {job: state} if caller_knows_the_state and state is not None else None
            await metered.append(conn, decided, before=known)

    assert value(registry, "ledger_job_queue_wait_seconds_sum", job_type="report") == 3
    assert value(registry, "ledger_job_run_duration_seconds_sum", job_type="report") == 5
    assert value(registry, "ledger_jobs_completed_total", job_type="report", queue="bulk") == 1
