"""Recording what became of finished attempts: many outcomes in one transaction.

A finished attempt's outcome (completed, retry scheduled, failed, released) is
decided against the job's row as it is now and appended only while this worker
still holds that very attempt, so an outcome is recorded once (invariant 7). The
pool hands its outcomes to a `batching.Batcher`: the outcomes of attempts that
finish together share one transaction and one durable commit, and each is
answered after that commit. The batch is first decided against the states the
worker claimed (`record_as_claimed`: nothing to read, since an attempt still held
has not moved); if any job moved meanwhile (cancelled, expired), the append
conflicts and the batch is recorded again against the rows as they are (`record`).
A conflict there too, or a lost connection, sends each outcome through `record` alone.

An outage does not end the attempt: while the database cannot be reached
(`OUTAGE`), the worker still holds the attempt and keeps trying to record its
outcome (invariant 7); it gives up only when `record` finds the attempt taken
over (expired, cancelled), which it can only learn once the database answers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import asyncpg
import msgspec

from ledger import commands, lifecycle, sqlfile, store
from projections import current

Q = sqlfile.load("workers")
log = logging.getLogger(__name__)

# The database cannot be reached (for now): refused or dropped sockets, a closed or
# broken connection, timeouts, a server shutting down or starting up (57P0x), out of
# connections (53300), a read-only standby mid-failover (25006). Any other server
# error is an answer, not an outage.
OUTAGE: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.ReadOnlySQLTransactionError,
)


class Outcome(msgspec.Struct, frozen=True):
    """What to record for an attempt: the job as this worker claimed it, and the command."""

    state: lifecycle.JobState
    command: commands.Command


def held(now: lifecycle.JobState | None, claimed: lifecycle.JobState, worker_id: str) -> bool:
    """Whether `worker_id` still runs the attempt it claimed (not cancelled, expired, ...)."""
    return (
        now is not None
        and now.status == "processing"
        and now.worker_id == worker_id
        and now.attempt == claimed.attempt
    )


async def record_as_claimed(
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    worker_id: str,
    outcomes: Sequence[Outcome],
) -> list[bool]:
    """Record `outcomes` in one transaction, each decided against the job as claimed.

    Optimistic: an attempt this worker still holds is exactly as it claimed it, so
    no row is read; if any job moved since (its next version is taken), the append
    raises VersionConflict and nothing is recorded. The leases are dropped.
    """
    now = event_store.clock()
    decided = [
        event
        for o in outcomes
        for event in commands.decide(
            o.state, o.command, job_id=o.state.job_id, actor=worker_id, now=now
        )
    ]
    async with conn.transaction():
        await conn.execute(
            Q["job_leases_delete_many"],
            worker_id,
            [o.state.job_id for o in outcomes],
            [o.state.attempt for o in outcomes],
        )
        await event_store.append(conn, decided, before={o.state.job_id: o.state for o in outcomes})
    return [True] * len(outcomes)


async def record(
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    worker_id: str,
    outcomes: Sequence[Outcome],
) -> list[bool]:
    """Record `outcomes` in one transaction; for each, whether it was recorded.

    An outcome of an attempt this worker no longer holds records nothing (False);
    the leases of all of them are dropped. Raises VersionConflict when a job moved
    between reading its row and appending (then nothing is recorded).
    """
    ids = [o.state.job_id for o in outcomes]
    async with conn.transaction():
        # The jobs this worker holds, of any tenant (sql/0068: the worker's transaction
        # acts in none, so it reads them through a ledger_dispatch function).
        held_now = await conn.fetch(Q["jobs_held_by"], worker_id, ids)
        now_states = {s.job_id: s for s in map(current.state_from_row, held_now)}
        await conn.execute(
            Q["job_leases_delete_many"], worker_id, ids, [o.state.attempt for o in outcomes]
        )
        now = event_store.clock()
        decided = []
        recorded = []
        for outcome in outcomes:
            claimed = outcome.state
            now_state = now_states.get(claimed.job_id)
            if not held(now_state, claimed, worker_id):
                log.info(
                    "job %s attempt %s is no longer held by this worker; %s not recorded",
                    claimed.job_id,
                    claimed.attempt,
                    type(outcome.command).__name__,
                )
                recorded.append(False)
                continue
            decided.extend(
                commands.decide(
                    now_state, outcome.command, job_id=claimed.job_id, actor=worker_id, now=now
                )
            )
            recorded.append(True)
        await event_store.append(conn, decided, before=now_states)
    return recorded
