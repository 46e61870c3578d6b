"""A ROS 2 bag (Autoware objects + odometry) -> a prescient log that ``prescient replay`` predicts on.

Input: a rosbag2 directory (MCAP or sqlite3 storage) with

* an objects topic (default Autoware's ``/perception/object_recognition/tracking/objects``) of
  ``TrackedObjects`` or ``PredictedObjects`` (its initial states; its paths are ignored) in
  ``map``, or of ``DetectedObjects`` in ``base_link`` or ``map``;
* an odometry topic (default ``/localization/kinematic_state``), ``nav_msgs/Odometry`` whose pose is
  ``map_from_base_link`` and whose twist is in ``base_link``.

Output (``log_time = header.stamp_ns``, as every importer): an ``EgoState`` per odometry message
and, for tracked/predicted objects, a ``Tracks`` per objects message (world = ``map``; history,
accelerations and yaw rates derived as for the data-set importers, :mod:`~prescient.bus.importers._tracks`),
which ``replay`` runs in its log-tracks mode. Detections carry no identity: they become LiDAR
frames (``sensor.lidar.fl``, boxes in the ego frame, identity mount, no points) and ``replay`` runs
prescient's tracker on them. Object twists are in the object's frame (Autoware's convention).

Stamps: the header stamps, less the ``prescient.stamp_offset_ns`` of a bag written by
``prescient log export-ros2`` (so its log's clock comes back), else unchanged (UNIX ns). Object ids:
the track ids of such a bag, else numbered by first appearance of each uuid.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Final

import numpy as np

from prescient.bus import messages as m
from prescient.bus.importers import MAX_ABS_VALUE, InputError, import_writer
from prescient.bus.importers._tracks import AgentRows, default_sizes, ego_state, iter_agent_messages
from prescient.bus.logfile import refuse_existing
from prescient.bus.ros2 import types as rt

OBJECT_TYPES: Final = (rt.TRACKED_OBJECTS, rt.PREDICTED_OBJECTS, rt.DETECTED_OBJECTS)
DETECTIONS_TOPIC: Final = m.sensor_topic(m.Modality.LIDAR, m.Corner.FRONT_LEFT)
EGO_SIZE_LWH_M: Final = m.DEFAULT_SIZE_LWH_M[m.AgentClass.CAR]  # a bag does not carry the vehicle size
_IDENTITY4: Final = np.eye(4)


def _one_line(e: Exception, limit: int = 300) -> str:
    """``Type: message`` on one line, at most ``limit`` characters (YAML errors span many)."""
    text = " ".join(f"{type(e).__name__}: {e}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _bag_error(bag: Path, e: Exception) -> InputError:
    return InputError(bag, f"not a readable rosbag2: {_one_line(e)}")


def _open(bag: Path) -> Any:
    """An open rosbags Reader of the directory ``bag``."""
    from rosbags.rosbag2 import Reader

    if not bag.is_dir():
        raise InputError(bag, "expected a rosbag2 directory (metadata.yaml + storage file)")
    if not (bag / "metadata.yaml").is_file():
        raise InputError(bag, "no metadata.yaml: not a rosbag2 directory")
    try:
        reader = Reader(bag)
        reader.open()
    except Exception as e:  # rosbags raises ReaderError, KeyError, struct and yaml errors on bad input
        raise _bag_error(bag, e) from e
    return reader


def _connection(reader: Any, bag: Path, topic: str, allowed: tuple[str, ...], what: str) -> Any:
    """The one connection of ``topic``; InputError naming the topics there are if it is missing."""
    conns = [c for c in reader.connections if c.topic == topic]
    if not conns:
        have = sorted(f"{c.topic} ({c.msgtype})" for c in reader.connections if c.msgtype in allowed)
        hint = f"; {what} topics in the bag: {', '.join(have)}" if have else f"; the bag has no {what} topic"
        raise InputError(bag, f"no topic {topic!r}{hint}")
    if conns[0].msgtype not in allowed:
        raise InputError(bag, f"topic {topic!r} is {conns[0].msgtype}, expected one of {', '.join(allowed)}")
    return conns[0]


def _read(reader: Any, bag: Path, conn: Any, store: Any) -> list[Any]:
    """Every message of ``conn``, deserialised, in bag order."""
    out = []
    try:
        for _, _, raw in reader.messages(connections=[conn]):
            out.append(store.deserialize_cdr(raw, conn.msgtype))
    except Exception as e:  # a truncated or corrupt storage file surfaces as any of many errors
        raise InputError(bag, f"{conn.topic}: cannot read message {len(out)}: {_one_line(e)}") from e
    return out


def _finite(bag: Path, topic: str, index: int, values: list[float]) -> None:
    a = np.asarray(values, np.float64)
    if not np.all(np.isfinite(a)) or np.any(np.abs(a) > MAX_ABS_VALUE):
        raise InputError(bag, f"{topic}: message {index}: NaN, inf or |value| > {MAX_ABS_VALUE:g}")


def _stamp(msg: Any, offset_ns: int) -> int:
    return rt.ns_from_time(msg.header.stamp) - offset_ns


def _ego_track(bag: Path, topic: str, odoms: list[Any], offset_ns: int) -> dict[str, np.ndarray]:
    """Odometry as arrays sorted by stamp: t_ns (E,), pose (E, 3) map [x, y, yaw], velocity_mps (E, 2) map,
    yaw_rate_radps (E,)."""
    if not odoms:
        raise InputError(bag, f"{topic}: no messages")
    t_list, rows = [], []
    for i, o in enumerate(odoms):
        if o.header.frame_id not in ("", rt.FRAME_MAP):
            raise InputError(
                bag, f"{topic}: message {i}: frame {o.header.frame_id!r}, expected {rt.FRAME_MAP!r}"
            )
        p, tw = o.pose.pose, o.twist.twist
        yaw = rt.yaw_from_quaternion(p.orientation)
        v = rt.rotate(np.array([tw.linear.x, tw.linear.y]), yaw)  # base_link -> map
        row = [p.position.x, p.position.y, yaw, v[0], v[1], tw.angular.z]
        _finite(bag, topic, i, row)
        t_list.append(_stamp(o, offset_ns))
        rows.append(row)
    order = np.argsort(np.array(t_list, np.int64), kind="stable")
    t = np.array(t_list, np.int64)[order]
    a = np.array(rows, np.float64)[order]
    return {"t_ns": t, "pose": a[:, 0:3], "velocity_mps": a[:, 3:5], "yaw_rate_radps": a[:, 5]}


def _ego_pose_at(ego: dict[str, np.ndarray], t_ns: int) -> np.ndarray:
    """(3,) map ``[x_m, y_m, yaw_rad]`` interpolated at ``t_ns`` (held at the ends of the odometry)."""
    t0 = int(ego["t_ns"][0])
    t = (ego["t_ns"] - t0).astype(np.float64)  # relative: UNIX ns in float64 would round to 256 ns
    yaw = np.unwrap(ego["pose"][:, 2])
    x, y, a = (float(np.interp(float(t_ns - t0), t, v)) for v in (ego["pose"][:, 0], ego["pose"][:, 1], yaw))
    return np.array([x, y, math.atan2(math.sin(a), math.cos(a))])


def _size_lwh(obj: Any) -> list[float]:
    """Box (length, width, height) m of an Autoware Shape (0 where it does not say)."""
    s = obj.shape
    d = s.dimensions
    if s.type == 1:  # CYLINDER: x = y = diameter
        return [d.x, d.x, d.z]
    if s.type == 2 and s.footprint.points:  # POLYGON: the footprint's extent in the object frame
        xs = [p.x for p in s.footprint.points]
        ys = [p.y for p in s.footprint.points]
        return [max(xs) - min(xs), max(ys) - min(ys), d.z]
    return [d.x, d.y, d.z]


def _object_row(obj: Any, kin_pose: Any, twist: Any) -> list[float]:
    """[x, y, yaw, vx, vy (map), length, width, height, class] of one object."""
    p = kin_pose.pose
    yaw = rt.yaw_from_quaternion(p.orientation)
    v = rt.rotate(np.array([twist.twist.linear.x, twist.twist.linear.y]), yaw)  # object frame -> map
    cls = float(rt.class_from_classification(list(obj.classification)))
    return [p.position.x, p.position.y, yaw, v[0], v[1], *_size_lwh(obj), cls]


def _kinematics(obj: Any) -> tuple[Any, Any]:
    k = obj.kinematics
    if hasattr(k, "initial_pose_with_covariance"):  # PredictedObject
        return k.initial_pose_with_covariance, k.initial_twist_with_covariance
    return k.pose_with_covariance, k.twist_with_covariance


def _track_ids(uuids: list[bytes]) -> dict[bytes, int]:
    """uuid -> track id: the ids an export wrote if every uuid is one, else first-appearance order."""
    decoded = {u: rt.track_id_from_uuid(np.frombuffer(u, np.uint8)) for u in uuids}
    if decoded and all(v is not None for v in decoded.values()):
        return {u: int(v) for u, v in decoded.items() if v is not None}
    return {u: i for i, u in enumerate(dict.fromkeys(uuids))}


def _agent_rows(bag: Path, topic: str, msgs: list[Any], offset_ns: int) -> tuple[AgentRows, list[int]]:
    """Tracked/predicted objects (map frame) -> agent rows, plus every message's stamp (ns)."""
    stamps, t_ns, uuids, vals = [], [], [], []
    for i, msg in enumerate(msgs):
        if msg.header.frame_id not in ("", rt.FRAME_MAP):
            raise InputError(
                bag, f"{topic}: message {i}: frame {msg.header.frame_id!r}, expected {rt.FRAME_MAP!r}"
            )
        stamp = _stamp(msg, offset_ns)
        stamps.append(stamp)
        seen: set[bytes] = set()
        for obj in msg.objects:
            u = bytes(np.asarray(obj.object_id.uuid, np.uint8))
            if u in seen:
                raise InputError(bag, f"{topic}: message {i}: object id {u.hex()} appears twice")
            seen.add(u)
            row = _object_row(obj, *_kinematics(obj))
            _finite(bag, topic, i, row)
            t_ns.append(stamp)
            uuids.append(u)
            vals.append(row)
    ids = _track_ids(uuids)
    a = np.array(vals, np.float64).reshape(-1, 9)
    cls = a[:, 8].astype(np.int32)
    size = a[:, 5:8]
    bad = ~np.all(size > 0, axis=1)
    size[bad] = default_sizes(cls[bad])  # a shape without dimensions gets its class's typical box
    rows = AgentRows(
        t_ns=np.array(t_ns, np.int64),
        agent_id=np.array([ids[u] for u in uuids], np.int64),
        class_id=cls,
        xy_m=a[:, 0:2],
        size_lwh_m=size,
        yaw_rad=a[:, 2],
        velocity_mps=a[:, 3:5],
    )
    return rows, stamps


