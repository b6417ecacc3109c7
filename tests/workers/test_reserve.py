"""A worker's reserve of slots (sql/0079): while one tenant's backlog fills every other
slot, a quiet tenant's job is claimed into the reserve at once, and the backlog never
spreads into it."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
import pytest

from ledger import acting, queues, store, wire
from tests import factories
from tests.workers.conftest import PoolStarter, eventually
from workers import pool


async def _submit_gated(
    event_store: store.EventStore, conn: asyncpg.Connection, tenant: str, gates: list[Path]
) -> list[uuid.UUID]:
    async with conn.transaction():
        await acting.act_in(conn, tenant)
        return [
            await factories.submit(
                event_store, conn, job_type="test.gated", payload={"gate": str(g)}, max_attempts=1
            )
            for g in gates
        ]


def _claimed_into_reserve(workers: pool.Pool, named: str) -> float | None:
    return workers.metrics.registry.get_sample_value(
        "ledger_pool_reserve_jobs_claimed_total", {"named": named}
    )


def _started(gates: list[Path]) -> list[Path]:
    return [g for g in gates if Path(f"{g}.started").exists()]


async def _small_runs_in_the_reserve(
    workers: pool.Pool, big: list[Path], small: list[Path], named: str
) -> None:
    """`small` starts while 3 of `big` hold the bulk's slots (their gates are closed): in
    the reserve, which none of `big` took; then every gate opens and all finish."""

    async def small_started() -> bool:
        return bool(_started(small))

    await eventually(small_started)
    assert len(_started(big)) == 3
    assert len(workers.running) == 4
    assert workers.reserve_busy == 1
    assert _claimed_into_reserve(workers, named) == 1

    for g in big + small:
        g.touch()

    async def all_done() -> bool:
        return len(_started(big)) == 6 and not workers.running

    await eventually(all_done)


async def test_a_quiet_tenants_job_runs_in_the_reserve_beside_a_backlog(
    start_pool: PoolStarter, conn: asyncpg.Connection, event_store: store.EventStore, tmp_path: Path
) -> None:
    big = [tmp_path / f"big-{i}" for i in range(6)]
    small = [tmp_path / "small"]
    workers = await start_pool(slots=4, reserve_slots=1)
    await _submit_gated(event_store, conn, "big", big)

    async def bulk_full() -> bool:
        return len(_started(big)) == 3

    await eventually(bulk_full)
    await _submit_gated(event_store, conn, "small", small)
    await _small_runs_in_the_reserve(workers, big, small, "tenant")


async def test_a_pool_of_fewer_than_a_hundred_slots_keeps_no_reserve(
    start_pool: PoolStarter, conn: asyncpg.Connection, event_store: store.EventStore, tmp_path: Path
) -> None:
    big = [tmp_path / f"big-{i}" for i in range(6)]
    workers = await start_pool(slots=4)
    assert workers.settings.reserve == 0
    await _submit_gated(event_store, conn, "big", big)

    async def all_slots_busy() -> bool:
        return len(_started(big)) == 4

    await eventually(all_slots_busy)
    for g in big:
        g.touch()

    async def all_done() -> bool:
        return len(_started(big)) == 6 and not workers.running

    await eventually(all_done)


async def test_a_quiet_keys_job_runs_in_the_reserve_beside_another_keys_backlog(
    start_pool: PoolStarter, conn: asyncpg.Connection, event_store: store.EventStore, tmp_path: Path
) -> None:
    await queues.configure(
        conn, event_store, "rr", wire.QueueSettings(fairness="round_robin"), actor="ops"
    )
    big = [tmp_path / f"big-{i}" for i in range(6)]
    small = [tmp_path / "small"]
    workers = await start_pool(slots=4, reserve_slots=1)
    async with conn.transaction():  # a backlog at once: each job alone would be quiet
        for g in big:
            await factories.submit(
                event_store,
                conn,
                job_type="test.gated",
                payload={"gate": str(g)},
                max_attempts=1,
                queue="rr",
                concurrency_key="big",
            )

    async def bulk_full() -> bool:
        return len(_started(big)) == 3

    await eventually(bulk_full)
    # One tenant: the tenants' reserve would not take it (the tenant has a backlog); the
    # key's does.
    await factories.submit(
        event_store,
        conn,
        job_type="test.gated",
        payload={"gate": str(small[0])},
        max_attempts=1,
        queue="rr",
        concurrency_key="small",
    )
    await _small_runs_in_the_reserve(workers, big, small, "key")
    assert _claimed_into_reserve(workers, "tenant") is None


async def _until_started(gates: list[Path], count: int) -> None:
    async def started() -> bool:
        return len(_started(gates)) == count

    await eventually(started)


async def test_a_quiet_job_rung_while_the_reserve_is_full_takes_the_next_free_reserve_slot(
    start_pool: PoolStarter, conn: asyncpg.Connection, event_store: store.EventStore, tmp_path: Path
) -> None:
    big = [tmp_path / f"big-{i}" for i in range(6)]
    first, second = tmp_path / "small-1", tmp_path / "small-2"
    workers = await start_pool(slots=4, reserve_slots=1)
    await _submit_gated(event_store, conn, "big", big)

    await _until_started(big, 3)
    await _submit_gated(event_store, conn, "small", [first])

    await _until_started([first], 1)
    assert workers.reserve_busy == 1
    # Rung while the reserve is full; the bulk's slots stay full (their gates are shut),
    # so only the reserve can run it, as soon as its slot frees up.
    await _submit_gated(event_store, conn, "small", [second])
    first.touch()

    await _until_started([second], 1)
    assert len(_started(big)) == 3
    assert _claimed_into_reserve(workers, "tenant") == 2
    for g in [*big, second]:
        g.touch()

    async def all_done() -> bool:
        return len(_started(big)) == 6 and not workers.running

    await eventually(all_done)


async def _claim_rounds(conn: asyncpg.Connection, jobs: list[uuid.UUID]) -> list[int]:
    """How many of `jobs` (tenant big's) each claim transaction took, from the ledger's
    own claims."""
    async with conn.transaction():
        await acting.act_in(conn, "big")
        rows = await conn.fetch(
            "SELECT count(*) AS n FROM events WHERE type = 'job.claimed.v1' "
            "AND job_id = ANY($1::uuid[]) GROUP BY txid ORDER BY min(position)",
            jobs,
        )
    return [int(r["n"]) for r in rows]


async def _bulk_rounds_beside_quiet_work(
    start_pool: PoolStarter,
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    tmp_path: Path,
    **settings: float,
) -> tuple[pool.Pool, list[int]]:
    """A quiet tenant's job claimed into the reserve while the bulk's slots were full;
    then, the bulk's slots free again, another tenant submits 6 jobs at once: the claim
    transactions that took them."""
    big = [tmp_path / f"big-{i}" for i in range(7)]
    small = tmp_path / "small"
    workers = await start_pool(slots=8, reserve_slots=1, **settings)
    await _submit_gated(event_store, conn, "big", big)

    await _until_started(big, 7)
    await _submit_gated(event_store, conn, "small", [small])

    await _until_started([small], 1)
    for g in big:
        g.touch()

    async def only_small_runs() -> bool:
        return len(workers.running) == 1

    await eventually(only_small_runs)
    opened = [tmp_path / f"more-{i}" for i in range(6)]
    for g in opened:
        g.touch()
    more = await _submit_gated(event_store, conn, "big", opened)

    async def more_done() -> bool:
        return len(_started(opened)) == 6 and len(workers.running) == 1

    await eventually(more_done)
    small.touch()
    return workers, await _claim_rounds(conn, more)


async def test_the_bulk_claims_in_smaller_rounds_while_quiet_work_arrives(
    start_pool: PoolStarter, conn: asyncpg.Connection, event_store: store.EventStore, tmp_path: Path
) -> None:
    workers, rounds = await _bulk_rounds_beside_quiet_work(
        start_pool, conn, event_store, tmp_path, quiet_bulk_limit=2, quiet_active_seconds=60.0
    )
    assert sum(rounds) == 6
    assert max(rounds) <= 2
    yielded = workers.metrics.registry.get_sample_value("ledger_pool_bulk_claims_yielded_total")
    assert yielded is not None and yielded >= 3


@pytest.mark.parametrize(
    ("limit", "quiet_seconds"), [(0, 60.0), (2, 0.0)], ids=["limit-off", "quiet-work-lapsed"]
)
async def test_the_bulk_claims_all_it_has_room_for_without_its_limit_or_quiet_work(
    start_pool: PoolStarter,
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    tmp_path: Path,
    limit: int,
    quiet_seconds: float,
) -> None:
    workers, rounds = await _bulk_rounds_beside_quiet_work(
        start_pool,
        conn,
        event_store,
        tmp_path,
        quiet_bulk_limit=limit,
        quiet_active_seconds=quiet_seconds,
    )
    assert rounds == [6]
    assert workers.metrics.registry.get_sample_value("ledger_pool_bulk_claims_yielded_total") == 0
