"""Backoff delays: exponential in the attempt number, capped, jittered within known bounds (no database)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers import retry

attempts = st.integers(min_value=1, max_value=200)
seconds = st.just(0.0) | st.floats(min_value=1e-3, max_value=1e6)
unit = st.floats(min_value=0, max_value=1, exclude_max=True)


@given(attempt=attempts, base=seconds, cap=seconds, r=unit)
def test_every_delay_falls_within_its_bounds(
    attempt: int, base: float, cap: float, r: float
) -> None:
    low, high = retry.backoff_bounds(attempt, base, cap)
    delay = retry.backoff_delay(attempt, base, cap, rand=lambda: r)
    assert 0 <= low <= delay <= high <= cap
    assert high == min(cap, base * 2 ** (attempt - 1))
    assert low == high / 2


def test_the_ceiling_doubles_per_attempt_until_the_cap() -> None:
    ceilings = [retry.backoff_bounds(n, 1.0, 10.0)[1] for n in range(1, 7)]
    assert ceilings == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_jitter_spans_the_upper_half() -> None:
    assert retry.backoff_delay(3, 1.0, 100.0, rand=lambda: 0.0) == 2.0
    assert retry.backoff_delay(3, 1.0, 100.0, rand=lambda: 0.999999) == pytest.approx(4.0, rel=1e-5)


def test_real_jitter_spreads_delays_within_bounds() -> None:
    delays = [retry.backoff_delay(4, 0.5, 60.0) for _ in range(500)]
    assert all(2.0 <= d <= 4.0 for d in delays)
    assert len(set(delays)) > 1


def test_the_retry_delay_is_the_jittered_backoff() -> None:
    assert retry.retry_delay(2, 10.0, 300.0, rand=lambda: 0.5) == timedelta(seconds=15)


def test_huge_attempt_numbers_stay_finite() -> None:
    assert retry.backoff_bounds(10_000, 1.0, 30.0) == (15.0, 30.0)


@pytest.mark.parametrize(
    ("attempt", "base", "cap"), [(0, 1.0, 1.0), (1, -1.0, 1.0), (1, 1.0, -1.0)]
)
def test_nonsense_is_refused(attempt: int, base: float, cap: float) -> None:
    with pytest.raises(ValueError, match=r"attempt|negative"):
        retry.backoff_bounds(attempt, base, cap)
