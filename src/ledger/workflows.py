"""Workflows: jobs that depend on jobs, submitted together as one DAG (issue #18).

What Python decides: a workflow's shape is checked before anything is written (names
unique, every dependency named in the workflow, no cycle: the cycle is named), each
job gets its id and its submission carries the workflow's id, its name, the ids it
depends on and its `on_upstream_failure`; all of them are appended in one statement.

What the database decides (sql/0077): a job with dependencies starts `blocked`, and in
the transaction that records how its last dependency ended the append's trigger records
`job.unblocked.v1` (or, after a failed or cancelled dependency, `job.cancelled.v1` or
`job.skipped.v1` by the job's `on_upstream_failure`), naming the upstream job and the
hash of the event that decided it. Whoever ended the dependency (a worker, a cancel, a
lease expiry, any command) needs to do nothing more.

A workflow's status comes from its jobs': `running` while any may still run, then
`failed` if any failed, `cancelled` if any was cancelled, else `completed`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Final

import asyncpg
import msgspec

from ledger import commands, errors, lifecycle, sqlfile, wire

Q = sqlfile.load("ledger")
MAX_JOBS: Final = wire.MAX_WORKFLOW
ENDED: Final = lifecycle.TERMINAL
_json = msgspec.json.Decoder()


def checked(jobs: Sequence[wire.WorkflowJobIn]) -> dict[str, list[str]]:
    """Each job's dependencies by its name; InvalidInput naming every field at fault
    (a duplicate name, a dependency not in the workflow, a cycle, a delay on a job that
    waits for others), or the whole list when it is empty or past MAX_JOBS."""
    if not 1 <= len(jobs) <= MAX_JOBS:
        raise errors.InvalidInput.at("jobs", f"a workflow has 1 to {MAX_JOBS} jobs")
    invalid: list[errors.FieldError] = []
    index: dict[str, int] = {}
    for i, job in enumerate(jobs):
        if job.name in index:
            invalid.append(
                errors.FieldError(
                    path=f"jobs[{i}].name",
                    message=f"name {job.name!r} is taken by jobs[{index[job.name]}]",
                )
            )
        else:
            index[job.name] = i
    for i, job in enumerate(jobs):
        if len(set(job.depends_on)) != len(job.depends_on):
            invalid.append(
                errors.FieldError(path=f"jobs[{i}].depends_on", message="a name given twice")
            )
        for k, name in enumerate(job.depends_on):
            if name not in index:
                invalid.append(
                    errors.FieldError(
                        path=f"jobs[{i}].depends_on[{k}]",
                        message=f"no job of the workflow is named {name!r}",
                    )
                )
        if job.depends_on and (job.run_at is not None or job.delay_seconds is not None):
            invalid.append(
                errors.FieldError(
                    path=f"jobs[{i}].{'run_at' if job.run_at is not None else 'delay_seconds'}",
                    message="a job with dependencies runs when they end: give no run_at or delay",
                )
            )
    if invalid:
        raise errors.InvalidInput(f"the workflow is invalid: {invalid[0].message}", invalid)
    graph = {job.name: list(dict.fromkeys(job.depends_on)) for job in jobs}
    cycle = find_cycle(graph)
    if cycle is not None:
        path = " → ".join([*cycle, cycle[0]])
        raise errors.InvalidInput.at(
            f"jobs[{index[cycle[0]]}].depends_on", f"the dependencies form a cycle: {path}"
        )
    return graph


def find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """One cycle of `graph` (name → the names it depends on) in order, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in graph:
        if root in state:
            continue
        path: list[str] = []
        stack: list[tuple[str, int]] = [(root, 0)]
        while stack:
            node, at = stack.pop()
            if at == 0:
                state[node] = 1
                path.append(node)
            deps = graph[node]
            if at < len(deps):
                stack.append((node, at + 1))
                nxt = deps[at]
                if state.get(nxt) == 1:
                    return path[path.index(nxt) :]
                if nxt not in state:
                    stack.append((nxt, 0))
            else:
                state[node] = 2
                path.pop()
    return None


def topological(graph: dict[str, list[str]]) -> list[str]:
    """The names of an acyclic `graph`, each after all it depends on."""
    order: list[str] = []
    done: set[str] = set()
    for root in graph:
        stack = [(root, iter(graph[root]))]
        if root in done:
            continue
        while stack:
            node, deps = stack[-1]
            nxt = next((d for d in deps if d not in done), None)
            if nxt is None:
                stack.pop()
                if node not in done:
                    done.add(node)
                    order.append(node)
            else:
                stack.append((nxt, iter(graph[nxt])))
    return order


