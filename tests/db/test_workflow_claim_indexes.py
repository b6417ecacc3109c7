"""The claim's partial indexes leave out workflow jobs that cannot run (sql/0079): neither
due index holds a blocked or skipped job, a queue holding only such jobs is no claim
group, and every statement the claim runs still walks an index (auto_explain)."""

from __future__ import annotations

import asyncpg
import msgspec
import pytest

from ledger import submission
from tests.db.test_workflows import fail, job
from tests.db.test_workflows import submitter as submitter  # the fixture

DUE_INDEXES = ("jobs_queue_due_idx", "jobs_key_due_idx")


async def test_blocked_and_skipped_jobs_are_in_no_due_index_and_make_no_claim_group(
    conn: asyncpg.Connection, admin_conn: asyncpg.Connection, submitter: submission.Submitter
) -> None:
    for name in DUE_INDEXES:
        definition = await admin_conn.fetchval("SELECT pg_get_indexdef($1::regclass)", name)
        assert "'blocked'" in definition and "'skipped'" in definition, definition
    downstream = [
        msgspec.structs.replace(j, queue="downstream")
        for j in [*(job(f"wait{i}", "a") for i in range(3)), job("skips", "a", mode="skip")]
    ]
    out = await submitter.submit_workflow(conn, [job("a"), *downstream], actor="app")
    groups = "SELECT jobs_groups_of('default', 'downstream')"
    assert await admin_conn.fetchval(groups) == []  # only blocked jobs: nothing to claim
    assert await admin_conn.fetchval("SELECT jobs_groups_of('default', 'default')") == [None]

    await fail(conn, out.jobs[0].job_id)  # "a" fails: the waits cancelled, "skips" skipped
    statuses = await admin_conn.fetch("SELECT DISTINCT status FROM jobs WHERE queue = 'downstream'")
    assert {r["status"] for r in statuses} == {"cancelled", "skipped"}
    assert await admin_conn.fetchval(groups) == []


@pytest.mark.parametrize("keyed", [False, True])
async def test_every_statement_of_the_claim_walks_an_index(
    conn: asyncpg.Connection,
    admin_conn: asyncpg.Connection,
    submitter: submission.Submitter,
    keyed: bool,
) -> None:
    key = "k" if keyed else None
    jobs = [
        msgspec.structs.replace(j, concurrency_key=key)
        for j in [job("a"), job("b", "a"), job("c", "b")]
    ]
    await submitter.submit_workflow(conn, jobs, actor="app")
    plans: list[str] = []
    admin_conn.add_log_listener(lambda _c, message: plans.append(message.message))
    for setting in (
        "LOAD 'auto_explain'",
        "SET auto_explain.log_min_duration = 0",
        "SET auto_explain.log_nested_statements = on",
        "SET auto_explain.log_level = notice",
    ):
        await admin_conn.execute(setting)
    async with admin_conn.transaction():
        claimed = await admin_conn.fetch("SELECT (c.job).job_id FROM jobs_claim(10, '{step}') AS c")
    assert len(claimed) == 1
    on_jobs = [p for p in plans if " on jobs" in p]
    assert on_jobs, plans
    walked = DUE_INDEXES[1] if keyed else DUE_INDEXES[0]
    assert any(walked in p for p in on_jobs), on_jobs
    for p in on_jobs:
        assert "Seq Scan on jobs" not in p, p
        assert "Bitmap Heap Scan on jobs" not in p, p
