"""Reads that must not grow with history (DESIGN invariant 11), at two ledger sizes.

A ledger of `small` jobs, then grown to `large`, built fast: the owner INSERTs the
events in statements of `step` jobs (submitted; every other one claimed and
completed: half completed, half pending), and the append's own triggers project the
jobs view and its counters as they would for any append. At each size, after a
VACUUM ANALYZE, one real `ledger api` answers: GET /api/v1/stats, /metrics, /health,
and filtered feed pages (GET /api/v1/events with filters that match nothing, the
worst case, and one that matches). Each figure is the median of `requests` requests
on one keep-alive connection, after a few to warm up.
"""

from __future__ import annotations

import secrets
import statistics
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import httpx
import msgspec

from bench import cluster, http_submit, procs
from ledger import db, embedded, sqlfile

Q = sqlfile.load("bench")
WARMUP: Final = 5

# What each read asks for: (key, label, path).
READS: Final = (
    ("stats", "GET /api/v1/stats (dashboard counts + 1 h throughput)", "/api/v1/stats"),
    ("metrics", "GET /metrics (cluster gauges refreshed)", "/metrics"),
    ("health", "GET /health (queue depth)", "/health"),
    (
        "feed_actor_none",
        "GET /api/v1/events?actor=<no match>",
        "/api/v1/events?actor=nobody&limit=100",
    ),
    (
        "feed_type_none",
        "GET /api/v1/events?type=job.failed.v1 (no match)",
        "/api/v1/events?type=job.failed.v1&limit=100",
    ),
    (
        "feed_job_type_none",
        "GET /api/v1/events?job_type=<no match>",
        "/api/v1/events?job_type=nothing&limit=100",
    ),
    (
        "feed_since_none",
        "GET /api/v1/events?since=<future>",
        "/api/v1/events?since=2999-01-01T00:00:00Z&limit=100",
    ),
    (
        "feed_actor_match",
        "GET /api/v1/events?actor=bench-worker (matches, page of 100)",
        "/api/v1/events?actor=bench-worker&limit=100",
    ),
)


class SizeRun(msgspec.Struct, kw_only=True):
    jobs: int
    events: int
    build_seconds: float  # to grow the ledger to this size from the previous one
    medians_ms: dict[str, float]
    samples_ms: dict[str, list[float]]


async def grow(c: cluster.Cluster, start: int, end: int, step: int, base: datetime) -> float:
    """Jobs start .. end - 1 appended (submitted; even ones claimed and completed); seconds."""
    began = time.perf_counter()
    async with db.connect(c.admin_dsn) as conn:
        for lo in range(start, end, step):
            hi = min(lo + step, end)
            for name in ("scale_submit", "scale_claim", "scale_complete"):
                await conn.execute(Q[name], lo, hi, base)
        await conn.execute(Q["scale_vacuum"])
    await c.checkpoint()
    return time.perf_counter() - began


def _time(client: httpx.Client, path: str, requests: int) -> list[float]:
    for _ in range(WARMUP):
        client.get(path).raise_for_status()
    samples = []
    for _ in range(requests):
        began = time.perf_counter()
        response = client.get(path)
        samples.append((time.perf_counter() - began) * 1000)
        response.raise_for_status()
    return samples


def read_all(c: cluster.Cluster, *, requests: int, logs: Path) -> dict[str, list[float]]:
    """Each of READS timed through one fresh `ledger api` process (no worker running)."""
    port = embedded.free_port()
    env = procs.service_env(c, {"SERVER_PORT": str(port), "JWT_SECRET": secrets.token_urlsafe(32)})
    token = subprocess.run(
        [
            *procs.ledger_command(),
            "token",
            "--sub",
            "bench",
            "--scope",
            "jobs:read",
            "--scope",
            "audit:read",
            "--ttl",
            "1h",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    api = procs.Service("api", env, logs / "api-scale.log")
    try:
        procs.wait_until(lambda: http_submit.listening(port) or not api.alive(), 60, "the API")
        api.check()
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        ) as client:
            return {key: _time(client, path, requests) for key, _label, path in READS}
    finally:
        api.stop()


async def measure(
    c: cluster.Cluster,
    *,
    sizes: tuple[int, ...],
    step: int,
    requests: int,
    logs: Path,
    log: Callable[[str], None],
) -> list[SizeRun]:
    base = datetime.now(UTC) - timedelta(seconds=max(sizes) + 3600)
    runs: list[SizeRun] = []
    built = 0
    for size in sizes:
        log(f"scale: growing the ledger to {size:,} jobs")
        seconds = await grow(c, built, size, step, base)
        built = size
        async with db.connect(c.admin_dsn) as conn:
            events = int(await conn.fetchval(Q["events_count"]))
        log(f"  {size:,} jobs, {events:,} events, built in {seconds:.0f} s; timing the reads")
        samples = read_all(c, requests=requests, logs=logs)
        medians = {k: statistics.median(v) for k, v in samples.items()}
        log("  " + ", ".join(f"{k} {v:.2f} ms" for k, v in medians.items()))
        runs.append(
            SizeRun(
                jobs=size,
                events=events,
                build_seconds=seconds,
                medians_ms=medians,
                samples_ms=samples,
            )
        )
    return runs
