"""Schedules from the command line: `ledger schedules list | show ID | create ID (--cron E |
--interval S) --job-file job.json | pause ID | resume ID | trigger ID | backfill ID --start
--end | history ID | delete ID`.

The commands work on the database directly (like `ledger queues`), through the same
functions as the HTTP API (`ledger.schedules`): every change is an event of the
schedule's stream whose actor is `--actor` (default `cli:<login name>`). `history`
prints the schedule's timeline, its changes and each slot's outcome, as `ledger replay`
prints a job's.
"""

from __future__ import annotations

import argparse
import functools
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import msgspec

from ledger import config, database, db, errors, tenancy
from service.cli import scoped
from service.cli.queues import default_actor

if TYPE_CHECKING:
    from ledger.schedules import ScheduleOut, SlotOut

RECENT: Final = 10  # slot outcomes `show` prints


def register(sub: Any) -> None:
    """Add `schedules …` to the parser."""
    top = sub.add_parser("schedules", help="schedules: cron or interval jobs, slot by slot")
    actions = top.add_subparsers(dest="action", required=True)

    def command(name: str, help_text: str, *, named: bool = True) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = actions.add_parser(name, help=help_text)
        if named:
            parser.add_argument("schedule_id", metavar="ID", help="the schedule's id")
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        scoped.tenant_argument(parser, "schedules")
        return parser

    def changing(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument(
            "--actor",
            default=default_actor(),
            help="who is recorded as making the change (default: cli:<login name>)",
        )
        return parser

    def runs(parser: argparse.ArgumentParser, function: Any, *fields: str) -> None:
        parser.set_defaults(
            runner=lambda args: functools.partial(
                function,
                **{f: getattr(args, f) for f in fields},
                as_json=args.json,
                tenant=args.tenant,
            )
        )

    runs(command("list", "every live schedule", named=False), list_schedules)
    showing = command("show", "a schedule, its next slot and its last slots' outcomes")
    runs(showing, show, "schedule_id")

    creating = changing(command("create", "create a schedule firing the job of --job-file"))
    when = creating.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", help="5 fields, or 6 with seconds first ('*/5 * * * *')")
    when.add_argument("--interval", type=float, metavar="SECONDS", help="every SECONDS")
    creating.add_argument(
        "--job-file",
        required=True,
        type=Path,
        help="the job it fires, as POST /api/v1/jobs takes it (type, payload, queue, ...)",
    )
    creating.add_argument("--timezone", help="IANA name for the cron's wall time (default UTC)")
    creating.add_argument(
        "--overlap",
        choices=["skip", "buffer_one", "buffer_all", "cancel_other", "allow_all"],
        help="when the previous job is still active (default skip)",
    )
    creating.add_argument(
        "--catchup-window",
        type=float,
        metavar="SECONDS",
        help="slots older than this when noticed are recorded skipped (default 60)",
    )
    creating.add_argument("--jitter", type=float, metavar="SECONDS", help="delay each job by up to")
    creating.add_argument("--start-at", help="ISO time of the first slot's earliest")
    creating.add_argument("--end-at", help="ISO time of the last slot's latest")
    creating.add_argument("--paused", action="store_true", help="create it paused")
    creating.add_argument("--note", help="recorded on the schedule.created.v1 event")
    runs(
        creating,
        create,
        "schedule_id",
        "cron",
        "interval",
        "job_file",
        "timezone",
        "overlap",
        "catchup_window",
        "jitter",
        "start_at",
        "end_at",
        "paused",
        "note",
        "actor",
    )
    for name, help_text, function in (
        ("pause", "record its slots skipped (paused) until resumed", pause),
        ("resume", "fire again (slots due while paused are recorded skipped)", resume),
        ("delete", "record no more slots", delete),
    ):
        parser = changing(command(name, help_text))
        parser.add_argument("--note", help=f"recorded on the schedule.{name}d.v1 event")
        runs(parser, function, "schedule_id", "note", "actor")
    runs(
        changing(command("trigger", "fire its job now, outside its slots")),
        trigger,
        "schedule_id",
        "actor",
    )
    backfilling = changing(command("backfill", "fire the slots in (START, END] again"))
    backfilling.add_argument("--start", required=True, help="ISO time (exclusive)")
    backfilling.add_argument("--end", required=True, help="ISO time (inclusive)")
    backfilling.add_argument(
        "--overlap",
        choices=["skip", "buffer_one", "buffer_all", "cancel_other", "allow_all"],
        help="default: the schedule's",
    )
    runs(backfilling, backfill, "schedule_id", "start", "end", "overlap", "actor")
    runs(
        command("history", "its timeline: every change and every slot's outcome"),
        history,
        "schedule_id",
    )


# -- input -------------------------------------------------------------------------------


def _time(text: str, field: str) -> datetime:
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise errors.InvalidInput.at(field, f"{text!r} is not an ISO 8601 time") from None
    if instant.tzinfo is None:
        raise errors.InvalidInput.at(field, "needs a timezone (like 2026-05-01T12:00:00Z)")
    return instant


def body(
    schedule_id: str,
    *,
    cron: str | None,
    interval: float | None,
    job: Any,
    **options: Any,
) -> Any:
    """The ScheduleIn the flags describe (InvalidInput naming the field otherwise)."""
    from ledger import schedules

    fields: dict[str, Any] = {"id": schedule_id, "job": job}
    if cron is not None:
        fields["cron"] = cron
    if interval is not None:
        fields["interval_seconds"] = interval
    fields.update({k: v for k, v in options.items() if v is not None and v is not False})
    try:
        return msgspec.convert(fields, schedules.ScheduleIn)
    except msgspec.ValidationError as exc:
        raise errors.InvalidInput(f"invalid schedule: {exc}", []) from None


def _job(path: Path) -> Any:
    try:
        return msgspec.json.decode(path.read_bytes())
    except OSError as exc:
        raise errors.ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except msgspec.DecodeError as exc:
        raise errors.ConfigError(f"{path} is not JSON: {exc}") from None


# -- output ------------------------------------------------------------------------------


def _at(instant: datetime | None) -> str:
    return "-" if instant is None else instant.strftime("%Y-%m-%d %H:%M:%S%z")


def when(schedule: ScheduleOut) -> str:
    """`cron '0 3 * * *' Europe/Paris` or `every 30 s`."""
    spec = schedule.spec
    if spec.cron is not None:
        return f"cron '{spec.cron}' {spec.timezone}"
    return f"every {spec.interval_seconds:g} s"


def table(listed: list[ScheduleOut]) -> str:
    """The schedules, one line each, under a header."""
    header = ("SCHEDULE", "STATE", "WHEN", "JOB", "OVERLAP", "NEXT SLOT", "LAST SLOT", "VERSION")
    rows = [header] + [
        (
            s.id,
            "paused" if s.paused else "active",
            when(s),
            s.spec.job.job_type,
            s.spec.overlap,
            _at(s.next_slot),
            _at(s.last_slot),
            str(s.version),
        )
        for s in listed
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def outcome(slot: SlotOut) -> str:
    """A slot's outcome in a few words."""
    if slot.outcome == "fired":
        return f"fired  job {slot.job_id} ({slot.status or 'gone'})"
    if slot.outcome == "skipped":
        return f"skipped  {slot.reason}"
    return slot.outcome


def details(schedule: ScheduleOut, recent: list[SlotOut]) -> str:
    """One schedule, a field a line, then its last slots' outcomes."""
    spec = schedule.spec
    state = "PAUSED" if schedule.paused else "active"
    note = f"  note: {schedule.note}" if schedule.note else ""
    lines = [
        f"schedule {schedule.id}  {state}  (version {schedule.version}, by "
        f"{schedule.updated_by} at {_at(schedule.updated_at)}){note}",
        f"  when             {when(schedule)}",
        f"  job              {msgspec.json.encode(spec.job).decode()}",
        f"  overlap          {spec.overlap}",
        f"  catch-up window  {spec.catchup_window_seconds:g} s",
        f"  jitter           {spec.jitter_seconds:g} s",
        f"  start / end      {_at(spec.start_at)} / {_at(spec.end_at)}",
        f"  next slot        {_at(schedule.next_slot)}",
        f"  last slot        {_at(schedule.last_slot)}",
    ]
    if schedule.buffered:
        lines.append(f"  buffered         {', '.join(_at(b) for b in schedule.buffered)}")
    lines.append("  last slots" + ("       none yet" if not recent else ""))
    lines += [f"    {_at(s.slot)}  {outcome(s)}" for s in recent]
    return "\n".join(lines)


def _encode(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def _print_schedule(schedule: ScheduleOut, as_json: bool) -> None:
    print(_encode(schedule) if as_json else details(schedule, []))


# -- the commands ------------------------------------------------------------------------


async def list_schedules(
    settings: config.Settings, *, as_json: bool, tenant: str = tenancy.DEFAULT
) -> int:
    from ledger import schedules

    async with database.open_database(settings) as database_:
        async with db.connect(database_.app_dsn) as conn, scoped.acting(conn, tenant):
            found = [schedules.ScheduleOut.of(s) for s in await schedules.listed(conn)]
    print(_encode({"schedules": found}) if as_json else table(found))
    return 0


async def show(
    settings: config.Settings, *, schedule_id: str, as_json: bool, tenant: str = tenancy.DEFAULT
) -> int:
    from ledger import schedules

    async with database.open_database(settings) as database_:
        async with db.connect(database_.app_dsn) as conn, scoped.acting(conn, tenant):
            schedule = schedules.ScheduleOut.of(await schedules.get(conn, schedule_id))
            recent = await schedules.recent(conn, schedule_id, RECENT)
    if as_json:
        print(_encode({"schedule": schedule, "recent_slots": recent}))
    else:
        print(details(schedule, recent))
    return 0


async def create(
    settings: config.Settings,
    *,
    schedule_id: str,
    cron: str | None,
    interval: float | None,
    job_file: Path,
    timezone: str | None,
    overlap: str | None,
    catchup_window: float | None,
    jitter: float | None,
    start_at: str | None,
    end_at: str | None,
    paused: bool,
    note: str | None,
    actor: str,
    as_json: bool,
    tenant: str = tenancy.DEFAULT,
) -> int:
    from ledger import jobtypes, schedules

    wanted = body(
        schedule_id,
        cron=cron,
        interval=interval,
        job=_job(job_file),
        timezone=timezone,
        overlap=overlap,
        catchup_window_seconds=catchup_window,
        jitter_seconds=jitter,
        start_at=None if start_at is None else _time(start_at, "start_at"),
        end_at=None if end_at is None else _time(end_at, "end_at"),
        paused=paused,
        note=note,
    )
    jobtypes.load_handlers(settings.handler_modules)  # its job is checked as submitted
    async with database.open_database(settings) as database_:
        async with db.connect(database_.app_dsn) as conn, scoped.acting(conn, tenant):
            state = await schedules.Schedules().create(conn, wanted, actor=actor)
    _print_schedule(schedules.ScheduleOut.of(state), as_json)
    return 0


async def _change(settings: config.Settings, tenant: str, change: Any, as_json: bool) -> None:
    from ledger import schedules

    async with database.open_database(settings) as database_:
        async with db.connect(database_.app_dsn) as conn, scoped.acting(conn, tenant):
            state = await change(schedules.Schedules(), conn)
    _print_schedule(schedules.ScheduleOut.of(state), as_json)


async def pause(
    settings: config.Settings,
    *,
    schedule_id: str,
    note: str | None,
    actor: str,
    as_json: bool,
    tenant: str = tenancy.DEFAULT,
) -> int:
    await _change(
        settings,
        tenant,
        lambda s, conn: s.pause(conn, schedule_id, note=note, actor=actor),
        as_json,
    )
    return 0


async def resume(
    settings: config.Settings,
    *,
    schedule_id: str,
    note: str | None,
    actor: str,
    as_json: bool,
    tenant: str = tenancy.DEFAULT,
) -> int:
    await _change(
        settings,
        tenant,
        lambda s, conn: s.resume(conn, schedule_id, note=note, actor=actor),
        as_json,
    )
    return 0


async def delete(
    settings: config.Settings,
    *,
    schedule_id: str,
    note: str | None,
    actor: str,
    as_json: bool,
    tenant: str = tenancy.DEFAULT,
) -> int:
    await _change(
        settings,
        tenant,
        lambda s, conn: s.delete(conn, schedule_id, note=note, actor=actor),
        as_json,
    )
    return 0


async def trigger(
    settings: config.Settings,
    *,
    schedule_id: str,
    actor: str,
    as_json: bool,
    tenant: str = tenancy.DEFAULT,
) -> int:
    from ledger import jobtypes, schedules

    jobtypes.load_handlers(settings.handler_modules)
    async with database.open_database(settings) as database_:
        async with db.connect(database_.app_dsn) as conn, scoped.acting(conn, tenant):
            state, job = await schedules.Schedules().trigger(conn, schedule_id, actor=actor)
    if as_json:
        print(_encode({"schedule": schedules.ScheduleOut.of(state), "job": job}))
    else:
        print(f"schedule {schedule_id} fired job {job.job_id} ({job.type}, {job.status})")
    return 0


async def backfill(
    settings: config.Settings,
    *,
    schedule_id: str,
    start: str,
    end: str,
    overlap: Any,
    actor: str,
    as_json: bool,
    tenant: str = tenancy.DEFAULT,
) -> int:
    from ledger import jobtypes, schedules

    first, last = _time(start, "start"), _time(end, "end")
    jobtypes.load_handlers(settings.handler_modules)
    async with database.open_database(settings) as database_:
        async with db.connect(database_.app_dsn) as conn, scoped.acting(conn, tenant):
            state, done = await schedules.Schedules().backfill(
                conn, schedule_id, first, last, overlap=overlap, actor=actor
            )
    if as_json:
        print(_encode({"schedule": schedules.ScheduleOut.of(state), "slots": done}))
        return 0
    print(f"schedule {schedule_id} backfilled ({_at(first)}, {_at(last)}]: {len(done)} slot(s)")
    for slot in done:
        print(
            f"  {_at(slot.slot)}  "
            + (f"fired  job {slot.job}" if slot.job is not None else "skipped  overlap")
        )
    return 0


async def history(
    settings: config.Settings, *, schedule_id: str, as_json: bool, tenant: str = tenancy.DEFAULT
) -> int:
    from ledger import schedules, store
    from projections import schedule_timeline

    async with database.open_database(settings) as database_:
        async with db.connect(database_.app_dsn) as conn, scoped.acting(conn, tenant):
            state = await schedules.current(conn, schedule_id)
            if state is None:
                raise schedules.UnknownSchedule(schedule_id)
            stream = schedules.stream_id(schedule_id, state.tenant)
            recorded = await store.EventStore().history(conn, stream)
    line = schedule_timeline.build(schedule_id, stream, recorded)
    if as_json:
        print(_encode(line))
        return 0
    deleted = "  DELETED" if state.deleted else ""
    print(
        f"schedule {schedule_id}  stream {stream}  version {state.version}  "
        f"next slot {_at(state.next_slot)}{deleted}"
    )
    print(schedule_timeline.render(line))
    return 0
