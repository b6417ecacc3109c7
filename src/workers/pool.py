"""The worker pool: a number of job slots fed by a claim loop, each job run by its registered handler.

One process runs one `Pool`; any number of processes run against one database.
The claim loop sleeps until something rings (a NOTIFY through the listener, a slot
freeing up while work is waiting, the retry clock, or the slow poll), then claims
as many due jobs as it has free slots (`workers.claims`). Each claimed job runs in a
task of its own; its outcome (completed, retry scheduled, failed, released) is
decided by `commands.decide` and appended through the event store, only while this
worker still holds that very attempt, so an outcome is recorded once. Through a
database outage the worker keeps trying to record it, for as long as the attempt
is still its own (see `_record_alone`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, cast

import asyncpg
import msgspec

from ledger import (
    batching,
    commands,
    config,
    db,
    errors,
    jobtypes,
    lifecycle,
    logs,
    metrics,
    retrypolicy,
    sqlfile,
    store,
)
from workers import claims, leases, listener, outcomes, retry, webhooks

Q = sqlfile.load("workers")
log = logging.getLogger(__name__)

StopReason = Literal["cancelled", "lost", "shutdown"]
# The soonest the retry clock goes off: a job due now but locked by another claimer
# is looked at again this much later, not in a tight loop.
MIN_ALARM_SECONDS = 0.02
# Added to the time since the claim round began when asking for the next due job: the
# alarm query's clock (the database's) runs a little after the round's.
LOOKBACK_MARGIN_SECONDS = 0.05
# Outcomes of attempts that finish together share a transaction, up to this many.
MAX_OUTCOMES_PER_TRANSACTION = 500
# Recording an outcome through an outage: tries 0.1 s, 0.2 s, ... apart, at most this
# far apart (or a quarter of the lease, if shorter), for as long as the attempt is held.
MAX_RECORD_RETRY_SECONDS = 1.0
# An outcome whose job keeps moving under it, or which the database keeps refusing
# with an error that is not an outage (a bug), is given up after this many tries.
MAX_RECORD_TRIES = 7
# A worker keeps one slot in this many for quiet tenants (the reserve, sql/0079): tenants
# without a backlog, whose work is claimed into it as soon as it is notified, on a
# connection of its own, while the bulk claim is in flight or has filled its slots.
RESERVE_PER_SLOTS = 100
# How long a starting worker waits for its LISTEN connection before it registers.
LISTEN_FIRST_SECONDS = 5.0
# A claim into the reserve that fails on these leaves its work to the bulk claim.
_RESERVE_CLAIM_LEFT: tuple[type[Exception], ...] = (
    errors.VersionConflict,
    errors.ClaimRaced,
    *db.UNREACHABLE,
)


class PoolSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How one worker process runs its pool (see ledger.config for the environment names)."""

    slots: int = 5
    lease_seconds: float = 30.0
    poll_seconds: float = 10.0
    grace_seconds: float = 30.0
    storage_root: Path = Path(".ledger/storage")
    # Slots the bulk claim leaves to quiet tenants (None: one per RESERVE_PER_SLOTS
    # slots, so a pool of fewer keeps none; 0: no reserve).
    reserve_slots: int | None = None
    # While quiet work runs in the reserve, the bulk claim takes at most this many jobs
    # a round (0: as many as it has room for) and waits `quiet_bulk_pause_seconds`
    # before each round, leaving the machine room for the quiet work's next claim.
    quiet_bulk_limit: int = 32
    quiet_bulk_pause_seconds: float = 0.002
    # Quiet work is arriving while a claim into the reserve took jobs this long ago or
    # less. A quiet job that runs long does not hold the bulk back: it needs no room.
    quiet_active_seconds: float = 0.2
    webhooks: webhooks.SenderSettings = webhooks.SenderSettings()

    @property
    def reserve(self) -> int:
        """How many of the slots are kept for quiet tenants (always one for the bulk)."""
        if self.reserve_slots is not None:
            return min(self.reserve_slots, self.slots - 1)
        return self.slots // RESERVE_PER_SLOTS


