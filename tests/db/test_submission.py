"""The public submission API: validation and defaults as the HTTP API has them, idempotency,
typed errors, and transactional enqueue (the job exists if and only if the caller commits)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec
import pytest

from ledger import errors, jobtypes, lifecycle, submission
from projections import current, rebuild
from tests.conftest import Databases


class Greeting(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    times: int = 1


@pytest.fixture
def submitter() -> submission.Submitter:
    registry = jobtypes.Registry()

    async def greet(payload: Greeting, ctx: jobtypes.JobContext) -> str:
        return f"hello {payload.name}" * payload.times

    jobtypes.job_type(
        "greet", Greeting, max_attempts=7, timeout_seconds=12.0, backoff_cap_seconds=30.0,
        registry=registry,
    )(greet)  # fmt: skip
    return submission.Submitter(registry)


async def _count(conn: asyncpg.Connection, table: str) -> int:
    count: int = await conn.fetchval(f"SELECT count(*) FROM {table}")  # noqa: S608 - a constant
    return count


async def test_a_submission_gets_its_job_type_s_defaults(
    conn: asyncpg.Connection, submitter: submission.Submitter
) -> None:
    job = await submitter.submit(conn, "greet", {"name": "ada"}, actor="app")
    assert (job.status, job.type, job.queue, job.priority) == (
        "pending",
        "greet",
        "default",
        "normal",
    )
    assert job.max_attempts == 7
    state = await current.get(conn, job.job_id)
    assert state is not None
    assert (state.timeout_seconds, state.backoff_cap_seconds) == (12.0, 30.0)
    assert state.submitted_by == "app"
    assert job == submission.Job.of(state)


async def test_an_unknown_type_an_invalid_payload_and_bad_options_are_typed_errors_naming_the_field(
    conn: asyncpg.Connection, submitter: submission.Submitter
) -> None:
    with pytest.raises(jobtypes.UnknownJobType) as unknown:
        await submitter.submit(conn, "nope", {}, actor="app")
    assert [e.path for e in unknown.value.field_errors] == ["type"]
    with pytest.raises(jobtypes.InvalidPayload) as payload:
        await submitter.submit(conn, "greet", {"name": "ada", "times": "2"}, actor="app")
    assert [e.path for e in payload.value.field_errors] == ["payload.times"]
    for options, path in (
        ({"max_attempts": 0}, "max_attempts"),
        ({"queue": "no spaces"}, "queue"),
        ({"run_at": datetime(2030, 1, 1)}, "run_at"),
        ({"run_at": datetime.now(UTC), "delay_seconds": 5}, "delay_seconds"),
        ({"idempotency_key": " "}, "idempotency_key"),
    ):
        with pytest.raises(errors.InvalidInput) as bad:
            await submitter.submit(conn, "greet", {"name": "ada"}, actor="app", **options)
        assert [e.path for e in bad.value.field_errors] == [path], options
    assert await _count(conn, "events") == 0


async def test_a_batch_is_all_or_nothing_and_names_every_invalid_item(
    conn: asyncpg.Connection, submitter: submission.Submitter
) -> None:
    items = [
        submission.Submission(job_type="greet", payload={"name": "a"}),
        submission.Submission(job_type="greet", payload={}),
        submission.Submission(job_type="greet", payload={"name": "c"}, max_attempts=0),
    ]
    with pytest.raises(errors.InvalidInput) as bad:
        await submitter.submit_many(conn, items, actor="app")
    assert [e.path for e in bad.value.field_errors] == ["jobs[1].payload", "jobs[2].max_attempts"]
    assert await _count(conn, "events") == 0
    jobs = await submitter.submit_many(conn, [items[0], items[0]], actor="app")
    assert len({j.job_id for j in jobs}) == 2
    assert await _count(conn, "jobs") == 2


async def test_the_same_submission_under_one_key_returns_the_first_job(
    conn: asyncpg.Connection, submitter: submission.Submitter
) -> None:
    first = await submitter.submit(conn, "greet", {"name": "ada"}, idempotency_key="k", actor="app")
    again = await submitter.submit(conn, "greet", {"name": "ada"}, idempotency_key="k", actor="app")
    assert again.job_id == first.job_id
    with pytest.raises(errors.IdempotencyMismatch):
        await submitter.submit(conn, "greet", {"name": "bob"}, idempotency_key="k", actor="app")
    other = await submitter.submit(conn, "greet", {"name": "ada"}, idempotency_key="k", actor="eve")
    assert other.job_id != first.job_id  # keys are each submitter's own
    assert await _count(conn, "jobs") == 2


async def test_a_rolled_back_transaction_leaves_no_job_no_event_and_no_wake_up(
    dbs: Databases, conn: asyncpg.Connection, submitter: submission.Submitter
) -> None:
    wakes: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(dbs.app)
    await listener.add_listener("ledger_jobs", lambda *args: wakes.put_nowait(args[2]))
    try:

        async def order_that_fails() -> None:
            async with conn.transaction():
                job = await submitter.submit(conn, "greet", {"name": "ada"}, actor="app")
                assert await current.get(conn, job.job_id) is not None  # seen inside
                raise RuntimeError("the order failed")

        with pytest.raises(RuntimeError, match="the order failed"):
            await order_that_fails()
        assert await _count(conn, "events") == 0
        assert await _count(conn, "jobs") == 0
        # A NOTIFY after it, from a committed submission: the only wake-up to arrive.
        await submitter.submit(conn, "greet", {"name": "bob"}, actor="app")
        await asyncio.wait_for(wakes.get(), timeout=10)
        assert wakes.empty()
    finally:
        await listener.close()


async def test_a_committed_transaction_wakes_the_workers_only_at_commit(
    dbs: Databases, conn: asyncpg.Connection, submitter: submission.Submitter
) -> None:
    wakes: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(dbs.app)
    await listener.add_listener("ledger_jobs", lambda *args: wakes.put_nowait(args[2]))
    try:
        async with conn.transaction():
            job = await submitter.submit(conn, "greet", {"name": "ada"}, actor="app")
            other = await asyncpg.connect(dbs.app)
            try:  # not visible outside the transaction before it commits
                assert await current.get(other, job.job_id) is None
            finally:
                await other.close()
            await listener.execute("SELECT 1")  # a round trip: a notification would be here
            assert wakes.empty()
        await asyncio.wait_for(wakes.get(), timeout=10)
        assert await current.get(conn, job.job_id) is not None
    finally:
        await listener.close()


async def test_a_key_taken_meanwhile_inside_a_transaction_keeps_the_caller_s_work(
    dbs: Databases, conn: asyncpg.Connection, submitter: submission.Submitter
) -> None:
    """The losing append rolls back to a savepoint: the caller's transaction goes on."""
    racer = await asyncpg.connect(dbs.app)
    try:
        async with conn.transaction():
            await conn.execute("SELECT 1")
            # Another transaction commits the key first (after this one began).
            winner = await submitter.submit(
                racer, "greet", {"name": "ada"}, idempotency_key="k", actor="app"
            )
            found = await submitter.submit(
                conn, "greet", {"name": "ada"}, idempotency_key="k", actor="app"
            )
            assert found.job_id == winner.job_id
            await submitter.submit(conn, "greet", {"name": "bob"}, actor="app")
        assert await _count(conn, "jobs") == 2
    finally:
        await racer.close()


