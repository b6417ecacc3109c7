"""A workflow's whole run as one timeline (issue #18): every job's events interleaved by
their ledger position, each step naming its job, and each unblocking, cascade
cancellation and skip naming the upstream job (by its name in the workflow) and the
event that caused it (that job's version and event type, and the event's hash)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from ledger import store
from projections import timeline


class Cause(msgspec.Struct, frozen=True, kw_only=True):
    """The upstream event a dependency decision cites."""

    job: str  # the upstream job's name in the workflow (its id when not of it)
    job_id: uuid.UUID
    status: str  # how it ended
    hash: str
    version: int | None = None  # of the causing event, None when not found in the run
    event: str | None = None


class WorkflowStep(msgspec.Struct, frozen=True, kw_only=True):
    """One event of one of the workflow's jobs, with the job's status right after it."""

    job: str
    job_id: uuid.UUID
    step: timeline.Step
    cause: Cause | None = None


def build(
    names: Mapping[uuid.UUID, str], histories: Mapping[uuid.UUID, Sequence[store.Recorded]]
) -> list[WorkflowStep]:
    """The steps of every job of `histories` (by job id, oldest first) in ledger order."""
    by_hash: dict[str, tuple[uuid.UUID, timeline.Step]] = {}
    lines: list[tuple[uuid.UUID, timeline.Step]] = []
    for job_id, history in histories.items():
        for step in timeline.build(job_id, history).steps:
            by_hash[step.hash] = (job_id, step)
            lines.append((job_id, step))
    lines.sort(key=lambda line: line[1].position)
    out = []
    for job_id, step in lines:
        out.append(
            WorkflowStep(
                job=names.get(job_id, str(job_id)),
                job_id=job_id,
                step=step,
                cause=_cause(step.data, names, by_hash),
            )
        )
    return out


def _cause(
    data: dict[str, Any],
    names: Mapping[uuid.UUID, str],
    by_hash: Mapping[str, tuple[uuid.UUID, timeline.Step]],
) -> Cause | None:
    upstream, hash_ = data.get("upstream_job_id"), data.get("cause")
    if upstream is None or hash_ is None:
        return None
    upstream_id = uuid.UUID(str(upstream))
    found = by_hash.get(str(hash_))
    return Cause(
        job=names.get(upstream_id, str(upstream_id)),
        job_id=upstream_id,
        status=str(data.get("upstream_status")),
        hash=str(hash_),
        version=None if found is None else found[1].version,
        event=None if found is None else found[1].event,
    )


def note(step: WorkflowStep) -> str | None:
    """Why the step happened, for a person; dependency decisions name their cause."""
    c = step.cause
    if c is None:
        return step.step.note
    by = f"{c.job!r} v{c.version} {c.event}" if c.event else f"job {c.job_id}"
    cited = f"(caused by {by}, event {c.hash[:16]})"
    match step.step.event:
        case "job.unblocked.v1":
            return f"unblocked: its last dependency {c.job!r} ended {c.status} {cited}"
        case "job.skipped.v1":
            return f"skipped: dependency {c.job!r} ended {c.status} {cited}"
        case "job.cancelled.v1":
            return f"cancelled by the cascade: dependency {c.job!r} ended {c.status} {cited}"
    return step.step.note


def render(steps: Sequence[WorkflowStep]) -> str:
    """The run as an aligned table for a terminal, a `why:` line under explained steps."""
    header = ("POSITION", "TIME (UTC)", "JOB", "VER", "EVENT", "ACTOR", "STATUS AFTER")
    rows = [
        (
            str(s.step.position),
            s.step.occurred_at.strftime("%Y-%m-%d %H:%M:%S.%f"),
            s.job,
            str(s.step.version),
            s.step.event,
            s.step.actor,
            s.step.status,
        )
        for s in steps
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row, step in zip([header, *rows], [None, *steps], strict=True):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        why = None if step is None else note(step)
        if why:
            lines.append(f"    why: {why}")
    return "\n".join(lines)
