"""TrackTable: slot allocation, release, history columns and validation."""

from __future__ import annotations

import numpy as np
import pytest

from prescient.bus import messages as m
from prescient.service.app.tracking.synthetic import SyntheticScene
from prescient.service.tracker import Tracker, TrackTable
from prescient.service.tracker.table import HISTORY_DT_NS


def test_table_allocate_lowest_free_slots_with_fresh_ids() -> None:
    """Allocation takes the lowest free slots, numbers ids on, never reuses an id."""
    t = TrackTable(4)
    np.testing.assert_array_equal(t.allocate(2), [0, 1])
    t.release(np.array([0]))
    np.testing.assert_array_equal(t.allocate(5), [0, 2, 3])  # only 3 free
    assert t.allocate(1).size == 0
    np.testing.assert_array_equal(t.track_id, [2, 1, 3, 4])
    assert t.num_live == 4
    t.validate()


def test_table_release_clears_history_and_liveness() -> None:
    """A released slot is not live and its history is invalid."""
    t = TrackTable(2)
    slots = t.allocate(2)
    t.push_history(10 * HISTORY_DT_NS, slots, np.ones((2, 2)), np.zeros(2), np.zeros((2, 2)))
    t.release(slots[:1])
    np.testing.assert_array_equal(t.live(), [1])
    assert not t.hist_valid[0].any() and t.hist_valid[1, -1]


def test_table_history_shifts_by_grid_steps_and_ignores_older_ticks() -> None:
    """Two grid steps later the column moved two left; an older tick records nothing."""
    t = TrackTable(1)
    s = t.allocate(1)
    t.push_history(10 * HISTORY_DT_NS, s, np.array([[1.0, 0.0]]), np.zeros(1), np.zeros((1, 2)))
    t.push_history(12 * HISTORY_DT_NS, s, np.array([[3.0, 0.0]]), np.zeros(1), np.zeros((1, 2)))
    t.push_history(11 * HISTORY_DT_NS, s, np.array([[9.0, 0.0]]), np.zeros(1), np.zeros((1, 2)))
    H = m.TRACK_HISTORY_STEPS
    np.testing.assert_array_equal(np.flatnonzero(t.hist_valid[0]), [H - 3, H - 1])
    assert t.hist_xy_m[0, H - 3, 0] == 1.0 and t.hist_xy_m[0, H - 1, 0] == 3.0


def test_table_validate_names_wrong_dtype_and_duplicate_ids() -> None:
    """validate() names the array with the wrong dtype, and catches duplicate live ids."""
    t = TrackTable(3)
    t.status = t.status.astype(np.int64)
    with pytest.raises(ValueError, match=r"TrackTable\.status: int64\(3,\), expected uint8"):
        t.validate()
    t = TrackTable(3)
    t.allocate(2)
    t.track_id[1] = t.track_id[0]
    with pytest.raises(ValueError, match="duplicate id"):
        t.validate()


def test_tracker_table_valid_after_a_scene() -> None:
    """After 3 s of a 30-agent scene the tracker's table passes validate()."""
    scene = SyntheticScene(n_agents=30, seed=0)
    tracker = Tracker()
    for _ in range(30):
        msgs = scene.step()
        tracker.update(msgs, scene.time_ns)
    assert tracker.num_tracks > 10
    tracker.table.validate()
