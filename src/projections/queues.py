"""The queues read model: each queue's settings (the `queues` projection of its
queue.* events) beside its jobs by status (the counters of sql/0058).

A queue is listed when it has settings or jobs: one never configured shows version 0
and no limits, one configured but without jobs shows zero counts. Counting reads the
counters, never the jobs, so the cost does not grow with the ledger.
"""

from __future__ import annotations

import asyncpg

from ledger import lifecycle, queues, sqlfile, wire

Q = sqlfile.load("projections")


def _zero() -> dict[str, int]:
    return dict.fromkeys(lifecycle.STATUSES, 0)


def of(state: queues.QueueState, counts: dict[str, int]) -> wire.QueueOut:
    """The API's view of a queue: its settings and `counts` (every status, zero included)."""
    return wire.QueueOut(
        name=state.name,
        concurrency=state.concurrency,
        rate_limit=state.rate_limit,
        per_key_concurrency=state.per_key_concurrency,
        fairness=state.fairness,
        paused=state.paused,
        counts=counts,
        running=counts["processing"],
        version=state.version,
        updated_by=state.updated_by,
        updated_at=state.updated_at,
    )


async def list_all(conn: asyncpg.Connection) -> wire.QueueList:
    """Every queue that has settings or jobs, by name."""
    settings = {row["name"]: queues.from_row(row) for row in await conn.fetch(Q["queues_all"])}
    counts: dict[str, dict[str, int]] = {name: _zero() for name in settings}
    for row in await conn.fetch(Q["job_counts_by_queue_status"]):
        counts.setdefault(row["queue"], _zero())[row["status"]] = int(row["jobs"])
    return wire.QueueList(
        queues=[
            of(settings.get(name) or queues.QueueState(name=name, version=0), counts[name])
            for name in sorted(counts)
        ]
    )


async def get(conn: asyncpg.Connection, name: str) -> wire.QueueOut:
    """One queue (UnknownQueue when it has neither settings nor jobs; InvalidInput when
    `name` cannot name a queue)."""
    name = queues.checked_name(name)
    queue = await shown(
        conn, await queues.current(conn, name) or queues.QueueState(name=name, version=0)
    )
    if queue.version == 0 and not any(queue.counts.values()):
        raise queues.UnknownQueue(name)
    return queue


async def shown(conn: asyncpg.Connection, state: queues.QueueState) -> wire.QueueOut:
    """`state` (settings just changed) with the queue's counts now."""
    counts = _zero()
    for row in await conn.fetch(Q["job_counts_of_queue"], state.name):
        counts[row["status"]] = int(row["jobs"])
    return of(state, counts)
