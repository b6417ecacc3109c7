"""Small builders shared by tests."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from ledger import commands, store


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
