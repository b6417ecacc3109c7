"""Small builders shared by tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from ledger import commands, lifecycle, store
from ledger import events as ev
from workers import claims


def submit_command(**overrides: Any) -> commands.SubmitJob:
    fields: dict[str, Any] = {"job_type": "noop", "payload": {"n": 1}}
    fields.update(overrides)
    return commands.SubmitJob(**fields)


async def submit(
    event_store: store.EventStore,
    conn: asyncpg.Connection,
    *,
    actor: str = "alice",
    **overrides: Any,
) -> uuid.UUID:
    job_id = uuid.uuid4()
    await event_store.execute(conn, job_id, submit_command(**overrides), actor=actor)
    return job_id


async def submit_many(
    event_store: store.EventStore,
    conn: asyncpg.Connection,
    count: int,
    *,
    actor: str = "alice",
    **overrides: Any,
) -> list[uuid.UUID]:
    """`count` jobs submitted in one append (one statement); their ids."""
    now = datetime.now(UTC)
    decided: list[ev.JobEvent] = []
    for _ in range(count):
        decided += commands.decide(
            None, submit_command(**overrides), job_id=uuid.uuid4(), actor=actor, now=now
        )
    await event_store.append(conn, decided)
    return [e.job_id for e in decided]


async def claim(
    event_store: store.EventStore, conn: asyncpg.Connection, limit: int, **options: Any
) -> list[lifecycle.JobState]:
    """Up to `limit` due `noop` jobs claimed by worker `w` (`claims.claim`'s `quiet`,
    `tenant`, `key` as given); their states after the claim."""
    return await claims.claim(
        conn,
        event_store,
        worker_id="w",
        lease_seconds=30,
        types=["noop"],
        limit=limit,
        **options,
    )
