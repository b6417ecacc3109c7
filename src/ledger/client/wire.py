"""What the client sends and receives: the API's own structs (`ledger.wire`), by the
client's names, and the options `submit` takes."""

from __future__ import annotations

from datetime import datetime
from typing import NotRequired, TypedDict

from ledger import events as ev
from ledger import retrypolicy, schedule_wire, wire

Job = wire.Job
RetryPolicy = retrypolicy.RetryPolicy
Submission = wire.Submission
RecordedEvent = wire.EventOut  # one recorded event, with its feed cursor and chain link
History = wire.JobHistory
HistoryEvent = wire.HistoryEvent  # a RecordedEvent with its `note`: why it happened, in words
Problem = wire.Problem
FieldError = wire.FieldError
JobList = wire.JobList
Batch = wire.BatchRequest
BatchResult = wire.BatchResult
BulkFilter = wire.BulkFilter
BulkResult = wire.BulkResult  # what a bulk retry or cancel did
DEFAULT_BULK_LIMIT = wire.DEFAULT_BULK_LIMIT
Unique = wire.Unique
WorkflowJob = wire.WorkflowJobIn  # one job of a workflow: a Submission with name, depends_on
Workflow = wire.WorkflowOut
WorkflowRequest = wire.WorkflowRequest
WorkflowRetry = wire.WorkflowRetry
Schedule = schedule_wire.ScheduleOut  # a schedule: its spec, next and last slot, version
ScheduleIn = schedule_wire.ScheduleIn
ScheduleSpec = schedule_wire.Spec  # what a schedule fires and when (PUT replaces it)
ScheduleList = schedule_wire.ScheduleList
Slot = schedule_wire.SlotOut  # one slot and what happened: fired, skipped, buffered, pending
SlotList = schedule_wire.SlotList
Triggered = schedule_wire.Triggered
Backfilled = schedule_wire.Backfilled
NoteRequest = schedule_wire.NoteRequest
BackfillRequest = schedule_wire.BackfillRequest
Overlap = schedule_wire.Overlap


class SubmitOptions(TypedDict):
    """How to run a submitted job; each defaults to the API's (or the job type's) default."""

    priority: NotRequired[ev.Priority]
    queue: NotRequired[str]
    run_at: NotRequired[datetime]
    delay_seconds: NotRequired[float]
    max_attempts: NotRequired[int]
    timeout_seconds: NotRequired[float]
    backoff_base_seconds: NotRequired[float]
    backoff_cap_seconds: NotRequired[float]
    concurrency_key: NotRequired[str]  # the group for per-key limits and round-robin
    retry_policy: NotRequired[RetryPolicy]  # wins over the queue's and the job type's
    unique: NotRequired[wire.Unique]  # at most one such job at a time (a duplicate answers it)


class ScheduleOptions(TypedDict):
    """How a schedule fires; each defaults to the API's default."""

    timezone: NotRequired[str]  # the cron's wall time (IANA name; default UTC)
    overlap: NotRequired[Overlap]  # when the previous job is still active (default skip)
    catchup_window_seconds: NotRequired[float]  # older slots are recorded skipped (60)
    jitter_seconds: NotRequired[float]
    start_at: NotRequired[datetime]
    end_at: NotRequired[datetime]
    paused: NotRequired[bool]
    note: NotRequired[str]
