"""Bulk retry and cancel by filter (ledger.bulk) against the real database: each filter,
the limit, the request id on every event and its repeat, tenants, and jobs that move
while a request runs."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import pytest

from ledger import acting, bulk, commands, errors, lifecycle, sqlfile, store, submission, wire
from ledger import events as ev
from projections import current
from tests import factories
from tests.db.test_readme_python import ROOT

Q = sqlfile.load("ledger")


async def _failed(
    event_store: store.EventStore,
    conn: asyncpg.Connection,
    *,
    error: str = "boom",
    **fields: Any,
) -> uuid.UUID:
    """A job submitted, claimed and failed for good with `error`."""
    job_id = await factories.submit(event_store, conn, **fields)
    await event_store.execute(
        conn, job_id, commands.ClaimJob(worker_id="w", lease_seconds=60), actor="w"
    )
    fail = commands.FailAttempt(
        worker_id="w", error=error, permanent=True, retry_delay=timedelta(0)
    )
    await event_store.execute(conn, job_id, fail, actor="w")
    return job_id


async def _state(conn: asyncpg.Connection, job_id: uuid.UUID) -> lifecycle.JobState:
    state = await current.get(conn, job_id)
    assert state is not None
    return state


def _filter(**fields: Any) -> wire.BulkFilter:
    return msgspec.convert({"status": "failed", **fields}, wire.BulkFilter)


async def _retry(
    conn: asyncpg.Connection, event_store: store.EventStore, **fields: Any
) -> wire.BulkResult:
    limit = fields.pop("limit", 100)
    request_id = fields.pop("request_id", None)
    return await bulk.act(
        conn,
        event_store,
        "retry",
        _filter(**fields),
        limit=limit,
        request_id=request_id,
        actor="ops",
    )


@pytest.mark.parametrize(
    ("wanted", "other", "fields"),
    [
        ({"job_type": "noop"}, {"job_type": "other"}, {"type": "noop"}),
        ({"queue": "mail"}, {"queue": "default"}, {"queue": "mail"}),
        ({"error": "HTTP 503 upstream"}, {"error": "HTTP 404"}, {"error_contains": "503"}),
    ],
    ids=["type", "queue", "error_contains"],
)
async def test_each_filter_field_selects_only_the_jobs_it_matches(
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    wanted: dict[str, Any],
    other: dict[str, Any],
    fields: dict[str, Any],
) -> None:
    hit = [await _failed(event_store, conn, **wanted) for _ in range(2)]
    miss = await _failed(event_store, conn, **other)
    submitted = {k: v for k, v in wanted.items() if k != "error"}
    pending = await factories.submit(event_store, conn, **submitted)  # not failed: not selected

    done = await _retry(conn, event_store, **fields)

    assert (done.matched, done.changed, sorted(done.job_ids)) == (2, 2, sorted(hit))
    assert [(await _state(conn, j)).status for j in hit] == ["pending", "pending"]
    assert (await _state(conn, miss)).status == "failed"
    assert (await _state(conn, pending)).version == 1


async def test_failed_before_and_after_bound_when_the_job_ended(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    early = await _failed(event_store, conn)
    middle = await _failed(event_store, conn)
    late = await _failed(event_store, conn)
    ended = {j: (await _state(conn, j)).completed_at for j in (early, middle, late)}
    assert ended[early] < ended[middle] < ended[late]  # type: ignore[operator]

    done = await _retry(conn, event_store, failed_after=ended[early], failed_before=ended[late])
    assert done.job_ids == [middle]
    done = await _retry(conn, event_store, failed_before=ended[middle])
    assert done.job_ids == [early]


async def test_the_limit_takes_the_oldest_jobs_and_later_requests_the_next(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    jobs = [await _failed(event_store, conn) for _ in range(5)]
    first = await _retry(conn, event_store, limit=2)
    second = await _retry(conn, event_store, limit=2)
    assert first.job_ids == jobs[:2]
    assert second.job_ids == jobs[2:4]
    assert (await _state(conn, jobs[4])).status == "failed"


async def test_more_jobs_than_a_chunk_change_in_several_transactions(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    count = bulk.CHUNK + 7
    ids = await factories.submit_many(event_store, conn, count)
    done = await bulk.act(
        conn,
        event_store,
        "cancel",
        msgspec.convert({"status": "pending"}, wire.BulkFilter),
        limit=count,
        actor="ops",
    )
    assert (done.matched, done.changed) == (count, count)
    txids = {
        r.txid
        for histories in (await event_store.histories(conn, ids)).values()
        for r in histories
        if isinstance(r.event, ev.JobCancelled)
    }
    assert len(txids) == 2


async def test_every_changed_jobs_event_records_the_request_id(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    jobs = [await _failed(event_store, conn) for _ in range(3)]
    done = await _retry(conn, event_store, request_id="req-1")
    assert done.request_id == "req-1"
    for job_id in jobs:
        last = (await event_store.history(conn, job_id))[-1].event
        assert isinstance(last, ev.JobRetried)
        assert (last.bulk_request_id, last.actor) == ("req-1", "ops")
    async with conn.transaction():
        listed = await conn.fetch(Q["events_of_bulk_request"], "req-1")
    assert [r["job_id"] for r in listed] == jobs

    generated = await _retry(conn, event_store)  # no id given: one is made up and returned
    assert generated.changed == 0 and uuid.UUID(generated.request_id)


async def test_repeating_a_request_id_changes_nothing_more(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    first = [await _failed(event_store, conn) for _ in range(2)]
    done = await _retry(conn, event_store, request_id="nightly")
    assert (done.changed, done.repeated) == (2, False)
    # The first jobs fail again and a new one fails: the repeat touches none of them.
    for job_id in first:
        await event_store.execute(
            conn, job_id, commands.ClaimJob(worker_id="w", lease_seconds=60), actor="w"
        )
        await event_store.execute(
            conn,
            job_id,
            commands.FailAttempt(
                worker_id="w", error="again", permanent=True, retry_delay=timedelta(0)
            ),
            actor="w",
        )
    newer = await _failed(event_store, conn)

    again = await _retry(conn, event_store, request_id="nightly")

    assert (again.matched, again.changed, again.repeated) == (0, 0, True)
    assert again.job_ids == first
    assert {(await _state(conn, j)).status for j in [*first, newer]} == {"failed"}
    with pytest.raises(errors.IdempotencyMismatch):
        await bulk.act(
            conn,
            event_store,
            "cancel",
            msgspec.convert({"status": "pending"}, wire.BulkFilter),
            request_id="nightly",
            actor="ops",
        )


class _MovingStore(store.EventStore):
    """An event store under which, while a bulk request decides its first chunk, another
    writer moves one job (`early`: before the request reads the histories) and another
    one (`late`: after it read them, so its append conflicts on that job's version)."""

    def __init__(self, other: asyncpg.Connection, early: uuid.UUID, late: uuid.UUID) -> None:
        super().__init__()
        self.other, self.early, self.late = other, early, late
        self.moved = False

    async def histories(
        self, conn: asyncpg.Connection, job_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, list[store.Recorded]]:
        if self.moved:
            return await super().histories(conn, job_ids)
        self.moved = True
        await submission.retry(self.other, self.early, actor="someone else")
        found = await super().histories(conn, job_ids)
        await submission.retry(self.other, self.late, actor="someone else")
        return found


async def test_jobs_that_move_while_a_request_runs_are_skipped_not_errors(
    dbs: Any, conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    jobs = [await _failed(event_store, conn) for _ in range(4)]
    other = await asyncpg.connect(dbs.app)
    try:
        moving = _MovingStore(other, early=jobs[0], late=jobs[2])
        done = await _retry(conn, moving, request_id="r")
    finally:
        await other.close()
    assert (done.matched, done.changed) == (4, 2)
    assert done.job_ids == [jobs[1], jobs[3]]
    for job_id in (jobs[0], jobs[2]):  # retried once, by the other writer only
        retried = [
            r.event
            for r in await event_store.history(conn, job_id)
            if isinstance(r.event, ev.JobRetried)
        ]
        assert [e.actor for e in retried] == ["someone else"]


async def test_a_request_changes_only_its_tenants_jobs(
    worker_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    mine: dict[str, list[uuid.UUID]] = {}
    for tenant in ("acme", "globex"):
        async with worker_conn.transaction():
            await acting.act_in(worker_conn, tenant)
            mine[tenant] = [await _failed(event_store, worker_conn) for _ in range(2)]

    done = await bulk.act(worker_conn, event_store, "retry", _filter(), actor="ops", tenant="acme")
    assert (done.matched, done.changed) == (2, 2)
    assert sorted(done.job_ids) == sorted(mine["acme"])
    async with worker_conn.transaction():
        await acting.act_in(worker_conn, "globex")
        assert {(await _state(worker_conn, j)).status for j in mine["globex"]} == {"failed"}
    # The same request id in another tenant is another request.
    other = await bulk.act(
        worker_conn,
        event_store,
        "retry",
        _filter(),
        request_id=done.request_id,
        actor="ops",
        tenant="globex",
    )
    assert (other.changed, other.repeated) == (2, False)


@pytest.mark.parametrize(
    ("action", "fields", "limit", "field"),
    [
        ("retry", {}, 10, "filter.status"),
        ("retry", {"status": "pending"}, 10, "filter.status"),
        ("cancel", {"status": "failed"}, 10, "filter.status"),
        ("retry", {"status": "failed"}, bulk.MAX_LIMIT + 1, "limit"),
        (
            "cancel",
            {"status": "pending", "failed_before": "2024-01-01T00:00:00Z"},
            10,
            "filter.failed_before",
        ),
    ],
    ids=["no status", "pending to retry", "failed to cancel", "limit", "ended bound on pending"],
)
async def test_a_filter_the_action_cannot_carry_out_is_refused_naming_the_field(
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    action: wire.BulkAction,
    fields: dict[str, Any],
    limit: int,
    field: str,
) -> None:
    await _failed(event_store, conn)
    job_filter = msgspec.convert(fields, wire.BulkFilter)
    with pytest.raises(bulk.BadFilter) as refused:
        await bulk.act(conn, event_store, action, job_filter, limit=limit, actor="ops")
    assert [e.path for e in refused.value.field_errors] == [field]


async def test_old_events_decode_and_store_as_before_the_request_id_existed() -> None:
    now = datetime.now(UTC)
    plain = ev.JobRetried(job_id=uuid.uuid4(), version=4, actor="a", occurred_at=now)
    assert ev.data_json(plain) == '{"max_attempts":null}'
    cancelled = ev.JobCancelled(job_id=uuid.uuid4(), version=2, actor="a", occurred_at=now)
    assert ev.data_json(cancelled) == '{"reason":null}'
    row = {
        "type": "job.retried.v1",
        "job_id": plain.job_id,
        "version": 4,
        "actor": "a",
        "occurred_at": now,
        "data": '{"max_attempts": null}',
    }
    assert ev.from_row(row) == plain


async def test_the_readme_bulk_example_retries_the_outages_mails_once(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    text = (ROOT / "README.md").read_text()
    start, end = "<!-- readme-bulk-example: start -->", "<!-- readme-bulk-example: end -->"
    code = text[text.index(start) : text.index(end)].split("```python\n", 1)[1].rsplit("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    outage = [await _failed(event_store, conn, job_type="email_send", error="SMTP 451 busy")]
    other = await _failed(event_store, conn, job_type="email_send", error="SMTP 550 no user")

    done = await namespace["retry_smtp_outage"](conn)
    again = await namespace["retry_smtp_outage"](conn)

    assert (done.changed, done.job_ids, again.repeated, again.changed) == (1, outage, True, 0)
    assert (await _state(conn, outage[0])).status == "pending"
    assert (await _state(conn, other)).status == "failed"
