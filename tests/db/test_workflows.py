"""Workflows in the database (sql/0077): one append submits the DAG, and the append that
records how a dependency ended unblocks, cancels or skips its dependants, citing it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest

from ledger import commands, errors, jobtypes, store, submission, wire
from ledger import events as ev
from projections import current, rebuild
from tests.conftest import IN_DEFAULT, Databases

README = Path(__file__).resolve().parents[2] / "README.md"


class Step(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    x: int = 0


@pytest.fixture
def submitter() -> submission.Submitter:
    registry = jobtypes.Registry()

    async def step(payload: Step, ctx: jobtypes.JobContext) -> int:
        return payload.x

    jobtypes.job_type("step", Step, max_attempts=1, registry=registry)(step)
    return submission.Submitter(registry)


def job(name: str, *deps: str, mode: ev.UpstreamFailure = "cancel", **payload: Any) -> Any:
    return wire.WorkflowJobIn(
        name=name,
        job_type="step",
        payload=payload,
        depends_on=list(deps),
        on_upstream_failure=mode,
    )


async def run(conn: asyncpg.Connection, job_id: uuid.UUID, result: Any = None) -> None:
    """Claim and complete the job as a worker would."""
    s = store.EventStore()
    await s.execute(conn, job_id, commands.ClaimJob(worker_id="w", lease_seconds=60), actor="w")
    await s.execute(conn, job_id, commands.CompleteJob(worker_id="w", result=result), actor="w")


async def fail(conn: asyncpg.Connection, job_id: uuid.UUID) -> None:
    s = store.EventStore()
    await s.execute(conn, job_id, commands.ClaimJob(worker_id="w", lease_seconds=60), actor="w")
    await s.execute(
        conn,
        job_id,
        commands.FailAttempt(worker_id="w", error="boom", permanent=True, retry_delay=timedelta(0)),
        actor="w",
    )


async def history(conn: asyncpg.Connection, job_id: uuid.UUID) -> list[store.Recorded]:
    return await store.EventStore().history(conn, job_id)


async def statuses(conn: asyncpg.Connection, out: wire.WorkflowOut) -> dict[str, str]:
    found = {}
    for j in out.jobs:
        state = await current.get(conn, j.job_id)
        assert state is not None
        found[j.name] = state.status
    return found


async def test_a_workflow_is_one_append_and_jobs_with_dependencies_start_blocked(
    conn: asyncpg.Connection, submitter: submission.Submitter
) -> None:
    out = await submitter.submit_workflow(
        conn, [job("a"), job("b", "a"), job("c", "a"), job("d", "b", "c")], actor="app"
    )
    ids = {j.name: j.job_id for j in out.jobs}
    assert await statuses(conn, out) == {
        "a": "pending",
        "b": "blocked",
        "c": "blocked",
        "d": "blocked",
    }
    txids = await conn.fetch(
        "SELECT DISTINCT txid FROM events WHERE job_id = ANY($1)", [*ids.values()]
    )
    assert len(txids) == 1
    first = (await history(conn, ids["d"]))[0].event
    assert isinstance(first, ev.JobSubmitted)
    assert first.workflow_id == out.id and first.name == "d"
    assert first.depends_on == [ids["b"], ids["c"]]
    assert (await submitter.workflow(conn, out.id)).jobs[3].depends_on == ["b", "c"]


@pytest.mark.parametrize(
    ("jobs", "path", "words"),
    [
        ([job("a", "b"), job("b", "c"), job("c", "a")], "jobs[0].depends_on", "a → b → c → a"),
        ([job("a", "a")], "jobs[0].depends_on", "a → a"),
        ([job("a"), job("b", "nope")], "jobs[1].depends_on[0]", "'nope'"),
        ([job("a"), job("a")], "jobs[1].name", "taken"),
        ([job("a"), job("b", "a", x="no")], "jobs[1].payload.x", "int"),
    ],
)
async def test_an_invalid_workflow_is_refused_naming_the_job_and_nothing_is_stored(
    conn: asyncpg.Connection,
    submitter: submission.Submitter,
    jobs: list[wire.WorkflowJobIn],
    path: str,
    words: str,
) -> None:
    with pytest.raises(errors.InvalidInput) as caught:
        await submitter.submit_workflow(conn, jobs, actor="app")
    assert [e.path for e in caught.value.field_errors] == [path]
    assert words in caught.value.field_errors[0].message
    assert await conn.fetchval("SELECT count(*) FROM events") == 0


async def test_more_than_a_thousand_jobs_are_refused(
    conn: asyncpg.Connection, submitter: submission.Submitter
) -> None:
    with pytest.raises(errors.InvalidInput) as caught:
        await submitter.submit_workflow(conn, [job(f"j{i}") for i in range(1001)], actor="app")
    assert caught.value.field_errors[0].path == "jobs"


async def test_a_diamond_unblocks_each_job_when_its_last_dependency_completes(
    conn: asyncpg.Connection, submitter: submission.Submitter
) -> None:
    out = await submitter.submit_workflow(
        conn, [job("a"), job("b", "a"), job("c", "a"), job("d", "b", "c")], actor="app"
    )
    ids = {j.name: j.job_id for j in out.jobs}
    await run(conn, ids["a"], "A")
    a_done = (await history(conn, ids["a"]))[-1]
    assert await statuses(conn, out) == {
        "a": "completed",
        "b": "pending",
        "c": "pending",
        "d": "blocked",
    }
    unblocked = (await history(conn, ids["b"]))[-1]
    assert unblocked.txid == a_done.txid  # the same transaction as the completion
    assert isinstance(unblocked.event, ev.JobUnblocked)
    assert unblocked.event.upstream_job_id == ids["a"]
    assert unblocked.event.cause == a_done.hash.hex()
    assert unblocked.event.upstream == {"a": "A"}
    await run(conn, ids["b"], "B")
    assert (await statuses(conn, out))["d"] == "blocked"
    await run(conn, ids["c"], {"c": 3})
    last = (await history(conn, ids["d"]))[-1].event
    assert isinstance(last, ev.JobUnblocked)
    assert last.upstream == {"b": "B", "c": {"c": 3}}
    await run(conn, ids["d"])
    assert (await submitter.workflow(conn, out.id)).status == "completed"
    assert await rebuild.verify(conn) == []


async def test_each_upstream_failure_mode_decides_the_dependant(
    conn: asyncpg.Connection, submitter: submission.Submitter
) -> None:
    out = await submitter.submit_workflow(
        conn,
        [
            job("a"),
            job("cancels", "a"),
            job("after_cancels", "cancels", mode="run"),
            job("skips", "a", mode="skip"),
            job("after_skips", "skips"),
            job("runs", "a", mode="run"),
        ],
        actor="app",
    )
    ids = {j.name: j.job_id for j in out.jobs}
    await fail(conn, ids["a"])
    failed = (await history(conn, ids["a"]))[-1]
    assert await statuses(conn, out) == {
        "a": "failed",
        "cancels": "cancelled",
        "after_cancels": "pending",  # runs anyway, after its dependency was cancelled
        "skips": "skipped",
        "after_skips": "pending",  # a skipped dependency counts as completed
        "runs": "pending",
    }
    cancelled = (await history(conn, ids["cancels"]))[-1]
    assert isinstance(cancelled.event, ev.JobCancelled)
    assert cancelled.event.upstream_job_id == ids["a"]
    assert cancelled.event.cause == failed.hash.hex()
    assert cancelled.txid == failed.txid
    skipped = (await history(conn, ids["skips"]))[-1].event
    assert isinstance(skipped, ev.JobSkipped)
    assert (skipped.upstream_job_id, skipped.upstream_status) == (ids["a"], "failed")
    after = (await history(conn, ids["after_cancels"]))[-1].event
    assert isinstance(after, ev.JobUnblocked)
    assert after.cause == cancelled.hash.hex() and after.upstream_status == "cancelled"
    assert await rebuild.verify(conn) == []


async def test_a_fan_in_of_100_parents_ending_concurrently_unblocks_the_child_once(
    dbs: Databases, conn: asyncpg.Connection, submitter: submission.Submitter
) -> None:
    parents = [job(f"p{i}") for i in range(100)]
    out = await submitter.submit_workflow(
        conn, [*parents, job("child", *(p.name for p in parents))], actor="app"
    )
    ids = {j.name: j.job_id for j in out.jobs}
    conns = [await asyncpg.connect(dbs.app, server_settings=IN_DEFAULT) for _ in range(10)]
    try:
        s = store.EventStore()
        for i in range(100):
            c = conns[i % 10]
            await s.execute(
                c, ids[f"p{i}"], commands.ClaimJob(worker_id="w", lease_seconds=60), actor="w"
            )

        async def complete(c: asyncpg.Connection, names: list[str]) -> None:
            for name in names:
                await s.execute(
                    c, ids[name], commands.CompleteJob(worker_id="w", result=name), actor="w"
                )

        await asyncio.wait_for(
            asyncio.gather(
                *(complete(conns[k], [f"p{i}" for i in range(k, 100, 10)]) for k in range(10))
            ),
            timeout=60,
        )
    finally:
        for c in conns:
            await c.close()
    child = await history(conn, ids["child"])
    assert [ev.type_tag(r.event) for r in child] == ["job.submitted.v1", "job.unblocked.v1"]
    unblocked = child[1].event
    assert isinstance(unblocked, ev.JobUnblocked)
    assert unblocked.upstream == {f"p{i}": f"p{i}" for i in range(100)}


async def test_a_dependency_ending_while_its_dependant_is_cancelled_neither_deadlocks_nor_forks(
    dbs: Databases, conn: asyncpg.Connection, submitter: submission.Submitter
) -> None:
    for _ in range(5):
        out = await submitter.submit_workflow(conn, [job("a"), job("b", "a")], actor="app")
        ids = {j.name: j.job_id for j in out.jobs}
        s = store.EventStore()
        await s.execute(
            conn, ids["a"], commands.ClaimJob(worker_id="w", lease_seconds=60), actor="w"
        )
        other = await asyncpg.connect(dbs.app, server_settings=IN_DEFAULT)
        try:
            outcome = asyncio.ensure_future(
                s.execute(conn, ids["a"], commands.CompleteJob(worker_id="w", result=1), actor="w")
            )
            cancel = asyncio.ensure_future(submitter.cancel(other, ids["b"], actor="someone"))
            done = await asyncio.wait_for(
                asyncio.gather(outcome, cancel, return_exceptions=True), timeout=30
            )
        finally:
            await other.close()
        assert not isinstance(done[0], BaseException)
        # The cancel wins, or finds b unblocked (pending) and cancels it then: b ends cancelled.
        assert not isinstance(done[1], BaseException) or isinstance(
            done[1], errors.InvalidTransition
        )
        b = [ev.type_tag(r.event) for r in await history(conn, ids["b"])]
        assert b in (
            ["job.submitted.v1", "job.cancelled.v1"],
            ["job.submitted.v1", "job.unblocked.v1", "job.cancelled.v1"],
        )
    assert await rebuild.verify(conn) == []


async def test_retry_from_failed_reruns_it_and_downstream_and_keeps_completed_work(
    conn: asyncpg.Connection, submitter: submission.Submitter
) -> None:
    out = await submitter.submit_workflow(
        conn, [job("a"), job("b", "a"), job("c", "b"), job("side", "a")], actor="app"
    )
    ids = {j.name: j.job_id for j in out.jobs}
    await run(conn, ids["a"], "A")
    await run(conn, ids["side"], "S")
    await fail(conn, ids["b"])
    assert (await submitter.workflow(conn, out.id)).status == "failed"
    assert (await statuses(conn, out))["c"] == "cancelled"
    again = await submitter.retry_workflow(conn, out.id, actor="ops")
    assert {j.name: j.status for j in again.jobs} == {
        "a": "completed",
        "b": "pending",
        "c": "blocked",
        "side": "completed",
    }
    await run(conn, ids["b"], "B2")
    last = (await history(conn, ids["c"]))[-1].event
    assert isinstance(last, ev.JobUnblocked) and last.upstream == {"b": "B2"}
    await run(conn, ids["c"])
    assert (await submitter.workflow(conn, out.id)).status == "completed"
    assert len(await history(conn, ids["a"])) == 3  # a ran once
    with pytest.raises(errors.WorkflowConflict):
        await submitter.retry_workflow(conn, out.id, actor="ops")
    assert await rebuild.verify(conn) == []


async def test_a_job_retried_by_name_waits_for_its_dependencies_that_have_not_completed(
    conn: asyncpg.Connection, submitter: submission.Submitter
) -> None:
    out = await submitter.submit_workflow(conn, [job("a"), job("b", "a")], actor="app")
    ids = {j.name: j.job_id for j in out.jobs}
    await submitter.cancel(conn, ids["b"], actor="ops")  # cancelled while "a" waits to run

    again = await submitter.retry_workflow(conn, out.id, start="b", actor="ops")

    assert {j.name: j.status for j in again.jobs} == {"a": "pending", "b": "blocked"}
    await run(conn, ids["a"], "A")
    a_done = (await history(conn, ids["a"]))[-1]
    last = (await history(conn, ids["b"]))[-1].event
    assert isinstance(last, ev.JobUnblocked)
    assert (last.upstream_job_id, last.cause) == (ids["a"], a_done.hash.hex())
    assert last.upstream == {"a": "A"}
    assert await rebuild.verify(conn) == []


async def test_a_job_retried_by_name_whose_dependencies_completed_is_unblocked_at_once(
    conn: asyncpg.Connection, submitter: submission.Submitter
) -> None:
    out = await submitter.submit_workflow(conn, [job("a"), job("b", "a")], actor="app")
    ids = {j.name: j.job_id for j in out.jobs}
    await run(conn, ids["a"], "A")
    a_done = (await history(conn, ids["a"]))[-1]
    await run(conn, ids["b"], "B")

    again = await submitter.retry_workflow(conn, out.id, start="b", actor="ops")

    assert {j.name: j.status for j in again.jobs} == {"a": "completed", "b": "pending"}
    retried, unblocked = (await history(conn, ids["b"]))[-2:]
    assert isinstance(retried.event, ev.JobRetried) and retried.event.blocked
    assert unblocked.txid == retried.txid  # decided in the retry's transaction
    assert isinstance(unblocked.event, ev.JobUnblocked)
    assert unblocked.event.cause == a_done.hash.hex()
    assert unblocked.event.upstream == {"a": "A"}
    assert await rebuild.verify(conn) == []


async def test_a_retry_of_failed_jobs_runs_a_downstream_one_after_its_upstream(
    conn: asyncpg.Connection, submitter: submission.Submitter
) -> None:
    out = await submitter.submit_workflow(
        conn, [job("a"), job("report", "a", mode="run")], actor="app"
    )
    ids = {j.name: j.job_id for j in out.jobs}
    await fail(conn, ids["a"])
    await fail(conn, ids["report"])  # ran anyway (`run`), and failed too

    again = await submitter.retry_workflow(conn, out.id, actor="ops")

    assert {j.name: j.status for j in again.jobs} == {"a": "pending", "report": "blocked"}
    await run(conn, ids["a"], "A2")
    assert (await statuses(conn, out))["report"] == "pending"


async def test_cancelling_a_workflow_ends_every_job_not_ended(
    conn: asyncpg.Connection, submitter: submission.Submitter
) -> None:
    out = await submitter.submit_workflow(
        conn, [job("a"), job("b", "a"), job("cleanup", "b", mode="run")], actor="app"
    )
    ids = {j.name: j.job_id for j in out.jobs}
    await store.EventStore().execute(
        conn, ids["a"], commands.ClaimJob(worker_id="w", lease_seconds=60), actor="w"
    )
    done = await submitter.cancel_workflow(conn, out.id, actor="ops")
    assert done.status == "cancelled"
    assert {j.name: j.status for j in done.jobs} == {
        "a": "cancelled",
        "b": "cancelled",
        "cleanup": "cancelled",
    }


async def test_the_readme_workflow_example_submits_and_runs_in_order(
    conn: asyncpg.Connection,
) -> None:
    text = README.read_text()
    start, end = "<!-- readme-workflow-example: start -->", "<!-- readme-workflow-example: end -->"
    code = text[text.index(start) : text.index(end)].split("```python\n", 1)[1].rsplit("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    out = await namespace["onboard"](conn, "ada@example.com")
    ids = {j.name: j.job_id for j in out.jobs}
    assert [j.status for j in out.jobs] == ["pending", "blocked", "blocked"]
    await fail(conn, ids["welcome"])
    found = await submission.DEFAULT.workflow(conn, out.id)
    assert {j.name: j.status for j in found.jobs} == {
        "welcome": "failed",
        "tips": "cancelled",
        "tell_team": "pending",  # runs anyway
    }


async def _in_one_append(
    conn: asyncpg.Connection, job_ids: list[uuid.UUID], make: commands.Command
) -> int:
    """Decide `make` for every job and append all the events in one append, as a worker's
    batch of outcomes does; how many times events_append ran in that transaction."""
    s = store.EventStore()
    # Counts not yet reported (this transaction's and maybe earlier ones'): the difference.
    count = (
        "SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions"
        " WHERE funcname = 'events_append'"
    )
    async with conn.transaction():
        decided = []
        for job_id in job_ids:
            state = await current.get(conn, job_id)
            decided += commands.decide(state, make, job_id=job_id, actor="w", now=s.clock())
        before = await conn.fetchval(count)
        await s.append(conn, decided)
        after = await conn.fetchval(count)
    return int(after - before)


async def test_a_batch_of_outcomes_decides_each_wave_of_dependants_in_one_append(
    dbs: Databases, admin_conn: asyncpg.Connection, submitter: submission.Submitter
) -> None:
    """50 completions unblock their 50 dependants in one more append, not 50 (sql/0081);
    50 failures cancel 50 dependants, then skip their 50 own, one append per wave."""
    await admin_conn.execute(f"ALTER DATABASE \"{dbs.name}\" SET track_functions = 'all'")
    conn = await asyncpg.connect(dbs.app, server_settings=IN_DEFAULT)
    try:
        shape = [job(f"p{i}") for i in range(50)] + [job(f"c{i}", f"p{i}") for i in range(50)]
        shape += [job(f"g{i}", f"c{i}", mode="skip") for i in range(50)]
        runs = await submitter.submit_workflow(conn, shape, actor="app")
        fails = await submitter.submit_workflow(conn, shape, actor="app")
        ran = {j.name: j.job_id for j in runs.jobs}
        failed = {j.name: j.job_id for j in fails.jobs}
        claim = commands.ClaimJob(worker_id="w", lease_seconds=60)
        await _in_one_append(conn, [ran[f"p{i}"] for i in range(50)], claim)
        await _in_one_append(conn, [failed[f"p{i}"] for i in range(50)], claim)

        complete = commands.CompleteJob(worker_id="w", result="done")
        calls = await _in_one_append(conn, [ran[f"p{i}"] for i in range(50)], complete)
        assert calls == 2  # the batch, then its 50 dependants
        for i in range(50):
            parent = (await history(conn, ran[f"p{i}"]))[-1]
            child = (await history(conn, ran[f"c{i}"]))[-1]
            assert isinstance(child.event, ev.JobUnblocked) and child.txid == parent.txid
            assert child.event.upstream_job_id == ran[f"p{i}"]
            assert child.event.cause == parent.hash.hex()
            assert child.event.upstream == {f"p{i}": "done"}
        assert set((await statuses(conn, runs)).values()) == {"completed", "pending", "blocked"}

        fail_ = commands.FailAttempt(
            worker_id="w", error="boom", permanent=True, retry_delay=timedelta(0)
        )
        calls = await _in_one_append(conn, [failed[f"p{i}"] for i in range(50)], fail_)
        assert calls == 3  # the batch, its 50 cancelled dependants, their 50 skipped ones
        for i in range(50):
            cancelled = (await history(conn, failed[f"c{i}"]))[-1]
            skipped = (await history(conn, failed[f"g{i}"]))[-1].event
            assert isinstance(cancelled.event, ev.JobCancelled)
            assert cancelled.event.upstream_job_id == failed[f"p{i}"]
            assert isinstance(skipped, ev.JobSkipped)
            assert skipped.upstream_job_id == failed[f"c{i}"]
            assert skipped.cause == cancelled.hash.hex()
        assert await rebuild.verify(conn) == []
    finally:
        await conn.close()


async def test_two_batches_sharing_every_dependant_unblock_each_once_without_deadlock(
    dbs: Databases, conn: asyncpg.Connection, submitter: submission.Submitter
) -> None:
    """Each child depends on p_i and p_i+1; one batch completes the even parents and another,
    at the same time, the odd ones: both lock all the children (sql/0081, in one order)."""
    shape = [job(f"p{i}") for i in range(100)]
    shape += [job(f"c{i}", f"p{i}", f"p{(i + 1) % 100}") for i in range(100)]
    others = [await asyncpg.connect(dbs.app, server_settings=IN_DEFAULT) for _ in range(2)]
    try:
        for _ in range(3):
            out = await submitter.submit_workflow(conn, shape, actor="app")
            ids = {j.name: j.job_id for j in out.jobs}
            claim = commands.ClaimJob(worker_id="w", lease_seconds=60)
            await _in_one_append(conn, [ids[f"p{i}"] for i in range(100)], claim)
            complete = commands.CompleteJob(worker_id="w", result="done")
            await asyncio.wait_for(
                asyncio.gather(
                    *(
                        _in_one_append(c, [ids[f"p{i}"] for i in range(k, 100, 2)], complete)
                        for k, c in enumerate(others)
                    )
                ),
                timeout=60,
            )
            for i in range(100):
                child = [ev.type_tag(r.event) for r in await history(conn, ids[f"c{i}"])]
                assert child == ["job.submitted.v1", "job.unblocked.v1"]
            assert set((await statuses(conn, out)).values()) == {"completed", "pending"}
    finally:
        for c in others:
            await c.close()
    assert await rebuild.verify(conn) == []
