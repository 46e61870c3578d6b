"""Angle arithmetic shared by the behaviour and sensor kernels (numba)."""

from __future__ import annotations

import math

from numba import njit

_TWO_PI = 2.0 * math.pi


@njit(cache=True, nogil=True)
def wrap_kernel(a: float) -> float:
    """Angle ``a`` (rad) wrapped to [-pi, pi)."""
    return (a + math.pi) % _TWO_PI - math.pi
