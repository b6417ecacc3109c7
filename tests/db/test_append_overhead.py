"""An append that concerns no feature does none of the features' work (sql/0083).

The feature triggers on `events` (workflows, webhooks, schedules) first read the appended
rows once and run only the parts some row concerns, so a plain job's submission, claim
and completion, the appends of a deployment that uses no feature, take no lock on the
tables of features they do not concern (each statement that reads or writes a table
locks it until the transaction ends: what they lock is what they ran).
"""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from ledger import commands, store

pytestmark = pytest.mark.asyncio(loop_scope="session")

FEATURE_TABLES = [
    "workflows",
    "workflow_jobs",
    "job_dependencies",
    "webhook_endpoints",
    "job_webhooks",
    "webhook_deliveries",
    "schedules",
    "schedule_slots",
]


async def feature_locks(conn: asyncpg.Connection) -> set[tuple[str, str]]:
    """The feature tables this transaction has locked so far, and how."""
    rows = await conn.fetch(
        """
        SELECT c.relname, l.mode
        FROM pg_locks AS l
        JOIN pg_class AS c ON c.oid = l.relation
        WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation'
          AND c.relname = ANY($1::text[])
        """,
        FEATURE_TABLES,
    )
    return {(r["relname"], r["mode"]) for r in rows}


async def test_a_plain_jobs_appends_run_no_feature_statement(conn: asyncpg.Connection) -> None:
    s = store.EventStore()
    job_id = uuid.uuid4()
    steps: list[tuple[commands.Command, set[tuple[str, str]]]] = [
        (commands.SubmitJob(job_type="plain", payload={}, max_attempts=1), set()),
        (commands.ClaimJob(worker_id="w", lease_seconds=60), set()),
        # A completion asks whether the job has dependants and whether any webhook
        # listens (one read each), and writes nothing of either feature.
        (
            commands.CompleteJob(worker_id="w", result=None),
            {
                ("job_dependencies", "AccessShareLock"),
                ("webhook_endpoints", "AccessShareLock"),
                ("job_webhooks", "AccessShareLock"),
            },
        ),
    ]
    for command, expected in steps:
        async with conn.transaction():
            await s.execute(conn, job_id, command, actor="w")
            assert await feature_locks(conn) == expected, type(command).__name__
    assert await conn.fetchval("SELECT status FROM jobs WHERE job_id = $1", job_id) == "completed"
