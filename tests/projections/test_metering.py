"""Job metrics counted from the events the store appends, with the right labels and values."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from ledger import bulk, commands, errors, lifecycle, metrics, store, wire
from ledger import events as ev
from projections import current, metering
from tests import factories

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def ago(seconds: float) -> datetime:
    """A moment `seconds` before now: a job due then has waited at least that long."""
    return datetime.now(UTC) - timedelta(seconds=seconds)


def seconds_between(earlier: datetime, later: datetime) -> float:
    return (later - earlier).total_seconds()


@pytest.fixture
def registry() -> metrics.Metrics:
    return metrics.Metrics(process=False)


@pytest.fixture
def metered(registry: metrics.Metrics) -> store.EventStore:
    return store.EventStore([metering.JobMetrics(registry)])


def value(registry: metrics.Metrics, name: str, **labels: str) -> float:
    found = registry.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


async def run(
    event_store: store.EventStore, conn: asyncpg.Connection, job_id: uuid.UUID, cmd: object
) -> None:
    await event_store.execute(conn, job_id, cmd, actor="w1")  # type: ignore[arg-type]


async def test_a_completed_job_counts_its_submission_wait_run_and_events(
    conn: asyncpg.Connection, metered: store.EventStore, registry: metrics.Metrics
) -> None:
    job = await factories.submit(metered, conn, job_type="report", queue="bulk", run_at=ago(2))
    await run(metered, conn, job, commands.ClaimJob(worker_id="w1", lease_seconds=30))
    await run(metered, conn, job, commands.CompleteJob(worker_id="w1", result=None))
    submitted, claimed, completed = (r.event for r in await metered.history(conn, job))
    assert isinstance(submitted, ev.JobSubmitted)

    labels = {"job_type": "report", "queue": "bulk"}
    assert value(registry, "ledger_jobs_submitted_total", **labels) == 1
    assert value(registry, "ledger_jobs_completed_total", **labels) == 1
    assert value(registry, "ledger_jobs_failed_total", **labels) == 0
    wait = {"job_type": "report"}
    assert value(registry, "ledger_job_queue_wait_seconds_count", **wait) == 1
    waited = seconds_between(submitted.run_at, claimed.occurred_at)
    assert waited >= 2
    assert value(registry, "ledger_job_queue_wait_seconds_sum", **wait) == waited
    ran = seconds_between(claimed.occurred_at, completed.occurred_at)
    assert value(registry, "ledger_job_run_duration_seconds_sum", **wait) == ran
    assert value(registry, "ledger_job_run_duration_seconds_bucket", le="10.0", **wait) == 1
    for tag in ("job.submitted.v1", "job.claimed.v1", "job.completed.v1"):
        assert value(registry, "ledger_events_appended_total", type=tag) == 1


async def test_retries_failures_cancellations_and_lease_recoveries_are_counted(
    conn: asyncpg.Connection, metered: store.EventStore, registry: metrics.Metrics
) -> None:
    labels = {"job_type": "noop", "queue": "default"}
    flaky = await factories.submit(metered, conn, max_attempts=2)
    claim = commands.ClaimJob(worker_id="w1", lease_seconds=30)
    await run(metered, conn, flaky, claim)
    fail = commands.FailAttempt(  # due again 5 s before the next claim
        worker_id="w1", error="boom", permanent=False, retry_delay=timedelta(seconds=-5)
    )
    await run(metered, conn, flaky, fail)
    assert value(registry, "ledger_jobs_retried_total", **labels) == 1
    waited_before = value(registry, "ledger_job_queue_wait_seconds_sum", job_type="noop")
    await run(metered, conn, flaky, claim)
    await run(metered, conn, flaky, commands.ExpireLease(retry_delay=timedelta(0)))  # none left
    assert value(registry, "ledger_lease_recoveries_total", **labels) == 1
    assert value(registry, "ledger_jobs_failed_total", **labels) == 1
    history = [r.event for r in await metered.history(conn, flaky)]
    retry, claimed_again = history[2], history[3]
    assert isinstance(retry, ev.JobRetryScheduled) and retry.next_attempt_at is not None
    waited = seconds_between(retry.next_attempt_at, claimed_again.occurred_at)
    assert waited >= 5
    assert value(registry, "ledger_job_queue_wait_seconds_sum", job_type="noop") == (
        waited_before + waited
    )
    assert value(registry, "ledger_job_run_duration_seconds_count", job_type="noop") == 1

    await run(metered, conn, flaky, commands.RetryJob())  # a manual retry
    assert value(registry, "ledger_jobs_retried_total", **labels) == 2
    await run(metered, conn, flaky, commands.CancelJob(reason="enough"))
    assert value(registry, "ledger_jobs_cancelled_total", **labels) == 1
    assert value(registry, "ledger_events_appended_total", type="job.lease_expired.v1") == 1


async def test_a_snooze_is_counted_and_its_wait_measured_from_its_end(
    conn: asyncpg.Connection, metered: store.EventStore, registry: metrics.Metrics
) -> None:
    labels = {"job_type": "noop", "queue": "default"}
    job = await factories.submit(metered, conn)
    claim = commands.ClaimJob(worker_id="w1", lease_seconds=30)
    await run(metered, conn, job, claim)
    snooze = commands.SnoozeJob(worker_id="w1", delay=timedelta(seconds=-3), max_snoozes=5)
    await run(metered, conn, job, snooze)
    assert value(registry, "ledger_jobs_snoozed_total", **labels) == 1
    assert value(registry, "ledger_jobs_retried_total", **labels) == 0
    assert value(registry, "ledger_job_run_duration_seconds_count", job_type="noop") == 1
    waited_before = value(registry, "ledger_job_queue_wait_seconds_sum", job_type="noop")
    await run(metered, conn, job, claim)
    snoozed, claimed = [r.event for r in await metered.history(conn, job)][2:4]
    assert isinstance(snoozed, ev.JobSnoozed)
    waited = seconds_between(snoozed.run_at, claimed.occurred_at)
    assert waited >= 3
    assert value(registry, "ledger_job_queue_wait_seconds_sum", job_type="noop") == (
        waited_before + waited
    )


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
    recorded = await event_store.append(conn, [*submitted, *claimed])
    assert value(registry, "ledger_jobs_submitted_total", job_type="t", queue="default") == 1
    # Due at the submission's run_at (T0, as decided), claimed when the database recorded it.
    waited = seconds_between(T0, recorded[1].event.occurred_at)
    assert value(registry, "ledger_job_queue_wait_seconds_sum", job_type="t") == waited


@pytest.mark.parametrize("caller_knows_the_state", [True, False])
async def test_wait_and_run_time_are_the_same_whether_the_caller_passes_the_state_or_not(
    conn: asyncpg.Connection,
    metered: store.EventStore,
    registry: metrics.Metrics,
    caller_knows_the_state: bool,
) -> None:
    job = await factories.submit(metered, conn, job_type="report", queue="bulk", run_at=ago(3))
    for cmd in (
        commands.ClaimJob(worker_id="w1", lease_seconds=30),
        commands.CompleteJob(worker_id="w1", result=None),
    ):
        async with conn.transaction():
            state = await current.get(conn, job)
            decided = commands.decide(state, cmd, job_id=job, actor="w1", now=datetime.now(UTC))
            known = {job: state} if caller_knows_the_state and state is not None else None
            await metered.append(conn, decided, before=known)
    submitted, claimed, completed = (r.event for r in await metered.history(conn, job))
    assert isinstance(submitted, ev.JobSubmitted)

    waited = seconds_between(submitted.run_at, claimed.occurred_at)
    ran = seconds_between(claimed.occurred_at, completed.occurred_at)
    assert value(registry, "ledger_job_queue_wait_seconds_sum", job_type="report") == waited
    assert value(registry, "ledger_job_run_duration_seconds_sum", job_type="report") == ran
    assert value(registry, "ledger_jobs_completed_total", job_type="report", queue="bulk") == 1


async def test_jobs_changed_by_bulk_actions_count_by_action(
    conn: asyncpg.Connection, metered: store.EventStore, registry: metrics.Metrics
) -> None:
    jobs = await factories.submit_many(metered, conn, 3)
    await run(metered, conn, jobs[0], commands.CancelJob())  # one by one: not a bulk action
    pending = wire.BulkFilter(status="pending")
    await bulk.act(conn, metered, "cancel", pending, actor="ops")
    await bulk.act(
        conn, metered, "retry", wire.BulkFilter(status="cancelled"), limit=1, actor="ops"
    )

    assert value(registry, "ledger_jobs_bulk_changed_total", action="cancel") == 2
    assert value(registry, "ledger_jobs_bulk_changed_total", action="retry") == 1
    assert value(registry, "ledger_jobs_cancelled_total", job_type="noop", queue="default") == 3


async def test_workflow_dependency_decisions_are_counted_by_decision_once_per_append(
    conn: asyncpg.Connection, metered: store.EventStore, registry: metrics.Metrics
) -> None:
    from tests.db import test_rebuild, test_workflows

    job = test_workflows.job
    flows = test_rebuild.workflow_submitter()
    failing = await flows.submit_workflow(
        conn,
        [
            job("a"),
            job("b", "a"),  # cancelled (the default)
            job("c", "a", mode="skip"),
            job("d", "a"),  # cancelled, and its own dependant decided in the next wave:
            job("e", "d", mode="run"),  # unblocked
        ],
        actor="app",
    )
    a = failing.jobs[0].job_id
    await run(metered, conn, a, commands.ClaimJob(worker_id="w1", lease_seconds=30))
    assert value(registry, "ledger_workflow_dependency_decisions_total", decision="cancelled") == 0
    fail = commands.FailAttempt(
        worker_id="w1", error="boom", permanent=True, retry_delay=timedelta(0)
    )
    await run(metered, conn, a, fail)
    counted = {
        d: value(registry, "ledger_workflow_dependency_decisions_total", decision=d)
        for d in ("unblocked", "skipped", "cancelled")
    }
    assert counted == {"unblocked": 1, "skipped": 1, "cancelled": 2}

    # Two appends in one transaction: the second, which decides nothing, counts nothing.
    chain = await flows.submit_workflow(conn, [job("x"), job("y", "x")], actor="app")
    x = chain.jobs[0].job_id
    await run(metered, conn, x, commands.ClaimJob(worker_id="w1", lease_seconds=30))
    e = failing.jobs[4].job_id
    async with conn.transaction():
        await run(metered, conn, x, commands.CompleteJob(worker_id="w1", result="X"))
        await run(metered, conn, e, commands.ClaimJob(worker_id="w1", lease_seconds=30))
    assert value(registry, "ledger_workflow_dependency_decisions_total", decision="unblocked") == 2
    y = await current.get(conn, chain.jobs[1].job_id)
    assert y is not None and y.status == "pending"
