"""Medians with their spread, and percentiles."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import msgspec


class Figure(msgspec.Struct, kw_only=True):
    """The median of the repetitions, with the spread (min and max) and every sample."""

    median: float
    low: float
    high: float
    unit: str
    samples: list[float]

    @classmethod
    def of(cls, samples: Sequence[float], *, unit: str) -> Figure:
        return cls(
            median=statistics.median(samples),
            low=min(samples),
            high=max(samples),
            unit=unit,
            samples=list(samples),
        )


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100), nearest rank, of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]
