"""Invariant 1: the events table is append-only, enforced by the database."""

from __future__ import annotations

import asyncpg
import pytest

from ledger import store
from tests import factories


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET actor = 'mallory'",
        "DELETE FROM events",
        "TRUNCATE events",
    ],
)
async def test_application_role_cannot_change_events(
    conn: asyncpg.Connection, event_store: store.EventStore, statement: str
) -> None:
    await factories.submit(event_store, conn)
    # Refused twice over: the role holds no such privilege, and the trigger would refuse anyway.
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
        await conn.execute(statement)
    assert await conn.fetchval("SELECT count(*) FROM events WHERE actor = 'alice'") == 1


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET actor = 'mallory'",
        "DELETE FROM events",
        "TRUNCATE events",
    ],
)
async def test_trigger_refuses_changes_even_for_the_owner(
    admin_conn: asyncpg.Connection,
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    statement: str,
) -> None:
    await factories.submit(event_store, conn)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await admin_conn.execute(statement)
    assert await admin_conn.fetchval("SELECT count(*) FROM events") == 1


@pytest.mark.parametrize(
    "statement",
    [
        "ALTER TABLE events DISABLE TRIGGER events_no_update_delete",
        "DROP TRIGGER events_no_truncate ON events",
        "ALTER TABLE events OWNER TO ledger_test_app",
        "SET session_replication_role = replica",
    ],
)
async def test_application_role_cannot_lift_the_guard(
    conn: asyncpg.Connection, statement: str
) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await conn.execute(statement)
