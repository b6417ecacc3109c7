"""The live feed's delay: commit → Server-Sent Event frame, against a raw LISTEN's delivery.

A real `ledger api` process serves `GET /api/v1/events/stream` to one client in
this process (httpx, reading the stream as it comes). One job is submitted at a
time, 20 ms apart, through the library (decide + append, one durable commit).
Start: `time.perf_counter_ns()` right after the append returns. Ends, both in this
process on the same clock: the arrival of the job's SSE frame (the API was woken
by the `ledger_feed` NOTIFY, read the feed and wrote the frame), and, the
baseline of the same commits, a raw asyncpg `LISTEN ledger_feed` connection's
callback here (PostgreSQL's own delivery of the NOTIFY, with nothing of the
service in between). Either end may come before the append's own answer is read
in this process: such a delay counts as 0.

The cost of the NOTIFY to the append: library submissions one at a time and in
batches of 1,000, in blocks with the `events_notify_feed` trigger enabled and
disabled in turn on the same cluster (see `append_cost`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import msgspec

from bench import cluster, http_submit, processing, procs, stats, submit
from ledger import commands, db, embedded, sqlfile
from projections import live

CHANNEL = "ledger_feed"
Q = sqlfile.load("bench")
WARMUP = 10


class FeedDelay(msgspec.Struct, kw_only=True):
    events: int
    sse_p50_ms: float
    sse_p99_ms: float
    sse_max_ms: float
    listen_p50_ms: float
    listen_p99_ms: float


class Frames:
    """The stream's frames as they arrive: job id → arrival time (perf_counter_ns)."""

    def __init__(self) -> None:
        self.arrived: dict[str, int] = {}
        self._changed = asyncio.Condition()

    async def read(self, response: httpx.Response) -> None:
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                at = time.perf_counter_ns()
                job_id = msgspec.json.decode(line[6:])["job_id"]
                async with self._changed:
                    self.arrived[job_id] = at
                    self._changed.notify_all()

    async def wait_for(self, job_id: str) -> int:
        async with self._changed:
            await self._changed.wait_for(lambda: job_id in self.arrived)
        return self.arrived[job_id]


