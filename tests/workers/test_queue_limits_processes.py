"""Queue limits hold across real `ledger worker` processes, checked from the ledger's own events."""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

import asyncpg
import pytest

from ledger import queues, store, wire
from tests import factories
from tests.workers.conftest import eventually
from tests.workers.test_worker_processes import Spawn, _all_in, spawn

pytestmark = pytest.mark.slow
__all__ = ["spawn"]  # the fixture, shared with the other worker-process tests

ENDED = ("job.completed.v1", "job.failed.v1", "job.retry_scheduled.v1", "job.lease_expired.v1")


async def _intervals(
    conn: asyncpg.Connection, ids: list[uuid.UUID]
) -> list[tuple[datetime, datetime, str | None]]:
    """Each attempt's (claimed, ended, concurrency key), from the recorded events."""
    rows = await conn.fetch(
        "SELECT e.job_id, e.type, e.occurred_at, j.concurrency_key FROM events AS e "
        "JOIN jobs AS j USING (job_id) WHERE e.job_id = ANY($1) ORDER BY e.job_id, e.version",
        ids,
    )
    started: dict[uuid.UUID, datetime] = {}
    spans = []
    for r in rows:
        if r["type"] == "job.claimed.v1":
            started[r["job_id"]] = r["occurred_at"]
        elif r["type"] in ENDED:
            spans.append((started.pop(r["job_id"]), r["occurred_at"], r["concurrency_key"]))
    assert not started, "an attempt never ended"
    return spans


def _most_at_once(spans: list[tuple[datetime, datetime, str | None]]) -> int:
    """The largest number of intervals open at one instant (an end before a start at a tie)."""
    points = sorted([(s, 1) for s, _, _ in spans] + [(e, -1) for _, e, _ in spans])
    most = now = 0
    for _, step in points:
        now += step
        most = max(most, now)
    return most


async def _started(processes: Spawn, conn: asyncpg.Connection, count: int) -> None:
    children = [processes(WORKER_COUNT=5) for _ in range(count)]
    for child in children:
        await child.registered(conn)


async def test_three_processes_never_run_more_than_the_queue_and_key_limits(
    spawn: Spawn, conn: asyncpg.Connection, event_store: store.EventStore, tmp_path: Path
) -> None:
    await queues.configure(conn, event_store, "lim", wire.QueueSettings(concurrency=3), actor="t")
    await queues.configure(
        conn, event_store, "keyed", wire.QueueSettings(per_key_concurrency=1), actor="t"
    )
    await _started(spawn, conn, 3)  # 15 slots in all
    work = {"job_type": "test.gated", "payload": {"gate": str(tmp_path / "g"), "seconds": 0.03}}
    limited = await factories.submit_many(event_store, conn, 45, queue="lim", **work)
    keyed: list[uuid.UUID] = []
    for key in ("a", "b", "c"):
        keyed += await factories.submit_many(
            event_store, conn, 10, queue="keyed", concurrency_key=key, **work
        )
    ids = limited + keyed
    await eventually(lambda: _all_in(conn, ids, "completed"), within=120, every=0.25)

    assert _most_at_once(await _intervals(conn, limited)) == 3
    by_key = defaultdict(list)
    for span in await _intervals(conn, keyed):
        by_key[span[2]].append(span)
    assert sorted(by_key) == ["a", "b", "c"]
    assert all(_most_at_once(spans) == 1 for spans in by_key.values())
    assert _most_at_once([s for spans in by_key.values() for s in spans]) > 1  # keys overlap
    actors = await conn.fetchval(
        "SELECT count(DISTINCT actor) FROM events WHERE type = 'job.claimed.v1'"
    )
    assert actors > 1  # more than one process took part


