"""Unique jobs through the public submission API: one job per key at a time, held by the
database's index (sql/0076), each duplicate answered by its `on_conflict`."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import pytest

from ledger import acting, commands, errors, jobtypes, metrics, store, submission, wire
from projections import current, rebuild, timeline
from tests.conftest import Databases


class Invoice(msgspec.Struct, frozen=True, kw_only=True):
    customer_id: int
    amount: int = 0


RACERS = 50


@pytest.fixture
def registry() -> jobtypes.Registry:
    registry = jobtypes.Registry()

    async def send(payload: Invoice, ctx: jobtypes.JobContext) -> None:
        return None

    jobtypes.job_type("invoice", Invoice, registry=registry)(send)
    return registry


@pytest.fixture
def counted() -> metrics.Metrics:
    return metrics.Metrics(process=False)


@pytest.fixture
def submitter(registry: jobtypes.Registry, counted: metrics.Metrics) -> submission.Submitter:
    return submission.Submitter(registry, process_metrics=counted)


def by_customer(**options: Any) -> dict[str, Any]:
    return {"by": ["type", "payload.customer_id"], **options}


async def _jobs(conn: asyncpg.Connection) -> int:
    count: int = await conn.fetchval("SELECT count(*) FROM jobs")
    return count


async def _events(conn: asyncpg.Connection, job_id: uuid.UUID) -> list[str]:
    rows = await conn.fetch("SELECT type FROM events WHERE job_id = $1 ORDER BY version", job_id)
    return [r["type"] for r in rows]


async def _run_to(conn: asyncpg.Connection, job_id: uuid.UUID, end: str) -> None:
    """Claim the job as a worker would, then complete or fail it for good (`end`)."""
    event_store = store.EventStore()
    claim = commands.ClaimJob(worker_id="w1", lease_seconds=30)
    await event_store.execute(conn, job_id, claim, actor="w1")
    if end == "processing":
        return
    outcome: commands.Command
    if end == "completed":
        outcome = commands.CompleteJob(worker_id="w1", result=None)
    else:
        outcome = commands.FailAttempt(
            worker_id="w1", error="boom", permanent=True, retry_delay=timedelta(0)
        )
    await event_store.execute(conn, job_id, outcome, actor="w1")


def _deduplicated(registry: metrics.Metrics, on_conflict: str) -> float:
    value = registry.registry.get_sample_value(
        "ledger_jobs_deduplicated_total",
        {"job_type": "invoice", "queue": "default", "on_conflict": on_conflict},
    )
    return value or 0.0


async def test_a_duplicate_answers_the_job_holding_the_key_and_creates_nothing(
    conn: asyncpg.Connection, submitter: submission.Submitter, counted: metrics.Metrics
) -> None:
    first = await submitter.submit(
        conn, "invoice", {"customer_id": 7, "amount": 10}, unique=by_customer(), actor="app"
    )
    again = await submitter.submit(
        conn, "invoice", {"customer_id": 7, "amount": 99}, unique=by_customer(), actor="bob"
    )
    other = await submitter.submit(
        conn, "invoice", {"customer_id": 8}, unique=by_customer(), actor="app"
    )
    assert (first.deduplicated, again.deduplicated, other.deduplicated) == (False, True, False)
    assert again.job_id == first.job_id
    assert again.payload == {"customer_id": 7, "amount": 10}  # the holder's, untouched
    assert first.unique_key is not None and len(first.unique_key) == 64
    assert other.unique_key != first.unique_key
    assert await _jobs(conn) == 2
    assert await _events(conn, first.job_id) == ["job.submitted.v1"]
    assert _deduplicated(counted, "return_existing") == 1
    # A read of the job tells its key, and its first event what made it unique.
    state = await current.get(conn, first.job_id)
    assert state is not None
    assert (state.unique_key, state.unique_states) == (
        first.unique_key,
        ("pending", "processing", "retrying"),
    )
    data = await conn.fetchval("SELECT data->'unique' FROM events WHERE job_id = $1", first.job_id)
    assert msgspec.json.decode(data)["by"] == ["type", "payload.customer_id"]


async def test_by_default_the_key_is_the_type_and_the_whole_payload(
    conn: asyncpg.Connection, submitter: submission.Submitter
) -> None:
    a = await submitter.submit(conn, "invoice", {"customer_id": 1}, unique={}, actor="app")
    b = await submitter.submit(conn, "invoice", {"customer_id": 1}, unique={}, actor="app")
    c = await submitter.submit(
        conn, "invoice", {"customer_id": 1, "amount": 2}, unique={}, actor="app"
    )
    d = await submitter.submit(
        conn, "invoice", {"customer_id": 1}, queue="other", unique={}, actor="app"
    )
    assert b.job_id == a.job_id and b.deduplicated is True
    assert c.job_id != a.job_id  # another payload
    assert d.job_id == a.job_id  # the queue is not part of the default key
    plain = await submitter.submit(conn, "invoice", {"customer_id": 1}, actor="app")
    assert plain.job_id != a.job_id and plain.deduplicated is msgspec.UNSET


async def test_on_conflict_error_refuses_the_duplicate_naming_the_job_holding_the_key(
    conn: asyncpg.Connection, submitter: submission.Submitter, counted: metrics.Metrics
) -> None:
    first = await submitter.submit(
        conn, "invoice", {"customer_id": 7}, unique=by_customer(on_conflict="error"), actor="app"
    )
    with pytest.raises(errors.DuplicateJob) as refused:
        await submitter.submit(
            conn,
            "invoice",
            {"customer_id": 7},
            unique=by_customer(on_conflict="error"),
            actor="app",
        )
    assert refused.value.job_id == first.job_id
    assert str(first.job_id) in str(refused.value)
    assert await _jobs(conn) == 1
    assert _deduplicated(counted, "error") == 1


async def test_on_conflict_replace_replaces_a_waiting_job_s_payload_and_run_time_by_an_event(
    conn: asyncpg.Connection, submitter: submission.Submitter
) -> None:
    unique = by_customer(on_conflict="replace")
    first = await submitter.submit(
        conn, "invoice", {"customer_id": 7, "amount": 1}, delay_seconds=3600, unique=unique,
        actor="app",
    )  # fmt: skip
    again = await submitter.submit(
        conn, "invoice", {"customer_id": 7, "amount": 2}, unique=unique, actor="bob"
    )
    assert again.job_id == first.job_id
    assert (again.deduplicated, again.replaced) == (True, True)
    assert again.payload == {"customer_id": 7, "amount": 2}
    assert again.next_attempt_at is not None and first.next_attempt_at is not None
    assert again.next_attempt_at < first.next_attempt_at  # due now, not in an hour
    rows = await conn.fetch(
        "SELECT type, actor, data FROM events WHERE job_id = $1 ORDER BY version", first.job_id
    )
    assert [(r["type"], r["actor"]) for r in rows] == [
        ("job.submitted.v1", "app"),
        ("job.replaced.v1", "bob"),
    ]
    state = await current.get(conn, first.job_id)
    assert state is not None
    assert (state.status, state.payload) == ("pending", {"customer_id": 7, "amount": 2})
    assert wire.Job.of(state) == msgspec.structs.replace(
        again, deduplicated=msgspec.UNSET, replaced=msgspec.UNSET
    )
    # `ledger replay` and the dashboard's timeline say what made it unique and who replaced it.
    steps = timeline.build(first.job_id, await store.EventStore().history(conn, first.job_id))
    why = [step.note or "" for step in steps.steps]
    assert why[0].startswith("unique by type, payload.customer_id")
    assert "replace" in why[0] and "by bob replaced the payload and run time" in why[1]
    assert await rebuild.verify(conn) == []


async def test_replace_refuses_a_job_that_is_running_or_finished_and_changes_nothing(
    conn: asyncpg.Connection, submitter: submission.Submitter
) -> None:
    unique = by_customer(
        on_conflict="replace", states=["pending", "retrying", "processing", "completed"]
    )
    first = await submitter.submit(conn, "invoice", {"customer_id": 7}, unique=unique, actor="app")
    for status in ("processing", "completed"):
        if status == "processing":
            await _run_to(conn, first.job_id, "processing")
        else:
            await store.EventStore().execute(
                conn, first.job_id, commands.CompleteJob(worker_id="w1", result=None), actor="w1"
            )
        with pytest.raises(errors.DuplicateJob) as refused:
            await submitter.submit(
                conn, "invoice", {"customer_id": 7, "amount": 5}, unique=unique, actor="app"
            )
        assert refused.value.job_id == first.job_id
        assert status in str(refused.value)
    assert "job.replaced.v1" not in await _events(conn, first.job_id)
    assert await _jobs(conn) == 1


async def test_once_the_job_leaves_its_states_a_new_one_may_be_created(
    conn: asyncpg.Connection, submitter: submission.Submitter
) -> None:
    first = await submitter.submit(
        conn, "invoice", {"customer_id": 7}, unique=by_customer(), actor="app"
    )
    await _run_to(conn, first.job_id, "completed")
    second = await submitter.submit(
        conn, "invoice", {"customer_id": 7}, unique=by_customer(), actor="app"
    )
    assert second.job_id != first.job_id and second.deduplicated is False
    # Holding the key once completed too: the completed job answers.
    held = by_customer(states=["pending", "retrying", "processing", "completed"])
    third = await submitter.submit(conn, "invoice", {"customer_id": 9}, unique=held, actor="app")
    await _run_to(conn, third.job_id, "completed")
    again = await submitter.submit(conn, "invoice", {"customer_id": 9}, unique=held, actor="app")
    assert (again.job_id, again.status, again.deduplicated) == (third.job_id, "completed", True)


async def test_retrying_a_failed_job_whose_key_another_job_took_is_refused(
    conn: asyncpg.Connection, submitter: submission.Submitter
) -> None:
    first = await submitter.submit(
        conn, "invoice", {"customer_id": 7}, unique=by_customer(), actor="app"
    )
    await _run_to(conn, first.job_id, "failed")
    second = await submitter.submit(
        conn, "invoice", {"customer_id": 7}, unique=by_customer(), actor="app"
    )
    with pytest.raises(errors.UniqueKeyTaken) as refused:
        await submitter.retry(conn, first.job_id, actor="app")
    assert refused.value.unique_key == first.unique_key
    state = await current.get(conn, first.job_id)
    assert state is not None and state.status == "failed"
    await _run_to(conn, second.job_id, "completed")
    retried = await submitter.retry(conn, first.job_id, actor="app")  # the key is free again
    assert retried.status == "pending"


async def test_a_period_makes_a_new_key_when_it_turns(
    conn: asyncpg.Connection, registry: jobtypes.Registry
) -> None:
    now = datetime(2026, 3, 1, 10, 59, 59, tzinfo=UTC)
    clock = [now]
    submitter = submission.Submitter(registry, store.EventStore(clock=lambda: clock[0]))
    hourly = by_customer(period_seconds=3600)
    a = await submitter.submit(conn, "invoice", {"customer_id": 7}, unique=hourly, actor="app")
    b = await submitter.submit(conn, "invoice", {"customer_id": 7}, unique=hourly, actor="app")
    clock[0] = now + timedelta(seconds=1)  # 11:00:00, the next hour
    c = await submitter.submit(conn, "invoice", {"customer_id": 7}, unique=hourly, actor="app")
    assert b.job_id == a.job_id and c.job_id != a.job_id
    start = await conn.fetchval(
        "SELECT data->'unique'->>'period_start' FROM events WHERE job_id = $1", c.job_id
    )
    assert start.startswith("2026-03-01T11:00:00")


async def test_invalid_unique_options_name_the_field(
    conn: asyncpg.Connection, submitter: submission.Submitter
) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"by": ["type", "colour"]}, "unique.by[1]"),
        ({"by": ["payload."]}, "unique.by[0]"),
        ({"by": []}, "unique.by"),
        ({"states": []}, "unique.states"),
        ({"states": ["pending", "done"]}, "unique.states[1]"),
        ({"states": ["pending", "completed"]}, "unique.states"),
        ({"period_seconds": 0}, "unique.period_seconds"),
        ({"on_conflict": "merge"}, "unique.on_conflict"),
        ({"per": "type"}, "unique"),
    ]
    for options, path in cases:
        with pytest.raises(errors.InvalidInput) as refused:
            await submitter.submit(conn, "invoice", {"customer_id": 1}, unique=options, actor="a")
        assert [e.path for e in refused.value.field_errors] == [path], options
    with pytest.raises(errors.InvalidInput) as in_batch:
        await submitter.submit_many(
            conn,
            [
                wire.Submission(job_type="invoice", payload={"customer_id": 1}),
                wire.Submission(
                    job_type="invoice", payload={"customer_id": 1}, unique=wire.Unique(by=["x"])
                ),
            ],
            actor="a",
        )
    assert [e.path for e in in_batch.value.field_errors] == ["jobs[1].unique.by[0]"]
    assert await _jobs(conn) == 0


@pytest.mark.parametrize("on_conflict", ["return_existing", "replace", "error"])
async def test_fifty_racing_identical_submissions_create_exactly_one_job(
    dbs: Databases,
    conn: asyncpg.Connection,
    submitter: submission.Submitter,
    counted: metrics.Metrics,
    on_conflict: str,
) -> None:
    unique = by_customer(on_conflict=on_conflict)
    async with asyncpg.create_pool(dbs.app, min_size=8, max_size=8) as pool:

        async def one(n: int) -> wire.Job | errors.DuplicateJob:
            async with pool.acquire() as c:
                try:
                    return await submitter.submit(
                        c, "invoice", {"customer_id": 7, "amount": n}, unique=unique, actor="app"
                    )
                except errors.DuplicateJob as exc:
                    return exc

        answers = await asyncio.gather(*(one(n) for n in range(RACERS)))
    assert await _jobs(conn) == 1
    job_id = await conn.fetchval("SELECT job_id FROM jobs")
    jobs = [a for a in answers if isinstance(a, wire.Job)]
    refused = [a for a in answers if isinstance(a, errors.DuplicateJob)]
    created = [j for j in jobs if j.deduplicated is False]
    assert len(created) == 1 and created[0].job_id == job_id
    if on_conflict == "error":
        assert (len(jobs), len(refused)) == (1, RACERS - 1)
        assert {r.job_id for r in refused} == {job_id}
    else:
        assert not refused
        assert {j.job_id for j in jobs} == {job_id}
    assert _deduplicated(counted, on_conflict) == RACERS - 1
    history = await _events(conn, job_id)
    replaced = RACERS - 1 if on_conflict == "replace" else 0
    assert history == ["job.submitted.v1"] + ["job.replaced.v1"] * replaced
    assert await rebuild.verify(conn) == []


async def test_a_duplicate_inside_a_caller_s_transaction_keeps_the_caller_s_work(
    dbs: Databases, conn: asyncpg.Connection, submitter: submission.Submitter
) -> None:
    """The refused append rolls back to a savepoint: the caller's transaction goes on."""
    racer = await asyncpg.connect(dbs.app)
    try:
        async with conn.transaction():
            await conn.execute("SELECT 1")
            winner = await submitter.submit(
                racer, "invoice", {"customer_id": 7}, unique=by_customer(), actor="app"
            )
            found = await submitter.submit(
                conn, "invoice", {"customer_id": 7}, unique=by_customer(), actor="app"
            )
            assert (found.job_id, found.deduplicated) == (winner.job_id, True)
            await submitter.submit(conn, "invoice", {"customer_id": 8}, actor="app")
        assert await _jobs(conn) == 2
    finally:
        await racer.close()


