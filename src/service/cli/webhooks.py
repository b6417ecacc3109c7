"""Webhook endpoints from the command line: `ledger webhooks list | create URL --event E
... | enable ID | deliveries ID | redeliver DELIVERY_ID`, each `[--tenant T]`.

The commands work on the database directly, through the same functions as the HTTP API
(`ledger.webhooks`: every change an event, acting in tenant T, `default` by default);
their actor is `--actor`, by default `cli:<login name>`. Output is JSON. `create` checks
the URL with the senders' SSRF guard (WEBHOOK_ALLOWED_NETWORKS) and prints the secret,
the only time it is shown.
"""

from __future__ import annotations

import argparse
import functools
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import msgspec

from ledger import acting, config, database, db, store, tenancy
from service.cli.queues import default_actor


def register(sub: Any) -> None:
    """Add `webhooks …` to the parser."""
    top = sub.add_parser("webhooks", help="webhook endpoints and their deliveries")
    actions = top.add_subparsers(dest="action", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = actions.add_parser(name, help=help_text)
        parser.add_argument("--tenant", default=tenancy.DEFAULT, help="default: default")
        parser.add_argument("--actor", default=default_actor(), help="who is recorded")
        return parser

    listing = command("list", "the tenant's endpoints (never their secrets)")
    listing.set_defaults(runner=lambda a: _run(a, _list))
    creating = command("create", "register an endpoint; prints its secret once")
    creating.add_argument("url")
    creating.add_argument(
        "--event",
        action="append",
        required=True,
        choices=["job.completed", "job.failed", "job.cancelled", "job.retrying"],
    )
    creating.add_argument("--queue", action="append", help="only these queues' jobs")
    creating.add_argument("--description")
    creating.set_defaults(runner=lambda a: _run(a, _create))
    enabling = command("enable", "enable a disabled endpoint again")
    enabling.add_argument("endpoint_id", type=uuid.UUID)
    enabling.set_defaults(runner=lambda a: _run(a, _enable))
    listing_d = command("deliveries", "an endpoint's deliveries, newest first")
    listing_d.add_argument("endpoint_id", type=uuid.UUID)
    listing_d.set_defaults(runner=lambda a: _run(a, _deliveries))
    again = command("redeliver", "send a delivery again (same webhook-id and body)")
    again.add_argument("delivery_id", type=uuid.UUID)
    again.set_defaults(runner=lambda a: _run(a, _redeliver))


Action = Callable[[asyncpg.Connection, store.EventStore, argparse.Namespace], Awaitable[Any]]


def _run(args: argparse.Namespace, action: Action) -> Callable[[config.Settings], Awaitable[int]]:
    return functools.partial(_main, args=args, action=action)


async def _main(settings: config.Settings, *, args: argparse.Namespace, action: Action) -> int:
    args.allowed_networks = settings.webhook_allowed_networks
    async with database.open_database(settings) as database_:
        async with db.connect(database_.app_dsn) as conn, conn.transaction():
            await acting.act_in(conn, args.tenant)
            shown = await action(conn, store.EventStore(), args)
    print(msgspec.json.encode(shown).decode())
    return 0


async def _list(conn: asyncpg.Connection, _store: store.EventStore, _a: argparse.Namespace) -> Any:
    from ledger import webhooks

    return await webhooks.list_all(conn)


async def _create(conn: asyncpg.Connection, events: store.EventStore, a: argparse.Namespace) -> Any:
    from ledger import webhooks
    from workers import webhooks as sender

    spec = webhooks.EndpointIn(url=a.url, events=a.event, queues=a.queue, description=a.description)
    vet = sender.vetter(sender.networks(a.allowed_networks))
    return await webhooks.create(conn, events, spec, actor=a.actor, vet=vet)


async def _enable(conn: asyncpg.Connection, events: store.EventStore, a: argparse.Namespace) -> Any:
    from ledger import webhooks

    async def unchanged(url: str) -> None:
        """The URL does not change here."""

    patch = webhooks.EndpointPatch(disabled=False)
    return await webhooks.update(conn, events, a.endpoint_id, patch, actor=a.actor, vet=unchanged)


async def _deliveries(
    conn: asyncpg.Connection, _store: store.EventStore, a: argparse.Namespace
) -> Any:
    from ledger import webhooks

    return await webhooks.deliveries(conn, a.endpoint_id)


async def _redeliver(
    conn: asyncpg.Connection, events: store.EventStore, a: argparse.Namespace
) -> Any:
    from ledger import webhooks

    return await webhooks.redeliver(conn, events, a.delivery_id, actor=a.actor)
