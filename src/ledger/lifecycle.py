"""A job's state as a pure fold of its events: `evolve(state, event) -> state`.

The SQL function `job_view_step` (sql/0051; its current text in sql/schema.sql) is
the same fold in SQL: the append projects the live view with it, and the rebuilds
and as-of queries fold with it (the aggregate `job_view_fold`). A property test
holds the two equal. Change both together.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Final, Literal

import msgspec

from ledger import events as ev
from ledger import retrypolicy

Status = Literal[
    "pending", "processing", "completed", "failed", "retrying", "cancelled", "blocked", "skipped"
]
STATUSES: Final[tuple[Status, ...]] = (
    "pending",
    "processing",
    "completed",
    "failed",
    "retrying",
    "cancelled",
    "blocked",  # a workflow job waiting for its dependencies (sql/0077)
    "skipped",  # a workflow job ended without running: an upstream failed, `skip`
)
TERMINAL: Final[frozenset[str]] = frozenset({"completed", "failed", "cancelled", "skipped"})
RUNNABLE: Final[frozenset[str]] = frozenset({"pending", "retrying"})


class JobState(msgspec.Struct, frozen=True, kw_only=True):
    """One row of the current-state view (the `jobs` table), column for column."""

    job_id: uuid.UUID
    version: int
    type: str
    queue: str
    priority: int
    status: Status
    payload: dict[str, Any]
    result: Any
    error: str | None
    attempt: int
    max_attempts: int
    timeout_seconds: float
    backoff_base_seconds: float
    backoff_cap_seconds: float
    run_at: datetime | None
    worker_id: str | None
    lease_until: datetime | None
    idempotency_key: str | None
    replay_of: uuid.UUID | None
    submitted_by: str
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    concurrency_key: str | None = None
    tenant: str = ev.DEFAULT_TENANT
    snoozes: int = 0  # the handler's snoozes since submission or the last manual retry
    schedule_id: str | None = None  # the schedule that fired the job (sql/0074)
    schedule_slot: datetime | None = None  # and the slot it fired for
    retry_policy: retrypolicy.RetryPolicy | None = None  # the submission's own (sql/0075)
    # A unique job's key and the statuses in which it holds it (sql/0076); None otherwise.
    unique_key: str | None = None
    unique_states: tuple[str, ...] | None = None
    workflow_id: uuid.UUID | None = None  # the workflow it belongs to (sql/0077)


class FoldError(ValueError):
    """The events do not form a valid history (an event before submission, a double submit)."""


def evolve(state: JobState | None, event: ev.Event) -> JobState:
    """The state after `event`; pure, total over valid histories."""
    if isinstance(event, ev.JobSubmitted):
        if state is not None:
            raise FoldError(f"job {event.job_id} submitted twice")
        blocked = bool(event.depends_on)
        return JobState(
            job_id=event.job_id,
            version=event.version,
            type=event.job_type,
            queue=event.queue,
            priority=ev.PRIORITY_RANK[event.priority],
            status="blocked" if blocked else "pending",
            payload=event.payload,
            result=None,
            error=None,
            attempt=0,
            max_attempts=event.max_attempts,
            timeout_seconds=event.timeout_seconds,
            backoff_base_seconds=event.backoff_base_seconds,
            backoff_cap_seconds=event.backoff_cap_seconds,
            run_at=None if blocked else event.run_at,
            worker_id=None,
            lease_until=None,
            idempotency_key=event.idempotency_key,
            replay_of=event.replay_of,
            submitted_by=event.actor,
            created_at=event.occurred_at,
            updated_at=event.occurred_at,
            started_at=None,
            completed_at=None,
            concurrency_key=event.concurrency_key,
            schedule_id=event.schedule_id,
            schedule_slot=event.schedule_slot,
            retry_policy=event.retry_policy,
            unique_key=None if event.unique is None else event.unique.key,
            unique_states=None if event.unique is None else event.unique.states,
            workflow_id=event.workflow_id,
        )
    if state is None:
        raise FoldError(f"{ev.type_tag(event)} for job {event.job_id} before its submission")
    common: dict[str, Any] = {"version": event.version, "updated_at": event.occurred_at}
    released: dict[str, Any] = {"worker_id": None, "lease_until": None}
    match event:
        case ev.JobClaimed():
            changes = {
                "status": "processing",
                "attempt": event.attempt,
                "worker_id": event.worker_id,
                "lease_until": event.lease_until,
                "started_at": event.occurred_at,
                "run_at": None,
            }
        case ev.JobCompleted():
            changes = {
                "status": "completed",
                "result": event.result,
                "error": None,
                "completed_at": event.occurred_at,
                **released,
            }
        case ev.JobRetryScheduled() | ev.JobFailed() | ev.JobLeaseExpired():
            next_at = None if isinstance(event, ev.JobFailed) else event.next_attempt_at
            changes = {"error": event.error, **released}
            if next_at is not None:
                changes |= {"status": "retrying", "run_at": next_at}
            else:
                changes |= {"status": "failed", "run_at": None, "completed_at": event.occurred_at}
        case ev.JobCancelled():
            changes = {
                "status": "cancelled",
                "run_at": None,
                "completed_at": event.occurred_at,
                **released,
            }
        case ev.JobReleased():
            changes = {
                "status": "pending",
                "attempt": state.attempt - 1,
                "run_at": event.occurred_at,
                **released,
            }
        case ev.JobSnoozed():
            changes = {
                "status": "pending",
                "attempt": event.attempt - 1,
                "run_at": event.run_at,
                "snoozes": event.snooze,
                **released,
            }
        case ev.JobRetried():
            changes = {
                "status": "blocked" if event.blocked else "pending",
                "attempt": 0,
                "snoozes": 0,
                "max_attempts": (
                    state.max_attempts if event.max_attempts is None else event.max_attempts
                ),
                "result": None,
                "error": None,
                "run_at": None if event.blocked else event.occurred_at,
                "started_at": None,
                "completed_at": None,
            }
        case ev.JobReplaced():
            changes = {"payload": event.payload, "run_at": event.run_at}
        case ev.JobUnblocked():
            changes = {"status": "pending", "run_at": event.occurred_at}
        case ev.JobSkipped():
            changes = {"status": "skipped", "run_at": None, "completed_at": event.occurred_at}
        case ev.JobReplayed():
            changes = {}  # history only: the new job's submission carries replay_of
        case _:
            raise FoldError(f"unknown event {ev.type_tag(event)} for job {event.job_id}")
    return msgspec.structs.replace(state, **common, **changes)


def fold(events: Iterable[ev.Event], state: JobState | None = None) -> JobState | None:
    """The state after all of `events`, in order."""
    for event in events:
        state = evolve(state, event)
    return state
