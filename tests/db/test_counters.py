"""The job counters (sql/0058) stay exactly what the jobs view and the events count,
whatever appends race, and only the append and the owner's rebuild write them."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from ledger import commands, errors, store
from projections import rebuild, stats, status
from tests import factories
from tests.conftest import IN_DEFAULT, Databases
from workers import claims

QUEUES = ("default", "mail", "video")


async def _submit_many(
    pool: asyncpg.Pool, event_store: store.EventStore, n: int
) -> list[uuid.UUID]:
    """`n` jobs over three queues, in one append of submissions per queue."""
    ids: list[uuid.UUID] = []
    now = event_store.clock()
    async with pool.acquire() as conn:
        for queue in QUEUES:
            decided = []
            for _ in range(n // len(QUEUES)):
                job_id = uuid.uuid4()
                ids.append(job_id)
                decided += commands.decide(
                    None,
                    factories.submit_command(queue=queue, max_attempts=2),
                    job_id=job_id,
                    actor="alice",
                    now=now,
                )
            await event_store.append(conn, decided)
    return ids


async def _lost_race_ok(act: Callable[[], Awaitable[object]]) -> None:
    with contextlib.suppress(errors.LedgerError):  # a racing writer won: a clean conflict
        await act()


async def _churn(
    pool: asyncpg.Pool, event_store: store.EventStore, ids: list[uuid.UUID], seed: int
) -> None:
    """Claims racing cancels, completions, failures with and without retries, expired
    leases and manual retries, on shared jobs, from one connection of the pool."""
    rng = random.Random(seed)
    async with pool.acquire() as conn:
        for _ in range(40):
            job_id = rng.choice(ids)
            roll = rng.random()
            if roll < 0.3:
                try:
                    claimed = await claims.claim(
                        conn,
                        event_store,
                        worker_id=f"w{seed}",
                        lease_seconds=30,
                        types=["noop"],
                        limit=5,
                    )
                except errors.ClaimRaced:
                    continue  # a deadlock the database broke: the pool would claim again
                for state in claimed:
                    done: commands.Command
                    if rng.random() < 0.5:
                        done = commands.CompleteJob(worker_id=f"w{seed}", result=1)
                    else:
                        done = commands.FailAttempt(
                            worker_id=f"w{seed}",
                            error="x",
                            permanent=rng.random() < 0.3,
                            retry_delay=timedelta(0),
                        )

                    async def finish(
                        job: uuid.UUID = state.job_id, c: commands.Command = done
                    ) -> None:
                        await event_store.execute(conn, job, c, actor=f"w{seed}")

                    await _lost_race_ok(finish)
                continue
            command: commands.Command
            if roll < 0.5:
                command = commands.CancelJob(reason="stop")
            elif roll < 0.7:
                command = commands.ExpireLease(retry_delay=timedelta(0))
            elif roll < 0.85:
                command = commands.RetryJob()
            else:
                command = commands.ClaimJob(worker_id=f"w{seed}", lease_seconds=30)

            async def act(job: uuid.UUID = job_id, c: commands.Command = command) -> None:
                await event_store.execute(conn, job, c, actor="bob")

            await _lost_race_ok(act)


async def test_counters_match_the_view_and_the_events_after_racing_appends(
    dbs: Databases, conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    async with asyncpg.create_pool(
        dbs.app, min_size=4, max_size=4, server_settings=IN_DEFAULT
    ) as pool:
        ids = await _submit_many(pool, event_store, 150)
        await asyncio.gather(*(_churn(pool, event_store, ids, seed) for seed in range(4)))

    assert await rebuild.verify_counters(conn, datetime.now(UTC)) == []
    counted = await conn.fetch(
        "SELECT queue, status, count(*) AS n FROM jobs GROUP BY queue, status"
    )
    overview = await stats.overview(conn, datetime.now(UTC))
    by_status: dict[str, int] = {}
    for row in counted:
        by_status[row["status"]] = by_status.get(row["status"], 0) + int(row["n"])
        queue = next(q for q in overview.by_queue if q.queue == row["queue"])
        assert queue.counts[row["status"]] == row["n"]
    assert {s: n for s, n in overview.by_status.items() if n} == by_status
    assert len(by_status) >= 4  # the churn reached several statuses
    depth = (await status.counts(conn)).queue_depth
    assert depth == by_status.get("pending", 0) + by_status.get("retrying", 0)
    # More than 64 statements wrote deltas: some were folded into the counters' rows.
    assert await conn.fetchval("SELECT count(*) FROM job_counts") > 0
    assert sum(m.submitted for m in overview.throughput) == 150


async def test_the_application_role_cannot_write_the_counters(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await factories.submit(event_store, conn)
    writes = [
        "INSERT INTO job_count_deltas (queue, status, n) VALUES ('default', 'pending', 5)",
        "UPDATE job_counts SET n = n + 1",
        "DELETE FROM job_count_deltas",
        "INSERT INTO job_throughput_deltas VALUES (now(), 1, 1, 1)",
        "DELETE FROM job_throughput",
        "SELECT job_counters_fold()",
        "SELECT nextval('job_counter_writes')",
    ]
    for sql in writes:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(sql)
    assert (await status.counts(conn)).queue_depth == 1


async def test_drifted_counters_are_reported_and_the_rebuild_restores_them(
    conn: asyncpg.Connection, admin_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    for _ in range(3):
        await factories.submit(event_store, conn)
    # Only the owner can make the counters drift.
    await admin_conn.execute(
        "INSERT INTO job_count_deltas (queue, status, n) VALUES ('default', 'pending', 5)"
    )
    await admin_conn.execute(
        "INSERT INTO job_throughput_deltas VALUES (date_trunc('minute', now()), 0, 2, 0)"
    )
    diffs = await rebuild.verify_counters(conn, datetime.now(UTC))
    assert [(d.key[0], d.key[2], d.counter, d.counted) for d in diffs] == [
        ("jobs", "pending", 8, 3),
        ("throughput", "completed", 2, 0),
    ]
    assert (await status.counts(conn)).queue_depth == 8

    assert await rebuild.rebuild(admin_conn) == 3
    assert await rebuild.verify_counters(conn, datetime.now(UTC)) == []
    assert (await status.counts(conn)).queue_depth == 3


async def test_counters_follow_a_rebuild_of_the_view(
    conn: asyncpg.Connection, admin_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    job_id = await factories.submit(event_store, conn)
    await factories.submit(event_store, conn)
    await event_store.execute(conn, job_id, commands.CancelJob(reason="x"), actor="bob")
    await admin_conn.execute("DELETE FROM jobs")  # the owner's drop of the view
    assert (await status.counts(conn)).queue_depth == 0  # the counters follow the view
    await rebuild.rebuild(admin_conn)
    assert (await status.counts(conn)).queue_depth == 1
    assert await rebuild.verify_counters(conn, datetime.now(UTC)) == []
