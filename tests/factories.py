"""Small builders shared by tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from ledger import commands, store
from ledger import events as ev


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
