"""Queues' settings change by events and bind the claim, in the database (sql/0059)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import asyncpg
import msgspec
import pytest

from audit import chains
from ledger import commands, errors, queues, store, submission, wire
from ledger import events as ev
from projections import rebuild
from tests import factories
from tests.conftest import Databases
from tests.workers.conftest import eventually
from workers import claims


async def _submit(
    event_store: store.EventStore, conn: asyncpg.Connection, n: int, **fields: object
) -> list[uuid.UUID]:
    return [await factories.submit(event_store, conn, **fields) for _ in range(n)]


async def _claim(
    event_store: store.EventStore, conn: asyncpg.Connection, limit: int, worker: str = "w1"
) -> list[uuid.UUID]:
    states = await claims.claim(
        conn, event_store, worker_id=worker, lease_seconds=30, types=["noop"], limit=limit
    )
    return [s.job_id for s in states]


async def _complete(
    event_store: store.EventStore, conn: asyncpg.Connection, job_id: uuid.UUID
) -> None:
    state = await event_store.load(conn, job_id)
    assert state is not None and state.worker_id is not None
    await event_store.execute(
        conn, job_id, commands.CompleteJob(worker_id=state.worker_id, result=None), actor="w"
    )


async def test_settings_change_by_hash_chained_events_and_a_repeat_appends_nothing(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    settings = wire.QueueSettings(
        concurrency=2, rate_limit=wire.RateLimitIn(limit=5, period_seconds=1)
    )
    state = await queues.configure(conn, event_store, "mail", settings, actor="admin")
    assert (state.version, state.concurrency) == (1, 2)
    assert state.rate_limit == ev.RateLimit(limit=5, period_seconds=1.0, burst=5)
    again = await queues.configure(conn, event_store, "mail", settings, actor="admin")
    assert again.version == 1
    paused = await queues.pause(conn, event_store, "mail", actor="ops", reason="incident")
    assert (paused.version, paused.paused, paused.concurrency) == (2, True, 2)
    assert (await queues.pause(conn, event_store, "mail", actor="ops")).version == 2
    resumed = await queues.resume(conn, event_store, "mail", actor="ops")
    assert (resumed.version, resumed.paused) == (3, False)

    history = await event_store.history(conn, queues.stream_id("mail"))
    assert [ev.type_tag(r.event) for r in history] == [
        "queue.configured.v1",
        "queue.paused.v1",
        "queue.resumed.v1",
    ]
    assert [r.event.actor for r in history] == ["admin", "ops", "ops"]
    assert history[1].prev_hash == history[0].hash
    assert (await chains.verify(conn)).ok
    assert await queues.current(conn, "mail") == resumed
    assert await rebuild.verify(conn) == []


async def test_a_racing_change_of_one_queue_is_a_version_conflict(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await queues.pause(conn, event_store, "q", actor="a")
    stale = ev.QueueResumed(
        job_id=queues.stream_id("q"),
        version=1,
        actor="b",
        occurred_at=event_store.clock(),
        queue="q",
    )
    with pytest.raises(errors.VersionConflict):
        await event_store.append(conn, [stale])


async def test_an_invalid_queue_name_is_refused(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    with pytest.raises(errors.InvalidInput):
        await queues.pause(conn, event_store, "no spaces", actor="a")


async def test_a_paused_queue_keeps_its_jobs_pending_and_other_queues_run(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    held = await _submit(event_store, conn, 3, queue="held")
    free = await _submit(event_store, conn, 2, queue="free")
    await queues.pause(conn, event_store, "held", actor="ops")
    assert sorted(await _claim(event_store, conn, 10)) == sorted(free)
    await queues.resume(conn, event_store, "held", actor="ops")
    assert sorted(await _claim(event_store, conn, 10)) == sorted(held)


async def test_the_concurrency_limit_counts_what_runs_now(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await _submit(event_store, conn, 5, queue="lim")
    other = await _submit(event_store, conn, 2, queue="other")
    await queues.configure(conn, event_store, "lim", wire.QueueSettings(concurrency=2), actor="a")
    first = await _claim(event_store, conn, 10)
    assert len(first) == 4 and set(other) <= set(first)  # a limited queue blocks no other
    assert await _claim(event_store, conn, 10) == []
    limited = [j for j in first if j not in other]
    await _complete(event_store, conn, limited[0])
    assert len(await _claim(event_store, conn, 10)) == 1
    # Raising the limit takes effect at the next claim.
    await queues.configure(conn, event_store, "lim", wire.QueueSettings(concurrency=4), actor="a")
    assert len(await _claim(event_store, conn, 10)) == 2


async def test_per_key_concurrency_lets_each_key_run_its_share(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await _submit(event_store, conn, 6, queue="k", concurrency_key="acme")
    await _submit(event_store, conn, 2, queue="k", concurrency_key="globex")
    await _submit(event_store, conn, 2, queue="k")
    await queues.configure(
        conn, event_store, "k", wire.QueueSettings(per_key_concurrency=2), actor="a"
    )
    claimed = await _claim(event_store, conn, 10)
    keys = Counter([(await event_store.load(conn, j)).concurrency_key for j in claimed])  # type: ignore[union-attr]
    assert keys == {"acme": 2, "globex": 2, None: 2}
    assert await _claim(event_store, conn, 10) == []


async def test_round_robin_serves_a_small_key_before_a_big_keys_backlog(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await queues.configure(
        conn, event_store, "rr", wire.QueueSettings(fairness="round_robin"), actor="a"
    )
    big = await _submit(event_store, conn, 20, queue="rr", concurrency_key="big")
    first = await _claim(event_store, conn, 1)
    assert first == [big[0]]
    small = await _submit(event_store, conn, 1, queue="rr", concurrency_key="small")
    # "big" was served last: "small"'s one job goes before big's 19 older ones.
    assert await _claim(event_store, conn, 1) == small
    # With "small" idle, "big" drains at full speed: a claim of 10 takes 10.
    assert len(await _claim(event_store, conn, 10)) == 10


async def test_round_robin_serves_a_key_served_less_recently_than_a_key_that_drained_alone(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    """A key that drains alone keeps taking turns: once it has been served after "b",
    b's next job goes first, also to a claim of one job (sql/0062)."""
    await queues.configure(
        conn, event_store, "rr", wire.QueueSettings(fairness="round_robin"), actor="a"
    )
    a = await _submit(event_store, conn, 10, queue="rr", concurrency_key="a")
    b = await _submit(event_store, conn, 1, queue="rr", concurrency_key="b")
    assert sorted(await _claim(event_store, conn, 2)) == sorted([a[0], b[0]])
    assert await _claim(event_store, conn, 1) == [a[1]]  # "a" alone, served after "b"
    assert await _claim(event_store, conn, 1) == [a[2]]
    later = await _submit(event_store, conn, 1, queue="rr", concurrency_key="b")
    assert await _claim(event_store, conn, 1) == later
    assert await _claim(event_store, conn, 1) == [a[3]]


