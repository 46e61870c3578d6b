"""Ego pose buffer and ego trail (the rows of the raster's ego-history channel)."""

from __future__ import annotations

import numpy as np
import pytest

from prescient.bus import messages as m
from prescient.service.tracker import Tracker
from prescient.service.tracker.ego import EgoTrail

MS = 1_000_000


def test_ego_trail_keeps_samples_at_least_a_period_apart() -> None:
    """Stamps 0, 30, 60, 100, 130, 210, 250, 310 ms at 100 ms: 0, 100, 210, 310 kept."""
    trail = EgoTrail(capacity=64, max_steps=8, periods_ns=(100 * MS,))
    for t in (0, 30, 60, 100, 130, 210, 250, 310):
        trail.add(t * MS, np.array([t / 10.0, 1.0]))
    np.testing.assert_array_equal(trail.xy(8, 100 * MS)[:, 0], [0.0, 10.0, 21.0, 31.0])
    np.testing.assert_array_equal(trail.xy(2, 100 * MS)[:, 0], [21.0, 31.0])
    assert trail.xy(0, 100 * MS).shape == (0, 2)


def test_ego_trail_new_period_built_from_held_samples() -> None:
    """A period first asked later is walked from the raw samples held: same rows as if tracked."""
    eager = EgoTrail(capacity=64, max_steps=8, periods_ns=(50 * MS,))
    lazy = EgoTrail(capacity=64, max_steps=8)
    for t in range(0, 400, 20):
        for trail in (eager, lazy):
            trail.add(t * MS, np.array([float(t), 0.0]))
    np.testing.assert_array_equal(lazy.xy(8, 50 * MS), eager.xy(8, 50 * MS))


def test_ego_trail_rejects_too_many_steps_or_periods() -> None:
    """More rows than kept, a non-positive period or a period beyond max_periods raise ValueError."""
    trail = EgoTrail(capacity=8, max_steps=4, max_periods=2)
    with pytest.raises(ValueError):
        trail.xy(5, 100 * MS)
    with pytest.raises(ValueError):
        trail.xy(2, 0)
    trail.xy(2, 10 * MS)
    trail.xy(2, 20 * MS)
    with pytest.raises(ValueError):
        trail.xy(2, 30 * MS)


def _ego(t_ms: int, x: float) -> m.EgoState:
    return m.empty(
        m.EgoState,
        m.TOPIC_EGO,
        stamp_ns=t_ms * MS,
        pose=np.array([x, 2.0, 0.0]),
        velocity_mps=np.array([10.0, 0.0], np.float32),
        size_lwh_m=np.array([4.8, 2.0, 1.5], np.float32),
    )


def test_tracker_ego_history_uses_only_accepted_ego_states() -> None:
    """Duplicate, out-of-order and teleporting ego states are not in the history."""
    tracker = Tracker()
    assert tracker.ego_history_xy(m.TRACK_HISTORY_STEPS, 100 * MS).shape == (0, 2)
    stream = [_ego(1000, 0.0), _ego(1000, 0.0), _ego(1050, 0.5), _ego(1020, 0.2), _ego(1100, 1.0)]
    stream += [_ego(1150, 900.0), _ego(1210, 2.1), _ego(1300, 3.0)]
    accepted = [tracker.process(e) for e in stream]
    assert accepted == [True, False, True, False, True, False, True, True]
    hist = tracker.ego_history_xy(m.TRACK_HISTORY_STEPS, 100 * MS)
    np.testing.assert_array_equal(hist, [[0.0, 2.0], [1.0, 2.0], [2.1, 2.0]])
    assert hist.dtype == np.float64
