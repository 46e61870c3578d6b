"""Latency summaries: the one percentile helper of the service, its apps and the benchmarks."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

NS_PER_MS = 1e6
SUMMARY_KEYS = ("n", "p50", "p95", "p99", "max", "mean")


def percentiles_ms(samples_ns: Iterable[Any] | np.ndarray) -> dict[str, float]:
    """Summary of a sequence of durations: count, percentiles, maximum and mean.

    Args:
        samples_ns: (N,) durations in nanoseconds (any iterable of numbers; a deque or a list of
            ints is fine). N may be 0.

    Returns:
        ``{"n": N, "p50", "p95", "p99", "max", "mean"}``: ``n`` is an int, every other value is in
        milliseconds (float). Percentiles use numpy's default linear interpolation. For empty input
        ``n`` is 0 and every other value is NaN (never an exception), so callers can print or
        compare it (a NaN p99 fails every ``<=`` budget check).
    """
    a = np.asarray(list(samples_ns) if not isinstance(samples_ns, np.ndarray) else samples_ns, np.float64)
    a = a.ravel() / NS_PER_MS
    if a.size == 0:
        nan = float("nan")
        return {"n": 0, "p50": nan, "p95": nan, "p99": nan, "max": nan, "mean": nan}
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {
        "n": int(a.size),
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "max": float(a.max()),
        "mean": float(a.mean()),
    }