async def test_a_rate_limit_holds_in_every_window_of_the_recorded_claim_times(
    spawn: Spawn, conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    limit, burst = 20, 5  # 20 a second, bursts of 5
    await queues.configure(
        conn,
        event_store,
        "rl",
        wire.QueueSettings(rate_limit=wire.RateLimitIn(limit=limit, period_seconds=1, burst=burst)),
        actor="t",
    )
    await _started(spawn, conn, 3)
    ids = await factories.submit_many(event_store, conn, 40, queue="rl", job_type="test.noop")
    await eventually(lambda: _all_in(conn, ids, "completed"), within=120, every=0.25)
    times = [
        r["occurred_at"]
        for r in await conn.fetch(
            "SELECT occurred_at FROM events WHERE type = 'job.claimed.v1' AND job_id = ANY($1) "
            "ORDER BY occurred_at",
            ids,
        )
    ]
    assert len(times) == 40
    for i, first in enumerate(times):
        for j in range(i, len(times)):
            window = (times[j] - first).total_seconds()
            assert j - i + 1 <= burst + limit * window, (i, j, window)
    # 40 claims at 20 a second after a burst of 5 take at least 1.75 s.
    assert (times[-1] - times[0]).total_seconds() >= (40 - burst) / limit


async def _statuses(conn: asyncpg.Connection, ids: list[uuid.UUID]) -> Counter[str]:
    rows = await conn.fetch("SELECT status FROM jobs WHERE job_id = ANY($1)", ids)
    return Counter(r["status"] for r in rows)


async def test_a_paused_queue_waits_while_others_run_and_resuming_wakes_the_workers(
    spawn: Spawn, conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    """The workers poll once an hour: only the resume's own NOTIFY can start the jobs."""
    await queues.pause(conn, event_store, "held", actor="ops")
    await _started(spawn, conn, 2)
    held = await factories.submit_many(event_store, conn, 10, queue="held", job_type="test.noop")
    free = await factories.submit_many(event_store, conn, 10, queue="free", job_type="test.noop")
    await eventually(lambda: _all_in(conn, free, "completed"), within=60)
    assert await _statuses(conn, held) == {"pending": 10}
    await queues.resume(conn, event_store, "held", actor="ops")
    await eventually(lambda: _all_in(conn, held, "completed"), within=60)


async def test_a_limit_changed_while_workers_run_binds_their_next_claims(
    spawn: Spawn, conn: asyncpg.Connection, event_store: store.EventStore, tmp_path: Path
) -> None:
    await queues.configure(conn, event_store, "lim", wire.QueueSettings(concurrency=1), actor="t")
    await _started(spawn, conn, 2)
    work = {"job_type": "test.gated", "payload": {"gate": str(tmp_path / "g"), "seconds": 0.03}}
    ids = await factories.submit_many(event_store, conn, 40, queue="lim", **work)

    async def some_done() -> bool:
        return (await _statuses(conn, ids))["completed"] >= 5

    await eventually(some_done, within=60)
    changed = await queues.configure(
        conn, event_store, "lim", wire.QueueSettings(concurrency=4), actor="t"
    )
    await eventually(lambda: _all_in(conn, ids, "completed"), within=120)
    spans = await _intervals(conn, ids)
    assert changed.updated_at is not None
    before = [s for s in spans if s[0] < changed.updated_at]
    after = [s for s in spans if s[0] > changed.updated_at]
    assert _most_at_once(before) == 1
    assert 1 < _most_at_once(after) <= 4


async def test_round_robin_starts_another_key_s_job_before_a_big_backlog_drains(
    spawn: Spawn, conn: asyncpg.Connection, event_store: store.EventStore, tmp_path: Path
) -> None:
    await queues.configure(
        conn, event_store, "rr", wire.QueueSettings(fairness="round_robin"), actor="t"
    )
    child = spawn(WORKER_COUNT=2)
    await child.registered(conn)
    work = {"job_type": "test.gated", "payload": {"gate": str(tmp_path / "g"), "seconds": 0.02}}
    big = await factories.submit_many(
        event_store, conn, 300, queue="rr", concurrency_key="big", **work
    )

    async def started() -> bool:
        return (await _statuses(conn, big))["completed"] >= 4

    await eventually(started, within=60)
    [small] = await factories.submit_many(
        event_store, conn, 1, queue="rr", concurrency_key="small", **work
    )
    await eventually(lambda: _all_in(conn, [small], "completed"), within=60)
    # Served in turn: far more than half of the big key's backlog is still waiting (in
    # FIFO order the small key's job would have waited for all 300).
    assert (await _statuses(conn, big))["pending"] > 200


async def test_three_processes_drain_a_round_robin_queue_of_many_keys_and_stay_up(
    spawn: Spawn, conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    """Claimers of a fair queue without limits take no queue lock and run at once: every
    job of six keys is done by three processes, and none of them falls over. (Their turn
    rows are written in key order so two claims cannot deadlock on them; this run did
    not provoke one with the earlier, per-turn writes either.)"""
    await queues.configure(
        conn, event_store, "rr", wire.QueueSettings(fairness="round_robin"), actor="t"
    )
    children = [spawn(WORKER_COUNT=5) for _ in range(3)]
    for child in children:
        await child.registered(conn)
    ids: list[uuid.UUID] = []
    for key in ("a", "b", "c", "d", "e", "f"):
        ids += await factories.submit_many(
            event_store, conn, 40, queue="rr", concurrency_key=key, job_type="test.noop"
        )
    await eventually(lambda: _all_in(conn, ids, "completed"), within=120)
    assert all(child.proc.poll() is None for child in children), [c.output() for c in children]
    assert "Deadlock" not in "".join(c.output() for c in children)
