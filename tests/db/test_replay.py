"""Debugging a job: resubmission that links both jobs, local re-runs that write nothing, timelines, as_of."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import msgspec
import pytest

from ledger import commands, errors, jobtypes, lifecycle, rerun, store, submission
from ledger import events as ev
from projections import current, rebuild, timeline
from tests import factories, ledgers


async def test_replay_submits_a_new_job_and_both_histories_name_each_other(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    original = await ledgers.run_job(event_store, conn, 5)

    new, original_job = await submission.Submitter(event_store=event_store).resubmit(
        conn, original, actor="alice"
    )
    new_id = new.job_id

    txids = await conn.fetch(
        "SELECT DISTINCT txid FROM events WHERE (job_id = $1 AND version = 1) OR "
        "(job_id = $2 AND version = 4)",
        new_id,
        original,
    )
    assert len(txids) == 1, "one transaction for both jobs"
    assert (new.status, original_job.status) == ("pending", "completed")
    submitted = (await event_store.history(conn, new_id))[0].event
    assert isinstance(submitted, ev.JobSubmitted)
    assert (submitted.replay_of, submitted.job_type, submitted.payload) == (
        original,
        "noop",
        {"n": 5},
    )
    last = (await event_store.history(conn, original))[-1].event
    assert isinstance(last, ev.JobReplayed)
    assert (last.replayed_as, last.version, last.actor) == (new_id, 4, "alice")
    before = await current.get(conn, original)
    assert before is not None and (before.status, before.version) == ("completed", 4)
    again = await current.get(conn, new_id)
    assert again is not None and (again.status, again.replay_of) == ("pending", original)
    assert await rebuild.verify(conn) == []


async def test_replay_of_an_unknown_job_writes_nothing(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    with pytest.raises(errors.UnknownJob):
        await submission.Submitter(event_store=event_store).resubmit(
            conn, uuid.uuid4(), actor="alice"
        )
    assert await conn.fetchval("SELECT count(*) FROM events") == 0


async def test_as_of_each_event_equals_the_fold_of_its_prefix(
    conn: asyncpg.Connection,
) -> None:
    event_store = store.EventStore()
    job_id = await factories.submit(event_store, conn, max_attempts=2)
    for command in (
        commands.ClaimJob(worker_id="w", lease_seconds=30),
        commands.FailAttempt(
            worker_id="w", error="boom", permanent=False, retry_delay=timedelta(days=30)
        ),
        commands.ClaimJob(worker_id="w", lease_seconds=30),
        commands.CompleteJob(worker_id="w", result={"ok": True}),
    ):
        await event_store.execute(conn, job_id, command, actor="w")
    await submission.Submitter(event_store=event_store).resubmit(conn, job_id, actor="alice")
    history = [r.event for r in await event_store.history(conn, job_id)]
    assert len(history) == 6

    first = history[0].occurred_at
    assert await current.as_of(conn, job_id, first - timedelta(microseconds=1)) is None
    for index, event in enumerate(history):
        expected = lifecycle.fold(history[: index + 1])
        assert await current.as_of(conn, job_id, event.occurred_at) == expected
        if index + 1 < len(history):
            following = history[index + 1].occurred_at
            assert following > event.occurred_at  # the database's clock, per transaction
            between = event.occurred_at + (following - event.occurred_at) / 2
            assert await current.as_of(conn, job_id, between) == expected


async def test_timeline_shows_status_after_each_event_and_the_gaps(
    conn: asyncpg.Connection,
) -> None:
    job_id = await ledgers.run_job(store.EventStore(), conn, 1)
    # The database times each event; a second apart here, to read the gaps exactly.
    start = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    history = [
        msgspec.structs.replace(
            r, event=msgspec.structs.replace(r.event, occurred_at=start + timedelta(seconds=i))
        )
        for i, r in enumerate(await store.EventStore().history(conn, job_id))
    ]

    line = timeline.build(job_id, history)

    assert [(s.version, s.event, s.status) for s in line.steps] == [
        (1, "job.submitted.v1", "pending"),
        (2, "job.claimed.v1", "processing"),
        (3, "job.completed.v1", "completed"),
    ]
    assert [s.since_previous_seconds for s in line.steps] == [None, 1.0, 1.0]
    assert line.steps[2].data == {"result": {"n": 1}}
    text = timeline.render(line)
    assert text.splitlines()[0].split() == [
        "VER", "TIME", "(UTC)", "EVENT", "ACTOR", "STATUS", "AFTER", "SINCE", "PREV",
    ]  # fmt: skip
    assert "job.claimed.v1    worker:w1  processing    +1.000s" in text
    cut = timeline.build(job_id, history, history[1].event.occurred_at)
    assert [s.version for s in cut.steps] == [1, 2] and cut.state is not None
    assert cut.state.status == "processing"


def test_gaps_read_naturally() -> None:
    assert [timeline.gap(s) for s in (None, 0.042, 185, 7800, 270000)] == [
        "-",
        "+0.042s",
        "+3m05s",
        "+2h10m",
        "+3d03h",
    ]


class Echo(msgspec.Struct, frozen=True):
    n: int


def _registry() -> jobtypes.Registry:
    registry = jobtypes.Registry()

    @jobtypes.job_type("echo", Echo, registry=registry)
    def echo(payload: Echo, ctx: jobtypes.JobContext) -> dict[str, int]:
        return {"n": payload.n * 10, "attempt": ctx.attempt}

    @jobtypes.job_type("refuse", Echo, registry=registry)
    async def refuse(payload: Echo, ctx: jobtypes.JobContext) -> None:
        raise jobtypes.Permanent(f"no {payload.n}")

    @jobtypes.job_type("crash", Echo, registry=registry)
    async def crash(payload: Echo, ctx: jobtypes.JobContext) -> None:
        raise RuntimeError("disk on fire")

    return registry


@pytest.mark.parametrize(
    ("job_type", "expected"),
    [
        ("echo", rerun.Outcome(status="completed", result={"n": 30, "attempt": 1})),
        ("refuse", rerun.Outcome(status="failed", error="no 3", permanent=True)),
        ("crash", rerun.Outcome(status="failed", error="RuntimeError: disk on fire")),
    ],
)
async def test_local_run_uses_the_recorded_payload_and_writes_nothing(
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    tmp_path: Path,
    job_type: str,
    expected: rerun.Outcome,
) -> None:
    job_id = await factories.submit(event_store, conn, job_type=job_type, payload={"n": 3})
    state = await current.get(conn, job_id)
    assert state is not None
    before = await conn.fetchval("SELECT count(*) FROM events")

    outcome = await rerun.run_locally(state, storage_root=tmp_path, registry=_registry())

    assert outcome == expected
    assert await conn.fetchval("SELECT count(*) FROM events") == before


async def test_recorded_outcome_is_what_the_ledger_holds(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    done = await current.get(conn, await ledgers.run_job(event_store, conn, 2))
    waiting = await current.get(conn, await factories.submit(event_store, conn))
    assert done is not None and waiting is not None
    assert rerun.recorded_outcome(done) == rerun.Outcome(status="completed", result={"n": 2})
    assert rerun.recorded_outcome(waiting) is None
