"""The one percentile helper: units, empty input, any iterable."""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from prescient.service.stats import SUMMARY_KEYS, percentiles_ms


def test_nanoseconds_in_milliseconds_out() -> None:
    s = percentiles_ms([1_000_000 * k for k in range(1, 101)])  # 1..100 ms
    assert tuple(s) == SUMMARY_KEYS
    assert s["n"] == 100 and isinstance(s["n"], int)
    assert s["p50"] == 50.5 and s["max"] == 100.0 and s["mean"] == 50.5
    assert math.isclose(s["p99"], 99.01)


def test_empty_input_is_nan_not_an_error() -> None:
    s = percentiles_ms([])
    assert s["n"] == 0
    assert all(math.isnan(s[k]) for k in SUMMARY_KEYS if k != "n")
    assert not s["p99"] <= 100.0  # a budget check fails on no data


def test_deque_and_array_inputs_agree() -> None:
    xs = [3_000_000, 1_000_000, 2_000_000]
    assert percentiles_ms(deque(xs)) == percentiles_ms(np.asarray(xs, np.int64)) == percentiles_ms(iter(xs))
