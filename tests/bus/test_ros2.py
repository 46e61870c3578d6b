"""ROS 2 bags both ways (bus/ros2): export a small log, read it back with rosbags' own reader and
deserialiser, import it again, and refuse hostile input with one line."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags")

from rosbags.rosbag2 import Reader  # noqa: E402

from prescient.bus import messages as m  # noqa: E402
from prescient.bus.logfile import LogExistsError, LogWriter  # noqa: E402
from prescient.bus.replayer import iter_messages  # noqa: E402
from prescient.bus.ros2 import types as rt  # noqa: E402
from prescient.bus.ros2.export import FIXED_EPOCH_NS, export_ros2, time_anchor  # noqa: E402
from prescient.bus.ros2.importer import import_ros2  # noqa: E402
from prescient.service.app.cli import main  # noqa: E402
from prescient.service.raster.scenes import make_tracks  # noqa: E402

T0_NS = 1_000_000_000
DT_NS = 100_000_000
TICKS = 20  # 2 s at 10 Hz
K, T = 2, 5
TRACK_IDS = np.array([7, 42, 2**40], np.int64)  # one beyond int32: ids are int64 on both sides
CLASSES = np.array([m.AgentClass.CAR, m.AgentClass.PEDESTRIAN, m.AgentClass.CYCLIST], np.int32)


def _state(i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(3, 2) positions, (3, 2) velocities, (3,) yaws of the three agents at tick ``i`` (map frame)."""
    t_s = i * DT_NS / 1e9
    vel = np.array([[5.0, 0.0], [0.0, 1.2], [-3.0, 3.0]])
    pos = np.array([[10.0, 2.0], [-4.0, 8.0], [20.0, -6.0]]) + vel * t_s
    yaw = np.array([0.0, math.pi / 2, 3 * math.pi / 4]) + 0.01 * i
    return pos, vel, yaw


def _ego(stamp_ns: int, i: int) -> m.EgoState:
    return m.empty(
        m.EgoState, m.TOPIC_EGO, stamp_ns=stamp_ns, pose=np.array([1.0 * i, 0.5, 0.1]),
        velocity_mps=np.array([10.0, 1.0], np.float32), yaw_rate_radps=0.05,
        size_lwh_m=np.array([4.8, 2.0, 1.6], np.float32),
    )  # fmt: skip


def _predictions(stamp_ns: int, pos: np.ndarray, vel: np.ndarray) -> m.Predictions:
    steps = (np.arange(1, T + 1) * 0.1)[None, None, :, None]  # (1, 1, T, 1)
    traj = pos[:, None, None, :] + vel[:, None, None, :] * steps * np.array([1.0, 0.5])[None, :, None, None]
    return m.empty(
        m.Predictions, m.TOPIC_PREDICTIONS, stamp_ns=stamp_ns, dt_s=0.1, plan_id=-1,
        track_id=TRACK_IDS, class_id=CLASSES, mode_probs=np.tile([0.7, 0.3], (3, 1)).astype(np.float32),
        trajectories_m=traj.astype(np.float32), scale_m=np.ones((3, K, T, 2), np.float32),
        agent_source=np.zeros(3, np.uint8),
    )  # fmt: skip


def _lidar(stamp_ns: int) -> m.LidarFrame:
    mount = np.eye(4)
    mount[:3, 3] = [2.0, 1.0, 1.5]
    return m.empty(
        m.LidarFrame, m.sensor_topic(m.Modality.LIDAR, m.Corner.FRONT_LEFT), stamp_ns=stamp_ns, sensor_id="fl",
        ego_from_sensor=mount, center_m=np.array([[5.0, 0.0, 0.0], [9.0, -2.0, 0.0]], np.float32),
        size_lwh_m=np.array([[4.5, 1.9, 1.6], [0.6, 0.6, 1.7]], np.float32), yaw_rad=np.zeros(2, np.float32),
        class_id=np.array([1, 4], np.int32), score=np.array([0.9, 0.6], np.float32),
    )  # fmt: skip


def write_ros_log(path: Path, clock: dict[str, str] | None = None) -> dict[str, int]:
    """A small log: per tick an ego state, a LiDAR frame, predictions then tracks (the live order)."""
    with LogWriter(path) as w:
        if clock is not None:
            w.add_metadata("prescient.clock", clock)
        for i in range(TICKS):
            stamp = T0_NS + i * DT_NS
            pos, vel, yaw = _state(i)
            w.write(_ego(stamp, i))
            w.write(_lidar(stamp))
            w.write(_predictions(stamp, pos, vel))
            w.write(
                make_tracks(pos, yaw, np.tile([4.5, 1.9], (3, 1)), CLASSES, vel, ego_pose=(1.0 * i, 0.5, 0.1),
                            stamp_ns=stamp, track_id=TRACK_IDS)
            )  # fmt: skip
        return dict(w.counts)


