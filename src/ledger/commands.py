"""Commands (imperative) and the pure `decide` that turns one into events.

`decide(state, command, actor=, now=)` checks the command against the job's
current state and returns the events to append, or raises InvalidTransition.
It reads no clock and no database: time comes in as `now`, and randomness
(the jittered backoff delay) with the command, so a recorded retry's
`next_attempt_at` is `now` plus exactly the delay that was drawn. `now` is the
events' proposed time only: the database records each at its own clock's
reading (sql/0056), a moment later.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any

import msgspec

from ledger import errors, retrypolicy
from ledger import events as ev
from ledger.lifecycle import RUNNABLE, TERMINAL, JobState


class SubmitJob(msgspec.Struct, frozen=True, kw_only=True):
    job_type: str
    payload: dict[str, Any]
    queue: str = "default"
    priority: ev.Priority = "normal"
    max_attempts: Annotated[int, msgspec.Meta(ge=0)] = 3  # 0: unlimited (a retry policy's)
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 300.0
    backoff_base_seconds: Annotated[float, msgspec.Meta(ge=0)] = 1.0
    backoff_cap_seconds: Annotated[float, msgspec.Meta(ge=0)] = 300.0
    run_at: datetime | None = None
    idempotency_key: str | None = None
    replay_of: uuid.UUID | None = None
    concurrency_key: str | None = None
    schedule_id: str | None = None  # the schedule and slot that fired it (ledger.schedules)
    schedule_slot: datetime | None = None
    retry_policy: retrypolicy.RetryPolicy | None = None  # the submission's own, if any
    unique: ev.UniqueKey | None = None
    # A workflow's job (ledger.workflows): its workflow, name, dependencies and mode.
    workflow_id: uuid.UUID | None = None
    name: str | None = None
    depends_on: list[uuid.UUID] | None = None
    on_upstream_failure: ev.UpstreamFailure | None = None

    webhook: ev.JobWebhook | None = None  # the job's own result webhook (issue #19)


class ReplaceJob(msgspec.Struct, frozen=True, kw_only=True):
    """A unique submission's duplicate takes over a waiting job: its payload and run time."""

    payload: dict[str, Any]
    run_at: datetime


class ClaimJob(msgspec.Struct, frozen=True, kw_only=True):
    worker_id: str
    lease_seconds: float
    queue_version: int | None = None  # the job's queue's settings version, if it has any
    tenant_version: int | None = None  # the job's tenant's settings version, if it has any


class CompleteJob(msgspec.Struct, frozen=True, kw_only=True):
    worker_id: str
    result: Any


class FailAttempt(msgspec.Struct, frozen=True, kw_only=True):
    """The running attempt failed; retried `retry_delay` after it is recorded, if attempts are left and not permanent."""

    worker_id: str
    error: str
    permanent: bool
    retry_delay: timedelta
    # The retry policy's decision (workers.retry.decide_failure): whether to retry (it, not
    # the job's max_attempts, decides) and why, recorded in the event. None: decided by
    # `permanent` and the job's max_attempts, with no reasons recorded.
    decision: retrypolicy.Decision | None = None


class SnoozeJob(msgspec.Struct, frozen=True, kw_only=True):
    """The running attempt snoozed: wait `delay` without counting the attempt, or fail
    when the job has already snoozed `max_snoozes` times."""

    worker_id: str
    delay: timedelta
    max_snoozes: int
    reason: str | None = None


class ExpireLease(msgspec.Struct, frozen=True, kw_only=True):
    """The job's worker stopped renewing its lease (it died): a failed attempt, retried `retry_delay` later."""

    retry_delay: timedelta
    decision: retrypolicy.Decision | None = None  # as FailAttempt's


class ReleaseJob(msgspec.Struct, frozen=True, kw_only=True):
    worker_id: str


class CancelJob(msgspec.Struct, frozen=True, kw_only=True):
    reason: str | None = None
    bulk_request_id: str | None = None  # the bulk cancel this is part of (ledger.bulk)


class RetryJob(msgspec.Struct, frozen=True, kw_only=True):
    max_attempts: Annotated[int, msgspec.Meta(ge=1)] | None = None
    bulk_request_id: str | None = None  # the bulk retry this is part of (ledger.bulk)


