"""The database and what is derived in it: `ledger migrate`, `ledger schema dump`,
`ledger db-reset`, `ledger verify` (the hash chains) and `ledger projections verify|rebuild`."""

from __future__ import annotations

import asyncio
import functools
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import msgspec

from ledger import config, database, db, embedded, errors, migrations, schema, tenancy
from service.cli import scoped


def register(sub: Any) -> None:
    """Add `migrate`, `schema dump`, `db-reset`, `verify` and `projections` to the parser."""
    sub.add_parser("migrate", help="apply pending migrations").set_defaults(
        runner=lambda _args: migrate
    )
    chain = sub.add_parser("verify", help="recompute every job's hash chain")
    chain.add_argument(
        "--since-checkpoint",
        type=int,
        metavar="N",
        help="only the events after checkpoint N (their hashes, and links among them)",
    )
    scoped.tenant_argument(chain, "chains")
    chain.set_defaults(
        runner=lambda args: functools.partial(
            verify_chains, since_checkpoint=args.since_checkpoint, tenant=args.tenant
        )
    )
    proj = sub.add_parser("projections", help="check or rebuild the current-state view")
    proj_sub = proj.add_subparsers(dest="action", required=True)
    checking = proj_sub.add_parser(
        "verify", help="rebuild into a scratch table and diff with the live view"
    )
    scoped.tenant_argument(checking, "jobs and counters")
    checking.set_defaults(
        runner=lambda args: functools.partial(projections_verify, tenant=args.tenant)
    )
    proj_sub.add_parser(
        "rebuild", help="replace the live view with the fold of the events"
    ).set_defaults(runner=lambda _args: projections_rebuild)
    dump = sub.add_parser("schema", help="the schema the migrations produce")
    dump_sub = dump.add_subparsers(dest="action", required=True)
    dumping = dump_sub.add_parser("dump", help="print it (sql/schema.sql is kept equal to it)")
    dumping.add_argument("--output", help="write it to this file instead")
    dumping.set_defaults(runner=lambda args: functools.partial(schema_dump, output=args.output))
    reset = sub.add_parser(
        "db-reset", help="delete the database and start afresh (destroys history)"
    )
    reset.add_argument("--yes", action="store_true", help="do not ask (required off embedded)")
    reset.set_defaults(runner=lambda args: functools.partial(db_reset, confirmed=args.yes))


async def migrate(settings: config.Settings) -> int:
    async with database.open_database(settings, migrate=False) as database_:
        async with db.connect(database_.admin_dsn) as conn:
            applied = await migrations.migrate(conn)
    print("applied: " + ", ".join(applied) if applied else "up to date")
    return 0


async def verify_chains(
    settings: config.Settings,
    since_checkpoint: int | None = None,
    tenant: str = tenancy.DEFAULT,
) -> int:
    from audit import chains, checkpoints, resume
    from service import wiring

    if since_checkpoint is not None:
        verifier = wiring.signer(settings)
        async with database.open_database(settings) as database_:
            async with (
                db.connect(database_.app_dsn) as conn,
                scoped.acting(conn, tenant, isolation="repeatable_read"),
            ):
                since = await resume.checkpoint(conn, verifier, since_checkpoint)
                walked = await checkpoints.verify(conn, verifier, since=since, check_chains=True)
        links = [f for f in walked.findings if f.kind in ("content", "link", "gap")]
        for finding in links:
            print(f"BROKEN {finding.message}")
        print(f"{walked.events} events since {since.name()}, {len(links)} broken links")
        return 0 if not links else 1
    async with database.open_database(settings) as database_:
        async with (
            db.connect(database_.app_dsn) as conn,
            scoped.acting(conn, tenant, isolation="repeatable_read"),
        ):
            report = await chains.verify(conn)
    for link in report.broken:
        print(f"BROKEN {link.describe()}")
    print(f"{report.jobs} jobs, {report.events} events, {len(report.broken)} broken chains")
    return 0 if report.ok else 1


async def projections_verify(settings: config.Settings, tenant: str = tenancy.DEFAULT) -> int:
    from projections import rebuild

    async with database.open_database(settings) as database_:
        async with (
            db.connect(database_.app_dsn) as conn,
            scoped.acting(conn, tenant, isolation="repeatable_read"),
        ):
            diffs = await rebuild.verify(conn)
            counters = await rebuild.verify_counters(conn, datetime.now(UTC))
    encoder = msgspec.json.Encoder()
    for diff in diffs:
        print(encoder.encode(diff).decode())
    for counter in counters:
        print(encoder.encode(counter).decode())
    print("projection matches the events" if not diffs else f"{len(diffs)} rows differ")
    print("counters match" if not counters else f"{len(counters)} counters differ")
    return 0 if not diffs and not counters else 1


async def projections_rebuild(settings: config.Settings) -> int:
    """Rebuild as the owner: the application's role writes nothing into the view (sql/0056)
    nor into the other projections it rebuilds."""
    from projections import rebuild

    async with database.open_database(settings) as database_:
        async with db.connect(database_.admin_dsn) as conn:
            try:
                count = await rebuild.rebuild(conn)
            except asyncpg.InsufficientPrivilegeError as exc:
                raise errors.ConfigError(
                    "only the schema's owner may rebuild the jobs view: run "
                    "`ledger projections rebuild` with MIGRATE_DATABASE_URL set to the "
                    f"owner's connection ({exc})"
                ) from exc
    print(
        f"rebuilt the jobs view and its counters: {count} jobs; the queues, tenants, "
        "schedules, workflow and webhook tables from their events"
    )
    return 0


async def schema_dump(settings: config.Settings, *, output: str | None) -> int:
    """Write the schema the migrations produce (sql/schema.sql is this, kept current)."""
    async with database.open_database(settings) as database_:
        text = await schema.dump(database_.admin_dsn)
    if output is None:
        sys.stdout.write(text)
    else:
        await asyncio.to_thread(Path(output).write_text, text, "utf-8")
        print(f"wrote {output}")
    return 0


async def db_reset(settings: config.Settings, *, confirmed: bool) -> int:
    """Delete the ledger's database and start it afresh (asks first; external servers need --yes)."""
    if settings.database_url is not None:
        if not confirmed:
            print(
                "ledger: refusing to reset the database at DATABASE_URL without confirmation; "
                "run `make db-reset CONFIRM=yes` (or `ledger db-reset --yes`)",
                file=sys.stderr,
            )
            return 2
        applied = await database.reset_server(
            settings.migrate_database_url or settings.database_url
        )
        print(f"database reset; applied: {', '.join(applied)}")
        return 0
    pg = embedded.EmbeddedPostgres(settings.data_dir, settings.pg_port)
    if not confirmed:
        if not sys.stdin.isatty():
            print("ledger: not resetting without confirmation: pass --yes", file=sys.stderr)
            return 2
        question = f"Delete the embedded database in {pg.cluster_dir}? Type 'yes': "
        answer = await asyncio.to_thread(input, question)
        if answer.strip() != "yes":
            print("not reset")
            return 1
    existed = pg.destroy()
    print(f"deleted {pg.cluster_dir}" if existed else f"no database in {pg.cluster_dir}")
    return 0
