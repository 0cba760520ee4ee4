"""Small statistics of samples; None (or an empty spread) when there are none."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def percentile(values: Sequence[float], pct: int) -> float | None:
    """The ``pct``-th percentile (inclusive method: stays within the samples)."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def spread(values: list[float], source: str) -> dict[str, Any]:
    """p50, p95 and max of ``values``, with the samples and where they came from."""
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": max(values) if values else None,
        "source": source if values else "none",
        "samples": values,
    }


def first_with_samples(*candidates: tuple[str, list[float]]) -> tuple[list[float], str]:
    """The samples of the first source that has any, and its name; ([], "none") otherwise."""
    for name, samples in candidates:
        if samples:
            return samples, name
    return [], "none"


def pick(*candidates: tuple[str, list[float]]) -> tuple[float | None, str]:
    """The median of the first source that has samples, and its name."""
    samples, name = first_with_samples(*candidates)
    return median(samples), name


def listed(value: float | None) -> list[float]:
    """One optional figure as samples, so that :func:`pick` can fall back to it."""
    return [value] if value is not None else []


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None