async def test_round_robin_alternates_keys_within_one_claim(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await queues.configure(
        conn, event_store, "rr", wire.QueueSettings(fairness="round_robin"), actor="a"
    )
    a = await _submit(event_store, conn, 5, queue="rr", concurrency_key="a")
    b = await _submit(event_store, conn, 5, queue="rr", concurrency_key="b")
    claimed = await _claim(event_store, conn, 4)
    assert sorted(claimed) == sorted(a[:2] + b[:2])


async def test_the_rate_limit_hands_out_its_burst_then_waits_for_tokens(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await _submit(event_store, conn, 10, queue="slow")
    await queues.configure(
        conn,
        event_store,
        "slow",
        wire.QueueSettings(rate_limit=wire.RateLimitIn(limit=1, period_seconds=3600, burst=3)),
        actor="a",
    )
    assert len(await _claim(event_store, conn, 10)) == 3
    assert await _claim(event_store, conn, 10) == []
    delay = await conn.fetchval("SELECT jobs_next_due(ARRAY['noop'], 0)")
    assert 3000 < delay <= 3600  # the next token, not the due jobs, sets the alarm


async def test_a_queue_at_its_limit_sets_no_alarm_and_a_finishing_job_notifies(
    conn: asyncpg.Connection, admin_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await _submit(event_store, conn, 3, queue="lim")
    await queues.configure(conn, event_store, "lim", wire.QueueSettings(concurrency=1), actor="a")
    [running] = await _claim(event_store, conn, 10)
    assert await conn.fetchval("SELECT jobs_next_due(ARRAY['noop'], 0)") is None
    notified: list[str] = []
    await admin_conn.add_listener("ledger_jobs", lambda *args: notified.append(args[2]))
    await _complete(event_store, conn, running)
    await admin_conn.execute("SELECT 1")  # deliver pending notifications
    assert notified
    assert len(await _claim(event_store, conn, 10)) == 1


async def test_rebuilding_the_projections_gives_back_the_queues(
    conn: asyncpg.Connection, admin_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    await queues.configure(
        conn, event_store, "a", wire.QueueSettings(concurrency=3, fairness="round_robin"), actor="x"
    )
    await queues.pause(conn, event_store, "b", actor="y")
    before = await admin_conn.fetch("SELECT * FROM queues ORDER BY name")
    await rebuild.rebuild(admin_conn)
    assert await admin_conn.fetch("SELECT * FROM queues ORDER BY name") == before
    assert await rebuild.verify(admin_conn) == []


async def test_a_first_configure_with_the_defaults_is_recorded(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    state = await queues.configure(conn, event_store, "plain", wire.QueueSettings(), actor="a")
    assert state.version == 1
    assert await queues.current(conn, "plain") == state


async def _claim_buffers(conn: asyncpg.Connection, limit: int) -> int:
    """Shared buffers one claim reads (its nested statements included), by EXPLAIN."""
    plan = await conn.fetchval(
        "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT * FROM jobs_claim_next($1, ARRAY['noop'])",
        limit,
    )
    node = msgspec.json.decode(plan)[0]["Plan"]
    return int(node["Shared Hit Blocks"]) + int(node["Shared Read Blocks"])


async def test_a_claim_reads_no_restricted_backlog_to_reach_other_work(
    admin_conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    """A paused queue's and a busy key's older backlog (5,000 jobs each) are not walked by
    the claims of newer jobs elsewhere: the claim's reads stay a few dozen pages."""
    conn = admin_conn  # EXPLAIN ANALYZE of the SECURITY DEFINER claim, as its owner
    await queues.pause(conn, event_store, "held", actor="ops")
    await queues.configure(
        conn, event_store, "rr", wire.QueueSettings(fairness="round_robin"), actor="ops"
    )
    for _ in range(5):
        await factories.submit_many(event_store, conn, 1000, queue="held")
        await factories.submit_many(event_store, conn, 1000, queue="rr", concurrency_key="big")
    await factories.submit_many(event_store, conn, 1, queue="default")
    await factories.submit_many(event_store, conn, 1, queue="rr", concurrency_key="small")
    await conn.execute("ANALYZE jobs")
    await claims.claim(conn, event_store, worker_id="w", lease_seconds=30, types=["noop"], limit=1)
    # "big" was served; now "small" and the default queue's job are next.
    assert await _claim_buffers(conn, 2) < 100


async def test_a_change_racing_another_is_a_queue_conflict_naming_the_queue(
    conn: asyncpg.Connection, dbs: Databases, event_store: store.EventStore
) -> None:
    await queues.pause(conn, event_store, "q", actor="a")
    other = await asyncpg.connect(dbs.app)
    try:
        async with other.transaction():
            # The other writer appends version 2 and holds it uncommitted while this one
            # reads version 1 and appends its own version 2 (which waits on the first).
            await event_store.append(
                other,
                [
                    ev.QueueResumed(
                        job_id=queues.stream_id("q"),
                        version=2,
                        actor="b",
                        occurred_at=event_store.clock(),
                        queue="q",
                    )
                ],
            )
            racing = asyncio.ensure_future(
                queues.configure(
                    conn, event_store, "q", wire.QueueSettings(concurrency=1), actor="c"
                )
            )
            waiting = "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1"
            pid = conn.get_server_pid()
            await eventually(lambda: other.fetchval(waiting, pid), within=10)
            assert not racing.done()
        with pytest.raises(queues.QueueChanged, match="queue 'q' changed concurrently"):
            await racing
    finally:
        await other.close()
    assert (await queues.current(conn, "q")).version == 2  # type: ignore[union-attr]


async def test_the_public_submission_api_changes_queues_through_its_append(
    conn: asyncpg.Connection,
) -> None:
    submitter = submission.Submitter()
    await submitter.configure_queue(conn, "py", wire.QueueSettings(concurrency=2), actor="app")
    paused = await submitter.pause_queue(conn, "py", reason="deploy", actor="app")
    assert (paused.version, paused.paused, paused.concurrency) == (2, True, 2)
    resumed = await submission.resume_queue(conn, "py", actor="app")
    assert (resumed.version, resumed.paused) == (3, False)
    history = await submitter.store.history(conn, queues.stream_id("py"))
    assert [r.event.actor for r in history] == ["app", "app", "app"]


async def test_a_claim_records_the_queue_settings_it_was_made_under(
    conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    plain = await _submit(event_store, conn, 1, queue="plain")
    limited = await _submit(event_store, conn, 1, queue="lim")
    await queues.configure(conn, event_store, "lim", wire.QueueSettings(concurrency=5), actor="a")
    await queues.pause(conn, event_store, "lim", actor="a")
    await queues.resume(conn, event_store, "lim", actor="a")
    assert sorted(await _claim(event_store, conn, 10)) == sorted(plain + limited)
    data = dict(
        await conn.fetch(
            "SELECT job_id, data FROM events WHERE type = 'job.claimed.v1' AND job_id = ANY($1)",
            plain + limited,
        )
    )
    assert "queue_version" not in msgspec.json.decode(data[plain[0]])  # stored as before
    assert msgspec.json.decode(data[limited[0]])["queue_version"] == 3
    assert (await chains.verify(conn)).ok
    assert await rebuild.verify(conn) == []
