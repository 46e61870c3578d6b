"""Admission: plausibility limits, clock checks and bounded state under forged input."""

from __future__ import annotations

import dataclasses
import gc
import tracemalloc

import numpy as np
import pytest

from prescient.bus import messages as m
from prescient.service.app.tracking.synthetic import SyntheticScene
from prescient.service.tracker import AdmissionConfig, Tracker, TrackerConfig
from prescient.service.tracker.admission import REASONS, STATS_TOPICS, UNKNOWN_TOPIC, ClockVote, per_class
from prescient.service.tracker.table import ARRAY_NAMES, TrackTable
from prescient.service.tracker.timeline import SPARE_CHECKPOINTS

LIDAR_FL = m.sensor_topic(m.Modality.LIDAR, m.Corner.FRONT_LEFT)
RADAR_FL = m.sensor_topic(m.Modality.RADAR, m.Corner.FRONT_LEFT)
CAMERA_FL = m.sensor_topic(m.Modality.CAMERA, m.Corner.FRONT_LEFT)
S = 1_000_000_000


def _restamp(msg, stamp_ns: int, topic: str | None = None):  # noqa: ANN001, ANN202
    header = dataclasses.replace(msg.header, stamp_ns=int(stamp_ns), topic=topic or msg.header.topic)
    return dataclasses.replace(msg, header=header)


def _frame(msgs: list, topic: str):  # noqa: ANN202
    return next(x for x in msgs if x.header.topic == topic)


def _ghost_lidar(like: m.LidarFrame, n: int, stamp_ns: int, seed: int = 0) -> m.LidarFrame:
    """A well-formed LiDAR frame of ``n`` car boxes scattered within 60 m of the sensor."""
    rng = np.random.default_rng(seed)
    center = np.zeros((n, 3), np.float32)
    center[:, :2] = rng.uniform(-60.0, 60.0, (n, 2))
    return dataclasses.replace(
        _restamp(like, stamp_ns),
        center_m=center,
        size_lwh_m=np.tile(np.array([4.5, 1.9, 1.5], np.float32), (n, 1)),
        yaw_rad=np.zeros(n, np.float32),
        class_id=np.full(n, m.AgentClass.CAR, np.int32),
        score=np.full(n, 0.9, np.float32),
    )


def _run(scene: SyntheticScene, tracker: Tracker, steps: int, inject=None) -> list[m.Tracks]:  # noqa: ANN001
    """``steps`` ticks of ``scene``; ``inject(i, msgs)`` may return the messages to feed instead."""
    out = []
    for i in range(steps):
        msgs = scene.step()[:-1]  # ground truth is not an input
        if inject is not None:
            msgs = inject(i, msgs)
        out.append(tracker.update(msgs, scene.time_ns))
    return out


# ----------------------------------------------------------------------------------------------
# Plausibility limits.
# ----------------------------------------------------------------------------------------------
def _too_many(msgs: list, t: int):  # noqa: ANN202
    return _ghost_lidar(_frame(msgs, LIDAR_FL), 1000, t + 1)


def _fast_radar(msgs: list, t: int):  # noqa: ANN202
    f = _restamp(_frame(msgs, RADAR_FL), t + 1)
    rr = f.range_rate_mps.copy()
    rr[0] = 300.0
    return dataclasses.replace(f, range_rate_mps=rr)


def _far_lidar(msgs: list, t: int):  # noqa: ANN202
    f = _ghost_lidar(_frame(msgs, LIDAR_FL), 3, t + 1)
    f.center_m[0, :2] = (900.0, 0.0)
    return f


def _huge_box(msgs: list, t: int):  # noqa: ANN202
    f = _ghost_lidar(_frame(msgs, LIDAR_FL), 3, t + 1)
    f.size_lwh_m[1] = (400.0, 2.0, 1.5)
    return f


def _many_points(msgs: list, t: int):  # noqa: ANN202
    f = _restamp(_frame(msgs, LIDAR_FL), t + 1)
    return dataclasses.replace(f, points_m=np.zeros((100_000, 3), np.float32))


