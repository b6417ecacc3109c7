"""Run the whole benchmark: `make bench` (or `python -m bench.run`), prints the table, writes JSON.

One durable embedded PostgreSQL for every figure, so the ratios to its pgbench
baseline compare like with like. The load generator, the service's processes
and PostgreSQL all share this machine's cores; the table says so.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench import (
    cluster,
    feed,
    http_submit,
    latency,
    machine,
    pgbench,
    pgstats,
    processing,
    queues,
    report,
    scale,
    schedules,
    stats,
    submit,
    tenants,
    unique,
    webhooks,
    workflows,
)
from ledger import wire

RESULTS = Path(__file__).with_name("results")
MIB = 1024 * 1024
# The pool's best settings found by sweeping (BENCHMARKS.md): processes x job slots each.
BEST_PROCESSES = 2
BEST_SLOTS = 250
PARTS = (
    "submit",
    "processing",
    "latency",
    "http",
    "feed",
    "queues",
    "tenants",
    "unique",
    "schedules",
    "workflows",
    "webhooks",
    "scale",
)
# Minutes of building a large ledger: only when asked for (`--only scale`).
DEFAULT_PARTS = ("submit", "processing", "latency", "http", "feed", "queues")


class Sizes:
    """How much each measurement does; `--quick` shrinks everything for a smoke run."""

    def __init__(self, quick: bool) -> None:
        self.reps = 1 if quick else 3
        self.pgbench_seconds = 1 if quick else 4
        self.one_at_a_time = 50 if quick else 2_000
        self.batch_jobs = 2_000 if quick else 20_000
        self.batch = 1_000
        self.drain_jobs = 2_000 if quick else 20_000
        self.latency_jobs = 20 if quick else 500
        self.latency_gap = 0.02
        self.workflow_jobs = 2_000 if quick else 10_000
        self.http_seconds = 1.0 if quick else 5.0
        self.http_connections = 32
        self.feed_events = 20 if quick else 500
        self.feed_gap = 0.02
        self.queue_limit = 50
        self.rr_backlog = 2_000 if quick else 50_000
        self.scale_sizes = (2_000, 20_000) if quick else (100_000, 1_000_000)
        self.scale_step = 1_000 if quick else 50_000
        self.scale_requests = 10 if quick else 200
        self.schedule_slots = 10 if quick else 60


async def measure(args: argparse.Namespace) -> report.Report:
    sizes = Sizes(args.quick)
    if args.reps is not None:
        sizes.reps = args.reps
    started = time.perf_counter()
    async with cluster.durable_cluster() as c:
        rep = report.Report(
            command=args.command,
            started_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            machine=machine.describe(),
            postgres=await c.settings(),
            sharing=(
                "All processes share the machine's cores: PostgreSQL, the service's worker "
                "and API processes, and the load generator (and nothing else of ours)."
            ),
        )
        _log("baseline: pgbench, one INSERT per transaction, 1/4/8 clients")
        for key, fig in (
            await pgbench.measure(c, seconds=sizes.pgbench_seconds, reps=sizes.reps)
        ).items():
            clients = key.split("_")[1]
            rep.add(
                key,
                f"pgbench, 1 INSERT/transaction, {clients} clients",
                fig,
                ratio_to_baseline=True,
            )

        if args.pg_stats:
            await pgstats.enable(c)
        parts = {
            "submit": lambda: _submission(c, rep, sizes),
            "processing": lambda: _processing(c, rep, sizes, args),
            "latency": lambda: _latency(c, rep, sizes, args),
            "http": lambda: _http(c, rep, sizes, args),
            "feed": lambda: _feed(c, rep, sizes, args),
            "queues": lambda: _queues(c, rep, sizes, args),
            "tenants": lambda: _tenants(c, rep, sizes, args),
            "unique": lambda: _unique(c, rep, sizes),
            "schedules": lambda: _schedules(c, rep, sizes, args),
            "workflows": lambda: _workflows(c, rep, sizes, args),
            "webhooks": lambda: _webhooks(c, rep, sizes, args),
            "scale": lambda: _scale(c, rep, sizes, args),
        }
        for part in PARTS:
            if part not in args.only:
                continue
            if args.pg_stats:
                await pgstats.reset(c)
            await parts[part]()
            if args.pg_stats:
                await pgstats.report(c, part, args.results)
    rep.seconds = time.perf_counter() - started
    rep.finish()
    return rep


async def _submission(c: cluster.Cluster, rep: report.Report, sizes: Sizes) -> None:
    _log("library submission, one at a time")
    samples = []
    for _ in range(sizes.reps):
        await c.reset_jobs()
        samples.append(await submit.one_at_a_time(c.client_dsn, sizes.one_at_a_time))
    rep.add(
        "submit_one",
        "submit via library, one job per transaction, 1 caller",
        stats.Figure.of(samples, unit="jobs/s"),
        ratio_to_baseline=True,
    )

    _log("library submission, batches of 1,000, 2 callers at once")
    samples = []
    for _ in range(sizes.reps):
        await c.reset_jobs()
        await c.checkpoint()
        samples.append(
            await submit.in_batches_concurrently(
                c.client_dsn, sizes.batch_jobs, callers=2, batch=sizes.batch
            )
        )
    rep.add(
        "submit_batch_2",
        "submit via library, batches of 1,000, 2 callers at once",
        stats.Figure.of(samples, unit="jobs/s"),
        ratio_to_baseline=True,
        target="(same target, 2 callers)",
        check=lambda _f, r: r is not None and r >= 3.0,
    )


async def _processing(
    c: cluster.Cluster, rep: report.Report, sizes: Sizes, args: argparse.Namespace
) -> None:
    _log(
        f"processing: {sizes.drain_jobs} pre-submitted no-op jobs (batches of 1,000, "
        f"1 caller), drained by {args.worker_processes} `ledger worker` x "
        f"{args.worker_slots} slots"
    )
    drains = []
    for i in range(sizes.reps):
        drains.append(
            await processing.drain(
                c,
                jobs=sizes.drain_jobs,
                processes=args.worker_processes,
                slots=args.worker_slots,
                logs=args.results,
                verify_chains=i == 0,
            )
        )
        _log(f"  drained at {drains[-1].rate:,.0f} jobs/s")
    rep.add(
        "submit_batch_1",
        "submit via library, batches of 1,000 (1 transaction each), 1 caller",
        stats.Figure.of([d.submit_rate for d in drains], unit="jobs/s"),
        ratio_to_baseline=True,
        target="≥ 3× pgbench-8",
        check=lambda _f, r: r is not None and r >= 3.0,
    )
    rep.add(
        "processing",
        f"processing: no-op jobs, first claim to last completion "
        f"({args.worker_processes} workers x {args.worker_slots} slots, "
        f"3 chained events/job)",
        stats.Figure.of([d.rate for d in drains], unit="jobs/s"),
        ratio_to_baseline=True,
        target="≥ 0.7× pgbench-8",
        check=lambda _f, r: r is not None and r >= 0.7,
        note="chains verified" if drains[0].chains_ok else "",
    )
    rep.add(
        "worker_rss",
        "worker peak RSS while draining (VmHWM, largest process)",
        stats.Figure.of([d.worker_peak_rss / MIB for d in drains], unit="MiB"),
        target="< 150 MiB",
        check=lambda f, _r: f.high < 150,
    )


async def _latency(
    c: cluster.Cluster, rep: report.Report, sizes: Sizes, args: argparse.Namespace
) -> None:
    _log(f"latency: idle pool, {sizes.latency_jobs} jobs one at a time, 20 ms apart")
    lats = [
        await latency.measure_once(
            c,
            jobs=sizes.latency_jobs,
            gap=sizes.latency_gap,
            slots=args.worker_slots,
            logs=args.results,
        )
        for _ in range(sizes.reps)
    ]
    for key, label, target, limit in (
        ("p50_ms", "p50", "≤ 2 ms", 2.0),
        ("p95_ms", "p95", "", None),
        ("p99_ms", "p99", "≤ 5 ms", 5.0),
    ):
        rep.add(
            f"latency_{key}",
            f"latency submit-return → handler start, {label} (1 idle worker)",
            stats.Figure.of([getattr(x, key) for x in lats], unit="ms"),
            target=target,
            check=None if limit is None else _at_most(limit),
        )


async def _http(
    c: cluster.Cluster, rep: report.Report, sizes: Sizes, args: argparse.Namespace
) -> None:
    _log(
        f"HTTP: POST /api/v1/jobs, {sizes.http_connections} connections from a separate "
        f"load-generating process, {sizes.http_seconds:g} s per repetition"
    )
    runs = []
    for _ in range(sizes.reps):
        await c.reset_jobs()
        await c.checkpoint()
        runs.append(
            http_submit.measure_once(
                c,
                connections=sizes.http_connections,
                seconds=sizes.http_seconds,
                logs=args.results,
                extra={},
            )
        )
        _log(f"  {runs[-1].result.rps:,.0f} requests/s, p99 {runs[-1].result.p99_ms:.1f} ms")
    rep.add(
        "http_rps",
        f"HTTP submit, POST /api/v1/jobs, {sizes.http_connections} connections "
        "(1 `ledger api` process)",
        stats.Figure.of([r.result.rps for r in runs], unit="req/s"),
        ratio_to_baseline=True,
        target="≥ 0.2× pgbench-8",
        check=lambda _f, r: r is not None and r >= 0.2,
    )
    rep.add(
        "http_p99",
        "HTTP submit p99 latency at that load",
        stats.Figure.of([r.result.p99_ms for r in runs], unit="ms"),
        target="< 20 ms",
        check=lambda f, _r: f.median < 20,
    )
    rep.add(
        "api_rss",
        "API peak RSS under the HTTP load (VmHWM)",
        stats.Figure.of([r.api_peak_rss / MIB for r in runs], unit="MiB"),
    )


async def _feed(
    c: cluster.Cluster, rep: report.Report, sizes: Sizes, args: argparse.Namespace
) -> None:
    _log(
        f"live feed: 1 `ledger api`, 1 SSE client; {sizes.feed_events} jobs one at a time, "
        "20 ms apart; commit → SSE frame, and → a raw LISTEN on the same commits"
    )
    runs = []
    for _ in range(sizes.reps):
        runs.append(
            await feed.measure_once(
                c, events=sizes.feed_events, gap=sizes.feed_gap, logs=args.results
            )
        )
        _log(f"  SSE p50 {runs[-1].sse_p50_ms:.2f} ms, p99 {runs[-1].sse_p99_ms:.2f} ms")
    for key, label, target, limit in (
        ("sse_p50_ms", "commit → SSE frame, p50 (1 idle `ledger api`)", "", None),
        ("sse_p99_ms", "commit → SSE frame, p99", "", None),
        (
            "sse_max_ms",
            "commit → SSE frame, max (a frame left to the 5 s poll shows here)",
            "",
            None,
        ),
        ("listen_p50_ms", "baseline: commit → raw LISTEN callback, p50 (same commits)", "", None),
        ("listen_p99_ms", "baseline: commit → raw LISTEN callback, p99", "", None),
    ):
        rep.add(
            f"feed_{key}",
            label,
            stats.Figure.of([getattr(r, key) for r in runs], unit="ms"),
            target=target,
            check=None if limit is None else _at_most(limit),
        )
    _log("live feed: the NOTIFY's cost to the append, trigger on and off alternately")
    cost = await feed.append_cost(
        c, reps=sizes.reps, one=sizes.one_at_a_time, batch_jobs=sizes.batch_jobs
    )
    for key, label, samples in (
        (
            "one_with",
            "submit one at a time, with the feed NOTIFY, 1 listener (blocks in turn)",
            cost.one_with,
        ),
        ("one_without", "submit one at a time, feed NOTIFY trigger disabled", cost.one_without),
        (
            "batch_with",
            "submit batches of 1,000, with the feed NOTIFY, 1 listener (blocks in turn)",
            cost.batch_with,
        ),
        (
            "batch_without",
            "submit batches of 1,000, feed NOTIFY trigger disabled",
            cost.batch_without,
        ),
    ):
        rep.add(
            f"feed_append_{key}",
            label,
            stats.Figure.of(samples, unit="jobs/s"),
            ratio_to_baseline=True,
        )


async def _scale(
    c: cluster.Cluster, rep: report.Report, sizes: Sizes, args: argparse.Namespace
) -> None:
    small, large = sizes.scale_sizes
    runs = await scale.measure(
        c,
        sizes=sizes.scale_sizes,
        step=sizes.scale_step,
        requests=sizes.scale_requests,
        logs=args.results,
        log=_log,
    )
    at_small, at_large = runs
    for run in runs:
        rep.add(
            f"scale_build_{run.jobs}",
            f"scale: ledger grown to {run.jobs:,} jobs, {run.events:,} events (owner's bulk "
            "INSERT, triggers on)",
            stats.Figure.of([run.build_seconds], unit="s"),
        )
    for key, label, _path in scale.READS:
        small_ms = at_small.medians_ms[key]
        rep.add(
            f"scale_{key}_small",
            f"{label}, at {small:,} jobs",
            stats.Figure.of(at_small.samples_ms[key], unit="ms"),
        )
        rep.add(
            f"scale_{key}_large",
            f"{label}, at {large:,} jobs",
            stats.Figure.of(at_large.samples_ms[key], unit="ms"),
            target=f"< 20 ms, ≤ 2× at {small:,}",
            check=lambda f, _r, s=small_ms: f.median < 20 and f.median <= 2 * s,
        )


async def _tenants(
    c: cluster.Cluster, rep: report.Report, sizes: Sizes, args: argparse.Namespace
) -> None:
    _log(
        f"tenants: tenant A {sizes.rr_backlog:,} queued, tenant B one job every "
        f"{sizes.latency_gap * 1000:.0f} ms (1 worker x {args.worker_slots} slots), "
        "against B alone and A alone"
    )
    runs = []
    for _ in range(sizes.reps):
        runs.append(
            await tenants.measure(
                c,
                backlog=sizes.rr_backlog,
                jobs=sizes.latency_jobs,
                gap=sizes.latency_gap,
                slots=args.worker_slots,
                logs=args.results,
            )
        )
        r = runs[-1]
        _log(
            f"  B p99 {r.p99_ms:.2f} ms (alone {r.idle_p99_ms:.2f} ms, claimed after "
            f"{r.claim_p99_ms:.2f} ms), "
            f"A at {r.shared_rate:,.0f} jobs/s (alone {r.alone_rate:,.0f} jobs/s)"
        )
    for field, what in (
        ("idle_p50_ms", "B alone: latency p50"),
        ("idle_p99_ms", "B alone: latency p99"),
        ("p50_ms", "B beside A's backlog: latency p50"),
        ("p99_ms", "B beside A's backlog: latency p99"),
        ("claim_p50_ms", "B beside A's backlog: submitted → claimed (ledger times) p50"),
        ("claim_p99_ms", "B beside A's backlog: submitted → claimed (ledger times) p99"),
    ):
        rep.add(
            f"tenants_{field}",
            f"tenants, {what}",
            stats.Figure.of([getattr(r, field) for r in runs], unit="ms"),
        )
    for field, what in (
        ("alone_rate", "A's backlog drained alone"),
        ("shared_rate", "A's backlog drained while B submits"),
    ):
        rep.add(
            f"tenants_{field}",
            f"tenants, {what}",
            stats.Figure.of([getattr(r, field) for r in runs], unit="jobs/s"),
            ratio_to_baseline=True,
        )
    callers, jobs = 4, 2_000
    _log(f"tenants: {jobs:,} submissions one job a transaction from {callers} callers")
    quotas = [await tenants.quota(c, jobs=jobs, callers=callers) for _ in range(sizes.reps)]
    free = stats.Figure.of([q.free_rate for q in quotas], unit="jobs/s")
    rep.add(
        "tenants_submit_free",
        f"tenants, submit 1 job/transaction, {callers} callers, tenant without settings",
        free,
        ratio_to_baseline=True,
    )
    rep.add(
        "tenants_submit_max_queued",
        f"tenants, submit 1 job/transaction, {callers} callers, tenant with max_queued",
        stats.Figure.of([q.held_rate for q in quotas], unit="jobs/s"),
        ratio_to_baseline=True,
    )


async def _unique(c: cluster.Cluster, rep: report.Report, sizes: Sizes) -> None:
    count = sizes.one_at_a_time
    _log(f"unique: {count:,} submissions one job a transaction, plain, unique, duplicates")
    runs = [await unique.measure(c, count) for _ in range(sizes.reps)]
    plain = stats.Figure.of([r.plain_rate for r in runs], unit="jobs/s")
    rep.add("unique_plain", "unique jobs: submit 1 job/transaction without `unique`", plain)
    for field, what in (
        ("unique_rate", "with `unique`, each key new (a job each)"),
        ("duplicate_rate", "with `unique`, each a duplicate of one held job (200, no job)"),
    ):
        rep.add(
            f"unique_{field}",
            f"unique jobs: submit 1 job/transaction {what}",
            stats.Figure.of([getattr(r, field) for r in runs], unit="jobs/s"),
        )
        rep.add(
            f"unique_{field}_ratio",
            f"unique jobs: {what}, as a share of plain",
            stats.Figure.of([getattr(r, field) / r.plain_rate for r in runs], unit="x"),
        )


async def _schedules(
    c: cluster.Cluster, rep: report.Report, sizes: Sizes, args: argparse.Namespace
) -> None:
    count = sizes.schedule_slots
    _log(f"schedules: an every-second schedule, {count} slots, 1 worker process")
    runs = [
        await schedules.measure_once(c, slots=count, logs=args.results) for _ in range(sizes.reps)
    ]
    for key, what in (
        ("fired_p50_ms", "slot fired (event and job appended) − slot time, p50"),
        ("fired_p99_ms", "slot fired (event and job appended) − slot time, p99"),
        ("started_p50_ms", "handler started − slot time, p50"),
        ("started_p99_ms", "handler started − slot time, p99"),
    ):
        rep.add(
            f"schedule_{key}",
            f"schedules, every second, {count} slots, 1 worker: {what}",
            stats.Figure.of([getattr(r, key) for r in runs], unit="ms"),
        )


async def _workflows(
    c: cluster.Cluster, rep: report.Report, sizes: Sizes, args: argparse.Namespace
) -> None:
    steps, jobs, layers = sizes.latency_jobs, sizes.workflow_jobs, 10
    _log(
        f"workflows: a chain of {steps} no-op jobs (1 worker process); {jobs:,} jobs as "
        f"layered workflows ({layers} layers) against as many independent jobs "
        f"({args.worker_processes} workers x {args.worker_slots} slots)"
    )
    hands = [
        await workflows.hand_off(c, steps=steps, slots=args.worker_slots, logs=args.results)
        for _ in range(sizes.reps)
    ]
    for key, label in (("p50_ms", "p50"), ("p99_ms", "p99")):
        rep.add(
            f"workflow_hand_off_{key}",
            f"workflows: parent's completion → child's claim, {label} (chain, 1 worker)",
            stats.Figure.of([getattr(h, key) for h in hands], unit="ms"),
        )
    dags = []
    for _ in range(sizes.reps):
        dags.append(
            await workflows.dag(
                c,
                jobs=jobs,
                layers=layers,
                processes=args.worker_processes,
                slots=args.worker_slots,
                logs=args.results,
            )
        )
        _log(f"  DAG {dags[-1].dag_rate:,.0f} jobs/s, independent {dags[-1].independent_rate:,.0f}")
    rep.add(
        "workflow_dag",
        f"workflows: {jobs:,}-job layered DAG, first claim to last completion",
        stats.Figure.of([d.dag_rate for d in dags], unit="jobs/s"),
    )
    rep.add(
        "workflow_dag_ratio",
        f"workflows: {jobs:,}-job layered DAG as a share of {jobs:,} independent jobs",
        stats.Figure.of([d.ratio for d in dags], unit="x"),
    )


async def _webhooks(
    c: cluster.Cluster, rep: report.Report, sizes: Sizes, args: argparse.Namespace
) -> None:
    _log("webhooks: the processing drain with an endpoint subscribed to every completion")
    plain = rep.figure("processing")
    drains = []
    for _ in range(sizes.reps):
        drains.append(
            await webhooks.drain_subscribed(
                c,
                jobs=sizes.drain_jobs,
                processes=args.worker_processes,
                slots=args.worker_slots,
                logs=args.results,
            )
        )
        _log(f"  drained at {drains[-1].rate:,.0f} jobs/s")
    subscribed = stats.Figure.of([d.rate for d in drains], unit="jobs/s")
    ratio = subscribed.median / plain.median if plain is not None else None
    rep.add(
        "processing_webhook",
        "processing, an endpoint subscribed to every completion (a delivery per job)",
        subscribed,
        ratio_to_baseline=True,
        note=f"{ratio:.2f}× the plain drain" if ratio is not None else "",
    )
    _log(f"webhooks: delivery latency, {sizes.latency_jobs} jobs {sizes.latency_gap}s apart")
    runs = []
    for _ in range(sizes.reps):
        runs.append(
            await webhooks.latency(
                c,
                jobs=sizes.latency_jobs,
                gap=sizes.latency_gap,
                burst=sizes.drain_jobs // 4,
                slots=args.worker_slots,
                logs=args.results,
            )
        )
        _log(f"  p50 {runs[-1].p50_ms:.1f} ms, p99 {runs[-1].p99_ms:.1f} ms")
    rep.add(
        "webhook_latency_p50",
        "webhook delivery latency p50, job completion to arrival at a local receiver",
        stats.Figure.of([r.p50_ms for r in runs], unit="ms"),
    )
    rep.add(
        "webhook_latency_p99",
        "webhook delivery latency p99, job completion to arrival at a local receiver",
        stats.Figure.of([r.p99_ms for r in runs], unit="ms"),
    )
    rep.add(
        "webhook_deliveries_per_second",
        f"webhook deliveries/s to a local receiver, a burst of {runs[0].burst} completions",
        stats.Figure.of([r.burst_rate for r in runs], unit="deliveries/s"),
    )


async def _queues(
    c: cluster.Cluster, rep: report.Report, sizes: Sizes, args: argparse.Namespace
) -> None:
    _log(
        f"queues: the processing drain with the queue limited to {sizes.queue_limit} "
        "running at once"
    )
    unlimited = rep.figure("processing")
    for key, label, settings in (
        (
            "processing_limited",
            f"processing, queue limited to {sizes.queue_limit} running",
            wire.QueueSettings(concurrency=sizes.queue_limit),
        ),
        (
            "processing_round_robin",
            "processing, round-robin queue, one key (its backlog alone)",
            wire.QueueSettings(fairness="round_robin"),
        ),
    ):
        drains = []
        for _ in range(sizes.reps):
            drains.append(
                await queues.drain_with(
                    c,
                    jobs=sizes.drain_jobs,
                    processes=args.worker_processes,
                    slots=args.worker_slots,
                    settings=settings,
                    logs=args.results,
                )
            )
            _log(f"  {key}: drained at {drains[-1].rate:,.0f} jobs/s")
        figure = stats.Figure.of([d.rate for d in drains], unit="jobs/s")
        rep.add(
            key,
            f"{label} ({args.worker_processes} workers x {args.worker_slots} slots)",
            figure,
            ratio_to_baseline=True,
            note=""
            if unlimited is None
            else f"{figure.median / unlimited.median:.2f}x the unlimited drain",
        )
    alone: dict[int, stats.Figure] = {}
    for spinners in (0, 2):
        beside = f" beside {spinners} processes spinning on the CPU" if spinners else ""
        _log(
            f"queues: round-robin, key B alone{beside}, one job every {sizes.latency_gap * 1000:.0f} ms"
        )
        solo = [
            await queues.round_robin(
                c,
                backlog=0,
                jobs=sizes.latency_jobs,
                gap=sizes.latency_gap,
                slots=args.worker_slots,
                logs=args.results,
                spinners=spinners,
            )
            for _ in range(sizes.reps)
        ]
        suffix = f"_spinning_{spinners}" if spinners else ""
        for field, what in (("p50_ms", "p50"), ("p99_ms", "p99")):
            figure = stats.Figure.of([getattr(r, field) for r in solo], unit="ms")
            rep.add(
                f"round_robin_alone{suffix}_{field}",
                f"round-robin, key B alone{beside}: latency {what}",
                figure,
            )
            if field == "p99_ms":
                alone[spinners] = figure
    strict = {"WORKER_QUIET_BULK_LIMIT": "8", "WORKER_QUIET_BULK_PAUSE_SECONDS": "0.02"}
    for key, label, wait, per_key, worker_env in (
        ("round_robin", "round-robin, A's jobs no-ops", 0.0, None, None),
        (
            "round_robin_strict",
            "round-robin, A's jobs no-ops, the bulk yielding 8 jobs a round after 20 ms",
            0.0,
            None,
            strict,
        ),
        ("round_robin_io", "round-robin, A's jobs wait 200 ms", 0.2, None, None),
        (
            "round_robin_io_room",
            f"round-robin, A's jobs wait 200 ms, A limited to {args.worker_slots - 10} at once",
            0.2,
            args.worker_slots - 10,
            None,
        ),
    ):
        _log(
            f"queues: {label}; key A {sizes.rr_backlog:,} queued, key B one job every "
            f"{sizes.latency_gap * 1000:.0f} ms (1 worker x {args.worker_slots} slots)"
        )
        runs = []
        for _ in range(sizes.reps):
            runs.append(
                await queues.round_robin(
                    c,
                    backlog=sizes.rr_backlog,
                    jobs=sizes.latency_jobs,
                    gap=sizes.latency_gap,
                    slots=args.worker_slots,
                    logs=args.results,
                    per_key=per_key,
                    backlog_wait=wait,
                    worker_env=worker_env,
                )
            )
            _log(
                f"  B p99 {runs[-1].p99_ms:.2f} ms (claimed after {runs[-1].claim_p99_ms:.2f}"
                f" ms), A at {runs[-1].backlog_rate:,.0f} jobs/s"
            )
        within = alone[0].median + 5.0
        for field, what, target in (
            ("p50_ms", "B's latency p50", ""),
            ("p99_ms", "B's latency p99", f"≤ B alone's p99 + 5 ms ({within:.1f} ms)"),
            ("claim_p50_ms", "B submitted → claimed (ledger times) p50", ""),
            ("claim_p99_ms", "B submitted → claimed (ledger times) p99", ""),
        ):
            rep.add(
                f"{key}_{field}",
                f"{label}: {what}",
                stats.Figure.of([getattr(r, field) for r in runs], unit="ms"),
                target=target,
                check=_at_most(within) if target else None,
            )
        rep.add(
            f"{key}_backlog",
            f"{label}: A's backlog drained while B submits",
            stats.Figure.of([r.backlog_rate for r in runs], unit="jobs/s"),
            ratio_to_baseline=True,
        )


def _at_most(limit: float) -> Callable[[stats.Figure, float | None], bool]:
    return lambda f, _r: f.median <= limit


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repetition (smoke)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON goes")
    parser.add_argument("--worker-processes", type=int, default=BEST_PROCESSES)
    parser.add_argument("--worker-slots", type=int, default=BEST_SLOTS, help="WORKER_COUNT")
    parser.add_argument(
        "--pg-stats",
        action="store_true",
        help="print PostgreSQL's time per statement after each part (pg_stat_statements)",
    )
    parser.add_argument("--reps", type=int, help="repetitions of each figure (default 3)")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=PARTS,
        default=list(DEFAULT_PARTS),
        help="measure only these parts (pgbench, the baseline, always runs; `scale` only "
        "when named: it builds a ledger of a million jobs)",
    )
    args = parser.parse_args(argv)
    args.command = (
        "make bench"
        if argv is None and not args.quick
        else shlex.join(
            ["python", "-m", "bench.run", *(argv if argv is not None else sys.argv[1:])]
        )
    )
    args.results.mkdir(parents=True, exist_ok=True)
    rep = asyncio.run(measure(args))
    print(report.header(rep))
    print()
    print(report.table(rep))
    path = report.write_json(rep, args.results)
    print(f"\nJSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
