"""The queues read model: each queue's settings (the `queues` projection of its
queue.* events) beside its jobs by status (the counters of sql/0058).

A queue is listed when it has settings or jobs: one never configured shows version 0
and no limits, one configured but without jobs shows zero counts. Counting reads the
counters, never the jobs, so the cost does not grow with the ledger; the counts are
those of the tenant the transaction acts in (sql/0064).

Queues are per tenant (sql/0065): `list_all` and `get` show the settings of the tenant
the transaction acts in (`acting.act_in`; `default` outside one), never another's;
`limits_now` (for /metrics) shows every tenant's.
"""

from __future__ import annotations

import asyncpg
import msgspec

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
        retry_policy=state.retry_policy,
    )


async def list_all(conn: asyncpg.Connection) -> wire.QueueList:
    """Every queue that has settings (in the transaction's tenant) or jobs, by name."""
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


class Held(msgspec.Struct, frozen=True, kw_only=True):
    """A configured queue now, for /metrics: paused or not, and which of its limits (if
    any) holds its runnable jobs back."""

    queue: str
    paused: bool
    held_by: str | None  # "paused", "concurrency" or "rate_limit" (ledger.metrics.QUEUE_LIMITS)
    runnable: int  # its pending and retrying jobs, from the counters
    tenant: str = "default"  # whose queue


def held_by(
    *, paused: bool, concurrency: int | None, running: int, tokens: float | None
) -> str | None:
    """The limit that stops the next claim taking the queue's jobs, checked in the claim's
    order: paused, then its concurrency (full), then its rate limit (less than a token)."""
    if paused:
        return "paused"
    if concurrency is not None and running >= concurrency:
        return "concurrency"
    if tokens is not None and tokens < 1:
        return "rate_limit"
    return None


async def limits_now(conn: asyncpg.Connection) -> list[Held]:
    """Every configured queue's state for the scrape, every tenant's: a few rows per
    queue, from the queues projection, the counters and the rate limits' buckets."""
    return [
        Held(
            queue=row["name"],
            paused=row["paused"],
            held_by=held_by(
                paused=row["paused"],
                concurrency=row["concurrency"],
                running=int(row["running"]),
                tokens=row["tokens"],
            ),
            runnable=int(row["runnable"]),
            tenant=row["tenant"],
        )
        for row in await conn.fetch(Q["queues_limits_now"])
    ]
