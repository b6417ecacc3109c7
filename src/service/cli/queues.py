"""Queues from the command line: `ledger queues list | show NAME | set NAME [limits] |
pause NAME [--reason R] | resume NAME`.

The commands work on the database directly (like `ledger replay`), through the same
functions as the HTTP API (`ledger.queues` to change settings, by events;
`projections.queues` to read them with the counts). Their actor is `--actor`, by
default `cli:<login name>`. `set` changes only the limits given and keeps the others.
"""

from __future__ import annotations

import argparse
import functools
import getpass
import re
from typing import TYPE_CHECKING, Any, Final

import msgspec

from ledger import config, database, db, errors, tenancy, wire
from ledger import events as ev
from service.cli import scoped

if TYPE_CHECKING:
    from ledger.queues import QueueState

NONE: Final = "none"
_RATE: Final = re.compile(r"^(\d+)/(\d+(?:\.\d+)?)([smhd]?)(?::(\d+))?$")
_UNIT: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_SETTINGS: Final = ("concurrency", "rate_limit", "per_key_concurrency", "fairness", "retry_policy")


def default_actor() -> str:
    """`cli:<login name>`, the actor of the events these commands append."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name (a container's numeric uid)
        return "cli"


def count_or_none(text: str) -> int | None:
    """A limit's value: a whole number, or `none` for no such limit."""
    if text.strip().lower() == NONE:
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a whole number nor 'none'") from None


def policy_or_none(text: str) -> dict[str, Any] | None:
    """A retry policy as JSON (`{"maximum_attempts": 10, "jitter": "full"}`), or `none`."""
    if text.strip().lower() == NONE:
        return None
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("a retry policy is a JSON object")
    return value


def rate_or_none(text: str) -> wire.RateLimitIn | None:
    """`L/P[:B]`: at most L claims per P (seconds, or with a unit: 30s, 1m, 1h, 1d), in
    bursts of up to B (default L); `none` for no rate limit."""
    if text.strip().lower() == NONE:
        return None
    match = _RATE.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not LIMIT/PERIOD[:BURST] (like 50/1s, 100/1m:20) or 'none'"
        )
    limit, amount, unit, burst = match.groups()
    return wire.RateLimitIn(
        limit=int(limit),
        period_seconds=float(amount) * _UNIT[unit],
        burst=None if burst is None else int(burst),
    )


def register(sub: Any) -> None:
    """Add `queues …` to the parser."""
    top = sub.add_parser("queues", help="queues' limits, pause and resume, and their jobs")
    actions = top.add_subparsers(dest="action", required=True)

    def command(name: str, help_text: str, *, named: bool = True) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = actions.add_parser(name, help=help_text)
        if named:
            parser.add_argument("name", help="the queue's name")
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        scoped.tenant_argument(parser, "queues")
        return parser

    listing = command("list", "every queue with settings or jobs", named=False)
    listing.set_defaults(
        runner=lambda args: functools.partial(list_queues, as_json=args.json, tenant=args.tenant)
    )
    showing = command("show", "a queue's limits, state and jobs by status")
    showing.set_defaults(
        runner=lambda args: functools.partial(
            show, name=args.name, as_json=args.json, tenant=args.tenant
        )
    )

    setting = command("set", "change the limits given; the others stay as they are")
    setting.add_argument(
        "--concurrency",
        default=argparse.SUPPRESS,
        type=count_or_none,
        metavar="N|none",
        help="at most N of the queue's jobs processing at once, across all workers",
    )
    setting.add_argument(
        "--rate-limit",
        default=argparse.SUPPRESS,
        type=rate_or_none,
        metavar="L/P[:B]|none",
        help="at most L claims per P seconds (or 1m, 1h), bursts of up to B (default L)",
    )
    setting.add_argument(
        "--per-key-concurrency",
        default=argparse.SUPPRESS,
        type=count_or_none,
        metavar="N|none",
        help="at most N processing at once per concurrency_key",
    )
    setting.add_argument(
        "--fairness",
        default=argparse.SUPPRESS,
        choices=["fifo", "round_robin"],
        help="fifo (oldest first) or round_robin across concurrency keys",
    )
    setting.add_argument(
        "--retry-policy",
        default=argparse.SUPPRESS,
        type=policy_or_none,
        metavar="JSON|none",
        help="its jobs' retry policy where their submission names none of a field, e.g. "
        '\'{"maximum_attempts": 10, "initial_interval_seconds": 5}\'',
    )
    setting.set_defaults(
        runner=lambda args: functools.partial(
            set_limits,
            name=args.name,
            # A flag not given leaves no attribute (SUPPRESS); `none` is given, as None.
            changes={field: getattr(args, field) for field in _SETTINGS if hasattr(args, field)},
            actor=args.actor,
            as_json=args.json,
            tenant=args.tenant,
        )
    )
    pausing = command("pause", "stop claiming the queue's jobs (running ones finish)")
    pausing.add_argument("--reason", help="recorded on the queue.paused.v1 event")
    pausing.set_defaults(
        runner=lambda args: functools.partial(
            pause,
            name=args.name,
            reason=args.reason,
            actor=args.actor,
            as_json=args.json,
            tenant=args.tenant,
        )
    )
    resuming = command("resume", "claim the queue's jobs again")
    resuming.set_defaults(
        runner=lambda args: functools.partial(
            resume, name=args.name, actor=args.actor, as_json=args.json, tenant=args.tenant
        )
    )
    for changing in (setting, pausing, resuming):
        changing.add_argument(
            "--actor",
            default=default_actor(),
            help="who is recorded as making the change (default: cli:<login name>)",
        )