@pytest.fixture
def small_log(tmp_path: Path) -> Path:
    path = tmp_path / "small.mcap"
    write_ros_log(path)
    return path


def _decoded(bag: Path) -> tuple[dict[str, list], dict[str, int]]:
    """Every message of ``bag`` through rosbags' deserialiser, per topic; and the metadata's counts."""
    store = rt.typestore("humble")
    out: dict[str, list] = {}
    with Reader(bag) as reader:
        for conn, _t, raw in reader.messages():
            out.setdefault(conn.topic, []).append(store.deserialize_cdr(raw, conn.msgtype))
        meta = {topic: info.msgcount for topic, info in reader.topics.items()}
    return out, meta


def test_export_every_message_decodes_and_counts_match_log(small_log: Path, tmp_path: Path) -> None:
    """Each exported message decodes with rosbags; counts per topic follow the log and metadata.yaml."""
    report = export_ros2(small_log, tmp_path / "bag")
    decoded, meta = _decoded(tmp_path / "bag")
    expected = {
        rt.TOPIC_ODOMETRY: TICKS, rt.TOPIC_TF: TICKS, rt.TOPIC_TRACKED: TICKS, rt.TOPIC_TRACK_MARKERS: TICKS,
        rt.TOPIC_PREDICTED: TICKS, rt.TOPIC_PREDICTION_MARKERS: TICKS, "/prescient/detection/lidar/fl": TICKS,
    }  # fmt: skip
    assert {t: len(v) for t, v in decoded.items()} == expected
    assert meta == expected
    assert report.counts == expected
    assert report.predictions_without_track == 0
    assert (tmp_path / "bag" / "metadata.yaml").is_file() and (tmp_path / "bag" / "bag.mcap").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # the scratch folder is gone


def test_export_predicted_objects_carry_weighted_paths_from_current_state(
    small_log: Path, tmp_path: Path
) -> None:
    """PredictedPath: path[0] is the track now, then the T steps; confidence is the mode probability."""
    export_ros2(small_log, tmp_path / "bag")
    decoded, _ = _decoded(tmp_path / "bag")
    msg = decoded[rt.TOPIC_PREDICTED][3]
    pos, vel, _ = _state(3)
    assert msg.header.frame_id == "map" and len(msg.objects) == 3
    for n, obj in enumerate(msg.objects):
        assert rt.track_id_from_uuid(obj.object_id.uuid) == TRACK_IDS[n]
        paths = obj.kinematics.predicted_paths
        assert [p.confidence for p in paths] == pytest.approx([0.7, 0.3])
        assert rt.ns_from_time(paths[0].time_step) == DT_NS
        xy = np.array([[p.position.x, p.position.y] for p in paths[0].path])
        assert xy.shape == (T + 1, 2)
        np.testing.assert_allclose(xy[0], pos[n], atol=1e-5)
        np.testing.assert_allclose(xy[1], pos[n] + vel[n] * 0.1, atol=1e-4)
        assert rt.class_from_classification(obj.classification) == CLASSES[n]


def test_export_detections_in_base_link_and_odometry_twist_in_body(small_log: Path, tmp_path: Path) -> None:
    """LiDAR boxes move by the mount into base_link; the ego twist is in base_link."""
    export_ros2(small_log, tmp_path / "bag")
    decoded, _ = _decoded(tmp_path / "bag")
    det = decoded["/prescient/detection/lidar/fl"][0]
    assert det.header.frame_id == "base_link"
    p = det.objects[0].kinematics.pose_with_covariance.pose.position
    assert (p.x, p.y, p.z) == pytest.approx((7.0, 1.0, 1.5))
    odom = decoded[rt.TOPIC_ODOMETRY][0]
    v = rt.rotate(np.array([odom.twist.twist.linear.x, odom.twist.twist.linear.y]), 0.1)
    np.testing.assert_allclose(v, [10.0, 1.0], atol=1e-5)
    tf = decoded[rt.TOPIC_TF][0].transforms[0]
    assert (tf.header.frame_id, tf.child_frame_id) == ("map", "base_link")


