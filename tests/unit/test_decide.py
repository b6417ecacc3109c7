"""decide/evolve without a database: the lifecycle's rules."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from ledger import commands, errors, lifecycle
from ledger import events as ev

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
JOB = uuid.UUID(int=1)


def _run(*steps: commands.Command, max_attempts: int = 2) -> lifecycle.JobState:
    state = lifecycle.fold(
        commands.decide(
            None,
            commands.SubmitJob(job_type="t", payload={}, max_attempts=max_attempts),
            job_id=JOB,
            actor="alice",
            now=NOW,
        )
    )
    for step in steps:
        state = lifecycle.fold(commands.decide(state, step, job_id=JOB, actor="x", now=NOW), state)
    assert state is not None
    return state


CLAIM = commands.ClaimJob(worker_id="w", lease_seconds=10)
DELAY = timedelta(seconds=30)
LATER = NOW + DELAY


def test_failures_retry_until_attempts_run_out() -> None:
    fail = commands.FailAttempt(worker_id="w", error="e", permanent=False, retry_delay=DELAY)
    state = _run(CLAIM, fail)
    assert (state.status, state.attempt, state.run_at) == ("retrying", 1, LATER)
    state = _run(CLAIM, fail, CLAIM, fail)
    assert (state.status, state.attempt, state.error) == ("failed", 2, "e")


def test_a_permanent_error_fails_at_once() -> None:
    state = _run(
        CLAIM,
        commands.FailAttempt(worker_id="w", error="bad", permanent=True, retry_delay=DELAY),
        max_attempts=5,
    )
    assert state.status == "failed"


def test_an_expired_lease_counts_as_a_failed_attempt() -> None:
    state = _run(CLAIM, commands.ExpireLease(retry_delay=DELAY))
    assert (state.status, state.attempt, state.worker_id) == ("retrying", 1, None)
    assert state.error is not None and "lease expired" in state.error


def test_a_released_job_does_not_spend_an_attempt() -> None:
    state = _run(CLAIM, commands.ReleaseJob(worker_id="w"))
    assert (state.status, state.attempt) == ("pending", 0)


def test_only_the_lease_holder_may_complete() -> None:
    state = _run(CLAIM)
    with pytest.raises(errors.InvalidTransition):
        commands.decide(
            state, commands.CompleteJob(worker_id="other", result=1), job_id=JOB, actor="x", now=NOW
        )


@pytest.mark.parametrize(
    "final", [commands.CompleteJob(worker_id="w", result=None), commands.CancelJob()]
)
def test_finished_jobs_cannot_be_cancelled(final: commands.Command) -> None:
    state = _run(CLAIM, final)
    with pytest.raises(errors.InvalidTransition, match="cannot cancel"):
        commands.decide(state, commands.CancelJob(), job_id=JOB, actor="x", now=NOW)


def test_retry_resets_attempts_and_keeps_history_versioned() -> None:
    state = _run(
        CLAIM,
        commands.FailAttempt(worker_id="w", error="e", permanent=True, retry_delay=DELAY),
        commands.RetryJob(max_attempts=4),
    )
    assert (state.status, state.attempt, state.max_attempts, state.error, state.version) == (
        "pending",
        0,
        4,
        None,
        4,
    )


def test_commands_on_unknown_jobs_are_refused() -> None:
    with pytest.raises(errors.UnknownJob):
        commands.decide(None, commands.CancelJob(), job_id=JOB, actor="x", now=NOW)


def test_fold_refuses_a_history_without_submission() -> None:
    claimed = ev.JobClaimed(
        job_id=JOB, version=1, actor="w", occurred_at=NOW, worker_id="w", attempt=1, lease_until=NOW
    )
    with pytest.raises(lifecycle.FoldError):
        lifecycle.fold([claimed])