async def test_a_batch_answers_duplicates_of_its_own_items_and_of_stored_jobs(
    conn: asyncpg.Connection, submitter: submission.Submitter, counted: metrics.Metrics
) -> None:
    stored = await submitter.submit(
        conn, "invoice", {"customer_id": 1}, unique=by_customer(), actor="app"
    )

    def item(customer: int, amount: int = 0, **options: Any) -> wire.Submission:
        unique = msgspec.convert(by_customer(**options), wire.Unique)
        return wire.Submission(
            job_type="invoice", payload={"customer_id": customer, "amount": amount}, unique=unique
        )

    jobs = await submitter.submit_many(
        conn,
        [
            item(1),
            item(2),
            item(2, 5),
            item(3),
            item(3, 9, on_conflict="replace"),
            wire.Submission(job_type="invoice", payload={"customer_id": 2}),
        ],
        actor="app",
    )
    assert [j.deduplicated for j in jobs] == [True, False, True, False, True, msgspec.UNSET]
    assert jobs[0].job_id == stored.job_id
    assert jobs[2].job_id == jobs[1].job_id and jobs[2].payload["amount"] == 0
    assert jobs[4].job_id == jobs[3].job_id and jobs[4].replaced is True
    assert jobs[3].payload["amount"] == 9  # replaced within the batch, as the view holds it
    assert await _jobs(conn) == 4
    assert await _events(conn, jobs[3].job_id) == ["job.submitted.v1", "job.replaced.v1"]
    assert _deduplicated(counted, "return_existing") == 2
    assert await rebuild.verify(conn) == []

    # on_conflict error in a batch: all or nothing.
    with pytest.raises(errors.DuplicateJob) as refused:
        await submitter.submit_many(conn, [item(10), item(1, on_conflict="error")], actor="app")
    assert refused.value.job_id == stored.job_id
    assert "jobs[1]" in str(refused.value)
    assert await _jobs(conn) == 4


