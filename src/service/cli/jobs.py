"""Jobs from the command line: `ledger seed` (sample jobs), `ledger replay` (a job's
timeline, its state at an instant, and a local re-run of its handler), and `ledger jobs
retry|cancel` (the jobs matching a filter, through `ledger.bulk` like the API's bulk
routes, on the database directly, as `--actor`)."""

from __future__ import annotations

import argparse
import functools
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from ledger import config, database, db, errors, tenancy, wire
from service.cli import audit, scoped


def register(sub: Any) -> None:
    """Add `seed`, `replay` and `jobs retry|cancel` to the parser."""
    _register_bulk(sub)
    sample = sub.add_parser("seed", help="submit sample jobs of every registered job type")
    sample.add_argument("--count", type=int, default=1, help="jobs of each type (default 1)")
    scoped.tenant_argument(sample, "jobs")
    sample.set_defaults(
        runner=lambda args: functools.partial(seed, per_type=args.count, tenant=args.tenant)
    )
    rep = sub.add_parser(
        "replay",
        help="a job's timeline (or a workflow's, --workflow ID); --run re-runs its handler locally",
    )
    rep.add_argument("job_id", nargs="?")
    rep.add_argument(
        "--workflow",
        metavar="ID",
        help="the workflow's whole run instead: every job's events in ledger order",
    )
    rep.add_argument("--as-of", help="show the job as it was at this ISO time")
    rep.add_argument("--json", action="store_true", help="machine-readable output")
    rep.add_argument(
        "--run",
        action="store_true",
        help="run the handler on the recorded payload; nothing is written to the ledger",
    )
    rep.add_argument(
        "--storage-root",
        help="storage the handler reads and writes with --run (default: STORAGE_ROOT)",
    )
    scoped.tenant_argument(rep, "job")
    rep.set_defaults(runner=_replay_runner)


def _replay_runner(args: Any) -> Any:
    if args.workflow is not None:
        from service.cli import workflows

        if args.job_id is not None or args.run or args.as_of:
            raise errors.ConfigError("--workflow takes no job id, --run or --as-of")
        return functools.partial(
            workflows.replay,
            workflow_id=workflows.workflow_id_of(args.workflow),
            as_json=args.json,
            tenant=args.tenant,
        )
    if args.job_id is None:
        raise errors.ConfigError("replay takes a job id, or --workflow ID")
    return functools.partial(
        replay,
        job_id=args.job_id,
        as_of=args.as_of,
        as_json=args.json,
        run=args.run,
        storage_root=args.storage_root,
        tenant=args.tenant,
    )


async def seed(settings: config.Settings, *, per_type: int, tenant: str = tenancy.DEFAULT) -> int:
    from ledger import jobtypes, submission
    from workers import seed as samples

    jobtypes.load_handlers(settings.handler_modules)

    async with database.open_database(settings) as database_:
        async with db.connect(database_.app_dsn) as conn, scoped.acting(conn, tenant):
            seeded = await samples.seed(
                conn, submission.DEFAULT, settings.storage, per_type=per_type
            )
    for name, job_id in seeded.submitted:
        print(f"submitted {name} {job_id}")
    for name, reason in seeded.skipped:
        print(f"skipped {name}: {reason}", file=sys.stderr)
    return 0


async def replay(
    settings: config.Settings,
    *,
    job_id: str,
    as_of: str | None,
    as_json: bool,
    run: bool,
    storage_root: str | None = None,
    tenant: str = tenancy.DEFAULT,
) -> int:
    import uuid

    from ledger import jobtypes, rerun, store, webhooks
    from projections import timeline

    try:
        job = uuid.UUID(job_id)
    except ValueError:
        raise errors.ConfigError(f"{job_id!r} is not a job id") from None
    instant = audit.bound(as_of) if as_of else None
    if instant is not None and not hasattr(instant, "tzinfo"):
        raise errors.ConfigError("--as-of takes an ISO 8601 time, not a feed cursor")
    async with database.open_database(settings) as database_:
        async with db.connect(database_.app_dsn) as conn, scoped.acting(conn, tenant):
            history = await store.EventStore().history(conn, job)
            # What the job's webhooks stand at now (one indexed read; not for --as-of).
            deliveries = (
                None if instant is not None else await webhooks.deliveries_of_job(conn, job)
            )
        if not history:
            raise errors.UnknownJob(job)
        line = timeline.build(job, history, instant)
        if line.state is None:
            raise errors.LedgerError(f"job {job} had not been submitted at {as_of}")
        outcome = None
        if run:
            jobtypes.load_handlers(settings.handler_modules)
            # Handlers that read the ledger (data_export) get a pool that cannot write.
            pool = await db.create_pool(
                database_.app_dsn, max_size=2, read_only=True, name="job-ledger-rerun"
            )
            try:
                outcome = await rerun.run_locally(
                    line.state,
                    storage_root=Path(storage_root) if storage_root else settings.storage,
                    pool=pool,
                    upstream=rerun.recorded_upstream(
                        [r.event for r in history if r.position <= line.steps[-1].position]
                    ),
                )
            finally:
                await pool.close()
    recorded = rerun.recorded_outcome(line.state)
    if as_json:
        body: dict[str, Any] = {"job_id": str(job), "as_of": as_of, "steps": line.steps}
        if deliveries is not None:
            body["webhook_deliveries"] = deliveries
        if run:
            body["recorded"] = recorded
            body["replayed"] = outcome
        print(msgspec.json.encode(body).decode())
        return 0
    state = line.state
    when = f"  (as of {instant.isoformat()})" if instant is not None else ""
    print(f"job {job}  type {state.type}  queue {state.queue}  status {state.status}{when}")
    print(timeline.render(line))
    if deliveries:
        print("\nwebhook deliveries (now):")
        for delivery in deliveries:
            print(f"  {webhooks.describe(delivery)}")
    if outcome is not None:
        encode = msgspec.json.Encoder(order="sorted").encode
        print("\nreplayed locally (nothing written to the ledger):")
        for label, o in (("recorded", recorded), ("replayed", outcome)):
            if o is None:
                print(f"  {label:<9} (no finished attempt)")
            elif o.status == "completed":
                print(f"  {label:<9} completed  result {encode(o.result).decode()}")
            elif o.status == "snoozed":
                why = f": {o.error}" if o.error else ""
                print(f"  {label:<9} snoozed    for {o.snooze_seconds:g} s{why}")
            else:
                print(f"  {label:<9} failed     error {o.error}")
        same = recorded is not None and (recorded.status, recorded.result, recorded.error) == (
            outcome.status,
            outcome.result,
            outcome.error,
        )
        print("  same outcome" if same else "  DIFFERENT outcome")
    return 0