@contextlib.asynccontextmanager
async def _api(
    c: cluster.Cluster, logs: Path, extra: dict[str, str] | None = None
) -> AsyncIterator[tuple[int, str]]:
    """A `ledger api` process on a free port, and a token with `audit:read`."""
    port = embedded.free_port()
    env = procs.service_env(
        c, {"SERVER_PORT": str(port), "JWT_SECRET": secrets.token_urlsafe(32), **(extra or {})}
    )
    minting = await asyncio.create_subprocess_exec(
        *procs.ledger_command(),
        *("token", "--sub", "bench", "--scope", "audit:read"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await minting.communicate()
    if minting.returncode != 0:
        raise RuntimeError(f"`ledger token` exited with {minting.returncode}")
    token = out.decode().strip()
    api = procs.Service("api", env, logs / "api-feed.log")
    try:
        deadline = time.monotonic() + 60
        while not http_submit.listening(port):
            api.check()
            if time.monotonic() > deadline:
                raise TimeoutError("the API did not start listening within 60 s")
            await asyncio.sleep(0.05)
        yield port, token
        api.check()
    finally:
        api.stop()


@contextlib.asynccontextmanager
async def _reading(
    c: cluster.Cluster, logs: Path, extra: dict[str, str] | None = None
) -> AsyncIterator[Frames]:
    """A `ledger api` process and one stream open on it, its frames read as they come;
    entered once the API holds the feed's gate (appends notify from then on)."""
    frames = Frames()
    async with (
        _api(c, logs, extra) as (port, token),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http,
        http.stream(
            "GET", "/api/v1/events/stream", headers={"Authorization": f"Bearer {token}"}
        ) as response,
    ):
        response.raise_for_status()
        reading = asyncio.create_task(frames.read(response))
        try:
            await _gate_open(c)
            yield frames
        finally:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading


async def _gate_open(c: cluster.Cluster) -> None:
    async with db.connect(c.admin_dsn) as admin, asyncio.timeout(60):
        while True:
            if await admin.fetchval(Q["feed_gate_holders"]):
                return
            await asyncio.sleep(0.05)


async def measure_once(c: cluster.Cluster, *, events: int, gap: float, logs: Path) -> FeedDelay:
    await c.reset_jobs()
    await c.checkpoint()
    last_notify = 0

    def on_notify(*_args: object) -> None:
        nonlocal last_notify
        last_notify = time.perf_counter_ns()

    es = submit.event_store()
    sse_ms: list[float] = []
    listen_ms: list[float] = []
    async with (
        _reading(c, logs) as frames,
        db.connect(c.client_dsn) as listener,
        db.connect(c.client_dsn) as conn,
    ):
        await listener.add_listener(CHANNEL, on_notify)
        for i in range(WARMUP + events):
            job_id = uuid.uuid4()
            decided = commands.decide(
                None, submit.noop_command(i), job_id=job_id, actor="bench", now=es.clock()
            )
            last_notify = 0
            await es.append(conn, decided)
            committed = time.perf_counter_ns()
            async with asyncio.timeout(10):
                arrived = await frames.wait_for(str(job_id))
            await listener.fetchval("SELECT 1")  # any pending notification is in by now
            if last_notify == 0:
                raise RuntimeError("a commit's NOTIFY never reached the raw listener")
            if i >= WARMUP:
                sse_ms.append(max(0, arrived - committed) / 1e6)
                listen_ms.append(max(0, last_notify - committed) / 1e6)
            await asyncio.sleep(gap)
    return FeedDelay(
        events=len(sse_ms),
        sse_p50_ms=stats.percentile(sse_ms, 50),
        sse_p99_ms=stats.percentile(sse_ms, 99),
        sse_max_ms=max(sse_ms),
        listen_p50_ms=stats.percentile(listen_ms, 50),
        listen_p99_ms=stats.percentile(listen_ms, 99),
    )


class AppendCost(msgspec.Struct, kw_only=True):
    """Per repetition, the median rate of its blocks with the trigger on, and off."""

    one_with: list[float]
    one_without: list[float]
    batch_with: list[float]
    batch_without: list[float]


async def append_cost(
    c: cluster.Cluster,
    *,
    reps: int,
    one: int,
    batch_jobs: int,
    blocks: int = 10,
) -> AppendCost:
    """Submissions/s with and without the feed's NOTIFY trigger on the same cluster.

    The trigger is switched on and off between blocks (`one / blocks` submissions one
    at a time, then `batch_jobs / blocks` in batches of 1,000), `blocks` of each per
    repetition, so the machine's changing load falls on both alike. One connection
    holds the feed's gate open (so appends do notify, sql/0055) and listens, as a
    `ledger api` with a reader would: the figure is the NOTIFY's own cost, its
    delivery included; what the API then does with a wake-up (read the feed, write
    frames) is `python -m bench.feed --reader`'s.
    """
    cost = AppendCost(one_with=[], one_without=[], batch_with=[], batch_without=[])
    for rep in range(reps):
        await c.reset_jobs()
        await c.checkpoint()
        one_rates: dict[bool, list[float]] = {True: [], False: []}
        batch_rates: dict[bool, list[float]] = {True: [], False: []}
        async with db.connect(c.client_dsn) as gate:
            await gate.add_listener(CHANNEL, lambda *_args: None)
            await gate.execute(live.Q["feed_gate_open"])
            for block in range(2 * blocks):
                enabled = (block + rep) % 2 == 0
                await _notify_trigger(c, enabled)
                one_rates[enabled].append(await submit.one_at_a_time(c.client_dsn, one // blocks))
                batch_rates[enabled].append(
                    await submit.in_batches(c.client_dsn, batch_jobs // blocks)
                )
            await _notify_trigger(c, True)
        cost.one_with.append(statistics.median(one_rates[True]))
        cost.one_without.append(statistics.median(one_rates[False]))
        cost.batch_with.append(statistics.median(batch_rates[True]))
        cost.batch_without.append(statistics.median(batch_rates[False]))
    return cost


async def processing_cost(
    c: cluster.Cluster,
    *,
    pairs: int,
    jobs: int,
    processes: int,
    slots: int,
    logs: Path,
    reader: bool,
) -> dict[bool, list[float]]:
    """Drains (bench.processing) with the trigger on and off in turn: jobs/s by state.

    With `reader`, a `ledger api` process with one stream open runs through each
    drain, so the workers' claims and outcomes NOTIFY the feed (a notifying
    transaction holds PostgreSQL's notify lock through its commit, and wakes every
    listening backend); with the trigger off, that stream polls every 0.5 s
    (FEED_POLL_SECONDS), as the feed did before its wake-ups: both arms stream every
    event. Without `reader`, no one reads and appends skip the NOTIFY.
    """
    rates: dict[bool, list[float]] = {True: [], False: []}
    for pair in range(pairs):
        for enabled in (True, False) if pair % 2 == 0 else (False, True):
            async with contextlib.AsyncExitStack() as stack:

                async def prepare(enabled: bool = enabled) -> None:
                    await _notify_trigger(c, enabled)
                    if reader:
                        old_poll = {} if enabled else {"FEED_POLL_SECONDS": "0.5"}
                        await stack.enter_async_context(_reading(c, logs, old_poll))

                drained = await processing.drain(
                    c, jobs=jobs, processes=processes, slots=slots, logs=logs, after_reset=prepare
                )
            rates[enabled].append(drained.rate)
            print(f"trigger {'on' if enabled else 'off'}: {drained.rate:,.0f} jobs/s", flush=True)
    return rates


async def _notify_trigger(c: cluster.Cluster, enabled: bool) -> None:
    async with db.connect(c.admin_dsn) as conn:
        switch = "ENABLE" if enabled else "DISABLE"
        await conn.execute(f"ALTER TABLE events {switch} TRIGGER events_notify_feed")


def main() -> None:
    """`python -m bench.feed`: processing drains with the feed NOTIFY on and off in turn."""
    parser = argparse.ArgumentParser(prog="python -m bench.feed", description=main.__doc__)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--worker-processes", type=int, default=2)
    parser.add_argument("--worker-slots", type=int, default=250)
    parser.add_argument(
        "--reader", action="store_true", help="one SSE stream open on a `ledger api` throughout"
    )
    args = parser.parse_args()

    logs = Path(__file__).with_name("results")
    logs.mkdir(parents=True, exist_ok=True)

    async def run() -> dict[bool, list[float]]:
        async with cluster.durable_cluster() as c:
            return await processing_cost(
                c,
                pairs=args.pairs,
                jobs=args.jobs,
                processes=args.worker_processes,
                slots=args.worker_slots,
                logs=logs,
                reader=args.reader,
            )

    rates = asyncio.run(run())
    for enabled in (True, False):
        shown = ", ".join(f"{r:,.0f}" for r in rates[enabled])
        label = "on " if enabled else "off"
        print(f"trigger {label}: median {statistics.median(rates[enabled]):,.0f} jobs/s ({shown})")


if __name__ == "__main__":
    main()
