"""Unique jobs: a submission's `unique` options as the key its job holds, and what a
batch's duplicates are duplicates of.

A unique job's key is the sha256 hex digest of the canonical JSON (keys sorted) of the
values of its `by` fields, by name: `type`, `queue`, `priority`, `concurrency_key`,
`payload` (the whole payload) or `payload.<field>[.<field>…]` (one value inside it; a
field the payload lacks is left out, so it differs from one that is `null`). With
`period_seconds`, the start of the period the submission falls in (the epoch seconds
`floor(now / period) * period`) is part of the key too: a new period, a new key.

The database holds the key (sql/0076): a job of a tenant holds its key while its
status is one of its `states`, and one job at a time may. A job's states always
include pending, retrying and processing, since a worker moves a job between those on
its own (claim, release, snooze, retry after a failed attempt) where no duplicate could
be refused; a submission may add completed, failed or cancelled.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from ledger import commands, errors, lifecycle, wire
from ledger import events as ev

BY_NAMES: Final = ("type", "queue", "priority", "concurrency_key", "payload")
_canonical = msgspec.json.Encoder(order="sorted").encode
_MISSING: Final = object()


def checked(unique: wire.Unique, *, where: str = "") -> wire.Unique:
    """`unique` with its `by` and `states` each once, in order; InvalidInput naming the
    field (`unique.by[i]`, `unique.states`) for a field that cannot be a key's."""
    invalid: list[errors.FieldError] = []
    for index, name in enumerate(unique.by):
        if not _known(name):
            invalid.append(
                errors.FieldError(
                    path=f"{where}unique.by[{index}]",
                    message=f"unknown field {name!r}: one of {', '.join(BY_NAMES)}, "
                    "or payload.<field>",
                )
            )
    missing = [s for s in ev.UNIQUE_STATES_REQUIRED if s not in unique.states]
    if missing:
        invalid.append(
            errors.FieldError(
                path=f"{where}unique.states",
                message="must include pending, retrying and processing (a worker moves a job "
                f"between them on its own); missing {', '.join(missing)}",
            )
        )
    if invalid:
        raise errors.InvalidInput("; ".join(e.message for e in invalid), invalid)
    by = list(dict.fromkeys(unique.by))
    states = [s for s in lifecycle.STATUSES if s in unique.states]
    return msgspec.structs.replace(unique, by=by, states=states)


def _known(name: str) -> bool:
    if name in BY_NAMES:
        return True
    head, _, path = name.partition(".")
    return head == "payload" and bool(path) and all(path.split("."))


def key_of(unique: wire.Unique, command: commands.SubmitJob, *, now: datetime) -> ev.UniqueKey:
    """The key the job `command` submits holds (`unique` checked), at `now`."""
    values: dict[str, Any] = {}
    for name in unique.by:
        value = _value(name, command)
        if value is not _MISSING:
            values[name] = value
    period_start = None
    if unique.period_seconds is not None:
        period = unique.period_seconds
        start = int(now.timestamp() // period) * period
        period_start = datetime.fromtimestamp(start, UTC)
        values["period"] = [period, start]  # no `by` name is "period": no clash
    return ev.UniqueKey(
        key=hashlib.sha256(_canonical(values)).hexdigest(),
        by=tuple(unique.by),
        states=tuple(unique.states),
        on_conflict=unique.on_conflict,
        period_seconds=unique.period_seconds,
        period_start=period_start,
    )


def _value(name: str, command: commands.SubmitJob) -> Any:
    if name == "type":
        return command.job_type
    if name in ("queue", "priority", "concurrency_key", "payload"):
        return getattr(command, name)
    found: Any = command.payload
    for part in name.split(".")[1:]:
        if not isinstance(found, dict) or part not in found:
            return _MISSING
        found = found[part]
    return found


class Duplicate(msgspec.Struct, frozen=True):
    """Item `index` of a submission duplicates a stored job (`job`) or an earlier item of
    the same submission (`of_item`), by its key."""

    index: int
    unique: ev.UniqueKey
    job: lifecycle.JobState | None = None
    of_item: int | None = None


def duplicates(
    wanted: Sequence[commands.SubmitJob], holders: dict[str, lifecycle.JobState]
) -> list[Duplicate]:
    """The items of `wanted` whose key a stored job holds (`holders`, by key) or an
    earlier item creates; the first item of each key that no stored job holds creates it."""
    found: list[Duplicate] = []
    first: dict[str, int] = {}
    for index, command in enumerate(wanted):
        unique = command.unique
        if unique is None:
            continue
        holder = holders.get(unique.key)
        if holder is not None:
            found.append(Duplicate(index, unique, job=holder))
        elif unique.key in first:
            found.append(Duplicate(index, unique, of_item=first[unique.key]))
        else:
            first[unique.key] = index
    return found


def same_options(first: ev.UniqueKey | None, again: ev.UniqueKey | None) -> bool:
    """Whether two submissions asked for the same uniqueness (the key aside: its period
    may have turned since)."""
    if first is None or again is None:
        return first is again
    return (first.by, first.states, first.on_conflict, first.period_seconds) == (
        again.by,
        again.states,
        again.on_conflict,
        again.period_seconds,
    )
