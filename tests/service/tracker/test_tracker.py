"""Tracker behaviour on seeded synthetic scenes and hand-built frames."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from prescient.bus import codec
from prescient.bus import messages as m
from prescient.service.app.tracking.synthetic import (
    IMAGE_WH,
    INTRINSICS,
    SyntheticScene,
    ego_from_sensor_matrix,
)
from prescient.service.tracker import Tracker, TrackerConfig
from prescient.service.tracker.admission import stats_topic

T0 = 1_000_000_000
DT = 100_000_000


def _ego(t: int, x: float = 0.0) -> m.EgoState:
    return m.EgoState(
        header=m.Header(topic=m.TOPIC_EGO, stamp_ns=t),
        pose=np.array([x, 0.0, 0.0]),
        velocity_mps=np.zeros(2, np.float32),
        accel_mps2=0.0,
        yaw_rate_radps=0.0,
        size_lwh_m=np.array([4.8, 2.0, 1.5], np.float32),
        plan_xy_m=np.zeros((0, 2), np.float32),
    )


def _lidar(
    t: int, xy: list[tuple[float, float]], cls: int = m.AgentClass.CAR, score: float = 0.9, **kw
) -> m.LidarFrame:
    """Front-left LiDAR at the ego origin looking along +x (identity mount)."""
    n = len(xy)
    center = np.zeros((n, 3), np.float32)
    if n:
        center[:, :2] = np.asarray(xy, np.float32)
    fields = dict(
        header=m.Header(topic=m.sensor_topic(m.Modality.LIDAR, m.Corner.FRONT_LEFT), stamp_ns=t),
        sensor_id="lidar_fl",
        ego_from_sensor=np.eye(4),
        center_m=center,
        size_lwh_m=np.tile(np.array([4.5, 1.9, 1.5], np.float32), (n, 1)),
        yaw_rad=np.zeros(n, np.float32),
        class_id=np.full(n, cls, np.int32),
        score=np.full(n, score, np.float32),
        points_m=np.zeros((0, 3), np.float32),
    )
    fields.update(kw)
    return m.LidarFrame(**fields)


def _lwir(t: int, bearings: list[float], cls: int) -> m.LwirFrame:
    n = len(bearings)
    u = INTRINSICS[0, 2] - INTRINSICS[0, 0] * np.tan(np.asarray(bearings))
    boxes = np.stack([u - 5, np.full(n, 500.0), u + 5, np.full(n, 560.0)], axis=1)
    return m.LwirFrame(
        header=m.Header(topic=m.sensor_topic(m.Modality.LWIR, m.Corner.FRONT_LEFT), stamp_ns=t),
        sensor_id="lwir_fl",
        ego_from_sensor=np.eye(4),
        intrinsics=INTRINSICS.copy(),
        image_wh_px=IMAGE_WH.copy(),
        boxes_px=boxes.astype(np.float32),
        class_id=np.full(n, cls, np.int32),
        class_conf=np.full(n, 0.9, np.float32),
        heat_k=np.full(n, 10.0, np.float32),
    )


def _run_scene(scene: SyntheticScene, tracker: Tracker, steps: int) -> tuple[m.Tracks, m.GroundTruth]:
    out = gt = None
    for _ in range(steps):
        msgs = scene.step()
        gt = msgs[-1]
        out = tracker.update(msgs[:-1], scene.time_ns)
    return out, gt


def test_tracker_synthetic_scene_converges_to_ground_truth() -> None:
    """30 agents, 16 sensors, 5 s: every visible agent tracked to < 0.3 m and < 0.5 m/s (median)."""
    scene = SyntheticScene(n_agents=30, seed=3, radius_m=50.0)
    tracker = Tracker()
    out, gt = _run_scene(scene, tracker, 50)
    d = np.linalg.norm(out.position_m[:, None] - gt.position_m[None], axis=-1)
    nearest = d.argmin(axis=1)
    pos_err = d.min(axis=1)
    vel_err = np.linalg.norm(out.velocity_mps - gt.velocity_mps[nearest], axis=1)
    assert len(out.track_id) >= 25
    assert np.median(pos_err) < 0.3
    assert np.median(vel_err) < 0.5
    # One track per agent: no two tracks share a nearest agent within 1 m.
    close = nearest[pos_err < 1.0]
    assert len(np.unique(close)) == len(close)
    assert tracker.stats.total_rejected() == 0


def test_tracker_output_passes_codec_and_is_finite() -> None:
    """Tracks and Health encode with the strict codec (dtypes, shapes, finiteness, probs sum 1)."""
    scene = SyntheticScene(n_agents=10, seed=1)
    tracker = Tracker()
    out, _ = _run_scene(scene, tracker, 25)
    payload = codec.encode(out)
    back = codec.decode(m.TOPIC_TRACKS, payload)
    np.testing.assert_array_equal(back.track_id, out.track_id)
    np.testing.assert_allclose(out.class_probs.sum(axis=1), 1.0, atol=1e-5)
    assert out.history_valid[:, -1].all()
    # 2.5 s of ticks: tracks born in the first second have a full 2 s history at 0.1 s spacing.
    old = out.age_s > 2.1
    assert old.any() and out.history_valid[old].all()
    step = np.linalg.norm(np.diff(out.history_xy_m[old], axis=1), axis=-1)
    speed = np.linalg.norm(out.velocity_mps[old], axis=1)
    np.testing.assert_allclose(np.median(step, axis=1), 0.1 * speed, atol=0.1)


def test_tracker_replay_is_deterministic_and_reorder_invariant() -> None:
    """Same messages twice give identical tracks; shuffling frames inside the window changes nothing."""
    scene = SyntheticScene(n_agents=15, seed=7)
    ticks = [scene.step() for _ in range(20)]
    rng = np.random.default_rng(0)
    outs = []
    for shuffle in (False, False, True):
        tracker = Tracker()
        for msgs in ticks:
            body = list(msgs[1:-1])
            if shuffle:
                body = [body[i] for i in rng.permutation(len(body))]
            out = tracker.update([msgs[0], *body], msgs[0].header.stamp_ns)
        outs.append(out)
        assert tracker.stats.total_rejected() == 0
    for other in outs[1:]:
        np.testing.assert_array_equal(outs[0].track_id, other.track_id)
        np.testing.assert_allclose(outs[0].position_m, other.position_m, atol=1e-5)


def test_tracker_lost_object_coasts_then_is_deleted() -> None:
    """Confirmed after a few hits, COASTING once LiDAR stops, deleted after max_coast_s."""
    cfg = TrackerConfig(reorder_window_s=0.0, max_position_std_m=100.0)
    tracker = Tracker(cfg)
    for i in range(10):
        t = T0 + i * DT
        out = tracker.update([_ego(t), _lidar(t, [(20.0 + 1.0 * i, 5.0)])], t)
    assert list(out.status) == [m.TrackStatus.CONFIRMED]
    assert abs(out.velocity_mps[0, 0] - 10.0) < 1.0
    statuses = []
    for i in range(10, 40):
        t = T0 + i * DT
        out = tracker.update([_ego(t), _lidar(t, [])], t)
        statuses.append(list(out.status))
    assert [m.TrackStatus.COASTING] in statuses
    assert statuses[-1] == []
    assert tracker.stats.counters["deleted_coast_timeout"] == 1


def test_tracker_lost_object_deleted_when_too_uncertain() -> None:
    """With the default position-uncertainty limit a coasting track goes before the coast timeout."""
    tracker = Tracker(TrackerConfig(reorder_window_s=0.0))
    for i in range(40):
        t = T0 + i * DT
        tracker.update([_ego(t), _lidar(t, [(20.0 + 1.0 * i, 5.0)] if i < 10 else [])], t)
    assert tracker.num_tracks == 0
    assert (
        tracker.stats.counters.get("deleted_uncertain", 0)
        + tracker.stats.counters.get("deleted_coast_timeout", 0)
        == 1
    )


def test_tracker_lwir_confirms_pedestrian_and_sets_class() -> None:
    """At night a weak LiDAR blob of unknown class becomes a confirmed pedestrian through LWIR."""
    cfg = TrackerConfig(reorder_window_s=0.0, confirm_hits=3, confirm_position_hits=1)
    tracker = Tracker(cfg)
    t = T0
    out = tracker.update([_ego(t), _lidar(t, [(15.0, 3.0)], cls=m.AgentClass.UNKNOWN, score=0.4)], t)
    assert len(out.track_id) == 0  # tentative, not published
    for i in range(1, 4):
        t = T0 + i * DT
        out = tracker.update([_ego(t), _lwir(t, [math.atan2(3.0, 15.0)], m.AgentClass.PEDESTRIAN)], t)
    assert len(out.track_id) == 1
    assert out.class_id[0] == m.AgentClass.PEDESTRIAN
    assert out.class_probs[0, m.AgentClass.PEDESTRIAN] > 0.8


def test_tracker_without_lwir_leaves_weak_blob_tentative() -> None:
    """Control for the LWIR test: the same single LiDAR blob alone is never published."""
    cfg = TrackerConfig(reorder_window_s=0.0, confirm_hits=3, confirm_position_hits=1)
    tracker = Tracker(cfg)
    for i in range(4):
        t = T0 + i * DT
        frames = [_lidar(t, [(15.0, 3.0)], cls=m.AgentClass.UNKNOWN, score=0.4)] if i == 0 else []
        out = tracker.update([_ego(t), *frames], t)
    assert len(out.track_id) == 0


BAD_CASES = [
    ("non_finite", lambda t: _lidar(t, [(np.nan, 1.0)])),
    ("bad_class", lambda t: _lidar(t, [(10.0, 1.0)], cls=42)),
    ("bad_extrinsics", lambda t: _lidar(t, [(10.0, 1.0)], ego_from_sensor=np.full((4, 4), 2.0))),
    ("future_dated", lambda t: _lidar(t + 5 * 10**9, [(10.0, 1.0)])),
    (
        "unknown_sensor",
        lambda t: dataclasses.replace(
            _lidar(t, [(10.0, 1.0)]), header=m.Header(topic="sensor.sonar.fl", stamp_ns=t)
        ),
    ),
    (
        "unknown_sensor",
        lambda t: dataclasses.replace(
            _lidar(t, [(10.0, 1.0)]),
            header=m.Header(topic=m.sensor_topic(m.Modality.RADAR, m.Corner.FRONT_LEFT), stamp_ns=t),
        ),
    ),
]


@pytest.mark.parametrize(("reason", "make"), BAD_CASES)
def test_tracker_bad_frame_rejected_with_reason_and_loop_continues(reason: str, make) -> None:  # noqa: ANN001
    """Each bad frame is counted under topic:reason; good frames after it still track."""
    tracker = Tracker(TrackerConfig(reorder_window_s=0.0))
    t = T0
    tracker.process(_ego(t))
    bad = make(t)
    assert tracker.process(bad) is False
    assert tracker.stats.rejected == {f"{stats_topic(bad.header.topic)}:{reason}": 1}
    for i in range(6):
        t = T0 + i * DT
        out = tracker.update([_ego(t), _lidar(t, [(10.0, 1.0)])], t)
    assert len(out.track_id) == 1
    assert np.isfinite(out.position_m).all()


def test_tracker_duplicate_out_of_order_late_and_no_ego_counted() -> None:
    """Sequence problems are rejected by reason, never raised."""
    tracker = Tracker(TrackerConfig(reorder_window_s=0.0))
    topic = m.sensor_topic(m.Modality.LIDAR, m.Corner.FRONT_LEFT)
    # Held until the first ego state, which is too far ahead to extrapolate back to it.
    tracker.process(_lidar(T0 - 19 * DT, [(10.0, 1.0)]))
    tracker.process(_ego(T0))
    tracker.process(_ego(T0 + DT))
    assert tracker.process(_lidar(T0 + DT, [(10.0, 1.0)]))
    assert tracker.process(_lidar(T0 + DT, [(10.0, 1.0)])) is False  # duplicate
    assert tracker.process(_lidar(T0 + DT // 2, [(10.0, 1.0)])) is False  # out of order on this topic
    other = dataclasses.replace(
        _lidar(T0, [(10.0, 1.0)]),
        header=m.Header(topic=m.sensor_topic(m.Modality.LIDAR, m.Corner.REAR_LEFT), stamp_ns=T0),
    )
    assert tracker.process(other) is False  # older than the filter time: late
    assert tracker.process(_ego(T0 + DT)) is False  # duplicate ego
    rear = m.sensor_topic(m.Modality.LIDAR, m.Corner.REAR_LEFT)
    assert tracker.stats.rejected == {
        f"{topic}:no_ego_pose": 1,
        f"{topic}:duplicate": 1,
        f"{topic}:out_of_order": 1,
        f"{rear}:late": 1,
        f"{m.TOPIC_EGO}:duplicate": 1,
    }


def test_tracker_nan_ego_rejected_and_no_nan_emitted() -> None:
    """A NaN ego pose is rejected; output never contains NaN."""
    tracker = Tracker(TrackerConfig(reorder_window_s=0.0))
    bad = dataclasses.replace(_ego(T0), pose=np.array([np.nan, 0.0, 0.0]))
    assert tracker.process(bad) is False
    assert tracker.stats.rejected == {f"{m.TOPIC_EGO}:non_finite": 1}
    for i in range(5):
        t = T0 + i * DT
        out = tracker.update([_ego(t), _lidar(t, [(10.0, 1.0), (30.0, -4.0)])], t)
    for name in ("position_m", "velocity_mps", "covariance", "yaw_rad", "class_probs", "history_xy_m"):
        assert np.isfinite(getattr(out, name)).all(), name


def test_tracker_two_corners_seeing_one_object_make_one_track() -> None:
    """Overlapping LiDARs (same capture time, applied one after the other: no window, no
    timeline) update one track instead of spawning a duplicate."""
    tracker = Tracker(TrackerConfig(reorder_window_s=0.0, lookahead=False))
    fr = m.sensor_topic(m.Modality.LIDAR, m.Corner.FRONT_RIGHT)
    for i in range(6):
        t = T0 + i * DT
        a = _lidar(t, [(12.0, 0.0)])
        # Front-right sensor mounted 1 m to the right: it sees the object at y = +1.
        b = dataclasses.replace(
            _lidar(t, [(12.0, 1.02)]),
            header=m.Header(topic=fr, stamp_ns=t),
            ego_from_sensor=ego_from_sensor_matrix(0.0, -1.0, 0.0, 0.0),
        )
        out = tracker.update([_ego(t), a, b], t)
    assert len(out.track_id) == 1
    assert tracker.stats.counters["births"] == 1


def test_tracker_config_validate_names_field() -> None:
    """Inconsistent config raises ValueError naming the field."""
    with pytest.raises(ValueError, match="max_coast_s"):
        Tracker(TrackerConfig(max_coast_s=(1.0, 2.0)))


def test_tracker_on_simulator_tracks_visible_agents() -> None:
    """On 4 s of the real simulator (when present): no rejections, no NaN, most agents tracked."""
    sim_sensors = pytest.importorskip("prescient.sim_sensors")
    from prescient.service.app.tracking.evaluate import TrackingScorer
    from prescient.service.app.tracking.runner import TickDriver

    sim = sim_sensors.Simulation(sim_sensors.SimConfig(scenario="intersection", seed=3, n_agents=20))
    driver = TickDriver(Tracker())
    scorer = TrackingScorer(eval_range_m=40.0)
    gt: dict[int, m.GroundTruth] = {}
    outs = []
    while sim.time_ns < 4_000_000_000:
        for msg in sim.step():
            if isinstance(msg, m.GroundTruth):
                gt[msg.header.stamp_ns] = msg
            outs.extend(driver.feed(msg))
    for tr in outs:
        assert np.isfinite(tr.position_m).all() and np.isfinite(tr.covariance).all()
        if tr.header.stamp_ns in gt and tr.header.stamp_ns >= 1_000_000_000:
            scorer.add(tr, gt[tr.header.stamp_ns])
    assert driver.tracker.stats.total_rejected() == 0
    pytest.importorskip("motmetrics")
    summary = scorer.summary()
    assert summary["mota"] > 0.6, summary
    assert summary["motp"] < 0.5, summary
