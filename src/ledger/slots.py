"""A schedule's slots: the instants its cron expression or interval names, in order.

Cron expressions (five fields, or six with seconds first) are parsed by APScheduler's
`CronTrigger` (a dependency already, well kept), evaluated on *wall-clock* time in the
schedule's timezone; each wall-clock slot is then placed on the timeline with PEP 495's
`fold=0`. So across a DST change a slot in the skipped hour fires once (at the instant
its wall time maps to, the hour after), and a slot in the repeated hour fires once (its
first occurrence). CronTrigger's own stepping in a zone repeats slots of the repeated
hour (it may loop on them), which is why it is only asked about wall time here.

Intervals are anchored at the schedule's `start_at`, or else at the Unix epoch, so every
process computes the same slots: `interval_seconds` 10 fires at :00, :10, :20, ...
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
TINY: Final = timedelta(microseconds=1)
_DAYS: Final = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DOW_NUMBER: Final = re.compile(r"(?<![/\d])(\d+)")


class BadRule(ValueError):
    """A cron expression, timezone or interval that names no slots; its message says why."""


def zone(name: str) -> ZoneInfo:
    """The IANA timezone `name` (BadRule when there is none)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadRule(f"unknown timezone {name!r} (an IANA name like Europe/Paris)") from None


def cron_trigger(expression: str) -> CronTrigger:
    """The trigger of a cron expression of 5 fields (minute hour day month weekday) or 6
    (second first), on wall-clock time; weekday numbers are crontab's (0 and 7: Sunday)."""
    fields = expression.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        raise BadRule(
            f"a cron expression has 5 fields (minute hour day month weekday) or 6 "
            f"(with seconds first), not {len(fields)}"
        )
    second, minute, hour, day, month, weekday = fields

    def day_name(match: re.Match[str]) -> str:
        number = int(match.group(1))
        if number > 7:
            raise BadRule(f"weekday {number} is not 0-7")
        return _DAYS[number]

    weekday = _DOW_NUMBER.sub(day_name, weekday)
    try:
        return CronTrigger(
            second=second,
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=weekday,
            timezone=UTC,
        )
    except ValueError as exc:
        raise BadRule(f"cron expression {expression!r}: {exc}") from None


class Rule:
    """The slots of a cron expression in a timezone, or of an interval; between
    `start_at` and `end_at` (both included) when given."""

    def __init__(
        self,
        *,
        cron: str | None = None,
        interval_seconds: float | None = None,
        timezone: str = "UTC",
        start_at: datetime | None = None,
        end_at: datetime | None = None,
    ) -> None:
        if (cron is None) == (interval_seconds is None):
            raise BadRule("give a cron expression or interval_seconds (one of them)")
        if start_at is not None and end_at is not None and end_at < start_at:
            raise BadRule("end_at is before start_at")
        self.zone = zone(timezone)
        self.trigger = None if cron is None else cron_trigger(cron)
        self.interval: timedelta | None = None
        if interval_seconds is not None:
            self.interval = timedelta(seconds=interval_seconds)
            if self.interval < timedelta(seconds=1):
                raise BadRule("interval_seconds is at least 1")
        self.start_at = start_at
        self.end_at = end_at
        if self.trigger is not None and self._after_cron(EPOCH) is None:
            raise BadRule(f"cron expression {cron!r} names no time")

    def after(self, instant: datetime) -> datetime | None:
        """The first slot strictly after `instant` (None: no more slots)."""
        if self.start_at is not None and instant < self.start_at:
            instant = self.start_at - TINY
        found = (
            self._after_cron(instant) if self.trigger is not None else self._after_interval(instant)
        )
        if found is None or (self.end_at is not None and found > self.end_at):
            return None
        return found

    def at_or_after(self, instant: datetime) -> datetime | None:
        """The first slot at `instant` or later."""
        return self.after(instant - TINY)

    def between(self, start: datetime, end: datetime, limit: int) -> Iterator[datetime]:
        """The slots in (start, end], at most `limit` of them."""
        slot = self.after(start)
        count = 0
        while slot is not None and slot <= end and count < limit:
            yield slot
            count += 1
            slot = self.after(slot)

    def _after_interval(self, instant: datetime) -> datetime:
        assert self.interval is not None
        anchor = self.start_at or EPOCH
        steps = (instant - anchor) // self.interval + 1
        return anchor + steps * self.interval

    def _after_cron(self, instant: datetime) -> datetime | None:
        # Walk wall-clock slots from the wall time of `instant`, each placed with fold=0,
        # to the first one strictly after `instant` (more than one step only in a
        # repeated hour, whose second pass maps back onto the first).
        assert self.trigger is not None
        wall = instant.astimezone(self.zone).replace(tzinfo=None)
        candidate = wall.replace(tzinfo=UTC)
        for _ in range(100_000):
            found = self.trigger.get_next_fire_time(None, candidate)
            if found is None:
                return None
            placed: datetime = found.replace(tzinfo=self.zone, fold=0).astimezone(UTC)
            if placed > instant:
                return placed
            candidate = found + timedelta(seconds=1)
        return None


def jitter(schedule_id: str, slot: datetime, seconds: float) -> timedelta:
    """The slot's delay in [0, seconds): drawn from a hash of the schedule and the slot,
    so every process computes the same."""
    if seconds <= 0:
        return timedelta(0)
    digest = hashlib.sha256(f"{schedule_id}@{slot.isoformat()}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return timedelta(seconds=seconds * fraction)
