"""TrackSnapshot: the runtime's in-process tracks, and its one check of wire tracks."""

from __future__ import annotations

import numpy as np
import pytest

from prescient.bus import codec
from prescient.bus import messages as m
from prescient.service.app.tracking.synthetic import SyntheticScene
from prescient.service.raster.scenes import make_tracks
from prescient.service.tracker import Tracker
from prescient.service.tracks import ROW_FIELDS, TrackSnapshot


def test_row_fields_are_the_wire_messages_arrays() -> None:
    """Every array of the wire Tracks (besides the ego pose) is a snapshot row, and no other."""
    assert set(ROW_FIELDS) == set(m.array_specs(m.Tracks)) - {"ego_pose"}


def test_tracker_snapshot_is_the_wire_message() -> None:
    """The tracker's snapshot turns into the same bytes Tracker.tracks publishes."""
    scene = SyntheticScene(seed=3, n_agents=8)
    a, b = Tracker(), Tracker()
    snap = msg = None
    for _ in range(15):
        frames = scene.step()
        for f in frames:
            a.process(f)
            b.process(f)
        snap, msg = a.snapshot(scene.time_ns), b.tracks(scene.time_ns)
    assert snap is not None and msg is not None and len(snap) > 0
    assert codec.encode(snap.to_message()) == codec.encode(msg)
    back = TrackSnapshot.from_message(codec.decode(m.TOPIC_TRACKS, codec.encode(msg)))
    assert not back.dropped_rows
    for name in ROW_FIELDS:
        np.testing.assert_array_equal(getattr(back, name), getattr(snap, name))


def test_from_message_drops_and_counts_unusable_rows() -> None:
    """Unknown class and non-finite state rows are left out and counted; bad history is invalid."""
    n = 4
    msg = make_tracks(
        np.array([[1.0, 2.0], [np.nan, 0.0], [5.0, 5.0], [7.0, 7.0]]),
        np.zeros(n),
        np.tile([4.5, 1.9], (n, 1)),
        np.array([1, 1, 99, 2]),
        stamp_ns=1_000,
    )
    msg.history_xy_m[3, 0] = np.inf
    snap = TrackSnapshot.from_message(msg)
    assert snap.dropped_rows == {"bad_class": 1, "non_finite": 1}
    assert snap.track_id.tolist() == [msg.track_id[0], msg.track_id[3]]
    assert not snap.history_valid[1, 0] and snap.history_valid[0, 0]
    assert snap.stamp_ns == 1_000


def test_from_message_refuses_non_finite_ego_pose() -> None:
    msg = make_tracks(np.zeros((1, 2)), np.zeros(1), np.ones((1, 2)), np.ones(1), ego_pose=(np.nan, 0.0, 0.0))
    with pytest.raises(ValueError, match="ego_pose"):
        TrackSnapshot.from_message(msg)