class RerunJob(msgspec.Struct, frozen=True, kw_only=True):
    """A workflow's retry of one of its ended jobs (any terminal status): run it again, or
    (`blocked`) wait again for the dependencies the same retry re-runs."""

    blocked: bool


class MarkResubmitted(msgspec.Struct, frozen=True, kw_only=True):
    """Record on the original job that it was submitted again as `replayed_as`."""

    replayed_as: uuid.UUID


Command = (
    SubmitJob
    | ClaimJob
    | CompleteJob
    | FailAttempt
    | ExpireLease
    | ReleaseJob
    | SnoozeJob
    | CancelJob
    | RetryJob
    | RerunJob
    | MarkResubmitted
    | ReplaceJob
)

_VERB: dict[type[Any], str] = {
    SubmitJob: "submit",
    ClaimJob: "claim",
    CompleteJob: "complete",
    FailAttempt: "fail",
    ExpireLease: "expire the lease of",
    ReleaseJob: "release",
    SnoozeJob: "snooze",
    CancelJob: "cancel",
    RetryJob: "retry",
    RerunJob: "re-run",
    MarkResubmitted: "mark as resubmitted",
    ReplaceJob: "replace",
}


def decide(
    state: JobState | None,
    command: Command,
    *,
    job_id: uuid.UUID,
    actor: str,
    now: datetime,
) -> list[ev.JobEvent]:
    """The events that carry out `command` on a job in `state` (None: not submitted)."""
    if isinstance(command, SubmitJob):
        if state is not None:
            raise errors.InvalidTransition(job_id, state.status, "submit")
        return [
            ev.JobSubmitted(
                job_id=job_id,
                version=1,
                actor=actor,
                occurred_at=now,
                job_type=command.job_type,
                queue=command.queue,
                priority=command.priority,
                payload=command.payload,
                max_attempts=command.max_attempts,
                timeout_seconds=float(command.timeout_seconds),
                backoff_base_seconds=float(command.backoff_base_seconds),
                backoff_cap_seconds=float(command.backoff_cap_seconds),
                run_at=command.run_at or now,
                idempotency_key=command.idempotency_key,
                replay_of=command.replay_of,
                concurrency_key=command.concurrency_key,
                schedule_id=command.schedule_id,
                schedule_slot=command.schedule_slot,
                retry_policy=command.retry_policy,
                unique=command.unique,
                workflow_id=command.workflow_id,
                name=command.name,
                depends_on=command.depends_on,
                on_upstream_failure=command.on_upstream_failure,
                webhook=command.webhook,
            )
        ]
    if state is None:
        raise errors.UnknownJob(job_id)
    envelope: dict[str, Any] = {
        "job_id": job_id,
        "version": state.version + 1,
        "actor": actor,
        "occurred_at": now,
    }

    def refuse() -> errors.InvalidTransition:
        return errors.InvalidTransition(job_id, state.status, _VERB[type(command)])

    attempts_left = state.max_attempts == 0 or state.attempt < state.max_attempts
    match command:
        case ClaimJob():
            if state.status not in RUNNABLE:
                raise refuse()
            return [
                ev.JobClaimed(
                    **envelope,
                    worker_id=command.worker_id,
                    attempt=state.attempt + 1,
                    lease_until=now + timedelta(seconds=command.lease_seconds),
                    queue_version=command.queue_version,
                    tenant_version=command.tenant_version,
                )
            ]
        case CompleteJob():
            _require_holder(state, command.worker_id, refuse)
            return [ev.JobCompleted(**envelope, result=command.result)]
        case FailAttempt():
            _require_holder(state, command.worker_id, refuse)
            why = _why(command.decision)
            if command.decision is not None:
                retries = command.decision.retry and not command.permanent
            else:
                retries = attempts_left and not command.permanent
            if not retries:
                return [ev.JobFailed(**envelope, error=command.error, **why)]
            why.pop("reason")
            return [
                ev.JobRetryScheduled(
                    **envelope,
                    error=command.error,
                    next_attempt_at=now + command.retry_delay,
                    **why,
                )
            ]
        case ExpireLease():
            if state.status != "processing" or state.worker_id is None:
                raise refuse()
            why = _why(command.decision)
            why.pop("requested_delay_seconds")
            retries = attempts_left if command.decision is None else command.decision.retry
            return [
                ev.JobLeaseExpired(
                    **envelope,
                    worker_id=state.worker_id,
                    error=f"lease expired: worker {state.worker_id} stopped renewing it",
                    next_attempt_at=now + command.retry_delay if retries else None,
                    **why,
                )
            ]
        case ReleaseJob():
            _require_holder(state, command.worker_id, refuse)
            return [ev.JobReleased(**envelope, worker_id=command.worker_id)]
        case SnoozeJob():
            _require_holder(state, command.worker_id, refuse)
            if state.snoozes >= command.max_snoozes:
                return [
                    ev.JobFailed(
                        **envelope,
                        error=(
                            f"snoozed {state.snoozes} times, the most its job type allows "
                            f"(max_snoozes {command.max_snoozes}); last asked: "
                            f"{command.reason or 'no reason given'}"
                        ),
                    )
                ]
            return [
                ev.JobSnoozed(
                    **envelope,
                    worker_id=command.worker_id,
                    attempt=state.attempt,
                    snooze=state.snoozes + 1,
                    max_snoozes=command.max_snoozes,
                    seconds=command.delay.total_seconds(),
                    run_at=now + command.delay,
                    reason=command.reason,
                )
            ]
        case CancelJob():
            if state.status in TERMINAL:
                raise refuse()
            return [
                ev.JobCancelled(
                    **envelope, reason=command.reason, bulk_request_id=command.bulk_request_id
                )
            ]
        case RetryJob():
            if state.status not in ("failed", "cancelled"):
                raise refuse()
            return [
                ev.JobRetried(
                    **envelope,
                    max_attempts=command.max_attempts,
                    bulk_request_id=command.bulk_request_id,
                )
            ]
        case ReplaceJob():
            if state.status not in RUNNABLE:
                raise refuse()
            return [ev.JobReplaced(**envelope, payload=command.payload, run_at=command.run_at)]
        case RerunJob():
            if state.status not in TERMINAL:
                raise refuse()
            return [ev.JobRetried(**envelope, blocked=command.blocked or None)]
        case MarkResubmitted():
            return [ev.JobReplayed(**envelope, replayed_as=command.replayed_as)]
    raise refuse()  # pragma: no cover - every command is matched above