# -- ledger jobs retry | cancel ------------------------------------------------------------


def _instant(text: str) -> datetime:
    """An ISO 8601 time; one without an offset is UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _register_bulk(sub: Any) -> None:
    from service.cli import queues

    top = sub.add_parser("jobs", help="retry or cancel the jobs that match a filter")
    actions = top.add_subparsers(dest="action", required=True)
    for action, statuses in (
        ("retry", "failed or cancelled"),
        ("cancel", "pending, retrying or processing"),
    ):
        parser = actions.add_parser(
            action, help=f"{action} up to --limit jobs ({statuses}) matching every filter given"
        )
        parser.add_argument("--status", required=True, help=f"the jobs' status ({statuses})")
        parser.add_argument("--type", dest="job_type", help="the job type")
        parser.add_argument("--queue", help="the queue")
        parser.add_argument("--error-contains", help="text the job's last error contains")
        if action == "retry":
            parser.add_argument("--failed-before", type=_instant, help="ended before this ISO time")
            parser.add_argument("--failed-after", type=_instant, help="ended after this ISO time")
        else:
            parser.add_argument("--reason", help="recorded on each cancelled job's event")
        parser.add_argument(
            "--limit",
            type=int,
            default=wire.DEFAULT_BULK_LIMIT,
            help=f"at most this many jobs, oldest first (default {wire.DEFAULT_BULK_LIMIT}, "
            f"most {wire.MAX_BULK})",
        )
        parser.add_argument(
            "--request-id",
            help="the request's id (default: a new one); repeating it changes nothing more",
        )
        parser.add_argument("--actor", default=queues.default_actor(), help="recorded as the actor")
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        scoped.tenant_argument(parser, "jobs")
        parser.set_defaults(runner=_bulk_runner)


def _bulk_runner(args: Any) -> Any:
    fields = {
        "status": args.status,
        "type": args.job_type,
        "queue": args.queue,
        "error_contains": args.error_contains,
        "failed_before": getattr(args, "failed_before", None),
        "failed_after": getattr(args, "failed_after", None),
    }
    return functools.partial(
        bulk_action,
        action=args.action,
        fields={k: v for k, v in fields.items() if v is not None},
        limit=args.limit,
        request_id=args.request_id,
        reason=getattr(args, "reason", None),
        actor=args.actor,
        as_json=args.json,
        tenant=args.tenant,
    )


async def bulk_action(
    settings: config.Settings,
    *,
    action: wire.BulkAction,
    fields: dict[str, Any],
    limit: int,
    request_id: str | None,
    reason: str | None,
    actor: str,
    as_json: bool,
    tenant: str = tenancy.DEFAULT,
) -> int:
    from ledger import bulk, submission

    try:
        job_filter = msgspec.convert(fields, wire.BulkFilter)
    except msgspec.ValidationError as exc:
        raise errors.InvalidInput(f"invalid filter: {exc}", []) from None
    request_id = submission.checked_key(request_id, field="--request-id")
    async with database.open_database(settings) as database_:
        async with db.connect(database_.app_dsn) as conn:
            done = await bulk.act(
                conn,
                submission.DEFAULT.store,
                action,
                job_filter,
                limit=limit,
                request_id=request_id,
                reason=reason,
                actor=actor,
                tenant=tenant,
            )
    if as_json:
        print(msgspec.json.encode(done).decode())
        return 0
    verb = "retried" if action == "retry" else "cancelled"
    if done.repeated:
        print(
            f"request {done.request_id} was carried out before: nothing more changed "
            f"({len(done.job_ids)} jobs {verb} under it)"
        )
    else:
        print(f"{verb} {done.changed} of {done.matched} matching jobs (request {done.request_id})")
    for job_id in done.job_ids:
        print(job_id)
    return 0
