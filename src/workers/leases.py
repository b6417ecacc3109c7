"""Leases and heartbeats: who is alive, which running attempts are still held, and recovery of the rest.

A claim records the attempt's first lease in its job.claimed.v1 event (and so the
jobs row). From then on the worker renews it by heartbeat in the operational table
`job_leases`, whose row the first renewal makes (and
its own liveness in `worker_processes`), never by appending events: history
records the claim and the outcome, not every renewal. The recovery task, run by
every worker process, looks for processing jobs that neither the claim's lease
nor a renewal covers any more (their worker died or hung) and records
job.lease_expired.v1 through the event store: a failed attempt, retried with
backoff while attempts are left (invariant 7: at-least-once execution).

After an outage (a round of its own that could not reach the database), a
recovery task expires nobody's lease for one full lease: while the database was
away no worker could renew, so every worker that still runs its attempts gets the
time to come back, renew them and record their outcomes before anyone calls them
dead. A worker cut off alone (the others kept reaching the database) gets no
such grace: its leases lapse, recovery expires them, and when it comes back it
finds its attempts taken over and records nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable, Sequence

import asyncpg
import msgspec

from ledger import commands, db, errors, jobtypes, logs, sqlfile, store
from projections import current
from workers import retry

Q = sqlfile.load("workers")
log = logging.getLogger(__name__)

# The error type of an attempt whose lease expired, as retry policies name it.
LEASE_EXPIRED = "LeaseExpired"
# A worker that stayed silent this long is forgotten entirely (one day).
FORGET_AFTER_SECONDS = 86_400.0


class WorkerProcess(msgspec.Struct, frozen=True, kw_only=True):
    """One worker process as the `worker_processes` table knows it."""

    worker_id: str
    host: str
    pid: int
    slots: int
    lease_seconds: float


def new_worker_id() -> str:
    """Unique per process start: host, pid and a random suffix (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def this_process(slots: int, lease_seconds: float, worker_id: str | None = None) -> WorkerProcess:
    return WorkerProcess(
        worker_id=worker_id or new_worker_id(),
        host=socket.gethostname(),
        pid=os.getpid(),
        slots=slots,
        lease_seconds=lease_seconds,
    )


async def register(conn: asyncpg.Connection, worker: WorkerProcess) -> None:
    await conn.execute(
        Q["worker_processes_register"],
        worker.worker_id,
        worker.host,
        worker.pid,
        worker.slots,
        worker.lease_seconds,
    )


async def unregister(conn: asyncpg.Connection, worker_id: str) -> None:
    await conn.execute(Q["worker_processes_unregister"], worker_id)


async def heartbeat(
    conn: asyncpg.Connection, worker: WorkerProcess, running: Sequence[uuid.UUID] = ()
) -> None:
    """The process is alive, and so are the leases of the attempts it still runs.

    Only the jobs named in `running` are renewed: an attempt whose outcome could not
    be recorded is dropped from it, its lease lapses and recovery runs it again.
    """
    async with conn.transaction():
        status = await conn.execute(Q["worker_processes_heartbeat"], worker.worker_id)
        if status.endswith(" 0"):  # the row was pruned while we were away: come back
            await register(conn, worker)
        await conn.execute(
            Q["job_leases_renew"], worker.worker_id, worker.lease_seconds, list(running)
        )


class SlotUsage(msgspec.Struct, frozen=True, kw_only=True):
    """Live worker processes, their job slots, and the slots running a job now."""

    processes: int
    slots: int
    busy: int


async def slot_usage(conn: asyncpg.Connection) -> SlotUsage:
    """Across all live worker processes, for the metrics (`projections.status.workers_alive` is `/health`'s figure)."""
    row = await conn.fetchrow(Q["worker_processes_slot_usage"])
    assert row is not None
    return SlotUsage(
        processes=int(row["processes"]), slots=int(row["slots"]), busy=int(row["busy"])
    )


async def let_go(conn: asyncpg.Connection, job_id: uuid.UUID, worker_id: str, attempt: int) -> None:
    """The attempt ended: drop its lease."""
    await conn.execute(Q["job_leases_delete"], job_id, worker_id, attempt)


async def recover_expired(
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    *,
    actor: str,
    limit: int = 100,
    policies: retry.Policies | None = None,
) -> list[uuid.UUID]:
    """Record job.lease_expired.v1 for running attempts whose lease ran out; returns their ids.

    Optimistic: a job that moved meanwhile (its worker finished after all, another
    recoverer got there first) conflicts and is left alone.
    """
    rows = await conn.fetch(Q["jobs_lease_expired"], limit)
    recovered: list[uuid.UUID] = []
    policies = policies or retry.Policies(jobtypes.REGISTRY)
    for row in rows:
        state = current.state_from_row(row)
        # The job's retry policy decides, as for any failed attempt; its error type is
        # LeaseExpired (a policy may name it non-retryable: a job never run twice).
        policy = await policies.in_force(conn, state)
        now = event_store.clock()
        decision = retry.decide_failure(
            policy,
            attempt=state.attempt,
            error_type=LEASE_EXPIRED,
            error_names=(LEASE_EXPIRED,),
            submitted_at=state.created_at,
            now=now,
        )
        decided = commands.decide(
            state,
            commands.ExpireLease(retry_delay=retry.wait_of(decision), decision=decision),
            job_id=state.job_id,
            actor=actor,
            now=now,
        )
        try:
            async with conn.transaction():
                await event_store.append(conn, decided, before={state.job_id: state})
                if state.worker_id is not None:
                    await let_go(conn, state.job_id, state.worker_id, state.attempt)
        except errors.VersionConflict:
            log.info(
                "job %s moved while its lease was being expired; left alone",
                state.job_id,
                extra=logs.job_fields(
                    job_id=state.job_id, job_type=state.type, attempt=state.attempt
                ),
            )
            continue
        log.warning(
            "lease of job %s (attempt %s) held by %s expired; recovered",
            state.job_id,
            state.attempt,
            state.worker_id,
            extra=logs.job_fields(job_id=state.job_id, job_type=state.type, attempt=state.attempt),
        )
        recovered.append(state.job_id)
    return recovered


async def prune(conn: asyncpg.Connection) -> None:
    """Forget leases of attempts that ended and processes silent for a long time."""
    await conn.execute(Q["job_leases_prune"])
    await conn.execute(Q["worker_processes_prune"], FORGET_AFTER_SECONDS)


class Keeper:
    """The heartbeat and recovery loops of one worker process."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        event_store: store.EventStore,
        worker: WorkerProcess,
        *,
        held: Callable[[], Sequence[uuid.UUID]] = tuple,
        policies: retry.Policies | None = None,
    ) -> None:
        self._policies = policies
        self._pool = pool
        self._held = held
        self._store = event_store
        self.worker = worker
        self._stopped = asyncio.Event()

    @property
    def interval(self) -> float:
        """A third of the lease: two heartbeats may be lost before a lease lapses."""
        return self.worker.lease_seconds / 3

    def stop(self) -> None:
        self._stopped.set()

    async def run(self) -> None:
        """Heartbeat and recover until stopped; database trouble is logged and retried.

        After a round that failed, recovery waits one lease from the first round
        that succeeds again (see the module's docstring).
        """
        loop = asyncio.get_running_loop()
        outage = False
        recover_from = loop.time()
        while not self._stopped.is_set():
            try:
                async with db.acquire(self._pool) as conn:
                    await heartbeat(conn, self.worker, self._held())
                    if outage:
                        outage = False
                        recover_from = loop.time() + self.worker.lease_seconds
                        log.info(
                            "database reachable again; expiring no lease for %gs so that "
                            "every worker can renew its own",
                            self.worker.lease_seconds,
                        )
                    if loop.time() >= recover_from:
                        await recover_expired(
                            conn,
                            self._store,
                            actor=f"recovery:{self.worker.worker_id}",
                            policies=self._policies,
                        )
                    await prune(conn)
            except db.UNREACHABLE as exc:
                outage = True
                log.warning("heartbeat/recovery round failed, retrying: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), timeout=self.interval)