def settings_from(config_: config.Settings) -> PoolSettings:
    """The pool's settings from the service's (WORKER_COUNT, WORKER_*_SECONDS, STORAGE_ROOT)."""
    return PoolSettings(
        slots=config_.worker_count,
        lease_seconds=config_.worker_lease_seconds,
        poll_seconds=config_.worker_poll_seconds,
        grace_seconds=config_.worker_shutdown_grace_seconds,
        storage_root=config_.storage,
        reserve_slots=config_.worker_reserve_slots,
        quiet_bulk_limit=config_.worker_quiet_bulk_limit,
        quiet_bulk_pause_seconds=config_.worker_quiet_bulk_pause_seconds,
        webhooks=webhooks.SenderSettings(
            allowed_networks=webhooks.networks(config_.webhook_allowed_networks),
            secret=config_.webhook_secret,
            timeout_seconds=config_.webhook_timeout_seconds,
        ),
    )


class _Run:
    """One running attempt: its state at claim time and the task running its handler."""

    def __init__(self, state: lifecycle.JobState) -> None:
        self.state = state
        self.handler: asyncio.Future[Any] | None = None
        self.stop_reason: StopReason | None = None

    def stop(self, reason: StopReason) -> None:
        """Cancel the handler; `reason` decides what, if anything, gets recorded."""
        if self.stop_reason is None:
            self.stop_reason = reason
        if self.handler is not None:
            self.handler.cancel()


def _fields(run: _Run) -> dict[str, Any]:
    """The job's id, type and attempt for a log line outside its job_context."""
    return logs.job_fields(
        job_id=run.state.job_id, job_type=run.state.type, attempt=run.state.attempt
    )


def _named(target: str | claims.QuietKey | None) -> str:
    """What the doorbell named for a claim into the reserve (the metric's label)."""
    if isinstance(target, claims.QuietKey):
        return "key"
    return "any" if target is None else "tenant"


def _reserve_targets(
    rung: set[str | claims.QuietKey | None],
) -> list[str | claims.QuietKey | None]:
    """What the reserve claims for, in turn: each key rung for, then the one tenant rung
    for (None: any quiet tenant, when several or none were named)."""
    keys = sorted(
        (t for t in rung if isinstance(t, claims.QuietKey)),
        key=lambda k: (k.tenant, k.queue, k.key),
    )
    others = [t for t in rung if not isinstance(t, claims.QuietKey)]
    if not others:
        return [*keys]
    return [*keys, others[0] if len(others) == 1 else None]


