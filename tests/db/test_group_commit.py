"""Group commit: concurrent appends share transactions, each answered after its own commit."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import msgspec
import pytest
import pytest_asyncio

from ledger import commands, db, errors, groupcommit, store
from ledger import events as ev
from tests import factories
from tests.conftest import Databases


@pytest_asyncio.fixture(loop_scope="session")
async def pool(dbs: Databases) -> AsyncIterator[asyncpg.Pool]:
    p = await db.create_pool(dbs.app, max_size=4)
    try:
        yield p
    finally:
        await p.close()


def _submission() -> list[ev.JobEvent]:
    return commands.decide(
        None,
        factories.submit_command(),
        job_id=uuid.uuid4(),
        actor="http",
        now=datetime.now(UTC),
    )


async def test_concurrent_submissions_share_commits_and_each_gets_its_own_events(
    pool: asyncpg.Pool, conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    committer = groupcommit.GroupCommit(pool, event_store)
    submissions = [_submission() for _ in range(40)]
    results = await asyncio.gather(*(committer.append(s) for s in submissions))
    for events, recorded in zip(submissions, results, strict=True):
        # Each waiter gets its own events back, at the time the database recorded them.
        assert [
            msgspec.structs.replace(r.event, occurred_at=e.occurred_at)
            for r, e in zip(recorded, events, strict=True)
        ] == events
    # Answered means committed: every job is visible to another connection now.
    assert await conn.fetchval("SELECT count(*) FROM jobs") == 40
    transactions = await conn.fetchval("SELECT count(DISTINCT txid) FROM events")
    assert transactions < 40


async def test_a_conflicting_submission_fails_alone(
    pool: asyncpg.Pool, conn: asyncpg.Connection, event_store: store.EventStore
) -> None:
    committer = groupcommit.GroupCommit(pool, event_store)
    taken = _submission()
    await event_store.append(conn, taken)
    others = [_submission() for _ in range(5)]
    outcomes = await asyncio.gather(
        committer.append(taken), *(committer.append(s) for s in others), return_exceptions=True
    )
    assert isinstance(outcomes[0], errors.VersionConflict)
    assert all(isinstance(o, list) and len(o) == 1 for o in outcomes[1:])
    assert await conn.fetchval("SELECT count(*) FROM jobs") == 6


async def test_a_lost_database_fails_every_waiter_instead_of_hanging(
    dbs: Databases, event_store: store.EventStore
) -> None:
    p = await db.create_pool(dbs.app, max_size=1)
    await p.close()
    committer = groupcommit.GroupCommit(p, event_store)
    with pytest.raises(asyncpg.InterfaceError):
        await asyncio.wait_for(committer.append(_submission()), timeout=10)