async def test_an_idempotency_key_names_only_the_job_created_under_it(
    conn: asyncpg.Connection, submitter: submission.Submitter
) -> None:
    """A repeat under the key answers its job (an idempotent repeat, not a duplicate); a
    duplicate under another key creates nothing, so that key names no job and a later
    submission under it, once the key is free, creates one."""
    unique = by_customer()
    first = await submitter.submit(
        conn, "invoice", {"customer_id": 7}, unique=unique, idempotency_key="k1", actor="app"
    )
    repeat = await submitter.place(
        conn,
        [wire.Submission.checked("invoice", {"customer_id": 7}, unique=unique)],
        idempotency_key="k1",
        actor="app",
    )
    assert (repeat.created, repeat.deduplicated, repeat.jobs[0].job_id) == (
        False,
        False,
        first.job_id,
    )
    with pytest.raises(errors.IdempotencyMismatch):  # the key's first request had no `error`
        await submitter.submit(
            conn, "invoice", {"customer_id": 7}, unique=by_customer(on_conflict="error"),
            idempotency_key="k1", actor="app",
        )  # fmt: skip
    other_key = await submitter.submit(
        conn, "invoice", {"customer_id": 7}, unique=unique, idempotency_key="k2", actor="app"
    )
    assert (other_key.job_id, other_key.deduplicated) == (first.job_id, True)
    await _run_to(conn, first.job_id, "completed")
    later = await submitter.submit(
        conn, "invoice", {"customer_id": 7}, unique=unique, idempotency_key="k2", actor="app"
    )
    assert later.job_id != first.job_id and later.deduplicated is False
    assert (
        await conn.fetchval("SELECT idempotency_key FROM jobs WHERE job_id = $1", later.job_id)
        == "k2"
    )