# -- output ------------------------------------------------------------------------------


def rate_text(rate: ev.RateLimit | None) -> str:
    """A rate limit as `set --rate-limit` takes it (`50/1s:10`), or `-`."""
    if rate is None:
        return "-"
    return f"{rate.limit}/{rate.period_seconds:g}s:{rate.burst}"


def _limit(value: int | None) -> str:
    return "-" if value is None else str(value)


def table(queues: list[wire.QueueOut]) -> str:
    """The queues, one line each, under a header."""
    header = (
        "QUEUE",
        "STATE",
        "CONCURRENCY",
        "RATE_LIMIT",
        "PER_KEY",
        "FAIRNESS",
        "PENDING",
        "RETRYING",
        "RUNNING",
        "VERSION",
    )
    rows = [header] + [
        (
            q.name,
            "paused" if q.paused else "active",
            _limit(q.concurrency),
            rate_text(q.rate_limit),
            _limit(q.per_key_concurrency),
            q.fairness,
            str(q.counts["pending"]),
            str(q.counts["retrying"]),
            str(q.running),
            str(q.version),
        )
        for q in queues
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def details(queue: wire.QueueOut) -> str:
    """One queue, a field a line."""
    changed = (
        f"version {queue.version}, by {queue.updated_by} at {queue.updated_at:%Y-%m-%d %H:%M:%S%z}"
        if queue.updated_at is not None
        else "version 0 (never configured)"
    )
    lines = [
        f"queue {queue.name}  {'PAUSED' if queue.paused else 'active'}  ({changed})",
        f"  concurrency          {_limit(queue.concurrency)}",
        f"  rate limit           {rate_text(queue.rate_limit)}",
        f"  per-key concurrency  {_limit(queue.per_key_concurrency)}",
        f"  fairness             {queue.fairness}",
        "  retry policy         "
        + (
            msgspec.json.encode(queue.retry_policy).decode()
            if queue.retry_policy is not None
            else "none (job types' and defaults)"
        ),
        f"  running              {queue.running}",
        "  jobs                 "
        + "  ".join(f"{status} {n}" for status, n in queue.counts.items()),
    ]
    return "\n".join(lines)


def _print(value: wire.QueueOut | wire.QueueList, as_json: bool) -> None:
    if as_json:
        print(msgspec.json.encode(value).decode())
    elif isinstance(value, wire.QueueList):
        print(table(value.queues))
    else:
        print(details(value))


# -- the commands ------------------------------------------------------------------------


async def list_queues(
    settings: config.Settings, *, as_json: bool, tenant: str = tenancy.DEFAULT
) -> int:
    from projections import queues as queue_view

    async with database.open_database(settings) as database_:
        async with db.connect(database_.app_dsn) as conn, scoped.acting(conn, tenant):
            listed = await queue_view.list_all(conn)
    _print(listed, as_json)
    return 0


async def show(
    settings: config.Settings, *, name: str, as_json: bool, tenant: str = tenancy.DEFAULT
) -> int:
    from projections import queues as queue_view

    async with database.open_database(settings) as database_:
        async with db.connect(database_.app_dsn) as conn, scoped.acting(conn, tenant):
            queue = await queue_view.get(conn, name)
    _print(queue, as_json)
    return 0


def merged(current: QueueState | None, changes: dict[str, Any]) -> wire.QueueSettings:
    """The queue's settings now (`current`; None: never configured) with `changes` applied,
    checked like a PUT body (InvalidInput naming the flag's field)."""
    fields: dict[str, Any] = {}
    if current is not None:
        rate = current.rate_limit
        fields = {
            "concurrency": current.concurrency,
            "rate_limit": None
            if rate is None
            else {"limit": rate.limit, "period_seconds": rate.period_seconds, "burst": rate.burst},
            "per_key_concurrency": current.per_key_concurrency,
            "fairness": current.fairness,
            "retry_policy": None
            if current.retry_policy is None
            else msgspec.to_builtins(current.retry_policy),
        }
    for field, value in changes.items():
        fields[field] = msgspec.to_builtins(value) if value is not None else None
    try:
        return msgspec.convert(
            {k: v for k, v in fields.items() if v is not None}, wire.QueueSettings
        )
    except msgspec.ValidationError as exc:
        raise errors.InvalidInput(f"invalid queue settings: {exc}", []) from None


async def set_limits(
    settings: config.Settings,
    *,
    name: str,
    changes: dict[str, Any],
    actor: str,
    as_json: bool,
    tenant: str = tenancy.DEFAULT,
) -> int:
    from ledger import queues, submission
    from projections import queues as queue_view

    if not changes:
        raise errors.ConfigError(
            "nothing to set: give --concurrency, --rate-limit, --per-key-concurrency, "
            "--fairness or --retry-policy"
        )
    async with database.open_database(settings) as database_:
        async with db.connect(database_.app_dsn) as conn:
            # One snapshot for the read and the write: a change by someone else between
            # them makes the append a VersionConflict instead of being overwritten.
            async with scoped.acting(conn, tenant, isolation="repeatable_read"):
                current = await queues.current(conn, queues.checked_name(name))
                wanted = merged(current, changes)
                state = await submission.configure_queue(conn, name, wanted, actor=actor)
            async with scoped.acting(conn, tenant):
                queue = await queue_view.shown(conn, state)
    _print(queue, as_json)
    return 0


async def pause(
    settings: config.Settings,
    *,
    name: str,
    reason: str | None,
    actor: str,
    as_json: bool,
    tenant: str = tenancy.DEFAULT,
) -> int:
    from ledger import submission
    from projections import queues as queue_view

    async with database.open_database(settings) as database_:
        async with db.connect(database_.app_dsn) as conn, scoped.acting(conn, tenant):
            state = await submission.pause_queue(conn, name, actor=actor, reason=reason)
            queue = await queue_view.shown(conn, state)
    _print(queue, as_json)
    return 0


async def resume(
    settings: config.Settings,
    *,
    name: str,
    actor: str,
    as_json: bool,
    tenant: str = tenancy.DEFAULT,
) -> int:
    from ledger import submission
    from projections import queues as queue_view

    async with database.open_database(settings) as database_:
        async with db.connect(database_.app_dsn) as conn, scoped.acting(conn, tenant):
            state = await submission.resume_queue(conn, name, actor=actor)
            queue = await queue_view.shown(conn, state)
    _print(queue, as_json)
    return 0