def _far_radar(msgs: list, t: int):  # noqa: ANN202
    f = _restamp(_frame(msgs, RADAR_FL), t + 1)
    r = f.range_m.copy()
    r[-1] = 5_000.0
    return dataclasses.replace(f, range_m=r)


def _box_off_image(msgs: list, t: int):  # noqa: ANN202
    f = _restamp(_frame(msgs, CAMERA_FL), t + 1)
    boxes = np.array([[1e6, 500.0, 1e6 + 20.0, 600.0]], np.float32)
    return dataclasses.replace(
        f,
        boxes_px=boxes,
        class_id=np.ones(1, np.int32),
        class_conf=np.full(1, 0.9, np.float32),
        attributes=np.zeros(1, np.uint8),
    )


LIMIT_CASES = [
    ("too_many_objects", _too_many),
    ("implausible_speed", _fast_radar),
    ("out_of_range", _far_lidar),
    ("implausible_size", _huge_box),
    ("too_many_points", _many_points),
    ("out_of_range", _far_radar),
    ("out_of_range", _box_off_image),
]


@pytest.mark.parametrize(("reason", "make"), LIMIT_CASES)
def test_admission_implausible_frame_rejected_with_reason_and_changes_nothing(reason: str, make) -> None:  # noqa: ANN001
    """A frame over a limit is counted under topic:reason and the tracks equal a clean run's."""
    clean = _run(SyntheticScene(n_agents=12, seed=5), Tracker(), 15)
    tracker = Tracker()
    bad_topics = []

    def inject(i: int, msgs: list) -> list:
        if i == 7:
            bad = make(msgs, msgs[0].header.stamp_ns)
            bad_topics.append(bad.header.topic)
            assert tracker.process(bad) is False
        return msgs

    out = _run(SyntheticScene(n_agents=12, seed=5), tracker, 15, inject)
    assert tracker.stats.rejected == {f"{bad_topics[0]}:{reason}": 1}
    for a, b in zip(clean, out):
        np.testing.assert_array_equal(a.track_id, b.track_id)
        np.testing.assert_array_equal(a.position_m, b.position_m)


def test_admission_limits_leave_a_busy_synthetic_scene_alone() -> None:
    """Control for the limits: 150 agents within sensor range, nothing rejected or capped."""
    tracker = Tracker()
    _run(SyntheticScene(n_agents=150, seed=1, radius_m=70.0), tracker, 20)
    assert tracker.stats.total_rejected() == 0
    assert "births_capped" not in tracker.stats.counters
    assert "deleted_implausible_speed" not in tracker.stats.counters


def test_admission_config_validate_names_field() -> None:
    with pytest.raises(ValueError, match="max_objects"):
        Tracker(TrackerConfig(admission=AdmissionConfig(max_objects=(1, 2))))
    with pytest.raises(ValueError, match="vote_window_s"):
        Tracker(TrackerConfig(admission=AdmissionConfig(vote_window_s=0.0)))


# ----------------------------------------------------------------------------------------------
# Births, speeds, association.
# ----------------------------------------------------------------------------------------------
def test_admission_ghost_frame_births_capped_and_real_tracks_survive() -> None:
    """Forged 256-box frames every tick for 1 s: births per frame and tentative tracks stay
    capped, capacity is never reached, and once the ghosts have coasted out the real agents are
    tracked exactly as without the flood. (Boxes that pass every limit cannot be told from real
    ones: some ghosts do confirm and coast, for at most ``max_coast_s``.)"""
    cfg = AdmissionConfig()
    clean = _run(SyntheticScene(n_agents=12, seed=5), Tracker(), 45)
    tracker = Tracker()
    births = []

    def inject(i: int, msgs: list) -> list:
        if 10 <= i < 20:  # within the frame's stamp window; the real frame on this topic is newer
            before = tracker.stats.counters.get("births", 0)
            tracker.process(_ghost_lidar(_frame(msgs, LIDAR_FL), 256, msgs[0].header.stamp_ns - 1, seed=i))
            births.append(tracker.stats.counters.get("births", 0) - before)
            tentative = tracker.table.valid & (tracker.table.status == m.TrackStatus.TENTATIVE)
            assert int(tentative.sum()) <= cfg.max_tentative_tracks
            assert tracker.num_tracks < tracker.config.capacity
        return msgs

    out = _run(SyntheticScene(n_agents=12, seed=5), tracker, 45, inject)
    assert max(births) == cfg.max_births_per_frame
    assert tracker.stats.counters["births_capped"] > 0
    # 2.5 s after the flood the ghosts are gone and the real agents are tracked where the clean
    # run tracks them (ghosts took track ids, so compare positions).
    a, b = clean[-1].position_m, out[-1].position_m
    assert len(b) == len(a)
    np.testing.assert_allclose(a[np.lexsort(a.T)], b[np.lexsort(b.T)], atol=0.5)
    assert tracker.num_tracks <= len(b) + 5


