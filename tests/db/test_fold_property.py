"""Property: for random valid histories, the SQL projection equals the Python fold."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import commands, errors, lifecycle, retrypolicy, store
from ledger import events as ev
from projections import current
from tests.conftest import IN_DEFAULT, Databases

_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=10)
_json: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)

_policy = st.builds(
    retrypolicy.RetryPolicy,
    initial_interval_seconds=st.none() | st.floats(0, 10),
    backoff_coefficient=st.none() | st.floats(1, 10),
    maximum_attempts=st.none() | st.integers(0, 5),
    jitter=st.none() | st.sampled_from(["equal", "full", "none"]),
    max_elapsed_seconds=st.none() | st.floats(0, 3600),
    non_retryable_errors=st.none() | st.tuples(st.sampled_from(["OSError", "Refused"])),
)

_submit = st.builds(
    commands.SubmitJob,
    job_type=st.sampled_from(["a", "b.c"]),
    payload=st.dictionaries(_text, _json, max_size=4),
    queue=st.sampled_from(["default", "emails"]),
    priority=st.sampled_from(["high", "normal", "low"]),
    max_attempts=st.integers(1, 4),
    timeout_seconds=st.floats(0.5, 600),
    backoff_base_seconds=st.floats(0, 10),
    backoff_cap_seconds=st.floats(0, 600),
    # Unique per example: an Idempotency-Key is unique per submitter (sql/0010), and the
    # examples share one database, so each key is fresh.
    idempotency_key=st.none() | st.builds(lambda: str(uuid.uuid4())),
    # A schedule's job names its schedule and slot (sql/0074).
    schedule_id=st.none() | st.sampled_from(["nightly", "every-second"]),
    schedule_slot=st.none()
    | st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
    ),
    # A submission's retry policy (sql/0075), when it gives one.
    retry_policy=st.none() | _policy,
    # A fresh key per example too (one job holds a key at a time, sql/0076).
    unique=st.none()
    | st.builds(
        lambda states: ev.UniqueKey(
            key=uuid.uuid4().hex * 2,
            by=("type", "payload"),
            states=("pending", "processing", "retrying", *states),
            on_conflict="replace",
        ),
        st.sets(st.sampled_from(["completed", "failed", "cancelled"])).map(sorted),
    ),
    # A workflow's job, waiting (blocked) when it has dependencies (sql/0077).
    workflow_id=st.none() | st.builds(uuid.uuid4),
    name=st.none() | st.sampled_from(["a", "b"]),
    depends_on=st.none() | st.lists(st.builds(uuid.uuid4), max_size=2),
    on_upstream_failure=st.none() | st.sampled_from(["cancel", "run", "skip"]),
)

_in_force = st.builds(
    retrypolicy.resolve, st.lists(st.tuples(st.just("queue"), _policy), max_size=1)
)


def _options(state: lifecycle.JobState, data: Any, at: datetime) -> list[commands.Command]:
    delay = timedelta(seconds=data.draw(st.integers(1, 10_000)))
    holder = state.worker_id or "w"
    return [
        commands.ClaimJob(worker_id=data.draw(st.sampled_from(["w1", "w2"])), lease_seconds=30),
        commands.CompleteJob(worker_id=holder, result=data.draw(_json)),
        commands.FailAttempt(
            worker_id=holder,
            error=data.draw(_text),
            permanent=data.draw(st.booleans()),
            retry_delay=delay,
        ),
        commands.ExpireLease(retry_delay=delay),
        # The same, as a retry policy decides them: the reasons recorded fold to the same state.
        commands.FailAttempt(
            worker_id=holder,
            error=data.draw(_text),
            permanent=False,
            retry_delay=delay,
            decision=data.draw(_decisions(state)),
        ),
        commands.ExpireLease(retry_delay=delay, decision=data.draw(_decisions(state))),
        commands.ReleaseJob(worker_id=holder),
        commands.SnoozeJob(
            worker_id=holder,
            delay=delay,
            max_snoozes=data.draw(st.integers(0, 3)),
            reason=data.draw(st.none() | _text),
        ),
        commands.CancelJob(
            reason=data.draw(st.none() | _text), bulk_request_id=data.draw(st.none() | _text)
        ),
        commands.RetryJob(
            max_attempts=data.draw(st.none() | st.integers(1, 5)),
            bulk_request_id=data.draw(st.none() | _text),
        ),
        commands.RerunJob(blocked=data.draw(st.booleans())),
        commands.MarkResubmitted(replayed_as=uuid.uuid4()),
        commands.ReplaceJob(
            payload=data.draw(st.dictionaries(_text, _json, max_size=3)), run_at=at
        ),
    ]


def _decisions(state: lifecycle.JobState) -> st.SearchStrategy[retrypolicy.Decision]:
    return st.builds(
        retrypolicy.Decision,
        reason=st.none() | st.sampled_from(["max_attempts", "max_elapsed", "non_retryable"]),
        attempt=st.just(max(state.attempt, 1)),
        error_type=st.none() | st.just("ValueError"),
        policy=_in_force,
        delay_seconds=st.none() | st.floats(0, 100),
        jittered_delay_seconds=st.none() | st.floats(0, 100),
        requested_delay_seconds=st.none() | st.floats(0, 100),
    )


def _resolution(state: lifecycle.JobState, at: datetime) -> st.SearchStrategy[ev.JobEvent]:
    envelope: dict[str, Any] = {
        "job_id": st.just(state.job_id),
        "version": st.just(state.version + 1),
        "actor": st.just("ledger:workflow"),
        "occurred_at": st.just(at),
    }
    upstream = {
        "upstream_job_id": st.builds(uuid.uuid4),
        "upstream_status": st.sampled_from(["completed", "failed", "cancelled", "skipped"]),
        "cause": st.just("ab" * 32),
    }
    return st.one_of(
        st.builds(
            ev.JobUnblocked,
            **envelope,
            **upstream,
            upstream=st.dictionaries(_text, _json, max_size=2),
        ),
        st.builds(ev.JobSkipped, **envelope, **upstream),
        st.builds(ev.JobCancelled, **envelope, **upstream, reason=st.none() | _text),
    )


def _history(data: Any) -> list[ev.JobEvent]:
    job_id = uuid.uuid4()
    at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(
        microseconds=data.draw(st.integers(0, 10**12))
    )
    events = commands.decide(
        None,
        data.draw(_submit),
        job_id=job_id,
        actor=data.draw(_text.filter(bool) | st.just("a")),
        now=at,
    )
    state = lifecycle.fold(events)
    for _ in range(data.draw(st.integers(0, 12))):
        assert state is not None
        at += timedelta(microseconds=data.draw(st.integers(1, 10**8)))
        if state.status == "blocked" and data.draw(st.booleans()):
            # What the database decides when a dependency ends (sql/0077).
            decided = [data.draw(_resolution(state, at))]
            events += decided
            state = lifecycle.fold(decided, state)
            continue
        command = data.draw(st.sampled_from(_options(state, data, at)))
        try:
            decided = commands.decide(state, command, job_id=job_id, actor="actor", now=at)
        except errors.InvalidTransition:
            continue
        events += decided
        state = lifecycle.fold(decided, state)
    return events


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_sql_projection_equals_python_fold(dbs: Databases, data: Any) -> None:
    history = _history(data)

    async def project() -> tuple[
        lifecycle.JobState | None, lifecycle.JobState | None, lifecycle.JobState | None
    ]:
        conn = await asyncpg.connect(dbs.app, server_settings=IN_DEFAULT)
        try:
            event_store = store.EventStore()
            for event in history:  # one transaction per event, as in production
                await event_store.append(conn, [event])
            job_id = history[0].job_id
            live = await current.get(conn, job_id)
            # Fold what the ledger holds: JSON numbers come back as PostgreSQL keeps
            # them (5.4e16 may return as an integer) and times as the database set
            # them, so compare like with like.
            recorded = await event_store.history(conn, job_id)
            folded = await current.as_of(conn, job_id, recorded[-1].event.occurred_at)
            stored = lifecycle.fold(r.event for r in recorded)
            return live, folded, stored
        finally:
            await conn.close()

    live, folded, expected = asyncio.run(project())
    assert expected is not None
    assert expected.version == len(history)
    assert live == expected
    assert folded == expected