def resubmit(
    state: JobState, *, new_job_id: uuid.UUID, actor: str, now: datetime
) -> list[ev.JobEvent]:
    """Submit `state`'s job again as `new_job_id`: the new job's submission names the original
    (`replay_of`) and the original records the new one (`job.replayed.v1`), to append together."""
    priority = next(name for name, rank in ev.PRIORITY_RANK.items() if rank == state.priority)
    submit = SubmitJob(
        job_type=state.type,
        payload=state.payload,
        queue=state.queue,
        priority=priority,  # type: ignore[arg-type]
        max_attempts=state.max_attempts,
        timeout_seconds=state.timeout_seconds,
        backoff_base_seconds=state.backoff_base_seconds,
        backoff_cap_seconds=state.backoff_cap_seconds,
        replay_of=state.job_id,
        concurrency_key=state.concurrency_key,
        retry_policy=state.retry_policy,
    )
    return [
        *decide(None, submit, job_id=new_job_id, actor=actor, now=now),
        *decide(
            state,
            MarkResubmitted(replayed_as=new_job_id),
            job_id=state.job_id,
            actor=actor,
            now=now,
        ),
    ]


def _why(decision: retrypolicy.Decision | None) -> dict[str, Any]:
    """The fields of a failed attempt's event that say why it was retried or not."""
    if decision is None:
        return {
            "reason": None,
            "attempt": None,
            "error_type": None,
            "policy": None,
            "delay_seconds": None,
            "jittered_delay_seconds": None,
            "requested_delay_seconds": None,
        }
    return {
        "reason": decision.reason,
        "attempt": decision.attempt,
        "error_type": decision.error_type,
        "policy": decision.policy,
        "delay_seconds": decision.delay_seconds,
        "jittered_delay_seconds": decision.jittered_delay_seconds,
        "requested_delay_seconds": decision.requested_delay_seconds,
    }


def _require_holder(state: JobState, worker_id: str, refuse: Any) -> None:
    if state.status != "processing" or state.worker_id != worker_id:
        raise refuse()
