"""Bounded buffer of ego poses, interpolated at sensor capture times."""

from __future__ import annotations

import bisect
import math

import numpy as np

# Row layout of a pose sample: [x_m, y_m, yaw_rad, vx_mps, vy_mps, yaw_rate_radps], world frame.
EGO_FIELDS = 6


class EgoBuffer:
    """The last ``capacity`` ego states, looked up by capture time.

    Args:
        capacity: number of samples kept (oldest dropped first).
        max_extrapolate_ns: how far past the newest (or before the oldest) sample a lookup may
            extrapolate at constant velocity and yaw rate; beyond it the lookup fails.
    """

    def __init__(self, capacity: int, max_extrapolate_ns: int) -> None:
        self._capacity = capacity
        self._max_extrapolate_ns = max_extrapolate_ns
        self._stamps: list[int] = []
        self._rows: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self._stamps)

    @property
    def newest_ns(self) -> int | None:
        """Capture time of the newest sample, or None when empty."""
        return self._stamps[-1] if self._stamps else None

    @property
    def newest(self) -> tuple[int, np.ndarray] | None:
        """(stamp_ns, (6,) row) of the newest sample, or None when empty. The row is not a copy."""
        return (self._stamps[-1], self._rows[-1]) if self._stamps else None

    def add(self, stamp_ns: int, row: np.ndarray) -> bool:
        """Append a sample (must be newer than the newest). Returns False if it is not."""
        if self._stamps and stamp_ns <= self._stamps[-1]:
            return False
        self._stamps.append(stamp_ns)
        self._rows.append(np.asarray(row, dtype=np.float64))
        if len(self._stamps) > self._capacity:
            del self._stamps[0]
            del self._rows[0]
        return True

    def at(self, stamp_ns: int) -> np.ndarray | None:
        """Ego state (6,) at ``stamp_ns``: interpolated between samples, else extrapolated.

        Returns:
            ``[x_m, y_m, yaw_rad, vx_mps, vy_mps, yaw_rate_radps]`` world frame, or None when the
            buffer is empty or ``stamp_ns`` is too far outside it.
        """
        if not self._stamps:
            return None
        k = bisect.bisect_left(self._stamps, stamp_ns)
        if k < len(self._stamps) and self._stamps[k] == stamp_ns:
            return self._rows[k].copy()
        if 0 < k < len(self._stamps):
            t0, t1 = self._stamps[k - 1], self._stamps[k]
            a, b = self._rows[k - 1], self._rows[k]
            f = (stamp_ns - t0) / (t1 - t0)
            out = a + f * (b - a)
            dyaw = math.remainder(b[2] - a[2], 2.0 * math.pi)
            out[2] = math.remainder(a[2] + f * dyaw, 2.0 * math.pi)
            return out
        ref = self._rows[-1] if k >= len(self._stamps) else self._rows[0]
        t_ref = self._stamps[-1] if k >= len(self._stamps) else self._stamps[0]
        dt_ns = stamp_ns - t_ref
        if abs(dt_ns) > self._max_extrapolate_ns:
            return None
        dt = dt_ns * 1e-9
        out = ref.copy()
        out[0] += ref[3] * dt
        out[1] += ref[4] * dt
        out[2] = math.remainder(ref[2] + ref[5] * dt, 2.0 * math.pi)
        return out
