"""The auditor's commands: `ledger audit checkpoint | checkpoints | export | verify`."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ledger import config, database, db, errors, tenancy
from service.cli import scoped


def register(sub: Any) -> None:
    """Add `audit …` to the parser."""
    aud = sub.add_parser("audit", help="signed checkpoints, audit bundles and their verification")
    aud_sub = aud.add_subparsers(dest="action", required=True)
    take = aud_sub.add_parser("checkpoint", help="sign a checkpoint of a tenant's log now")
    scoped.tenant_argument(take, "log")
    take.set_defaults(runner=lambda args: functools.partial(checkpoint, tenant=args.tenant))
    listing = aud_sub.add_parser("checkpoints", help="list checkpoints and the public key")
    listing.add_argument("--limit", type=int, default=20)
    scoped.tenant_argument(listing, "log")
    listing.set_defaults(
        runner=lambda args: functools.partial(
            list_checkpoints, limit=args.limit, tenant=args.tenant
        )
    )
    exp = aud_sub.add_parser("export", help="write a self-contained, offline-verifiable bundle")
    exp.add_argument("--from", dest="start", help="feed cursor (after it) or ISO time")
    exp.add_argument("--to", dest="end", help="feed cursor or ISO time (default: now)")
    scoped.tenant_argument(exp, "log")
    exp.add_argument("out", help="a new directory, or a path ending in .tar.gz")
    exp.set_defaults(
        runner=lambda args: functools.partial(
            export, out=args.out, start=args.start, end=args.end, tenant=args.tenant
        )
    )
    ver = aud_sub.add_parser(
        "verify", help="check a bundle offline, or (no BUNDLE) the live ledger"
    )
    ver.add_argument("bundle", nargs="?", help="bundle directory or .tar.gz")
    ver.add_argument("--public-key", help="PEM public key you trust (default: the bundle's)")
    ver.add_argument(
        "--trusted-checkpoint",
        action="append",
        default=[],
        metavar="FILE",
        help="a checkpoint you hold (its signed note): the log must extend it (repeatable)",
    )
    ver.add_argument(
        "--since-checkpoint",
        type=int,
        metavar="N",
        help="start from checkpoint N (live only; default: the last one verified here)",
    )
    ver.add_argument("--full", action="store_true", help="verify from the first event (live only)")
    scoped.tenant_argument(ver, "log (live only)")
    ver.set_defaults(
        runner=lambda args: functools.partial(
            verify,
            path=args.bundle,
            public_key=args.public_key,
            trusted_checkpoints=args.trusted_checkpoint,
            since_checkpoint=args.since_checkpoint,
            full=args.full,
            tenant=args.tenant,
        )
    )


async def checkpoint(settings: config.Settings, *, tenant: str = tenancy.DEFAULT) -> int:
    from audit import checkpoints
    from service import wiring

    signer = wiring.signer(settings)
    async with database.open_database(settings) as database_:
        async with db.connect(database_.app_dsn) as conn:
            cp, created = await checkpoints.create(conn, signer, tenant=tenant)
    if cp is None:
        print("no events yet: nothing to checkpoint")
        return 0
    verb = "signed" if created else "nothing new since"
    print(f"{verb} checkpoint {cp.checkpoint_id}: cursor {cp.cursor}, {cp.event_count} events")
    print(f"digest {cp.digest.hex()}")
    print(f"key {cp.key_id} ({settings.audit_key_path})")
    return 0


async def list_checkpoints(
    settings: config.Settings, *, limit: int, tenant: str = tenancy.DEFAULT
) -> int:
    from audit import checkpoints
    from service import wiring

    signer = wiring.signer(settings)
    async with database.open_database(settings) as database_:
        async with db.connect(database_.app_dsn) as conn, scoped.acting(conn, tenant):
            listed = await checkpoints.list_recent(conn, limit)
    print(f"public key {signer.key_id}:")
    print(signer.pem.rstrip())
    for cp in listed:
        print(
            f"{cp.checkpoint_id:>6}  {cp.created_at:%Y-%m-%d %H:%M:%S}  cursor {cp.cursor}  "
            f"{cp.event_count} events  digest {cp.digest.hex()[:16]}…  key {cp.key_id}"
        )
    return 0


def bound(text: str | None) -> Any:
    """A feed cursor (`<txid>.<position>`) or an ISO 8601 instant (UTC when no offset)."""
    from projections import feed

    if text is None:
        return None
    if feed.is_cursor(text):
        return feed.parse_cursor(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise errors.ConfigError(
            f"{text!r} is neither a feed cursor (<txid>.<position>) nor an ISO 8601 time"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def export(
    settings: config.Settings,
    *,
    out: str,
    start: str | None,
    end: str | None,
    tenant: str = tenancy.DEFAULT,
) -> int:
    from audit import bundle
    from service import wiring

    signer = wiring.signer(settings)
    first, last = bound(start), bound(end)
    async with database.open_database(settings) as database_:
        async with db.connect(database_.app_dsn) as conn:
            exported = await bundle.export(
                conn, signer, Path(out), start=first, end=last, tenant=tenant
            )
    begin = f"after checkpoint cursor {exported.start}" if exported.start else "from the start"
    print(
        f"exported {exported.events} events ({begin}, through cursor {exported.end}) "
        f"and {_count(exported.checkpoints, 'checkpoint')} to {exported.path}"
    )
    print(f"signed by key {exported.key_id}")
    return 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _print_report(report: Any) -> None:
    for finding in report.findings:
        print(f"TAMPERED {finding.kind}: {finding.message}")
    through = (
        f"verified through cursor {report.verified_through}"
        if report.verified_through
        else ("nothing verified against a checkpoint")
    )
    print(
        f"{_count(report.events, 'event')}, {_count(report.checkpoints, 'checkpoint')} signed "
        f"by key {report.key_id}; {through}; {_count(len(report.findings), 'problem')}"
    )


async def verify(
    settings: config.Settings,
    *,
    path: str | None,
    public_key: str | None,
    trusted_checkpoints: list[str] | None = None,
    since_checkpoint: int | None = None,
    full: bool = False,
    tenant: str = tenancy.DEFAULT,
) -> int:
    from audit import bundle, chains, checkpoints, note, resume, signing
    from service import wiring

    trusted = signing.public_from_file(Path(public_key)) if public_key else None
    if path is None and trusted is None and not settings.audit_key_path.exists():
        raise errors.ConfigError(
            f"no audit key at {settings.audit_key_path} (LEDGER_AUDIT_KEY): pass --public-key "
            "with the public key the checkpoints were signed with"
        )
    notes = [Path(f) for f in trusted_checkpoints or []]
    if path is not None:  # offline: no database is opened
        if notes and trusted is None:
            raise errors.ConfigError("--trusted-checkpoint needs --public-key for a bundle")
        pins = [_open_note(note, f, trusted) for f in notes] if trusted else []
        report = bundle.verify(Path(path), trusted, pins)
        _print_report(report)
        print("bundle OK" if report.ok else "bundle FAILED verification")
        return 0 if report.ok else 1
    verifier = trusted or wiring.signer(settings)
    pins = [_open_note(note, f, verifier) for f in notes]
    state = resume.path_in(settings.data_dir, tenant)
    recorded = None if full else resume.load(state)
    async with database.open_database(settings) as database_:
        async with (
            db.connect(database_.app_dsn) as conn,
            scoped.acting(conn, tenant, isolation="repeatable_read"),
        ):
            since, recorded_pins = await resume.start(
                conn, verifier, since_checkpoint=since_checkpoint, recorded=recorded
            )
            pins += recorded_pins
            if since is None:
                chain = await chains.verify(conn)
                report = await checkpoints.verify(conn, verifier, pins=pins)
            else:
                chain = None
                report = await checkpoints.verify(
                    conn, verifier, since=since, pins=pins, check_chains=True
                )
                print(f"from {since.name()}: {_count(report.events, 'event')} since")
            ok = report.ok and (chain is None or chain.ok)
            reached = await resume.newest(
                conn, verifier, (since.event_count if since else 0) + report.events
            )
    for link in chain.broken if chain else []:
        print(f"TAMPERED chain: {link.describe()}")
    _print_report(report)
    if ok and reached is not None:
        resume.save(state, reached)
    print("ledger OK" if ok else "ledger FAILED verification")
    return 0 if ok else 1


def _open_note(note: Any, path: Path, key: Any) -> Any:
    try:
        return note.open_note(path.read_text("utf-8"), key)
    except (OSError, UnicodeDecodeError, note.NoteError) as exc:
        raise errors.ConfigError(f"--trusted-checkpoint {path}: {exc}") from exc