async def test_uniqueness_is_per_tenant(
    conn: asyncpg.Connection, submitter: submission.Submitter
) -> None:
    ids = []
    for tenant in ("acme", "globex", "acme"):
        async with conn.transaction():
            await acting.act_in(conn, tenant)
            job = await submitter.submit(
                conn, "invoice", {"customer_id": 7}, unique=by_customer(), actor="app"
            )
            ids.append(job.job_id)
    assert ids[0] != ids[1] and ids[2] == ids[0]


@pytest.mark.parametrize("isolation", ["repeatable_read", "serializable"])
async def test_a_key_taken_after_a_caller_s_snapshot_asks_it_to_retry_its_transaction(
    dbs: Databases, conn: asyncpg.Connection, submitter: submission.Submitter, isolation: str
) -> None:
    """At REPEATABLE READ or SERIALIZABLE the caller cannot see a job committed after its
    snapshot: the refusal says so and creates nothing; the transaction tried again
    (a new snapshot) finds the job holding the key."""
    racer = await asyncpg.connect(dbs.app)
    won: list[wire.Job] = []

    async def snapshot_then_submit() -> None:
        async with conn.transaction(isolation=isolation):  # type: ignore[arg-type]
            await conn.execute("SELECT count(*) FROM jobs")  # the snapshot is taken here
            won.append(
                await submitter.submit(
                    racer, "invoice", {"customer_id": 7}, unique=by_customer(), actor="app"
                )
            )
            await submitter.submit(
                conn, "invoice", {"customer_id": 7}, unique=by_customer(), actor="app"
            )

    try:
        with pytest.raises(errors.DuplicateJob, match="retry the transaction") as refused:
            await snapshot_then_submit()
        assert refused.value.job_id is None and refused.value.unique_key is not None
        assert await _jobs(conn) == 1
        async with conn.transaction(isolation=isolation):  # type: ignore[arg-type]
            found = await submitter.submit(
                conn, "invoice", {"customer_id": 7}, unique=by_customer(), actor="app"
            )
        assert (found.job_id, found.deduplicated) == (won[0].job_id, True)
    finally:
        await racer.close()