async def test_racing_submissions_under_one_key_make_one_job(
    dbs: Databases, submitter: submission.Submitter
) -> None:
    conns = [await asyncpg.connect(dbs.app) for _ in range(4)]
    try:
        jobs = await asyncio.gather(
            *(
                submitter.submit(c, "greet", {"name": "ada"}, idempotency_key="k", actor="app")
                for c in conns
            )
        )
        assert len({j.job_id for j in jobs}) == 1
    finally:
        for c in conns:
            await c.close()


async def test_cancel_and_retry_answer_the_job_and_refuse_what_does_not_apply(
    conn: asyncpg.Connection, submitter: submission.Submitter
) -> None:
    job = await submitter.submit(conn, "greet", {"name": "ada"}, actor="app")
    with pytest.raises(errors.InvalidTransition):
        await submitter.retry(conn, job.job_id, actor="ops")
    cancelled = await submitter.cancel(conn, job.job_id, reason="not needed", actor="ops")
    assert cancelled.status == "cancelled"
    retried = await submitter.retry(conn, job.job_id, max_attempts=2, actor="ops")
    assert (retried.status, retried.max_attempts) == ("pending", 2)
    state = await current.get(conn, job.job_id)
    assert state is not None and submission.Job.of(state) == retried
    with pytest.raises(errors.UnknownJob):
        await submitter.cancel(conn, uuid.uuid4(), actor="ops")
    assert await rebuild.verify(conn) == []


async def test_a_delay_is_counted_from_now(
    conn: asyncpg.Connection, submitter: submission.Submitter
) -> None:
    before = datetime.now(UTC)
    job = await submitter.submit(conn, "greet", {"name": "ada"}, delay_seconds=60, actor="app")
    assert job.next_attempt_at is not None
    assert job.next_attempt_at - before >= timedelta(seconds=60)
    state = await current.get(conn, job.job_id)
    assert state is not None and state.status in lifecycle.RUNNABLE


async def test_the_process_s_default_submitter_finds_installed_job_types(
    conn: asyncpg.Connection,
) -> None:
    """A process that only submits loads the installed plugins' types itself."""
    job = await submission.submit(
        conn,
        "email_send",
        {"to": ["ada@example.com"], "subject": "hi", "body": "hello"},
        actor="app",
    )
    assert job.type == "email_send"


async def test_the_jobs_a_submission_answers_are_those_the_view_then_holds(
    conn: asyncpg.Connection, submitter: submission.Submitter
) -> None:
    items = [
        submission.Submission(job_type="greet", payload={"name": "a"}, priority="high"),
        submission.Submission(job_type="greet", payload={"name": "b"}, delay_seconds=30),
        submission.Submission(
            job_type="greet", payload={"name": "c"}, run_at=datetime(2020, 1, 1, tzinfo=UTC)
        ),
    ]
    for job in await submitter.submit_many(conn, items, actor="app"):
        state = await current.get(conn, job.job_id)
        assert state is not None and job == submission.Job.of(state)