def with_workflow(
    wanted: Sequence[commands.SubmitJob],
    jobs: Sequence[wire.WorkflowJobIn],
    *,
    workflow_id: uuid.UUID,
    job_ids: dict[str, uuid.UUID],
) -> list[commands.SubmitJob]:
    """The workflow's submissions: each job's, carrying the workflow's id and its place in it."""
    return [
        msgspec.structs.replace(
            command,
            workflow_id=workflow_id,
            name=job.name,
            depends_on=[job_ids[name] for name in job.depends_on] or None,
            on_upstream_failure=job.on_upstream_failure,
        )
        for command, job in zip(wanted, jobs, strict=True)
    ]


async def read(conn: asyncpg.Connection, workflow_id: uuid.UUID) -> wire.WorkflowOut:
    """The workflow as it is now, in the tenant `conn`'s transaction acts in; UnknownWorkflow."""
    rows = await conn.fetch(Q["workflow_jobs_list"], workflow_id)
    if not rows:
        raise errors.UnknownWorkflow(workflow_id)
    jobs = [
        wire.WorkflowJobOut(
            name=row["name"],
            job_id=row["job_id"],
            status=row["status"],
            depends_on=list(row["depends_on"]),
            on_upstream_failure=row["on_upstream_failure"],
            result=None if row["result"] is None else _json.decode(row["result"]),
            error=row["error"],
        )
        for row in rows
    ]
    return wire.WorkflowOut(id=workflow_id, status=status_of(j.status for j in jobs), jobs=jobs)


def status_of(statuses: Iterable[str]) -> wire.WorkflowStatus:
    """A workflow's status from its jobs' (see the module)."""
    seen = set(statuses)
    if seen - ENDED:
        return "running"
    if "failed" in seen:
        return "failed"
    if "cancelled" in seen:
        return "cancelled"
    return "completed"


async def page(
    conn: asyncpg.Connection, *, status: str | None, limit: int
) -> list[wire.WorkflowSummary]:
    """The tenant's newest workflows (of `status` when given)."""
    rows = await conn.fetch(Q["workflows_list"], status, limit)
    return [
        wire.WorkflowSummary(
            id=row["workflow_id"],
            status=row["status"],
            jobs=row["jobs"],
            submitted_by=row["submitted_by"],
            submitted_at=row["submitted_at"],
        )
        for row in rows
    ]


def graph_of(workflow: wire.WorkflowOut) -> dict[str, list[str]]:
    return {job.name: job.depends_on for job in workflow.jobs}


def to_cancel(workflow: wire.WorkflowOut) -> list[wire.WorkflowJobOut]:
    """The jobs a cancel of the workflow ends, downstream ones first (so none is let run
    by the end of what it waits for while the cancel goes on)."""
    by_name = {job.name: job for job in workflow.jobs}
    order = reversed(topological(graph_of(workflow)))
    return [by_name[name] for name in order if by_name[name].status not in ENDED]


def to_rerun(workflow: wire.WorkflowOut, start: str) -> list[tuple[wire.WorkflowJobOut, bool]]:
    """What a retry from `start` (`failed`, or a job's name) re-runs, in dependency order:
    each ended job of the start set and of everything downstream of it, with whether it
    goes back to blocked (it has dependencies: it waits for them, or is decided at once
    when they have all ended, sql/0078); WorkflowConflict when there is nothing to re-run."""
    by_name = {job.name: job for job in workflow.jobs}
    if start == "failed":
        seeds = {job.name for job in workflow.jobs if job.status == "failed"}
        if not seeds:
            raise errors.WorkflowConflict(workflow.id, "no job failed: nothing to retry")
    elif start in by_name:
        seeds = {start}
    else:
        raise errors.InvalidInput.at("from", f"no job of the workflow is named {start!r}")
    downstream: dict[str, list[str]] = {name: [] for name in by_name}
    for job in workflow.jobs:
        for dep in job.depends_on:
            downstream[dep].append(job.name)
    reached = set(seeds)
    stack = list(seeds)
    while stack:
        for child in downstream[stack.pop()]:
            if child not in reached:
                reached.add(child)
                stack.append(child)
    order = topological(graph_of(workflow))
    # Every re-run job with dependencies goes back to blocked, a start job too: the
    # database lets it run at once if they have all completed (sql/0078), else when they do.
    rerun = [
        (by_name[name], bool(by_name[name].depends_on))
        for name in order
        if name in reached and by_name[name].status in ENDED
    ]
    if not rerun:
        raise errors.WorkflowConflict(
            workflow.id, f"nothing downstream of {start!r} has ended: nothing to retry"
        )
    return rerun