class Pool:
    """Job slots of one worker process; `run()` until `request_stop()`, then drain."""

    def __init__(
        self,
        dsn: str,
        *,
        listen_dsn: str | None = None,
        settings: PoolSettings | None = None,
        registry: jobtypes.Registry = jobtypes.REGISTRY,
        worker_id: str | None = None,
        event_store: store.EventStore | None = None,
        process_metrics: metrics.Metrics | None = None,
    ) -> None:
        self.settings = settings or PoolSettings()
        if self.settings.slots < 1:
            raise errors.ConfigError("a worker pool needs at least one slot")
        if self.settings.reserve_slots is not None and self.settings.reserve_slots < 0:
            raise errors.ConfigError("a worker pool's reserve cannot be negative")
        if self.settings.quiet_bulk_limit < 0 or self.settings.quiet_bulk_pause_seconds < 0:
            raise errors.ConfigError("a worker pool's quiet_bulk_* settings cannot be negative")
        self._dsn = dsn
        self._listen_dsn = listen_dsn or dsn
        self._registry = registry
        self._store = event_store or store.EventStore()
        self.metrics = process_metrics or metrics.Metrics(process=False)
        self.process = leases.this_process(
            self.settings.slots, self.settings.lease_seconds, worker_id
        )
        self._running: dict[uuid.UUID, _Run] = {}
        # Of the running jobs, those claimed into the reserve.
        self._reserved: set[uuid.UUID] = set()
        self._claiming = False
        # The last bulk claim filled every slot it had room for: a backlog is being drained.
        self._bulk_full = False
        self._express: asyncio.Task[None] | None = None
        self._express_again = False
        # A claim into the reserve found it full: it claims again when a slot frees up.
        self._reserve_full = False
        self._quiet_at: float | None = None  # when a claim into the reserve last took jobs
        # Tenants and keys rung for (None: any quiet tenant).
        self._express_for: set[str | claims.QuietKey | None] = set()
        self._reserve_claims = 0  # claims into the reserve begun so far
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        # Set when the grace period is over: outcomes still waiting for the database are given up.
        self._closing = asyncio.Event()
        self._notified = 0
        self._backlog = False
        self._db: asyncpg.Pool | None = None
        self._handler_db: asyncpg.Pool | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.clock = retry.RetryClock(self.notify)
        self.policies = retry.Policies(registry)
        self.sender: webhooks.Sender | None = None
        self.listener = listener.Listener(
            self._listen_dsn,
            on_wake=self.notify,
            on_cancel=self.cancel,
            on_room=self.notify_room,
            on_tenant=self.notify_tenant,
            on_key=self.notify_key,
            on_webhook=self._wake_sender,
            check_seconds=self.settings.poll_seconds,
        )
        self.started = asyncio.Event()
        self._outcomes = self._batcher("ledger-outcomes")
        # The reserve's outcomes are recorded beside the bulk's, not behind them: a tenant
        # with nothing else running is done as soon as its job is.
        self._reserve_outcomes = self._batcher("ledger-reserve-outcomes")

    def _batcher(self, name: str) -> batching.Batcher[outcomes.Outcome, bool]:
        return batching.Batcher(
            self._record_together,
            self._record_alone,
            limit=MAX_OUTCOMES_PER_TRANSACTION,
            fallback_on=(errors.VersionConflict, *db.UNREACHABLE, *outcomes.OUTAGE),
            name=name,
        )

    @property
    def worker_id(self) -> str:
        return self.process.worker_id

    @property
    def running(self) -> frozenset[uuid.UUID]:
        """Ids of the jobs this pool is running now."""
        return frozenset(self._running)

    @property
    def reserve_busy(self) -> int:
        """How many of the reserve's slots run a job now."""
        return len(self._reserved)

    # -- what rings the bell -------------------------------------------------

    def wake(self) -> None:
        """Look for due work now."""
        self._wake.set()

    def notify(self) -> None:
        """Runnable work appeared or became due (NOTIFY, the retry clock): claim now, or
        as soon as a slot frees up."""
        self._rung(None)

    def notify_tenant(self, tenant: str) -> None:
        """`tenant` has new runnable jobs (the doorbell named it, sql/0084): as `notify`,
        and the reserve's claim looks at that tenant alone."""
        self._rung(tenant)

    def notify_key(self, key: claims.QuietKey) -> None:
        """`key` of a round-robin queue has new runnable jobs (sql/0087): as `notify`, and
        the reserve's claim looks at that key alone (a key without a backlog beside
        another key's, in one tenant, gets a reserve slot as a quiet tenant does)."""
        self._rung(key)

    def _rung(self, tenant: str | claims.QuietKey | None) -> None:
        self._notified += 1
        self._backlog = True
        self._wake.set()
        if self.settings.reserve > 0 and (
            self._claiming or self._bulk_free() <= 0 or self._bulk_full
        ):
            self._claim_reserve_soon(tenant)

    def notify_room(self) -> None:
        """A job left `processing` in a restricted queue: room for the bulk claim (not the
        reserve's business: no new work of a quiet tenant came with it)."""
        self._notified += 1
        self._backlog = True
        self._wake.set()

    def _wake_sender(self) -> None:
        if self.sender is not None:
            self.sender.wake()

    def cancel(self, job_id: uuid.UUID) -> None:
        """The job was cancelled in the ledger: stop its handler if it runs here."""
        run = self._running.get(job_id)
        if run is not None:
            log.info("job %s was cancelled; stopping its handler", job_id, extra=_fields(run))
            run.stop("cancelled")

    def request_stop(self) -> None:
        """Stop claiming; running jobs get the grace period, then are handed back."""
        if not self._stopping.is_set():
            log.info("worker %s stopping: no new claims", self.worker_id)
        self._stopping.set()
        self._wake.set()

    # -- life of the pool ----------------------------------------------------

    async def run(self) -> None:
        """Claim and run jobs until `request_stop()`, drain, hand back the rest, close."""
        # The pool's own work (claims, outcomes, heartbeats) on a few internal
        # connections; handlers get a pool of their own (JobContext.pool), opened
        # as they need it, whose connections are reset between uses.
        self._db = await db.create_pool(
            self._dsn, min_size=1, max_size=5, name="job-ledger-worker", internal=True
        )
        self._handler_db = await db.create_pool(
            self._dsn, min_size=0, max_size=self.settings.slots, name="job-ledger-handlers"
        )
        self._executor = ThreadPoolExecutor(
            max_workers=self.settings.slots * 2, thread_name_prefix="ledger-job"
        )
        keeper = leases.Keeper(
            self._db, self._store, self.process, held=self._held, policies=self.policies
        )
        background: list[asyncio.Task[None]] = []
        sender_db: asyncpg.Pool | None = None
        try:
            background = [asyncio.create_task(self.listener.run(), name="ledger-listener")]
            await self._until_listening()
            async with db.acquire(self._db) as conn:
                await leases.register(conn, self.process)
            self.clock.start()
            await self._set_alarm()  # the retry clock, rebuilt from the ledger
            background.append(asyncio.create_task(keeper.run(), name="ledger-keeper"))
            if self.settings.webhooks.enabled:
                # Webhooks go out from a task of their own, on connections of their own:
                # never from a job slot, never waiting for one.
                sender_db = await db.create_pool(
                    self._dsn, min_size=0, max_size=2, name="job-ledger-webhooks", internal=True
                )
                self.sender = webhooks.Sender(
                    sender_db,
                    self._store,
                    self.settings.webhooks,
                    worker_id=self.worker_id,
                    process_metrics=self.metrics,
                )
                background.append(asyncio.create_task(self.sender.run(), name="ledger-webhooks"))
            log.info(
                "worker %s: %d slots, job types: %s",
                self.worker_id,
                self.settings.slots,
                ", ".join(self._registry.names()) or "(none)",
            )
            self.started.set()
            await self._claim_loop()
            await self._drain()
        finally:
            self.listener.stop()
            keeper.stop()
            if self._express is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await self._express
            if self.sender is not None:
                self.sender.stop()
            self.clock.shutdown()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(task, timeout=10)
            with contextlib.suppress(*db.UNREACHABLE):
                async with db.acquire(self._db) as conn:
                    await leases.unregister(conn, self.worker_id)
            await self._db.close()
            await self._handler_db.close()
            if sender_db is not None:
                await sender_db.close()
            self._executor.shutdown(wait=False, cancel_futures=True)
            log.info("worker %s stopped", self.worker_id)

    async def _until_listening(self) -> None:
        """Until the doorbell's connection listens (at most LISTEN_FIRST_SECONDS).

        A worker registers once it can hear the doorbell: work submitted after its
        registration rings it, and a doorbell that names a tenant or a key reaches its
        reserve (`key:` and `tenant:` are not caught up by the wake on connecting, which
        claims for any quiet tenant only). A listener that cannot connect does not hold
        the worker back: it polls meanwhile, and the wake on connecting catches up.
        """
        try:
            await asyncio.wait_for(self.listener.connected.wait(), LISTEN_FIRST_SECONDS)
        except TimeoutError:
            log.warning(
                "worker %s: not listening for notifications after %.0f s; starting anyway "
                "(polling every %.0f s until the listener connects)",
                self.worker_id,
                LISTEN_FIRST_SECONDS,
                self.settings.poll_seconds,
            )

    async def _claim_loop(self) -> None:
        last_poll = time.monotonic()
        while not self._stopping.is_set():
            self._wake.clear()
            if time.monotonic() - last_poll >= self.settings.poll_seconds:
                last_poll = time.monotonic()
                self._backlog = True
                await self._check_running()
            try:
                await self._claim_round()
            except (errors.VersionConflict, errors.ClaimRaced) as exc:  # raced: claim again
                log.info("claim lost a race (%s); claiming again", exc)
                continue
            except db.UNREACHABLE as exc:
                log.warning("claim failed, retrying: %s", exc)
                await self._pause(min(1.0, self.settings.poll_seconds))
                continue
            await self._pause(self.settings.poll_seconds - (time.monotonic() - last_poll))

    async def _pause(self, seconds: float) -> None:
        """Until something rings or `seconds` pass."""
        if seconds <= 0 or self._wake.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    def _bulk_free(self) -> int:
        """Slots the bulk claim may fill: all but the reserve, less the jobs running in them."""
        bulk_running = len(self._running) - len(self._reserved)
        return self.settings.slots - self.settings.reserve - bulk_running

    def _quiet_running(self) -> bool:
        """Quiet work is being claimed into the reserve now (`quiet_active_seconds`)."""
        return (
            self._quiet_at is not None
            and time.monotonic() - self._quiet_at < self.settings.quiet_active_seconds
        )

    async def _claim_round(self) -> None:
        free = self._bulk_free()
        if free <= 0 or self._stopping.is_set():
            return
        if self.settings.quiet_bulk_limit > 0 and self._quiet_running():
            # The bulk yields to the quiet work: smaller rounds, a pause before each.
            self.metrics.bulk_claims_yielded.inc()
            free = min(free, self.settings.quiet_bulk_limit)
            await asyncio.sleep(self.settings.quiet_bulk_pause_seconds)
        seen = self._notified
        # A claim into the reserve beside this one may take a job this one counted on
        # (a quiet tenant's): then fewer than `free` does not mean nothing is left.
        reserve_seen = self._reserve_claims
        reserve_busy = self._express is not None and not self._express.done()
        began = time.monotonic()
        self._claiming = True
        try:
            claimed = await self._claim(free)
        finally:
            self._claiming = False
        for state in claimed:
            self._start(state)
        if claimed:
            await asyncio.sleep(0)  # the handlers start before the alarm's query is sent
        self._bulk_full = len(claimed) == free
        self._backlog = (
            len(claimed) == free
            or self._notified != seen
            or reserve_busy
            or self._reserve_claims != reserve_seen
        )
        if not self._backlog:
            await self._set_alarm(time.monotonic() - began)

    async def _claim(
        self,
        limit: int,
        *,
        reserve: bool = False,
        tenant: str | claims.QuietKey | None = None,
    ) -> list[lifecycle.JobState]:
        """Claim up to `limit` due jobs (`claims.claim`); their states after the claim.

        `reserve`: for the reserve, only jobs of quiet tenants (at most the reserve's size
        of jobs processing and due together); `tenant`, with it: that tenant's alone, or
        that concurrency key's (a `QuietKey`)."""
        assert self._db is not None
        async with db.acquire(self._db) as conn:
            return await claims.claim(
                conn,
                self._store,
                worker_id=self.worker_id,
                lease_seconds=self.settings.lease_seconds,
                types=self._registry.names(),
                limit=limit,
                quiet=self.settings.reserve if reserve else None,
                tenant=tenant if isinstance(tenant, str) else None,
                key=tenant if isinstance(tenant, claims.QuietKey) else None,
            )

    def _claim_reserve_soon(self, tenant: str | claims.QuietKey | None) -> None:
        """Claim into the reserve now (once more after the claim in flight, if one is):
        for each key rung for, then for `tenant` alone when it is the only tenant rung
        for, else for any quiet tenant."""
        if self._stopping.is_set():
            return
        self._express_for.add(tenant)
        self._start_reserve_claim()

    def _start_reserve_claim(self) -> None:
        if self._express is not None and not self._express.done():
            self._express_again = True
            return
        self._express = asyncio.create_task(self._claim_reserve(), name="ledger-reserve-claim")
        self._express.add_done_callback(_log_failure)

    async def _claim_reserve(self) -> None:
        """Jobs of quiet tenants into the free reserve slots, until no NOTIFY came meanwhile.

        A claim that fails on a race or an outage leaves the work to the bulk claim,
        which the same NOTIFY woke.
        """
        while not self._stopping.is_set():
            self._express_again = False
            rung, self._express_for = self._express_for, set()
            for target in _reserve_targets(rung):
                free = min(
                    self.settings.reserve - len(self._reserved),
                    self.settings.slots - len(self._running),
                )
                if free <= 0:
                    # Full: what was rung for is claimed when a reserve slot frees up.
                    self._express_for.update(rung)
                    self._reserve_full = True
                    return
                self._reserve_claims += 1
                try:
                    claimed = await self._claim(free, reserve=True, tenant=target)
                except _RESERVE_CLAIM_LEFT as exc:
                    log.info("claim into the reserve failed (%s); left to the next claim", exc)
                    return
                if claimed:
                    self._quiet_at = time.monotonic()
                    self.metrics.reserve_jobs_claimed.labels(_named(target)).inc(len(claimed))
                for state in claimed:
                    self._reserved.add(state.job_id)
                    self._start(state)
            if not self._express_again:
                return

    async def _set_alarm(self, since_round: float = 0.0) -> None:
        """Set the retry clock for when the earliest runnable job becomes due.

        A job that became due after the claim round (`since_round` seconds ago) read
        the table sets the alarm to go off almost at once, so it is not left waiting
        for the slow poll; one a queue's settings held back in the round sets none.
        """
        assert self._db is not None
        async with db.acquire(self._db) as conn:
            delay: float | None = await conn.fetchval(
                Q["jobs_next_due"], self._registry.names(), since_round + LOOKBACK_MARGIN_SECONDS
            )
        if delay is not None:
            self.clock.wake_at(
                self._store.clock() + timedelta(seconds=max(delay, MIN_ALARM_SECONDS))
            )

    async def _check_running(self) -> None:
        """Polling fallback for lost NOTIFYs: stop handlers of attempts this worker no longer holds."""
        if not self._running or self._db is None:
            return
        runs = list(self._running.values())
        try:
            async with db.acquire(self._db) as conn:
                rows = await conn.fetch(
                    Q["jobs_running_lost"],
                    [r.state.job_id for r in runs],
                    [r.state.attempt for r in runs],
                    self.worker_id,
                )
        except db.UNREACHABLE as exc:
            log.warning("could not check running jobs: %s", exc)
            return
        for row in rows:
            run = self._running.get(row["job_id"])
            if run is not None:
                log.warning(
                    "job %s is no longer held by this worker; stopping it",
                    row["job_id"],
                    extra=_fields(run),
                )
                run.stop("lost")

    def _held(self) -> list[uuid.UUID]:
        return list(self._running)

    # -- running one job -----------------------------------------------------

    def _start(self, state: lifecycle.JobState) -> None:
        run = _Run(state)
        self._running[state.job_id] = run
        task = asyncio.create_task(self._execute(run), name=f"job-{state.job_id}")
        self._tasks.add(task)
        task.add_done_callback(functools.partial(self._finished, state.job_id))

    def _finished(self, job_id: uuid.UUID, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        run = self._running.pop(job_id, None)
        if job_id in self._reserved:
            self._reserved.discard(job_id)
            if self._reserve_full and not self._stopping.is_set():
                self._reserve_full = False
                self._start_reserve_claim()
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "job %s: recording its outcome failed",
                job_id,
                exc_info=task.exception(),
                extra=_fields(run) if run else {},
            )
        if self._backlog:
            self._wake.set()

    async def _execute(self, run: _Run) -> None:
        state = run.state
        # Every line logged while the job runs, by the pool or its handler, names the job.
        with logs.job_context(job_id=state.job_id, job_type=state.type, attempt=state.attempt):
            log.info("job %s running (attempt %s)", state.job_id, state.attempt)
            await self._execute_in_context(run)

    async def _execute_in_context(self, run: _Run) -> None:
        state = run.state
        command = await self._outcome(run)
        if command is None:
            log.info("job %s stopped (%s); nothing to record", state.job_id, run.stop_reason)
            assert self._db is not None
            with contextlib.suppress(*db.UNREACHABLE):  # else job_leases_prune drops it later
                async with db.acquire(self._db) as conn:
                    await leases.let_go(conn, state.job_id, self.worker_id, state.attempt)
            return
        await self._record(state, command)

    async def _outcome(self, run: _Run) -> commands.Command | None:
        """Run the handler and turn what happened into the command to record (None: nothing)."""
        state = run.state
        job = self._registry.get(state.type)
        try:
            payload = job.validate(state.payload)
        except jobtypes.InvalidPayload as exc:
            return await self._fail(state, str(exc), failure=exc, permanent=True)
        upstream: dict[str, Any] = {}
        if state.workflow_id is not None:  # its dependencies' results, as recorded
            assert self._db is not None
            try:
                async with db.acquire(self._db) as conn:
                    found = await conn.fetchval(Q["workflow_upstream"], state.job_id)
            except db.UNREACHABLE as exc:
                return await self._fail(
                    state,
                    f"could not read its dependencies' results: {exc}",
                    failure=exc,
                    permanent=False,
                )
            upstream = {} if found is None else msgspec.json.decode(found)
        context = jobtypes.JobContext(
            job_id=state.job_id,
            job_type=state.type,
            attempt=state.attempt,
            max_attempts=state.max_attempts,
            storage_root=self.settings.storage_root,
            pool=self._handler_db,
            tenant=state.tenant,
            upstream=upstream,
        )
        run.handler = asyncio.ensure_future(self._invoke(job, payload, context))
        if run.stop_reason is not None:  # cancelled between the claim and now
            run.handler.cancel()
        if not await _finished_within(run.handler, state.timeout_seconds):
            run.handler.cancel()
            await _finished_within(run.handler, None)
            if run.stop_reason is None:
                log.warning("job %s timed out after %ss", state.job_id, state.timeout_seconds)
                return await self._fail(
                    state,
                    f"timed out after {state.timeout_seconds:g} seconds",
                    failure=TimeoutError(),
                    permanent=False,
                )
        if run.handler.cancelled():
            if run.stop_reason == "shutdown":
                return commands.ReleaseJob(worker_id=self.worker_id)
            return None
        failure = run.handler.exception()
        if failure is None and isinstance(run.handler.result(), jobtypes.Snooze):
            failure = run.handler.result()  # returned rather than raised: the same
        if isinstance(failure, jobtypes.Snooze):
            return commands.SnoozeJob(
                worker_id=self.worker_id,
                delay=timedelta(seconds=failure.seconds),
                max_snoozes=job.max_snoozes,
                reason=failure.reason,
            )
        if failure is None:
            try:
                result = msgspec.to_builtins(run.handler.result())
            except TypeError as exc:
                return await self._fail(
                    state, f"result is not JSON: {exc}", failure=exc, permanent=True
                )
            return commands.CompleteJob(worker_id=self.worker_id, result=result)
        if isinstance(failure, jobtypes.Permanent):
            return await self._fail(
                state, str(failure) or type(failure).__name__, failure=failure, permanent=True
            )
        if not isinstance(failure, jobtypes.Retryable):
            log.error("job %s: handler raised", state.job_id, exc_info=failure)
        return await self._fail(state, _describe(failure), failure=failure, permanent=False)

    async def _fail(
        self,
        state: lifecycle.JobState,
        error: str,
        *,
        failure: BaseException,
        permanent: bool,
    ) -> commands.FailAttempt:
        """The failed attempt as its retry policy decides it (retry when, or stop why)."""
        policy = await self._policy(state)
        decision = retry.decide_failure(
            policy,
            attempt=state.attempt,
            error_type=type(failure).__name__,
            error_names=retry.error_names(failure),
            permanent=permanent,
            after=failure.after if isinstance(failure, jobtypes.Retryable) else None,
            submitted_at=state.created_at,
            now=self._store.clock(),
        )
        return commands.FailAttempt(
            worker_id=self.worker_id,
            error=error,
            permanent=permanent,
            retry_delay=retry.wait_of(decision),
            decision=decision,
        )

    async def _policy(self, state: lifecycle.JobState) -> retrypolicy.PolicyInForce:
        """The job's retry policy in force; without its queue's when the database cannot
        be reached (the queue's fields are then missing from the recorded sources)."""
        assert self._db is not None
        try:
            async with db.acquire(self._db) as conn:
                return await self.policies.in_force(conn, state)
        except (*outcomes.OUTAGE, *db.UNREACHABLE) as exc:
            log.warning(
                "job %s: queue %r's retry policy unreadable (%s); deciding without it",
                state.job_id,
                state.queue,
                exc,
            )
            return self.policies.without_queue(state)

    async def _invoke(
        self, job: jobtypes.JobType, payload: Any, context: jobtypes.JobContext
    ) -> Any:
        if job.is_async:
            return await cast(Awaitable[Any], job.handler(payload, context))
        loop = asyncio.get_running_loop()
        # Sync handlers run off the event loop; a timed-out one cannot be interrupted,
        # its thread runs on, but its outcome is no longer recorded.
        return await loop.run_in_executor(
            self._executor, functools.partial(job.handler, payload, context)
        )

    async def _record(self, state: lifecycle.JobState, command: commands.Command) -> None:
        """Record the attempt's outcome (in a transaction shared with others that finished)."""
        batcher = self._reserve_outcomes if state.job_id in self._reserved else self._outcomes
        if await batcher.submit(outcomes.Outcome(state, command)):
            log.info("job %s: recorded %s", state.job_id, type(command).__name__)
            return
        self.metrics.outcomes_abandoned.labels(job_type=state.type, queue=state.queue).inc()
        log.warning(
            "job %s: %s of attempt %s not recorded; whoever holds the job now decides it",
            state.job_id,
            type(command).__name__,
            state.attempt,
        )

    async def _record_together(self, batch: Sequence[outcomes.Outcome]) -> list[bool]:
        assert self._db is not None
        async with db.acquire(self._db) as conn:
            try:
                return await outcomes.record_as_claimed(conn, self._store, self.worker_id, batch)
            except errors.VersionConflict:  # some job moved since its claim: read, decide again
                return await outcomes.record(conn, self._store, self.worker_id, batch)

    async def _record_alone(self, outcome: outcomes.Outcome) -> bool:
        """One outcome in its own transaction, tried until it is recorded or the attempt is lost.

        While the database cannot be reached, the attempt is still this worker's: the
        heartbeat renews its lease as soon as the database answers, and recovery
        leaves leases alone for a full lease after an outage (`leases.Keeper`). So the
        outcome is tried again for as long as it takes, and given up only when the
        database says another took the attempt over (expired, cancelled: False) or at
        shutdown once the grace period is over. A job that moved is decided again.
        """
        job_id = outcome.state.job_id
        outages = 0
        tries = 0
        while tries < MAX_RECORD_TRIES:
            try:
                return (await self._record_together([outcome]))[0]
            except errors.VersionConflict:
                tries += 1
                log.info("job %s moved while recording its outcome; deciding again", job_id)
                continue
            except (*outcomes.OUTAGE, *db.UNREACHABLE) as exc:
                if isinstance(exc, asyncpg.PostgresError) and not isinstance(exc, outcomes.OUTAGE):
                    tries += 1  # an answer, not an outage: tried a few times only
                    log.warning("job %s: recording failed (%s), retrying", job_id, exc)
                    pause = min(MAX_RECORD_RETRY_SECONDS, 0.05 * 2**tries)
                else:
                    outages += 1
                    self.metrics.outcome_record_retries.inc()
                    if outages == 1 or outages % 30 == 0:
                        log.warning(
                            "job %s: database unreachable while recording its outcome (%s); "
                            "trying again while this worker holds the attempt (%d tries)",
                            job_id,
                            exc,
                            outages,
                        )
                    pause = min(self._record_retry_cap, 0.05 * 2 ** min(outages, 10))
            if await _set_within(self._closing, pause):
                log.error(
                    "job %s: shutting down with the database unreachable; %s not recorded, "
                    "its lease will lapse and it will run again",
                    job_id,
                    type(outcome.command).__name__,
                )
                return False
        log.error(
            "job %s: gave up recording %s after %d tries; its lease will lapse and it "
            "will run again",
            job_id,
            type(outcome.command).__name__,
            tries,
        )
        return False

    @property
    def _record_retry_cap(self) -> float:
        return min(MAX_RECORD_RETRY_SECONDS, self.settings.lease_seconds / 4)

    # -- graceful shutdown ---------------------------------------------------

    async def _drain(self) -> None:
        """Let running jobs finish within the grace period, then hand the rest back."""
        tasks = set(self._tasks)
        if tasks:
            log.info(
                "waiting up to %ss for %d running jobs", self.settings.grace_seconds, len(tasks)
            )
            await asyncio.wait(tasks, timeout=self.settings.grace_seconds)
        self._closing.set()
        for run in list(self._running.values()):
            log.info("handing job %s back", run.state.job_id, extra=_fields(run))
            run.stop("shutdown")
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=30)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s failed", task.get_name(), exc_info=task.exception())


async def _finished_within(task: asyncio.Future[Any], seconds: float | None) -> bool:
    """Wait until `task` is done or `seconds` pass (None: no limit); whether it is done.

    asyncio.wait would do, but its checks and sets weigh on a busy worker's every
    job; this is one future and a timer.
    """
    if task.done():
        return True
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[None] = loop.create_future()

    def settle(_: object = None) -> None:
        if not finished.done():
            finished.set_result(None)

    task.add_done_callback(settle)
    timer = None if seconds is None else loop.call_later(seconds, settle)
    try:
        await finished
    finally:
        task.remove_done_callback(settle)
        if timer is not None:
            timer.cancel()
    return task.done()


async def _set_within(event: asyncio.Event, seconds: float) -> bool:
    """Wait until `event` is set or `seconds` pass; whether it is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout=seconds)
    return event.is_set()


def _describe(failure: BaseException) -> str:
    text = str(failure)
    if isinstance(failure, jobtypes.Retryable) and text:
        return text
    return f"{type(failure).__name__}: {text}" if text else type(failure).__name__
