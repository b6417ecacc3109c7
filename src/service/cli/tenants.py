"""Tenants' settings from the command line: `ledger tenants list | show T | set T
[--max-queued N|none] [--max-running N|none] [--weight W]`.

The commands work on the database directly, through the same functions as the HTTP
API (`ledger.tenants`: a change is a tenant.configured.v1 appended in tenant T). Their
actor is `--actor`, by default `cli:<login name>`. `set` changes only the settings
given and keeps the others; `none` clears a limit. A tenant never configured shows its
defaults with version 0.
"""

from __future__ import annotations

import argparse
import functools
from typing import Any, Final

import msgspec

from ledger import config, database, db, errors, wire
from service.cli.queues import count_or_none, default_actor

_SETTINGS: Final = ("max_queued", "max_running", "weight")


def register(sub: Any) -> None:
    """Add `tenants …` to the parser."""
    top = sub.add_parser("tenants", help="tenants' settings: queued-jobs quota, fair shares")
    actions = top.add_subparsers(dest="action", required=True)

    def command(name: str, help_text: str, *, named: bool = True) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = actions.add_parser(name, help=help_text)
        if named:
            parser.add_argument("tenant", help="the tenant's id")
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        return parser

    listing = command("list", "every configured tenant's settings", named=False)
    listing.set_defaults(runner=lambda args: functools.partial(list_tenants, as_json=args.json))
    showing = command("show", "a tenant's settings")
    showing.set_defaults(
        runner=lambda args: functools.partial(show, tenant=args.tenant, as_json=args.json)
    )
    setting = command("set", "change the settings given; the others stay as they are")
    setting.add_argument(
        "--max-queued",
        default=argparse.SUPPRESS,
        type=count_or_none,
        metavar="N|none",
        help="at most N queued jobs (pending, scheduled, retrying): submissions past it "
        "are refused (HTTP 429)",
    )
    setting.add_argument(
        "--max-running",
        default=argparse.SUPPRESS,
        type=count_or_none,
        metavar="N|none",
        help="at most N jobs processing at once (recorded; not enforced by the claim yet)",
    )
    setting.add_argument(
        "--weight",
        default=argparse.SUPPRESS,
        type=int,
        metavar="W",
        help="the tenant's share of the workers, 1 or more (recorded; not used by the claim yet)",
    )
    setting.add_argument(
        "--actor",
        default=default_actor(),
        help="who is recorded as making the change (default: cli:<login name>)",
    )
    setting.set_defaults(
        runner=lambda args: functools.partial(
            set_settings,
            tenant=args.tenant,
            # A flag not given leaves no attribute (SUPPRESS); `none` is given, as None.
            changes={field: getattr(args, field) for field in _SETTINGS if hasattr(args, field)},
            actor=args.actor,
            as_json=args.json,
        )
    )


# -- output ------------------------------------------------------------------------------


def _limit(value: int | None) -> str:
    return "-" if value is None else str(value)


def table(listed: list[wire.TenantOut]) -> str:
    """The tenants, one line each, under a header."""
    header = ("TENANT", "MAX_QUEUED", "MAX_RUNNING", "WEIGHT", "VERSION")
    rows = [header] + [
        (t.tenant, _limit(t.max_queued), _limit(t.max_running), str(t.weight), str(t.version))
        for t in listed
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def details(tenant: wire.TenantOut) -> str:
    """One tenant, a field a line."""
    changed = (
        f"version {tenant.version}, by {tenant.updated_by} at "
        f"{tenant.updated_at:%Y-%m-%d %H:%M:%S%z}"
        if tenant.updated_at is not None
        else "version 0 (never configured)"
    )
    return "\n".join(
        [
            f"tenant {tenant.tenant}  ({changed})",
            f"  max queued   {_limit(tenant.max_queued)}",
            f"  max running  {_limit(tenant.max_running)}",
            f"  weight       {tenant.weight}",
        ]
    )


def _print(value: wire.TenantOut | wire.TenantList, as_json: bool) -> None:
    if as_json:
        print(msgspec.json.encode(value).decode())
    elif isinstance(value, wire.TenantList):
        print(table(value.tenants))
    else:
        print(details(value))


# -- the commands ------------------------------------------------------------------------


async def list_tenants(settings: config.Settings, *, as_json: bool) -> int:
    from ledger import tenants

    async with database.open_database(settings) as database_:
        async with db.connect(database_.app_dsn) as conn:
            listed = await tenants.all_tenants(conn)
    _print(wire.TenantList(tenants=[t.shown() for t in listed]), as_json)
    return 0


async def show(settings: config.Settings, *, tenant: str, as_json: bool) -> int:
    from ledger import tenants

    async with database.open_database(settings) as database_:
        async with db.connect(database_.app_dsn) as conn:
            state = await tenants.get(conn, tenant)
    _print(state.shown(), as_json)
    return 0


async def set_settings(
    settings: config.Settings,
    *,
    tenant: str,
    changes: dict[str, Any],
    actor: str,
    as_json: bool,
) -> int:
    from ledger import submission

    if not changes:
        raise errors.ConfigError("nothing to set: give --max-queued, --max-running or --weight")
    async with database.open_database(settings) as database_:
        async with db.connect(database_.app_dsn) as conn:
            state = await submission.configure_tenant(conn, tenant, changes, actor=actor)
    _print(state.shown(), as_json)
    return 0
