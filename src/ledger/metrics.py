"""Prometheus metrics: one registry per process, names after Prometheus's conventions.

Units are in the names (`_seconds`), counters end in `_total`, and every label takes
a bounded set of values: job types and queues (configured, not user data), event
types, route templates (never raw paths), HTTP methods and status codes.

Where the figures come from:
- job and event counters, run time and queue wait: `projections.metering.JobMetrics`,
  an inline projection that sees every event this process appends (counting in one
  place, whichever process — API or worker — records the transition); the workflow
  dependency decisions the database appends of its own come back with the append
  that caused them (`store.Decided`), to the same projection;
- HTTP requests: the middleware in `service.http.metrics`;
- queue depth and worker slots across the service: read from the database when the
  API is scraped (`add_cluster_gauges`); a worker process's own slots: read from its
  pool (`add_pool_gauges`).
Each process exposes its own counters; Prometheus sums them across instances.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    gc_collector,
    generate_latest,
    platform_collector,
    process_collector,
    start_http_server,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
NAMESPACE: Final = "ledger"

# Both ladders climb alike from 5 ms to a minute, then part: run times go to the default
# 300 s timeout and beyond, queue waits to an hour (a backlog, a delayed start).
_TO_A_MINUTE: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
RUN_BUCKETS: Final = (*_TO_A_MINUTE, 120, 300, 600)
WAIT_BUCKETS: Final = (*_TO_A_MINUTE, 300, 900, 3600)
# `blocked`: workflow jobs waiting for their dependencies (sql/0077).
DEPTH_STATUSES: Final = ("pending", "retrying", "processing", "blocked")
# What can hold a queue's due jobs back, as the claim checks it (ledger.queues, sql/0059).
QUEUE_LIMITS: Final = ("paused", "concurrency", "rate_limit")
HTTP_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    """Every metric of one process, on its own registry (tests make one each)."""

    def __init__(self, registry: CollectorRegistry | None = None, *, process: bool = True) -> None:
        """`process`: also the standard process_* and python_* metrics."""
        self.registry = registry if registry is not None else CollectorRegistry()
        if process:
            process_collector.ProcessCollector(registry=self.registry)
            platform_collector.PlatformCollector(registry=self.registry)
            gc_collector.GCCollector(registry=self.registry)
        job = ("job_type", "queue")

        def counter(name: str, doc: str, labels: Iterable[str] = job) -> Counter:
            return Counter(name, doc, labels, namespace=NAMESPACE, registry=self.registry)

        self.jobs_submitted = counter("jobs_submitted_total", "Jobs submitted.")
        self.jobs_completed = counter("jobs_completed_total", "Jobs that completed.")
        self.jobs_failed = counter(
            "jobs_failed_total", "Jobs that failed for good (no attempts left, or permanent)."
        )
        self.jobs_retried = counter(
            "jobs_retried_total",
            "Times a job was sent to run again: a retry scheduled after a failed attempt or "
            "an expired lease, or a manual retry.",
        )
        self.retry_decisions = counter(
            "retry_decisions_total",
            "Decisions on failed attempts (a handler's error, a timeout, an expired lease): "
            "outcome `retry` (reason `backoff`, `after` when the handler asked for the "
            "delay, `lease_expired`) or `gave_up` (reason `max_attempts`, `max_elapsed`, "
            "`non_retryable`, `permanent`; `unrecorded` for an event without one).",
            ("job_type", "queue", "outcome", "reason"),
        )
        self.jobs_cancelled = counter("jobs_cancelled_total", "Jobs cancelled.")
        self.jobs_snoozed = counter(
            "jobs_snoozed_total",
            "Attempts that snoozed (the handler's Snooze): back to wait, the attempt not counted.",
        )
        self.jobs_bulk_changed = counter(
            "jobs_bulk_changed_total",
            "Jobs retried or cancelled by a bulk action (POST /api/v1/jobs/retry or /cancel, "
            "`ledger jobs retry|cancel`), by action.",
            ("action",),
        )
        self.lease_recoveries = counter(
            "lease_recoveries_total", "Running attempts recovered after their lease expired."
        )
        self.outcomes_abandoned = counter(
            "outcomes_abandoned_total",
            "Finished attempts whose outcome a worker did not record: it no longer held the "
            "attempt (another worker or recovery had taken it over), or it shut down with "
            "the database unreachable.",
        )
        self.outcome_record_retries = counter(
            "outcome_record_retries_total",
            "Tries to record an outcome that failed because the database was unreachable "
            "(each is tried again while the worker still holds the attempt).",
            (),
        )
        # No tenant label: tenants are not a bounded set (METRICS_TENANT_LABEL, later).
        self.quota_refusals = counter(
            "submissions_refused_over_quota_total",
            "Submissions (a job or a batch) refused with 429 because they would take their "
            "tenant's queued jobs past its max_queued; nothing of them was stored.",
            (),
        )
        self.jobs_deduplicated = counter(
            "jobs_deduplicated_total",
            "Unique submissions that found their key held by another job, by what they asked "
            "for (on_conflict): answered with that job (return_existing), replaced its payload "
            "and run time (replace), or refused with 409 (error, or a job past replacing).",
            ("job_type", "queue", "on_conflict"),
        )
        self.reserve_jobs_claimed = counter(
            "pool_reserve_jobs_claimed_total",
            "Jobs a worker claimed into its reserve of slots (quiet work beside a backlog), "
            "by what the doorbell named: `tenant` (a tenant without a backlog), `key` (a "
            "concurrency key without a backlog in a round-robin queue), `any` (several "
            "rung at once: any quiet tenant).",
            ("named",),
        )
        self.bulk_claims_yielded = counter(
            "pool_bulk_claims_yielded_total",
            "Bulk claim rounds a worker made smaller and paused before because quiet work "
            "ran in its reserve (WORKER_QUIET_BULK_LIMIT, WORKER_QUIET_BULK_PAUSE_SECONDS).",
            (),
        )
        self.events_appended = counter(
            "events_appended_total", "Events appended to the ledger, by event type.", ("type",)
        )
        self.job_run_seconds = Histogram(
            "job_run_duration_seconds",
            "Time from a worker's claim to the attempt's recorded outcome.",
            ("job_type",),
            namespace=NAMESPACE,
            buckets=RUN_BUCKETS,
            registry=self.registry,
        )
        self.job_queue_wait_seconds = Histogram(
            "job_queue_wait_seconds",
            "Time a job waited from becoming due (its submission, or its retry's due time) "
            "to a worker's claim.",
            ("job_type",),
            namespace=NAMESPACE,
            buckets=WAIT_BUCKETS,
            registry=self.registry,
        )
        self.schedule_slots_fired = counter(
            "schedule_slots_fired_total", "Schedule slots whose job was submitted.", ()
        )
        self.schedule_slots_skipped = counter(
            "schedule_slots_skipped_total",
            "Schedule slot events recorded skipped, by reason (overlap, "
            "outside_catchup_window, paused; a skipped run of slots counts once).",
            ("reason",),
        )
        self.schedule_lateness_seconds = Histogram(
            "schedule_lateness_seconds",
            "Time from a schedule slot to the recording of its job's submission.",
            namespace=NAMESPACE,
            buckets=WAIT_BUCKETS,
            registry=self.registry,
        )
        self.workflow_decisions = counter(
            "workflow_dependency_decisions_total",
            "Workflow jobs decided by the database when a dependency ended, by decision: "
            "unblocked (pending, to run), skipped or cancelled (a dependency failed or was "
            "cancelled, per the job's on_upstream_failure); counted by the process whose "
            "append ended the dependency.",
            ("decision",),
        )
        self.http_requests = Counter(
            "http_requests_total",
            "HTTP requests by method, route template and status code.",
            ("method", "route", "status"),
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.http_request_seconds = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request (to its last byte), by method and route template.",
            ("method", "route"),
            namespace=NAMESPACE,
            buckets=HTTP_BUCKETS,
            registry=self.registry,
        )

        self.webhook_deliveries = counter(
            "webhook_attempts_total",
            "Webhook delivery attempts by outcome: delivered, retrying, exhausted (its "
            "retry schedule ran out) or disabled (the endpoint answered 410).",
            ("outcome",),
        )
        self.webhook_attempt_seconds = Histogram(
            "webhook_attempt_duration_seconds",
            "Time of one webhook delivery attempt, from connecting to the answer read.",
            namespace=NAMESPACE,
            buckets=HTTP_BUCKETS,
            registry=self.registry,
        )
        self.webhook_endpoints_disabled = counter(
            "webhook_endpoints_disabled_total",
            "Webhook endpoints disabled by a sender: a 410 answer, or a delivery that "
            "failed for its whole retry schedule.",
            (),
        )

        # The labelled children by (method, route, status): prometheus_client's `labels()`
        # validates and joins the values on every call, a cost on every request.
        self._http_children: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}

        self.queue_depth: Gauge | None = None
        self.queue_paused: Gauge | None = None
        self.queue_waiting_on_limit: Gauge | None = None
        self.tenant_waiting_on_max_running: Gauge | None = None
        self.worker_processes: Gauge | None = None
        self.worker_slots: Gauge | None = None
        self.worker_slots_busy: Gauge | None = None
        self.database_reachable: Gauge | None = None
        self.tenant_label = False  # METRICS_TENANT_LABEL: the queue gauges by tenant too

    def _gauge(self, name: str, doc: str, labels: Iterable[str] = ()) -> Gauge:
        return Gauge(name, doc, labels, namespace=NAMESPACE, registry=self.registry)

    def add_cluster_gauges(self, *, tenant_label: bool = False) -> None:
        """Queue depth and worker slots across the whole service, read from the database
        at scrape time (`set_queue_depth`, `set_worker_slots`). One kind of process
        exposes them (the API), so Prometheus never sums copies of one figure.

        The queue gauges sum every tenant's queues of one name; with `tenant_label`
        (METRICS_TENANT_LABEL=1) they carry a `tenant` label instead, one series per
        tenant's queue."""
        self.tenant_label = tenant_label
        by = ("tenant",) if tenant_label else ()
        self.queue_depth = self._gauge(
            "queue_depth",
            "Unfinished jobs by queue and status (pending, retrying, processing, and blocked: "
            "workflow jobs waiting for their dependencies).",
            (*by, "queue", "status"),
        )
        self.queue_paused = self._gauge(
            "queue_paused",
            "1 while the queue is paused, else 0 (configured queues; without a tenant "
            "label, 1 while it is paused in any tenant).",
            (*by, "queue"),
        )
        self.queue_waiting_on_limit = self._gauge(
            "queue_jobs_waiting_on_limit",
            "Runnable (pending, retrying) jobs of a queue that a limit holds back now: the "
            "queue is paused, at its concurrency limit, or out of rate-limit tokens.",
            (*by, "queue", "limit"),
        )
        self.tenant_waiting_on_max_running = self._gauge(
            "tenant_jobs_waiting_on_max_running",
            "Runnable (pending, retrying) jobs of tenants whose processing jobs have reached "
            "their max_running: they wait for one of the tenant's jobs to finish.",
            by,
        )
        self.worker_processes = self._gauge(
            "worker_processes", "Live worker processes (heartbeat within their lease)."
        )
        self.worker_slots = self._gauge("worker_slots", "Job slots across live worker processes.")
        self.worker_slots_busy = self._gauge(
            "worker_slots_busy", "Slots of live worker processes running a job now."
        )
        self.database_reachable = self._gauge(
            "database_reachable", "1 when the last scrape could read the database, else 0."
        )

    def add_pool_gauges(self, slots: Callable[[], float], busy: Callable[[], float]) -> None:
        """This worker process's own slots and busy slots, read from the pool when scraped."""
        self._gauge("pool_slots", "Job slots of this worker process.").set_function(slots)
        self._gauge(
            "pool_slots_busy", "Slots of this worker process running a job now."
        ).set_function(busy)

    def add_reserve_gauges(self, slots: Callable[[], float], busy: Callable[[], float]) -> None:
        """This worker process's reserve (slots kept for quiet work) and how many of them
        run a job now: a reserve always full means quiet tenants' or keys' jobs wait
        behind the backlog again."""
        self._gauge(
            "pool_reserve_slots", "Job slots of this worker process kept for quiet work."
        ).set_function(slots)
        self._gauge(
            "pool_reserve_slots_busy", "Reserve slots of this worker process running a job now."
        ).set_function(busy)

    def add_scheduler_gauge(self, failing: Callable[[], float]) -> None:
        """This process's schedules whose due slots it could not record (workers.scheduler),
        read from its scheduler when scraped."""
        self._gauge(
            "schedules_failing",
            "Schedules whose due slots this process could not record in its last round "
            "(their job cannot be submitted: a job type it does not know, a tenant over its "
            "quota); tried again each round.",
        ).set_function(failing)

    def _by(self, tenant: str) -> tuple[str, ...]:
        return (tenant,) if self.tenant_label else ()

    def set_queue_depth(self, rows: Iterable[tuple[str, str, str, int]]) -> None:
        """Replace the queue-depth gauge with (tenant, queue, status, count) rows read just
        now, summed over tenants unless the gauge has a tenant label.

        Every queue seen gets all of DEPTH_STATUSES, zero where it has none.
        """
        depth: dict[tuple[str, ...], int] = {}
        for tenant, queue, status, count in rows:
            key = (*self._by(tenant), queue)
            for known in DEPTH_STATUSES:
                depth.setdefault((*key, known), 0)
            depth[(*key, status)] = depth.get((*key, status), 0) + count
        assert self.queue_depth is not None, "add_cluster_gauges() first"
        self.queue_depth.clear()
        for labels, count in depth.items():
            self.queue_depth.labels(*labels).set(count)

    def set_tenant_limits(self, rows: Iterable[tuple[str, int, int, int]]) -> None:
        """Replace the tenant-limit gauge with (tenant, max_running, running, runnable) rows
        read just now: a tenant at its max_running counts its runnable jobs, any other
        zero; summed over tenants unless the gauge has a tenant label."""
        assert self.tenant_waiting_on_max_running is not None, "add_cluster_gauges() first"
        waiting: dict[tuple[str, ...], int] = {} if self.tenant_label else {(): 0}
        for tenant, max_running, running, runnable in rows:
            key = self._by(tenant)
            held = runnable if running >= max_running else 0
            waiting[key] = waiting.get(key, 0) + held
        self.tenant_waiting_on_max_running.clear()
        for labels, count in waiting.items():
            if labels:
                self.tenant_waiting_on_max_running.labels(*labels).set(count)
            else:
                self.tenant_waiting_on_max_running.set(count)

    def set_queue_limits(self, rows: Iterable[tuple[str, str, bool, str | None, int]]) -> None:
        """Replace the queue-limit gauges with (tenant, queue, paused, held by, runnable) rows
        read just now: each queue gets every kind of QUEUE_LIMITS, zero but the one holding
        it. Without a tenant label, a name's waiting jobs are summed over tenants, and it
        counts as paused while any tenant's queue of that name is."""
        assert self.queue_paused is not None, "add_cluster_gauges() first"
        assert self.queue_waiting_on_limit is not None
        paused_now: dict[tuple[str, ...], int] = {}
        waiting: dict[tuple[str, ...], int] = {}
        for tenant, queue, paused, held_by, runnable in rows:
            key = (*self._by(tenant), queue)
            paused_now[key] = max(paused_now.get(key, 0), 1 if paused else 0)
            for kind in QUEUE_LIMITS:
                held = runnable if kind == held_by else 0
                waiting[(*key, kind)] = waiting.get((*key, kind), 0) + held
        self.queue_paused.clear()
        self.queue_waiting_on_limit.clear()
        for labels, value in paused_now.items():
            self.queue_paused.labels(*labels).set(value)
        for labels, value in waiting.items():
            self.queue_waiting_on_limit.labels(*labels).set(value)

    def set_worker_slots(self, *, processes: int, slots: int, busy: int) -> None:
        assert self.worker_processes is not None, "add_cluster_gauges() first"
        assert self.worker_slots is not None and self.worker_slots_busy is not None
        self.worker_processes.set(processes)
        self.worker_slots.set(slots)
        self.worker_slots_busy.set(busy)

    def observe_http(self, method: str, route: str, status: str, seconds: float) -> None:
        """Count one answered HTTP request and its duration."""
        key = (method, route, status)
        children = self._http_children.get(key)
        if children is None:
            children = self._http_children[key] = (
                self.http_requests.labels(method=method, route=route, status=status),
                self.http_request_seconds.labels(method=method, route=route),
            )
        children[0].inc()
        children[1].observe(seconds)

    def set_database_reachable(self, reachable: bool) -> None:
        assert self.database_reachable is not None, "add_cluster_gauges() first"
        self.database_reachable.set(1 if reachable else 0)

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)

    def serve(self, host: str, port: int) -> Callable[[], None]:
        """Expose `/metrics` on host:port from a background thread (worker processes).

        Returns the function that stops the server.
        """
        server, thread = start_http_server(port, addr=host, registry=self.registry)

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

        return stop
