"""Ego poses kept by the tracker: a bounded buffer interpolated at sensor capture times, and the
thinned trail of past ego positions the rasterizer draws."""

from __future__ import annotations

import bisect
import math
from collections import deque

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


class EgoTrail:
    """Past ego positions thinned to at least a period apart, oldest first.

    A sample is kept when it is at least ``period_ns`` newer than the last kept one (the first
    admitted sample is always kept), so the trail follows the ego stream's own stamps, not a grid.
    Each period asked for gets its own trail: the periods in ``periods_ns`` from the first sample
    on, any other from the raw samples still held (the last ``capacity``) when first asked.

    Args:
        capacity: raw samples held for periods first asked later.
        max_steps: rows kept per period (the most :meth:`xy` returns).
        periods_ns: periods tracked from the first sample on.
        max_periods: distinct periods accepted (bounds the memory a caller can make it use).
    """

    def __init__(
        self, capacity: int, max_steps: int, periods_ns: tuple[int, ...] = (), max_periods: int = 4
    ) -> None:
        self._raw: deque[tuple[int, np.ndarray]] = deque(maxlen=capacity)
        self._max_steps = max_steps
        self._max_periods = max_periods
        self._trails: dict[int, deque[tuple[int, np.ndarray]]] = {
            int(p): deque(maxlen=max_steps) for p in periods_ns
        }

    def add(self, stamp_ns: int, xy_m: np.ndarray) -> None:
        """Record the ego position ``xy_m`` (2,) world m at ``stamp_ns`` (newer than the last)."""
        row = np.array(xy_m[:2], np.float64)
        self._raw.append((stamp_ns, row))
        for period_ns, trail in self._trails.items():
            if not trail or stamp_ns - trail[-1][0] >= period_ns:
                trail.append((stamp_ns, row))

    def xy(self, steps: int, period_ns: int) -> np.ndarray:
        """(n, 2) float64 world xy, oldest first: the last ``steps`` (n <= steps) kept samples.

        Raises:
            ValueError: ``steps`` above ``max_steps``, ``period_ns`` not positive, or more than
                ``max_periods`` distinct periods asked for.
        """
        if steps > self._max_steps or period_ns <= 0:
            raise ValueError(f"EgoTrail.xy: steps {steps} (max {self._max_steps}), period {period_ns} ns")
        trail = self._trails.get(period_ns)
        if trail is None:
            if len(self._trails) >= self._max_periods:
                raise ValueError(f"EgoTrail.xy: more than {self._max_periods} periods asked for")
            trail = self._trails[period_ns] = deque(maxlen=self._max_steps)
            for stamp_ns, row in self._raw:
                if not trail or stamp_ns - trail[-1][0] >= period_ns:
                    trail.append((stamp_ns, row))
        rows = list(trail)[max(len(trail) - steps, 0) :] if steps > 0 else []
        return np.array([xy for _, xy in rows], np.float64).reshape(-1, 2)
