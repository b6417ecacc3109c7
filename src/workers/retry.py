"""When a failed attempt runs again: exponential backoff with jitter, and the clock that wakes workers then.

The next attempt's time is decided here, stored in the ledger (the
`next_attempt_at` of job.retry_scheduled.v1 / job.lease_expired.v1) and read back
from the `jobs` view. APScheduler is only the alarm clock: `RetryClock` wakes the
pool when the earliest job that is not yet due becomes due, and it is rebuilt from
the ledger at start (the pool asks the view for that time), so a restart loses no retry.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]

log = logging.getLogger(__name__)


def backoff_bounds(attempt: int, base: float, cap: float) -> tuple[float, float]:
    """The range the delay after failed attempt number `attempt` (1-based) falls in.

    The un-jittered delay doubles with each attempt, `base * 2**(attempt - 1)`, up to
    `cap`; "equal jitter" then picks uniformly from its upper half, so retries of
    many jobs that failed together spread out but never come back at once.
    """
    if attempt < 1:
        raise ValueError(f"attempt numbers start at 1, got {attempt}")
    if base < 0 or cap < 0:
        raise ValueError("backoff base and cap must not be negative")
    exponent = min(attempt - 1, 1023)  # 2.0**1024 overflows; by then any cap is reached
    ceiling = min(cap, base * 2.0**exponent)
    return ceiling / 2, ceiling


def backoff_delay(
    attempt: int, base: float, cap: float, *, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait after failed attempt `attempt`: within `backoff_bounds`, jittered by `rand`."""
    low, high = backoff_bounds(attempt, base, cap)
    return low + (high - low) * rand()


def retry_delay(
    attempt: int,
    base: float,
    cap: float,
    *,
    rand: Callable[[], float] = random.random,
) -> timedelta:
    """The jittered wait before the next attempt, as a FailAttempt/ExpireLease carries it."""
    return timedelta(seconds=backoff_delay(attempt, base, cap, rand=rand))


class RetryClock:
    """An APScheduler alarm that calls `wake` when a job that is not yet due becomes due.

    Several alarms may be pending at once (one per distinct instant); each fires
    once. The pool sets the alarm after every claim round from the view's earliest
    future due time, so the ledger, not this object, is what remembers retries.
    """

    def __init__(self, wake: Callable[[], None]) -> None:
        self._wake = wake
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._pending: set[datetime] = set()

    def start(self) -> None:
        self._scheduler.start()

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    def wake_at(self, when: datetime) -> None:
        """Wake the pool at `when` (to the millisecond; instants already set are kept once)."""
        when = when.astimezone(UTC).replace(microsecond=when.microsecond // 1000 * 1000)
        if when in self._pending:
            return
        self._pending.add(when)
        self._scheduler.add_job(
            self._fire,
            trigger="date",
            run_date=when + timedelta(milliseconds=1),
            args=[when],
            id=f"wake-{when.isoformat()}",
            replace_existing=True,
            misfire_grace_time=None,
        )
        log.debug("retry clock set for %s", when.isoformat())

    @property
    def pending(self) -> frozenset[datetime]:
        """The instants an alarm is set for."""
        return frozenset(self._pending)

    async def _fire(self, when: datetime) -> None:
        # A coroutine, so APScheduler runs it on the event loop, not in a thread.
        self._pending.discard(when)
        self._wake()