def test_export_time_anchor_fixed_epoch_or_recorder_clock(tmp_path: Path) -> None:
    """No wall clock in the log: the first stamp maps to the fixed epoch; a recorder's clock is used when there."""
    plain = tmp_path / "plain.mcap"
    write_ros_log(plain)
    assert time_anchor(plain).stamp_offset_ns == FIXED_EPOCH_NS - T0_NS
    live = tmp_path / "live.mcap"
    write_ros_log(live, clock={"log_time": "receive", "wall_minus_monotonic_ns": "1700000000000000000"})
    anchor = time_anchor(live)
    # Importer-style logs have log_time = stamp, so the first ego's receive time is T0_NS.
    assert anchor.stamp_offset_ns == 1_700_000_000_000_000_000
    assert anchor.log_offset_ns == 1_700_000_000_000_000_000
    export_ros2(live, tmp_path / "bag")
    decoded, _ = _decoded(tmp_path / "bag")
    assert rt.ns_from_time(decoded[rt.TOPIC_ODOMETRY][0].header.stamp) == 1_700_000_000_000_000_000 + T0_NS


def test_export_import_round_trip_keeps_tracks(small_log: Path, tmp_path: Path) -> None:
    """export -> import: the same stamps, ids, classes, positions, velocities and yaws."""
    export_ros2(small_log, tmp_path / "bag")
    counts = import_ros2(tmp_path / "bag", tmp_path / "back.mcap")
    assert counts == {m.TOPIC_EGO: TICKS, m.TOPIC_TRACKS: TICKS}
    before = {lm.msg.header.stamp_ns: lm.msg for lm in iter_messages(small_log, topics=[m.TOPIC_TRACKS])}
    after = {
        lm.msg.header.stamp_ns: lm.msg
        for lm in iter_messages(tmp_path / "back.mcap", topics=[m.TOPIC_TRACKS])
    }
    assert sorted(after) == sorted(before)
    for stamp, a in after.items():
        b = before[stamp]
        np.testing.assert_array_equal(a.track_id, b.track_id)
        np.testing.assert_array_equal(a.class_id, b.class_id)
        np.testing.assert_allclose(a.position_m, b.position_m, atol=1e-5)
        np.testing.assert_allclose(a.velocity_mps, b.velocity_mps, atol=1e-5)
        np.testing.assert_allclose(np.angle(np.exp(1j * (a.yaw_rad - b.yaw_rad))), 0.0, atol=1e-5)
        np.testing.assert_allclose(a.ego_pose, b.ego_pose, atol=1e-6)
    ego = [lm.msg for lm in iter_messages(tmp_path / "back.mcap", topics=[m.TOPIC_EGO])]
    np.testing.assert_allclose(ego[0].velocity_mps, [10.0, 1.0], atol=1e-5)


def test_import_detections_become_lidar_frames_in_ego_frame(small_log: Path, tmp_path: Path) -> None:
    """DetectedObjects (base_link) -> LiDAR frames the tracker can run on, boxes where the export put them."""
    export_ros2(small_log, tmp_path / "bag")
    counts = import_ros2(
        tmp_path / "bag", tmp_path / "det.mcap", objects_topic="/prescient/detection/lidar/fl"
    )
    assert counts == {m.TOPIC_EGO: TICKS, "sensor.lidar.fl": TICKS}
    frame = next(iter_messages(tmp_path / "det.mcap", topics=["sensor.lidar.fl"])).msg
    np.testing.assert_allclose(frame.center_m, [[7.0, 1.0, 1.5], [11.0, -1.0, 1.5]], atol=1e-5)
    np.testing.assert_array_equal(frame.class_id, [1, 4])


def test_import_foreign_uuids_numbered_by_first_appearance() -> None:
    """uuids the export did not write get ids 0, 1, ... in order of first appearance."""
    from prescient.bus.ros2.importer import _track_ids

    a, b = bytes(range(16)), bytes(range(1, 17))
    assert _track_ids([b, a, b]) == {b: 0, a: 1}
    ours = bytes(rt.uuid_from_track_id(-5))
    assert _track_ids([ours]) == {ours: -5}


def test_export_existing_outdir_refused_unless_force(small_log: Path, tmp_path: Path) -> None:
    """An existing OUTDIR stays untouched without force; with force it is replaced whole."""
    out = tmp_path / "bag"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(LogExistsError):
        export_ros2(small_log, out)
    assert (out / "keep.txt").is_file()
    export_ros2(small_log, out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["bag.mcap", "metadata.yaml"]


def _hostile_inputs(tmp_path: Path, small_log: Path) -> dict[str, Path]:
    bag = tmp_path / "bag"
    export_ros2(small_log, bag)
    not_bag = tmp_path / "plain_dir"
    not_bag.mkdir()
    (not_bag / "notes.txt").write_text("hello")
    truncated = tmp_path / "truncated"
    shutil.copytree(bag, truncated)
    mcap = truncated / "bag.mcap"
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 3])
    garbage = tmp_path / "garbage"
    shutil.copytree(bag, garbage)
    (garbage / "metadata.yaml").write_text("rosbag2_bagfile_information: [1, 2\n")
    return {"bag": bag, "not_bag": not_bag, "truncated": truncated, "garbage": garbage}