def _one_box(tracker: Tracker, t: int, xy: tuple[float, float], cls: int) -> m.Tracks:
    """One tick: the ego at rest at the origin and one ``cls`` box at ``xy`` (ego frame)."""
    msgs = SyntheticScene(n_agents=1, seed=0).step()
    ego = dataclasses.replace(_restamp(msgs[0], t), pose=np.zeros(3), velocity_mps=np.zeros(2, np.float32))
    box = dataclasses.replace(
        _ghost_lidar(_frame(msgs, LIDAR_FL), 1, t),
        ego_from_sensor=np.eye(4),
        class_id=np.full(1, cls, np.int32),
    )
    box.center_m[0, :2] = xy
    return tracker.update([ego, box], t)


@pytest.mark.parametrize("limit", [True, False])
def test_admission_track_faster_than_its_class_is_deleted(limit: bool) -> None:
    """A 'pedestrian' box accelerating at 2 m/s^2 for 12 s is deleted as implausible_speed once
    surely over 12 m/s and never published much faster; with the limit lifted (control) it is
    published at over 20 m/s."""
    adm = AdmissionConfig() if limit else AdmissionConfig(max_speed_mps=per_class(1e3))
    tracker = Tracker(TrackerConfig(reorder_window_s=0.0, admission=adm))
    speeds = []
    for i in range(120):
        t_s = i / 10
        out = _one_box(tracker, S + i * S // 10, (-80.0 + t_s * t_s, 2.0), m.AgentClass.PEDESTRIAN)
        speeds.extend(np.hypot(out.velocity_mps[:, 0], out.velocity_mps[:, 1]).tolist())
    deleted = tracker.stats.counters.get("deleted_implausible_speed", 0)
    if limit:
        assert deleted >= 1 and max(speeds) < 13.5
    else:
        assert deleted == 0 and max(speeds) > 20.0


@pytest.mark.parametrize("limit", [True, False])
def test_admission_lidar_box_that_implies_teleporting_does_not_associate(limit: bool) -> None:
    """A track whose filter was dragged to 150 m/s (as forged returns could) does not capture the
    box at its predicted position 15 m on: that box starts its own track. Control: with the limit
    lifted the box associates."""
    adm = AdmissionConfig() if limit else AdmissionConfig(max_implied_speed_mps=1e4)
    # Frames applied in order and counted at once: the test edits the table between frames.
    tracker = Tracker(TrackerConfig(reorder_window_s=0.0, lookahead=False, admission=adm))
    for i in range(6):
        _one_box(tracker, S + i * S // 10, (10.0, 2.0), m.AgentClass.PEDESTRIAN)
    (slot,) = np.flatnonzero(tracker.table.valid)
    tracker.table.x[slot, 2:4] = (150.0, 0.0)  # CV state [x, y, vx, vy]: predicted 15 m on next frame
    births = tracker.stats.counters["births"]
    t = S + 6 * S // 10
    _one_box(tracker, t, (25.0, 2.0), m.AgentClass.PEDESTRIAN)
    if limit:
        assert tracker.stats.counters["implausible_pairs"] == 1
        assert tracker.stats.counters["births"] == births + 1
    else:
        assert "implausible_pairs" not in tracker.stats.counters
        assert tracker.stats.counters["births"] == births


# ----------------------------------------------------------------------------------------------
# Clocks.
# ----------------------------------------------------------------------------------------------
def test_admission_single_future_ego_state_does_not_block_real_ones() -> None:
    """One ego state 60 s ahead is rejected as future_dated; every real one after it is accepted
    and the tracks equal a clean run's."""
    clean = _run(SyntheticScene(n_agents=12, seed=5), Tracker(), 20)
    tracker = Tracker()
    accepted = []

    def inject(i: int, msgs: list) -> list:
        if i == 8:
            assert tracker.process(_restamp(msgs[0], msgs[0].header.stamp_ns + 60 * S)) is False
        if i > 8:
            accepted.append(tracker.process(msgs[0]))
            return msgs[1:]
        return msgs

    out = _run(SyntheticScene(n_agents=12, seed=5), tracker, 20, inject)
    assert accepted and all(accepted)
    assert tracker.stats.rejected == {f"{m.TOPIC_EGO}:future_dated": 1}
    np.testing.assert_array_equal(clean[-1].track_id, out[-1].track_id)
    np.testing.assert_array_equal(clean[-1].position_m, out[-1].position_m)


def test_admission_forged_frames_far_ahead_rejected_and_real_stream_flows() -> None:
    """Frames 30 s ahead on three topics (no ego agreeing) are rejected; the clock does not move."""
    clean = _run(SyntheticScene(n_agents=12, seed=5), Tracker(), 20)
    tracker = Tracker()

    def inject(i: int, msgs: list) -> list:
        if i == 8:
            for x in msgs[1:4]:
                assert tracker.process(_restamp(x, x.header.stamp_ns + 30 * S)) is False
        return msgs

    out = _run(SyntheticScene(n_agents=12, seed=5), tracker, 20, inject)
    assert sum(tracker.stats.rejected.values()) == 3
    assert all(k.endswith(":future_dated") for k in tracker.stats.rejected)
    assert "clock_jumps" not in tracker.stats.counters
    np.testing.assert_array_equal(clean[-1].track_id, out[-1].track_id)


def test_admission_genuine_forward_jump_confirmed_by_sensors_and_ego() -> None:
    """Every stream jumps 10 s ahead (a log with a gap): the tracker follows within one tick."""
    tracker = Tracker()
    scene = SyntheticScene(n_agents=12, seed=5)
    _run(scene, tracker, 10)
    scene.time_ns += 10 * S
    before = tracker.stats.total_rejected()
    out = _run(scene, tracker, 15)
    assert tracker.stats.counters["clock_jumps"] == 1
    # Only the first messages of the new clock waited for the vote (ego + 3 sensor topics).
    assert tracker.stats.total_rejected() - before <= 4
    assert tracker.newest_ego_ns == scene.time_ns
    assert len(out[-1].track_id) >= 8


def test_admission_frame_forged_ahead_before_first_ego_state_is_dropped() -> None:
    """Before any ego state a frame can only be checked against other frames: one forged 1.5 s
    ahead is buffered, then dropped when the first ego state shows it ahead of the clock; the topic
    goes on."""
    scene = SyntheticScene(n_agents=12, seed=5)
    msgs = scene.step()[:-1]
    tracker = Tracker()
    t = msgs[0].header.stamp_ns
    for x in msgs[1:]:
        tracker.process(_restamp(x, x.header.stamp_ns - S // 20))
    forged = _restamp(_frame(msgs, LIDAR_FL), t + 3 * S // 2)
    assert tracker.process(forged) is True
    assert tracker.process(_restamp(forged, t + 5 * S)) is False  # too far ahead of the frames
    tracker.update([msgs[0]], t)
    assert tracker.stats.rejected == {f"{LIDAR_FL}:stamp_jump": 1, f"{LIDAR_FL}:future_dated": 1}
    out = _run(scene, tracker, 10)
    assert len(out[-1].track_id) >= 8


def test_clock_vote_needs_distinct_recent_topics() -> None:
    """A quorum is distinct sensor topics plus the ego state, all offered within the window of
    current-clock time; the same topic twice, or votes a second apart, never confirm."""
    vote = ClockVote(m.SENSOR_TOPICS, m.TOPIC_EGO, AdmissionConfig())
    for topic in (*m.SENSOR_TOPICS, m.TOPIC_EGO):
        vote.mark_live(topic)
    ego = object()
    assert vote.offer(LIDAR_FL, 0, 100 * S, "a") is None
    assert vote.offer(LIDAR_FL, 0, 100 * S, "b") is None
    assert vote.offer(RADAR_FL, 0, 100 * S, "c") is None
    assert vote.offer(m.TOPIC_EGO, 0, 100 * S, ego) is None  # two sensor topics only
    assert vote.offer(CAMERA_FL, 10, 100 * S, "d") == [ego, "b", "c", "d"]
    # One forged message per second of current-clock time: never three at once.
    for i, topic in enumerate([*m.SENSOR_TOPICS, m.TOPIC_EGO] * 2):
        assert vote.offer(topic, 0, (101 + i) * S, topic) is None


def test_rejection_keys_bounded_under_random_topics() -> None:
    """100 frames with random topic strings add at most one key per reason, not one per topic."""
    rng = np.random.default_rng(0)
    scene = SyntheticScene(n_agents=5, seed=1)
    tracker = Tracker()
    _run(scene, tracker, 3)
    msgs = scene.step()[:-1]
    for i in range(100):
        src = msgs[1 + i % 16]
        topic = rng.choice(["sensor.", "x.", ""]) + "".join(rng.choice(list("abcdefgh.!"), 12))
        tracker.process(_restamp(src, src.header.stamp_ns + int(rng.integers(-10, 10)) * S, topic=topic))
    keys = set(tracker.stats.rejected)
    assert sum(tracker.stats.rejected.values()) == 100
    assert all(k.split(":")[0] in STATS_TOPICS | {UNKNOWN_TOPIC} for k in keys)
    assert all(k.split(":")[1] in REASONS for k in keys)
    assert len(keys) <= 2


def checkpoint_bytes(table: TrackTable) -> int:
    return sum(getattr(table, name).nbytes for name in ARRAY_NAMES)


def test_flood_of_forged_frames_leaves_memory_where_it_was() -> None:
    """1,000-object frames and 256-ghost frames for 2 s: after the ghosts time out, the traced
    memory is back within 1 MB of where it was before the flood (was +31 MB)."""
    scene = SyntheticScene(n_agents=20, seed=3)
    tracker = Tracker()
    _run(scene, tracker, 40)  # warm: buffers sized, ego buffer half full
    gc.collect()
    timeline = tracker._timeline
    assert timeline is not None
    spares_before = len(timeline._pool)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]

        def flood(i: int, msgs: list) -> list:
            t = msgs[0].header.stamp_ns
            for j, c in enumerate(m.Corner):
                topic = m.sensor_topic(m.Modality.LIDAR, c)
                like = _frame(msgs, topic)
                tracker.process(_ghost_lidar(like, 1000, t - 3, seed=j))
                tracker.process(_ghost_lidar(like, 256, t - 2, seed=i * 4 + j))
            return msgs

        _run(scene, tracker, 20, flood)
        _run(scene, tracker, 20)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert tracker.stats.rejected.get(f"{LIDAR_FL}:too_many_objects") == 20
    assert tracker._association.pair_buf[0].size <= 1 << 16
    # The timeline keeps at most SPARE_CHECKPOINTS spare tables for its checkpoints, a bounded
    # amount whatever the flood: those it kept since are not counted.
    kept = (len(timeline._pool) - spares_before) * checkpoint_bytes(tracker.table)
    assert len(timeline._pool) <= SPARE_CHECKPOINTS
    assert grown - kept < 1_000_000, (grown, kept)


def test_ego_state_on_a_look_alike_topic_is_rejected_and_counted() -> None:
    """``ego.state.forged`` matches the service's ``ego.state`` prefix subscription."""
    import dataclasses

    from prescient.bus import messages as m
    from prescient.service.tracker import Tracker

    tr = Tracker()
    ego = m.empty(m.EgoState, m.TOPIC_EGO, stamp_ns=1_000_000_000)
    forged = dataclasses.replace(ego, header=m.Header(topic="ego.state.forged", stamp_ns=2_000_000_000))
    assert not tr.process(forged)
    assert tr.process(ego)
    assert sum(v for k, v in tr.stats.rejected.items() if k.endswith(":unknown_topic")) == 1
