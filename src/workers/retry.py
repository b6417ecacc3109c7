"""When a failed attempt runs again: the retry policy's decision, and the clock that wakes workers then.

`Policies.in_force` resolves a job's retry policy (ledger.retrypolicy) when an attempt
fails; `decide_failure` turns it into a decision (retry after how long, or stop and
why) that the attempt's event records.

The next attempt's time is decided here, stored in the ledger (the
`next_attempt_at` of job.retry_scheduled.v1 / job.lease_expired.v1) and read back
from the `jobs` view. APScheduler is only the alarm clock: `RetryClock` wakes the
pool when the earliest job that is not yet due becomes due, and it is rebuilt from
the ledger at start (the pool asks the view for that time), so a restart loses no retry.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]

from ledger import jobtypes, lifecycle, retrypolicy, sqlfile

Q = sqlfile.load("workers")

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


def policy_ceiling(attempt: int, policy: retrypolicy.PolicyInForce) -> float:
    """The un-jittered wait after failed attempt `attempt` (1-based):
    `initial * coefficient**(attempt - 1)`, clamped to the policy's maximum.

    Compared in logarithms, so attempt 10**6 with coefficient 1000 neither overflows
    nor goes negative: once the power would pass the maximum, the maximum it is.
    """
    if attempt < 1:
        raise ValueError(f"attempt numbers start at 1, got {attempt}")
    initial = policy.initial_interval_seconds
    top = max(policy.maximum_interval_seconds, 0.0)
    if initial <= 0 or top == 0:
        return 0.0
    coefficient = policy.backoff_coefficient
    if coefficient <= 1:
        return min(initial, top)
    if math.log(initial) + (attempt - 1) * math.log(coefficient) >= math.log(top):
        return top
    return min(top, initial * coefficient ** (attempt - 1))


def policy_bounds(attempt: int, policy: retrypolicy.PolicyInForce) -> tuple[float, float]:
    """The range the jittered wait falls in: [c/2, c] (equal), [0, c] (full), [c, c] (none)."""
    ceiling = policy_ceiling(attempt, policy)
    if policy.jitter == "equal":
        return ceiling / 2, ceiling
    if policy.jitter == "full":
        return 0.0, ceiling
    return ceiling, ceiling


def decide_failure(
    policy: retrypolicy.PolicyInForce,
    *,
    attempt: int,
    error_type: str | None,
    error_names: Iterable[str] = (),
    permanent: bool = False,
    after: float | None = None,
    submitted_at: datetime,
    now: datetime,
    rand: Callable[[], float] = random.random,
) -> retrypolicy.Decision:
    """What `policy` decides for failed attempt `attempt`, checked in this order: a
    permanent failure stops; an error whose type (any of `error_names`) the policy names
    non-retryable stops; the last allowed attempt stops; a next attempt that would
    start more than max_elapsed_seconds after `submitted_at` stops; otherwise retry
    after the jittered backoff, or after exactly `after` when the handler asked."""
    attempt = max(attempt, 1)
    why: dict[str, Any] = {"attempt": attempt, "error_type": error_type, "policy": policy}
    if permanent:
        return retrypolicy.Decision(reason="permanent", **why)
    names = set(error_names) | ({error_type} if error_type else set())
    if names & set(policy.non_retryable_errors):
        return retrypolicy.Decision(reason="non_retryable", **why)
    if policy.maximum_attempts and attempt >= policy.maximum_attempts:
        return retrypolicy.Decision(reason="max_attempts", **why)
    if after is not None and not math.isnan(after):
        requested = min(max(after, 0.0), float(retrypolicy.MAX_SECONDS))
        delays: dict[str, Any] = {
            "delay_seconds": requested,
            "jittered_delay_seconds": requested,
            "requested_delay_seconds": requested,
        }
    else:
        low, high = policy_bounds(attempt, policy)
        delays = {
            "delay_seconds": high,
            "jittered_delay_seconds": low + (high - low) * rand(),
        }
    elapsed = (now - submitted_at).total_seconds() + delays["jittered_delay_seconds"]
    if policy.max_elapsed_seconds and elapsed > policy.max_elapsed_seconds:
        return retrypolicy.Decision(reason="max_elapsed", **why, **delays)
    return retrypolicy.Decision(reason=None, **why, **delays)


def wait_of(decision: retrypolicy.Decision) -> timedelta:
    """The wait a decision to retry records (zero for one to stop)."""
    return timedelta(seconds=decision.jittered_delay_seconds or 0.0)


def error_names(failure: BaseException) -> list[str]:
    """The names `non_retryable_errors` matches a failure by: its class's and every base
    class's `__name__` (so `OSError` names a ConnectionError too), `object` left out."""
    return [cls.__name__ for cls in type(failure).__mro__ if cls is not object]


class Policies:
    """The retry policy in force for a job when one of its attempts fails: its
    submission's, its queue's, its job type's and the defaults, field by field.

    The queue's policy is read when asked (one row by its key, through a function of
    ledger_dispatch: the worker acts in no tenant); failures are not the hot path.
    """

    def __init__(self, registry: jobtypes.Registry) -> None:
        self._registry = registry

    def job_type_level(self, state: lifecycle.JobState) -> retrypolicy.RetryPolicy:
        """The job type's policy as this worker registered it; for a type it does not
        know, the job's own max_attempts and backoff columns."""
        if state.type in self._registry:
            return self._registry.get(state.type).policy()
        return retrypolicy.RetryPolicy(
            maximum_attempts=state.max_attempts,
            initial_interval_seconds=state.backoff_base_seconds,
            maximum_interval_seconds=state.backoff_cap_seconds,
        )

    def submission_level(
        self, state: lifecycle.JobState, job_type: retrypolicy.RetryPolicy
    ) -> retrypolicy.RetryPolicy | None:
        """The submission's policy: stored on the job (sql/0075). A job stored without one
        (or before policies) counts its max_attempts and backoff columns as the
        submission's where they differ from the job type's: only a submission set them so."""
        if state.retry_policy is not None:
            return state.retry_policy
        columns = {
            "maximum_attempts": state.max_attempts,
            "initial_interval_seconds": state.backoff_base_seconds,
            "maximum_interval_seconds": state.backoff_cap_seconds,
        }
        differing: dict[str, Any] = {f: v for f, v in columns.items() if getattr(job_type, f) != v}
        return retrypolicy.RetryPolicy(**differing) if differing else None

    async def in_force(
        self, conn: asyncpg.Connection, state: lifecycle.JobState
    ) -> retrypolicy.PolicyInForce:
        """The policy in force for `state`'s job, its queue's read now."""
        raw = await conn.fetchval(Q["queue_retry_policy"], state.tenant, state.queue)
        return self._resolved(state, retrypolicy.stored(raw))

    def without_queue(self, state: lifecycle.JobState) -> retrypolicy.PolicyInForce:
        """The policy in force as if the job's queue had none."""
        return self._resolved(state, None)

    def _resolved(
        self, state: lifecycle.JobState, queue: retrypolicy.RetryPolicy | None
    ) -> retrypolicy.PolicyInForce:
        job_type = self.job_type_level(state)
        return retrypolicy.resolve(
            [
                ("submission", self.submission_level(state, job_type)),
                ("queue", queue),
                ("job_type", job_type),
            ]
        )


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
