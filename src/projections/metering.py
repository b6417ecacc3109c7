"""Job metrics from the events this process appends: counters, run time and queue wait.

`JobMetrics` is an inline projection that needs each job as it was before this
append: its type and queue (events after the submission do not carry them), when it
became due and when its running attempt started. The caller usually passes those
states (it decided against them in this transaction); otherwise they are folded
again from the job's earlier events (the view already holds the new state). It
folds the appended events over that in order, so a batch holding several events of
one job is measured step by step. Counting happens
after the insert succeeded (inside the appending transaction, or right after the
one statement that appended new jobs; submissions read nothing): a version conflict
counts nothing; an outer transaction of the caller's that later rolls back would
have counted its events (no caller in this service does that after appending).
The workflow dependency decisions the database appended in the same append (unblocked,
skipped, cancelled: not among the events passed, sql/0082) are counted by decision.
"""

from __future__ import annotations

import collections
import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg
import msgspec
from prometheus_client import Counter, Histogram

from ledger import events as ev
from ledger import metrics, sqlfile, store

Q = sqlfile.load("projections")


class _Job(msgspec.Struct, kw_only=True):
    job_type: str
    queue: str
    due: datetime | None
    started: datetime | None


class JobMetrics:
    """Counts job transitions and times attempts into `metrics` (an InlineProjection)."""

    def __init__(self, registry: metrics.Metrics) -> None:
        self.metrics = registry
        # Each job type's histogram series, looked up once (labels() takes a lock and
        # builds a key on every call; a busy worker observes two per job).
        self._series: dict[tuple[int, str], Histogram] = {}

    def _histogram(self, family: Histogram, job_type: str) -> Histogram:
        key = (id(family), job_type)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = family.labels(job_type)
        return series

    async def apply(
        self,
        conn: asyncpg.Connection,
        recorded: Sequence[store.Recorded],
        before: store.Before | None = None,
        decided: store.Decided | None = None,
    ) -> None:
        jobs = await self._before(conn, recorded, before or {})
        tally: collections.Counter[tuple[Counter, tuple[str, ...]]] = collections.Counter()
        for item in recorded:
            self._observe(jobs, item.event, tally)
        for decision, count in (decided or {}).items():
            if count:
                tally[(self.metrics.workflow_decisions, (decision,))] += count
        # One increment per labelled series: a batch of 1,000 submissions costs one, not 1,000.
        for (counter, labels), count in tally.items():
            (counter.labels(*labels) if labels else counter).inc(count)

    async def _before(
        self, conn: asyncpg.Connection, recorded: Sequence[store.Recorded], known: store.Before
    ) -> dict[uuid.UUID, _Job]:
        ids = list(
            {
                r.event.job_id
                for r in recorded
                if not isinstance(
                    r.event,
                    ev.JobSubmitted
                    | ev.QueueEvent
                    | ev.TenantEvent
                    | ev.ScheduleEvent
                    | ev.WebhookEvent,
                )
            }
        )
        if not ids:
            return {}
        if all(i in known for i in ids):  # the caller read them in this transaction
            return {
                i: _Job(
                    job_type=known[i].type,
                    queue=known[i].queue,
                    due=known[i].run_at,
                    started=known[i].started_at,
                )
                for i in ids
            }
        first: dict[uuid.UUID, int] = {}
        for r in recorded:
            first.setdefault(r.event.job_id, r.event.version)
        rows = await conn.fetch(Q["jobs_metering_context"], ids, [first[i] for i in ids])
        return {
            row["job_id"]: _Job(
                job_type=row["type"],
                queue=row["queue"],
                due=row["run_at"],
                started=row["started_at"],
            )
            for row in rows
        }

    def _observe(
        self,
        jobs: dict[uuid.UUID, _Job],
        event: ev.JobEvent,
        tally: collections.Counter[tuple[Counter, tuple[str, ...]]],
    ) -> None:
        m = self.metrics
        tally[(m.events_appended, (ev.type_tag(event),))] += 1
        if isinstance(event, ev.JobSubmitted):
            jobs[event.job_id] = _Job(
                job_type=event.job_type, queue=event.queue, due=event.run_at, started=None
            )
            tally[(m.jobs_submitted, (event.job_type, event.queue))] += 1
            return
        if isinstance(event, ev.ScheduleSlotFired):
            tally[(m.schedule_slots_fired, ())] += 1
            late = (event.occurred_at - event.slot).total_seconds()
            m.schedule_lateness_seconds.observe(max(late, 0.0))
            return
        if isinstance(event, ev.ScheduleSlotSkipped):
            tally[(m.schedule_slots_skipped, (event.reason,))] += 1
            return
        if isinstance(event, ev.ScheduleEvent):
            return
        job = jobs.get(event.job_id)
        if job is None:  # pragma: no cover - the store refuses events before a submission
            return
        labels = (job.job_type, job.queue)
        match event:
            case ev.JobClaimed():
                if job.due is not None:
                    wait = (event.occurred_at - job.due).total_seconds()
                    self._histogram(m.job_queue_wait_seconds, job.job_type).observe(max(wait, 0.0))
                job.started, job.due = event.occurred_at, None
            case ev.JobCompleted():
                self._ran(job, event.occurred_at)
                tally[(m.jobs_completed, labels)] += 1
            case ev.JobFailed():
                self._ran(job, event.occurred_at)
                tally[(m.jobs_failed, labels)] += 1
                failed: tuple[str, str] = ("gave_up", event.reason or "unrecorded")
                tally[(m.retry_decisions, (*labels, *failed))] += 1
            case ev.JobRetryScheduled():
                self._ran(job, event.occurred_at)
                tally[(m.jobs_retried, labels)] += 1
                asked = "backoff" if event.requested_delay_seconds is None else "after"
                tally[(m.retry_decisions, (*labels, "retry", asked))] += 1
                job.due = event.next_attempt_at
            case ev.JobLeaseExpired():
                # The attempt's end is unknown (its worker died): no run time.
                job.started = None
                tally[(m.lease_recoveries, labels)] += 1
                outcome = m.jobs_failed if event.next_attempt_at is None else m.jobs_retried
                tally[(outcome, labels)] += 1
                why = (
                    ("retry", "lease_expired")
                    if event.next_attempt_at is not None
                    else ("gave_up", event.reason or "unrecorded")
                )
                tally[(m.retry_decisions, (*labels, *why))] += 1
                job.due = event.next_attempt_at
            case ev.JobCancelled():
                tally[(m.jobs_cancelled, labels)] += 1
                if event.bulk_request_id is not None:
                    tally[(m.jobs_bulk_changed, ("cancel",))] += 1
                job.due = None
            case ev.JobReleased():
                job.started, job.due = None, event.occurred_at
            case ev.JobSnoozed():
                self._ran(job, event.occurred_at)
                tally[(m.jobs_snoozed, labels)] += 1
                job.due = event.run_at
            case ev.JobRetried():
                tally[(m.jobs_retried, labels)] += 1
                if event.bulk_request_id is not None:
                    tally[(m.jobs_bulk_changed, ("retry",))] += 1
                job.started, job.due = None, event.occurred_at

    def _ran(self, job: _Job, ended: datetime) -> None:
        if job.started is not None:
            seconds = (ended - job.started).total_seconds()
            self._histogram(self.metrics.job_run_seconds, job.job_type).observe(max(seconds, 0.0))
        job.started = None