@pytest.mark.parametrize(
    ("case", "extra", "says"),
    [
        ("not_bag", [], "no metadata.yaml"),
        ("bag", ["--objects-topic", "/nope"], "no topic '/nope'"),
        ("bag", ["--odom-topic", rt.TOPIC_TRACKED], "expected one of nav_msgs/msg/Odometry"),
        ("truncated", [], "not a readable rosbag2"),
        ("garbage", [], "not a readable rosbag2"),
    ],
)
def test_cli_import_hostile_bag_one_line_nonzero(
    case: str,
    extra: list[str],
    says: str,
    small_log: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A non-bag dir, a missing topic, a wrong type, a truncated mcap, bad YAML: one line, exit 1, no output."""
    paths = _hostile_inputs(tmp_path, small_log)
    capsys.readouterr()
    out = tmp_path / "out.mcap"
    code = main(["import", "ros2", str(paths[case]), "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("prescient ") and says in err, err
    assert "Traceback" not in err
    assert not out.exists()


def test_cli_export_prints_counts_and_refuses_existing(
    small_log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``log export-ros2``: a summary with per-topic counts; an existing OUTDIR is one line and exit 1."""
    out = tmp_path / "bag"
    assert main(["log", "export-ros2", str(small_log), str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"wrote {7 * TICKS} messages on 7 topics to {out}")
    assert rt.TOPIC_PREDICTED in text
    assert main(["log", "export-ros2", str(small_log), str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "exists" in err
    assert main(["log", "export-ros2", str(small_log), str(out), "--force"]) == 0


def test_export_decodes_with_foxglove_reader_from_embedded_schemas(small_log: Path, tmp_path: Path) -> None:
    """A second, independent reader: Foxglove's mcap-ros2-support parses the ros2msg schema text
    written into the bag (as Foxglove does when it opens a ROS 2 MCAP) and decodes every message to
    the same values rosbags decodes from its own registered types."""
    mcap_reader = pytest.importorskip("mcap.reader")
    mcap_ros2 = pytest.importorskip("mcap_ros2.decoder")
    export_ros2(small_log, tmp_path / "bag")
    rosbags_decoded, meta = _decoded(tmp_path / "bag")
    ours: dict[str, list] = {}
    encodings = set()
    with (tmp_path / "bag" / "bag.mcap").open("rb") as f:
        reader = mcap_reader.make_reader(f, decoder_factories=[mcap_ros2.DecoderFactory()])
        for schema, channel, _msg, decoded in reader.iter_decoded_messages():
            encodings.add((schema.encoding, channel.message_encoding))
            ours.setdefault(channel.topic, []).append(decoded)
    assert encodings == {("ros2msg", "cdr")}
    assert {t: len(v) for t, v in ours.items()} == meta
    for a, b in zip(ours[rt.TOPIC_PREDICTED], rosbags_decoded[rt.TOPIC_PREDICTED], strict=True):
        assert (a.header.stamp.sec, a.header.stamp.nanosec) == (b.header.stamp.sec, b.header.stamp.nanosec)
        for oa, ob in zip(a.objects, b.objects, strict=True):
            assert bytes(oa.object_id.uuid) == bytes(ob.object_id.uuid)
            pa, pb = oa.kinematics.predicted_paths, ob.kinematics.predicted_paths
            assert [p.confidence for p in pa] == [p.confidence for p in pb]
            for qa, qb in zip(pa, pb, strict=True):
                assert [(s.position.x, s.position.y) for s in qa.path] == [
                    (s.position.x, s.position.y) for s in qb.path
                ]
    odom_a, odom_b = ours[rt.TOPIC_ODOMETRY][5], rosbags_decoded[rt.TOPIC_ODOMETRY][5]
    assert odom_a.twist.twist.linear.x == odom_b.twist.twist.linear.x
    assert list(odom_a.pose.covariance) == list(odom_b.pose.covariance)
    markers = ours[rt.TOPIC_PREDICTION_MARKERS][0].markers
    assert len(markers) == len(rosbags_decoded[rt.TOPIC_PREDICTION_MARKERS][0].markers) > 0
