"""What webhooks cost and how fast they arrive (issue #19).

`drain_subscribed`: the processing drain (bench.processing) with one endpoint subscribed
to every completion, sent to a receiver in this process on 127.0.0.1; its ratio to the
plain drain of the same run is what creating (and sending) a delivery per job costs.

`latency`: workers running and idle, `jobs` no-op jobs submitted one at a time, `gap`
apart; each delivery's latency is its arrival at the receiver minus its job's
completion as the ledger recorded it (one machine, one clock), and the deliveries per
second are those of a burst of `burst` jobs completed together.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from datetime import datetime
from pathlib import Path

import msgspec

from bench import cluster, procs, stats, submit
from bench.processing import Drain, drain, wait_for
from ledger import db, store, webhooks

ADMIN = "bench"
LOCAL = "127.0.0.0/8"


class Receiver:
    """Records each delivery's job id and arrival (wall clock); answers 200, keep-alive."""

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self.port = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                del line
                length = 0
                while (header := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = header.decode().partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                self.arrivals[json.loads(body)["data"]["job_id"]] = time.time()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def _any_url(url: str) -> None:
    """The receiver is local: WEBHOOK_ALLOWED_NETWORKS lets the workers send to it."""


async def _subscribe(c: cluster.Cluster, url: str) -> None:
    async with db.connect(c.client_dsn) as conn:
        spec = webhooks.EndpointIn(url=url, events=["job.completed"])
        await webhooks.create(conn, store.EventStore(), spec, actor=ADMIN, vet=_any_url)


async def drain_subscribed(
    c: cluster.Cluster, *, jobs: int, processes: int, slots: int, logs: Path
) -> Drain:
    """The processing drain with an endpoint subscribed to every completion."""
    receiver = Receiver()
    server = await asyncio.start_server(receiver.serve, "127.0.0.1", 0)
    receiver.port = server.sockets[0].getsockname()[1]
    os.environ["WEBHOOK_ALLOWED_NETWORKS"] = LOCAL  # the workers' environment copies it
    try:

        async def subscribe() -> None:
            await _subscribe(c, f"http://127.0.0.1:{receiver.port}/hook")

        return await drain(
            c, jobs=jobs, processes=processes, slots=slots, logs=logs, after_reset=subscribe
        )
    finally:
        del os.environ["WEBHOOK_ALLOWED_NETWORKS"]
        server.close()


class Latency(msgspec.Struct, kw_only=True):
    jobs: int
    p50_ms: float
    p99_ms: float
    burst: int
    burst_rate: float  # deliveries/s, first to last arrival of the burst


async def latency(
    c: cluster.Cluster, *, jobs: int, gap: float, burst: int, slots: int, logs: Path
) -> Latency:
    await c.reset_jobs()
    receiver = Receiver()
    server = await asyncio.start_server(receiver.serve, "127.0.0.1", 0)
    receiver.port = server.sockets[0].getsockname()[1]
    await _subscribe(c, f"http://127.0.0.1:{receiver.port}/hook")
    env = procs.service_env(c, {"WORKER_COUNT": str(slots), "WEBHOOK_ALLOWED_NETWORKS": LOCAL})
    worker = procs.Service("worker", env, logs / "worker-webhooks.log")
    try:
        await wait_for(c.client_dsn, "worker_processes_count", 1, 60, "a worker")
        ids: list[uuid.UUID] = []
        async with db.connect(c.client_dsn) as conn:
            for n in range(jobs):
                ids.append((await submit.submit_one(conn, n)).job_id)
                await asyncio.sleep(gap)
        await _arrived(receiver, jobs)
        async with db.connect(c.client_dsn) as conn:
            rows = await conn.fetch(
                "SELECT job_id, completed_at FROM jobs WHERE job_id = ANY($1)", ids
            )
        completed: dict[str, datetime] = {str(r["job_id"]): r["completed_at"] for r in rows}
        waits = sorted((receiver.arrivals[j] - completed[j].timestamp()) * 1000 for j in completed)
        before = len(receiver.arrivals)
        await submit.in_batches(c.client_dsn, burst)
        await _arrived(receiver, before + burst)
        burst_times = sorted(receiver.arrivals.values())[before:]
        worker.check()
    finally:
        worker.stop()
        server.close()
    return Latency(
        jobs=jobs,
        p50_ms=stats.percentile(waits, 50),
        p99_ms=stats.percentile(waits, 99),
        burst=burst,
        burst_rate=burst / max(burst_times[-1] - burst_times[0], 1e-6),
    )


async def _arrived(receiver: Receiver, count: int, within: float = 600) -> None:
    deadline = time.monotonic() + within
    while len(receiver.arrivals) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(receiver.arrivals)} of {count} deliveries arrived")
        await asyncio.sleep(0.05)