async def test_racing_submissions_on_connections_defaulting_to_repeatable_read_make_one_job(
    dbs: Databases, conn: asyncpg.Connection, submitter: submission.Submitter
) -> None:
    """Outside a caller's transaction each try is a transaction (and a snapshot) of its
    own, so a server or role whose default isolation is REPEATABLE READ still finds the
    job that won: every racer gets it, none is told to retry its transaction."""
    repeatable = {"default_transaction_isolation": "repeatable read"}
    async with asyncpg.create_pool(
        dbs.app, min_size=8, max_size=8, server_settings=repeatable
    ) as pool:

        async def one(n: int) -> wire.Job:
            async with pool.acquire() as c:
                return await submitter.submit(
                    c, "invoice", {"customer_id": 7, "amount": n}, unique=by_customer(), actor="app"
                )

        answers = await asyncio.gather(*(one(n) for n in range(RACERS)))
    assert await _jobs(conn) == 1
    assert len({a.job_id for a in answers}) == 1
    assert sum(1 for a in answers if a.deduplicated is False) == 1
    # A key refused twice (the holder changed hands meanwhile) is tried again there too;
    # only a caller's own snapshot transaction is told to retry.
    default_rr = await asyncpg.connect(dbs.app, server_settings=repeatable)
    try:
        await submitter._refuse_if_snapshot(default_rr, "k")
        with pytest.raises(errors.DuplicateJob, match="retry the transaction"):
            async with default_rr.transaction():
                await submitter._refuse_if_snapshot(default_rr, "k")
    finally:
        await default_rr.close()
