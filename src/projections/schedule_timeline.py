"""A schedule's timeline (`ledger schedules history ID`), as `ledger replay` shows a job's:
each event of the schedule's stream (its changes and every slot's outcome) with what it
did, in words, and the gap before it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec

from ledger import events as ev
from ledger import store
from projections import timeline

_decode = msgspec.json.Decoder()


class Step(msgspec.Struct, frozen=True, kw_only=True):
    """One event of a schedule and what it did."""

    version: int
    position: int
    occurred_at: datetime
    event: str
    actor: str
    what: str
    since_previous_seconds: float | None
    data: dict[str, Any]
    hash: str


class Timeline(msgspec.Struct, frozen=True, kw_only=True):
    schedule_id: str
    stream_id: uuid.UUID
    steps: list[Step]


def build(schedule_id: str, stream: uuid.UUID, history: Sequence[store.Recorded]) -> Timeline:
    """The steps of a schedule's stream `history` (oldest first)."""
    steps: list[Step] = []
    previous: datetime | None = None
    for recorded in history:
        event = recorded.event
        steps.append(
            Step(
                version=event.version,
                position=recorded.position,
                occurred_at=event.occurred_at,
                event=ev.type_tag(event),
                actor=event.actor,
                what=describe(event),
                since_previous_seconds=(
                    None if previous is None else (event.occurred_at - previous).total_seconds()
                ),
                data=_decode.decode(ev.data_json(event)),
                hash=recorded.hash.hex(),
            )
        )
        previous = event.occurred_at
    return Timeline(schedule_id=schedule_id, stream_id=stream, steps=steps)


def _at(instant: datetime | None) -> str:
    return "none" if instant is None else instant.strftime("%Y-%m-%d %H:%M:%S%z")


def _note(note: str | None) -> str:
    return f" ({note})" if note else ""


def _when(spec: dict[str, Any]) -> str:
    if spec.get("cron") is not None:
        return f"cron {spec['cron']!r} in {spec.get('timezone', 'UTC')}"
    return f"every {spec.get('interval_seconds')} s"


def describe(event: ev.Event) -> str:
    """What a schedule event did, for a person."""
    match event:
        case ev.ScheduleCreated():
            state = "paused" if event.paused else f"first slot {_at(event.next_slot)}"
            job = event.spec.get("job", {}).get("type")
            return f"created: {_when(event.spec)}, job {job}; {state}{_note(event.note)}"
        case ev.ScheduleUpdated():
            return f"updated: {_when(event.spec)}; next slot {_at(event.next_slot)}"
        case ev.SchedulePaused():
            return f"paused{_note(event.note)}"
        case ev.ScheduleResumed():
            return f"resumed{_note(event.note)}"
        case ev.ScheduleDeleted():
            return f"deleted{_note(event.note)}"
        case ev.ScheduleTriggered():
            return f"triggered outside its slots: job {event.job}"
        case ev.ScheduleBackfilled():
            fired = sum(1 for s in event.slots if s.job is not None)
            return (
                f"backfilled ({_at(event.start)}, {_at(event.end)}] under {event.overlap}: "
                f"{fired} fired, {len(event.slots) - fired} skipped (overlap)"
            )
        case ev.ScheduleSlotFired():
            buffered = " (buffered behind the previous job)" if event.buffered else ""
            late = (event.occurred_at - event.slot).total_seconds()
            return (
                f"slot {_at(event.slot)} fired{buffered}: job {event.job}, "
                f"{timeline.gap(max(late, 0.0))} after its slot"
            )
        case ev.ScheduleSlotSkipped():
            until = "" if event.next_slot is None else f" up to (not with) {_at(event.next_slot)}"
            return f"slot {_at(event.slot)}{until} skipped: {event.reason}"
        case ev.ScheduleSlotBuffered():
            return f"slot {_at(event.slot)} buffered: waits for the previous job"
    return ev.type_tag(event)


def render(line: Timeline) -> str:
    """The timeline as an aligned table for a terminal, each event's effect under it."""
    header = ("VER", "TIME (UTC)", "EVENT", "ACTOR", "SINCE PREV")
    rows = [
        (
            str(s.version),
            s.occurred_at.strftime("%Y-%m-%d %H:%M:%S.%f"),
            s.event,
            s.actor,
            timeline.gap(s.since_previous_seconds),
        )
        for s in line.steps
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row, step in zip([header, *rows], [None, *line.steps], strict=True):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if step is not None:
            lines.append(f"    {step.what}")
    return "\n".join(lines)