def _lidar_frames(
    bag: Path, topic: str, msgs: list[Any], offset_ns: int, ego: dict[str, np.ndarray]
) -> list[m.LidarFrame]:
    """DetectedObjects -> LidarFrames with boxes in the ego frame (``map`` ones moved by the ego pose)."""
    frames = []
    for i, msg in enumerate(msgs):
        frame_id = msg.header.frame_id
        if frame_id not in (rt.FRAME_BASE_LINK, rt.FRAME_MAP):
            raise InputError(bag, f"{topic}: message {i}: frame {frame_id!r}, expected base_link or map")
        stamp = _stamp(msg, offset_ns)
        rows = []
        for obj in msg.objects:
            p = obj.kinematics.pose_with_covariance.pose
            cls = int(rt.class_from_classification(list(obj.classification)))
            rows.append([p.position.x, p.position.y, p.position.z, rt.yaw_from_quaternion(p.orientation),
                         *_size_lwh(obj), cls, obj.existence_probability])  # fmt: skip
        a = np.array(rows, np.float64).reshape(-1, 9)
        _finite(bag, topic, i, a.ravel().tolist())
        if frame_id == rt.FRAME_MAP:  # base_link_from_map at this stamp
            x, y, yaw = _ego_pose_at(ego, stamp)
            a[:, 0:2] = rt.rotate(a[:, 0:2] - [x, y], -yaw)
            a[:, 3] -= yaw
        size = a[:, 4:7]
        bad = ~np.all(size > 0, axis=1)
        size[bad] = default_sizes(a[bad, 7].astype(np.int64))
        frames.append(
            m.LidarFrame(
                header=m.Header(topic=DETECTIONS_TOPIC, stamp_ns=stamp),
                sensor_id="ros2",
                ego_from_sensor=_IDENTITY4.copy(),
                center_m=a[:, 0:3].astype(np.float32),
                size_lwh_m=size.astype(np.float32),
                yaw_rad=a[:, 3].astype(np.float32),
                class_id=a[:, 7].astype(np.int32),
                score=np.clip(a[:, 8], 0.0, 1.0).astype(np.float32),
                points_m=np.zeros((0, 3), np.float32),
            )
        )
    return frames


