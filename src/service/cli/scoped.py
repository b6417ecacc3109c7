"""The tenant a command acts in: its `--tenant` option, and a transaction acting in it.

Every command that reads or writes tenant data with the application's DSN takes
`--tenant T` (default `default`) and runs its statements inside `acting(conn, T)`,
as the API runs each request's: it sees and changes only T's jobs, events, queues
and counters (and, once the database isolates tenants, sees nothing outside one).
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import asyncpg

from ledger import acting as ledger_acting
from ledger import errors, tenancy

Isolation = Literal["read_committed", "repeatable_read", "serializable"]


def tenant_argument(parser: Any, what: str = "data") -> None:
    """Add `--tenant T` (checked; default `default`) to a command's parser."""
    parser.add_argument(
        "--tenant",
        type=_tenant,
        default=tenancy.DEFAULT,
        help=f"the tenant whose {what} (default: {tenancy.DEFAULT})",
    )


def _tenant(text: str) -> str:
    try:
        return tenancy.checked(text)
    except errors.InvalidTenant as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


@asynccontextmanager
async def acting(
    conn: asyncpg.Connection, tenant: str, *, isolation: Isolation | None = None
) -> AsyncIterator[asyncpg.Connection]:
    """A transaction on `conn` acting in `tenant` until the block ends (committed then)."""
    async with conn.transaction(isolation=isolation):
        await ledger_acting.act_in(conn, tenant)
        yield conn
