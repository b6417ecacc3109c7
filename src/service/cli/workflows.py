"""Workflows from the command line: `ledger workflows submit FILE | show ID | list
[--status S] | cancel ID | retry ID [--from failed|NAME]`, and `ledger replay --workflow
ID` (the whole run's timeline, see `projections.workflow_timeline`).

Like `ledger queues`, the commands work on the database directly, through the same
public submission API as `/api/v1/workflows` (`ledger.submission`), in `--tenant`, as
`--actor` (default `cli:<login name>`). `submit` reads the body of `POST
/api/v1/workflows` (`{"jobs": [...], "id": ...}`) from FILE, or from stdin for `-`.
"""

from __future__ import annotations

import functools
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from ledger import config, database, db, errors, tenancy, wire
from service.cli import scoped


def register(sub: Any) -> None:
    """Add `workflows submit|show|list|cancel|retry` to the parser."""
    from service.cli import queues

    top = sub.add_parser("workflows", help="submit, follow, cancel and retry workflows")
    actions = top.add_subparsers(dest="action", required=True)

    submit_ = actions.add_parser("submit", help="submit a workflow from a JSON file (- for stdin)")
    submit_.add_argument("file", help='a JSON file: {"jobs": [...], "id": optional}')
    show_ = actions.add_parser("show", help="a workflow and each of its jobs as they are now")
    show_.add_argument("workflow_id", type=_workflow_id)
    list_ = actions.add_parser("list", help="the newest workflows")
    list_.add_argument("--status", choices=["running", "completed", "failed", "cancelled"])
    list_.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    cancel_ = actions.add_parser("cancel", help="cancel every job of the workflow not yet ended")
    cancel_.add_argument("workflow_id", type=_workflow_id)
    cancel_.add_argument("--reason", help="recorded on each cancelled job's event")
    retry_ = actions.add_parser(
        "retry", help="re-run the failed jobs (or the named one) and everything downstream"
    )
    retry_.add_argument("workflow_id", type=_workflow_id)
    retry_.add_argument(
        "--from", dest="start", default="failed", help="`failed` (default) or a job's name"
    )
    for parser in (submit_, show_, list_, cancel_, retry_):
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        scoped.tenant_argument(parser, "workflows")
        parser.set_defaults(runner=_runner)
    for parser in (submit_, cancel_, retry_):
        parser.add_argument("--actor", default=queues.default_actor(), help="recorded as the actor")


def _workflow_id(text: str) -> uuid.UUID:
    import argparse

    try:
        return uuid.UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a workflow id") from None


def workflow_id_of(text: str) -> uuid.UUID:
    """A workflow id given as an option's value (ConfigError when it is not one)."""
    try:
        return uuid.UUID(text)
    except ValueError:
        raise errors.ConfigError(f"{text!r} is not a workflow id") from None


def _runner(args: Any) -> Any:
    return functools.partial(
        act,
        action=args.action,
        workflow_id=getattr(args, "workflow_id", None),
        file=getattr(args, "file", None),
        status=getattr(args, "status", None),
        limit=getattr(args, "limit", 50),
        reason=getattr(args, "reason", None),
        start=getattr(args, "start", "failed"),
        actor=getattr(args, "actor", "cli"),
        as_json=args.json,
        tenant=args.tenant,
    )


def read_request(file: str) -> wire.WorkflowRequest:
    """The request in `file` (`-`: stdin), checked as the API checks its body."""
    try:
        raw = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as exc:
        raise errors.ConfigError(f"cannot read {file}: {exc.strerror}") from None
    try:
        return msgspec.json.decode(raw, type=wire.WorkflowRequest)
    except msgspec.ValidationError as exc:
        raise errors.InvalidInput(f"{file}: {exc}", []) from None
    except msgspec.DecodeError as exc:
        raise errors.InvalidInput(f"{file} is not JSON: {exc}", []) from None


async def act(
    settings: config.Settings,
    *,
    action: str,
    workflow_id: uuid.UUID | None,
    file: str | None,
    status: wire.WorkflowStatus | None,
    limit: int,
    reason: str | None,
    start: str,
    actor: str,
    as_json: bool,
    tenant: str = tenancy.DEFAULT,
) -> int:
    from ledger import jobtypes, submission, workflows

    request = read_request(file) if action == "submit" and file is not None else None
    if request is not None:
        jobtypes.load_handlers(settings.handler_modules)
    submitter = submission.DEFAULT
    out: wire.WorkflowOut | None = None
    found: list[wire.WorkflowSummary] = []
    async with database.open_database(settings) as database_:
        async with db.connect(database_.app_dsn) as conn, scoped.acting(conn, tenant):
            if request is not None:
                out = await submitter.submit_workflow(
                    conn, request.jobs, workflow_id=request.id, actor=actor, built=False
                )
            elif action == "list":
                found = await workflows.page(conn, status=status, limit=max(1, min(limit, 500)))
            else:
                assert workflow_id is not None
                if action == "show":
                    out = await submitter.workflow(conn, workflow_id)
                elif action == "cancel":
                    out = await submitter.cancel_workflow(
                        conn, workflow_id, reason=reason, actor=actor
                    )
                else:
                    out = await submitter.retry_workflow(
                        conn, workflow_id, start=start, actor=actor
                    )
    if as_json:
        body: Any = out if out is not None else wire.WorkflowList(workflows=found)
        print(msgspec.json.encode(body).decode())
        return 0
    if out is None:
        print(render_list(found))
    else:
        print(render(out))
    return 0


def render(out: wire.WorkflowOut) -> str:
    """A workflow and its jobs, in submission order, as an aligned table."""
    header = ("NAME", "JOB ID", "STATUS", "DEPENDS ON", "ON FAILURE")
    rows = [
        (
            j.name,
            str(j.job_id),
            j.status,
            ",".join(j.depends_on) or "-",
            j.on_upstream_failure,
        )
        for j in out.jobs
    ]
    lines = [f"workflow {out.id}  status {out.status}  jobs {len(out.jobs)}"]
    lines.extend(_table(header, rows))
    return "\n".join(lines)


def render_list(found: list[wire.WorkflowSummary]) -> str:
    header = ("WORKFLOW", "STATUS", "JOBS", "SUBMITTED (UTC)", "BY")
    rows = [
        (
            str(w.id),
            w.status,
            str(w.jobs),
            w.submitted_at.strftime("%Y-%m-%d %H:%M:%S"),
            w.submitted_by,
        )
        for w in found
    ]
    return "\n".join(_table(header, rows)) if rows else "no workflows"


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


async def replay(
    settings: config.Settings, *, workflow_id: uuid.UUID, as_json: bool, tenant: str
) -> int:
    """`ledger replay --workflow ID`: every job's events, interleaved in ledger order."""
    from ledger import store, workflows
    from projections import workflow_timeline

    async with database.open_database(settings) as database_:
        async with db.connect(database_.app_dsn) as conn, scoped.acting(conn, tenant):
            workflow = await workflows.read(conn, workflow_id)
            names = {j.job_id: j.name for j in workflow.jobs}
            histories = await store.EventStore().histories(conn, list(names))
    steps = workflow_timeline.build(names, histories)
    if as_json:
        body = {
            "workflow_id": str(workflow_id),
            "status": workflow.status,
            "steps": [{**msgspec.to_builtins(s), "note": workflow_timeline.note(s)} for s in steps],
        }
        print(msgspec.json.encode(body).decode())
        return 0
    print(f"workflow {workflow_id}  status {workflow.status}  jobs {len(workflow.jobs)}")
    print(workflow_timeline.render(steps))
    return 0