def _ego_states(ego: dict[str, np.ndarray]) -> list[m.EgoState]:
    """EgoStates from the odometry; acceleration is the backward difference of the speed."""
    t = ego["t_ns"]
    speed = np.hypot(ego["velocity_mps"][:, 0], ego["velocity_mps"][:, 1])
    accel = np.r_[0.0, np.diff(speed) / np.maximum(np.diff(t) / 1e9, 1e-9)]
    return [
        ego_state(
            int(t[k]),
            ego["pose"][k],
            ego["velocity_mps"][k],
            accel[k],
            ego["yaw_rate_radps"][k],
            EGO_SIZE_LWH_M,
        )
        for k in range(len(t))
    ]


def _stamp_offset(reader: Any) -> int:
    """The export's ``prescient.stamp_offset_ns`` from the bag's custom_data, else 0."""
    custom = getattr(getattr(reader.storage, "metadata", None), "custom", None) or {}
    value = str(custom.get(rt.META_STAMP_OFFSET, "0"))
    return int(value) if value.lstrip("-").isdigit() else 0


def _messages_from_bag(bag: Path, objects_topic: str, odom_topic: str) -> list[Any]:
    """Every prescient message the bag gives, sorted by stamp (ego first at equal stamps)."""
    store = rt.typestore("humble")
    reader = _open(bag)
    try:
        obj_conn = _connection(reader, bag, objects_topic, OBJECT_TYPES, "object")
        odom_conn = _connection(reader, bag, odom_topic, (rt.ODOMETRY,), "odometry")
        offset = _stamp_offset(reader)
        ego = _ego_track(bag, odom_topic, _read(reader, bag, odom_conn, store), offset)
        object_msgs = _read(reader, bag, obj_conn, store)
    finally:
        reader.close()
    out: list[Any] = _ego_states(ego)
    if obj_conn.msgtype == rt.DETECTED_OBJECTS:
        out += _lidar_frames(bag, objects_topic, object_msgs, offset, ego)
    else:
        rows, stamps = _agent_rows(bag, objects_topic, object_msgs, offset)
        poses = {s: _ego_pose_at(ego, s) for s in stamps}
        tracks = {s: tr for s, tr, _gt in iter_agent_messages(rows, poses, max_gap_s=1.0)}
        for s in sorted(set(stamps)):
            out.append(tracks.get(s) or m.empty(m.Tracks, m.TOPIC_TRACKS, s, ego_pose=poses[s]))
    out.sort(key=lambda msg: (msg.header.stamp_ns, not isinstance(msg, m.EgoState)))
    return out


def import_ros2(
    src: str | Path,
    out: str | Path,
    *,
    overwrite: bool = False,
    objects_topic: str = rt.TOPIC_TRACKED,
    odom_topic: str = rt.TOPIC_ODOMETRY,
) -> dict[str, int]:
    """Convert a rosbag2 directory to a prescient log.

    Args:
        src: the bag directory.
        out: output log.
        overwrite: replace ``out`` if it holds data.
        objects_topic: TrackedObjects, PredictedObjects or DetectedObjects topic.
        odom_topic: nav_msgs/Odometry topic of the ego.

    Returns:
        messages written per topic.

    Raises:
        InputError: not a readable bag, a topic missing or of another type, a frame other than
            map (base_link for detections), NaN or huge values, an object id twice in a message.
        LogExistsError: ``out`` holds data and ``overwrite`` is False (checked before reading).
    """
    refuse_existing(out, overwrite=overwrite)
    src = Path(src)
    msgs = _messages_from_bag(src, objects_topic, odom_topic)
    with import_writer(out, src, overwrite=overwrite) as w:
        for msg in msgs:
            w.write(msg)
        return dict(w.counts)
