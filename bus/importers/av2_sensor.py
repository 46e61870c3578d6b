"""Argoverse 2 sensor-dataset log (cuboid annotations + ego poses + vector map) -> prescient log.

Input directory (one AV2 log): ``annotations.feather`` or ``annotations_with_ego.feather`` (or
the ``.csv`` twins), ``city_SE3_egovehicle.feather`` / ``.csv`` and
``map/log_map_archive_*.json``.

Frames: cuboids are in the ego frame at their timestamp; ``p_city = R(q_ego) p_ego + t_ego`` and
the city yaw is that of ``R(q_ego) R(q_obj)``. The city frame is our world frame.

Output (``log_time = stamp``): ``VectorMap`` once at the first annotation stamp, then for each
annotation timestamp (10 Hz) ``EgoState``, ``Tracks`` and ``GroundTruth`` (world frame). Classes
are mapped to :class:`~prescient.bus.messages.AgentClass`; static objects (cones, bollards, signs, ...) and
the ``EGO_VEHICLE`` rows are dropped. Ego velocity is the backward difference of the ~200 Hz
poses over ``EGO_VEL_WINDOW_NS``; object velocities are backward differences of the annotations.
Track ids are the uuids numbered by (first appearance, uuid).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import numpy as np

from prescient.bus import messages as m
from prescient.bus.importers import (
    MAX_ABS_VALUE,
    InputError,
    finite_column,
    import_writer,
    integer_column,
    read_table,
    string_column,
)
from prescient.bus.importers._tracks import AgentRows, ego_state, iter_agent_messages
from prescient.bus.importers.av2_map import find_map, load_av2_map
from prescient.bus.logfile import refuse_existing

A = m.AgentClass
# AV2 sensor categories -> our classes; None = static object, not an agent (dropped).
CATEGORY_CLASS: Final[dict[str, m.AgentClass | None]] = {
    "REGULAR_VEHICLE": A.CAR,
    "LARGE_VEHICLE": A.TRUCK,
    "BOX_TRUCK": A.TRUCK,
    "TRUCK": A.TRUCK,
    "TRUCK_CAB": A.TRUCK,
    "VEHICULAR_TRAILER": A.TRUCK,
    "MESSAGE_BOARD_TRAILER": None,
    "TRAFFIC_LIGHT_TRAILER": None,
    "BUS": A.BUS,
    "SCHOOL_BUS": A.BUS,
    "ARTICULATED_BUS": A.BUS,
    "MOTORCYCLE": A.CYCLIST,
    "MOTORCYCLIST": A.CYCLIST,
    "BICYCLE": A.CYCLIST,
    "BICYCLIST": A.CYCLIST,
    "WHEELED_RIDER": A.CYCLIST,
    "PEDESTRIAN": A.PEDESTRIAN,
    "STROLLER": A.PEDESTRIAN,
    "WHEELCHAIR": A.PEDESTRIAN,
    "WHEELED_DEVICE": A.PEDESTRIAN,
    "OFFICIAL_SIGNALER": A.PEDESTRIAN,
    "DOG": A.ANIMAL,
    "RAILED_VEHICLE": A.BUS,
    "BOLLARD": None,
    "CONSTRUCTION_CONE": None,
    "CONSTRUCTION_BARREL": None,
    "SIGN": None,
    "STOP_SIGN": None,
    "MOBILE_PEDESTRIAN_CROSSING_SIGN": None,
    "MOBILE_PEDESTRIAN_SIGN": None,
    "EGO_VEHICLE": None,
}
ANNOTATION_COLUMNS: Final = (
    "timestamp_ns",
    "track_uuid",
    "category",
    "length_m",
    "width_m",
    "height_m",
    "qw",
    "qx",
    "qy",
    "qz",
    "tx_m",
    "ty_m",
    "tz_m",
)
POSE_COLUMNS: Final = ("timestamp_ns", "qw", "qx", "qy", "qz", "tx_m", "ty_m", "tz_m")
EGO_VEL_WINDOW_NS: Final = 100_000_000
# Approximate AV2 ego vehicle box (length, width, height), metres.
EGO_SIZE_LWH_M: Final = (4.9, 2.0, 1.8)


def _first(directory: Path, *names: str) -> Path:
    for n in names:
        if (directory / n).is_file():
            return directory / n
    raise InputError(directory, f"none of {list(names)} found")


def rotation_from_quat(q: np.ndarray) -> np.ndarray:
    """(R, 4) ``[qw, qx, qy, qz]`` -> (R, 3, 3) rotation matrices (normalised first)."""
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=1,
    )


def _quats(path: Path, df) -> np.ndarray:  # noqa: ANN001 - pandas frame
    q = np.stack(
        [finite_column(path, df, c, max_abs=MAX_ABS_VALUE) for c in ("qw", "qx", "qy", "qz")], axis=1
    )
    bad = np.flatnonzero(np.linalg.norm(q, axis=1) < 1e-6)
    if bad.size:
        raise InputError(path, "zero quaternion", column="qw", row=int(bad[0]))
    return q


def _timestamps(path: Path, df) -> np.ndarray:  # noqa: ANN001 - pandas frame
    """``timestamp_ns`` as int64; NaN, non-integer, negative or > int64 values raise InputError."""
    if len(df) == 0:
        raise InputError(path, "no rows")
    return integer_column(path, df, "timestamp_ns")


def import_av2_sensor(src: str | Path, out: str | Path, *, overwrite: bool = False) -> dict[str, int]:
    """Convert one AV2 sensor-dataset log directory to a prescient log.

    Args:
        src: the log directory.
        out: output log.
        overwrite: replace ``out`` if it holds data.

    Returns:
        messages written per topic.

    Raises:
        InputError: missing file or column, NaN, unknown category, non-monotonic pose time,
            an annotation timestamp without an ego pose.
        LogExistsError: ``out`` holds data and ``overwrite`` is False (checked before reading).
    """
    refuse_existing(out, overwrite=overwrite)
    src = Path(src)
    if not src.is_dir():
        raise InputError(src, "expected an AV2 log directory")
    ann_path = _first(
        src,
        "annotations.feather",
        "annotations_with_ego.feather",
        "annotations.csv",
        "annotations_with_ego.csv",
    )
    pose_path = _first(src, "city_SE3_egovehicle.feather", "city_SE3_egovehicle.csv")
    ann = read_table(ann_path, ANNOTATION_COLUMNS)
    poses = read_table(pose_path, POSE_COLUMNS)

    # Ego poses: strictly increasing time, finite, exact match for every annotation stamp.
    pt = _timestamps(pose_path, poses)
    back = np.flatnonzero(np.diff(pt) <= 0)
    if back.size:
        raise InputError(
            pose_path,
            "non-monotonic time (timestamps must increase)",
            column="timestamp_ns",
            row=int(back[0] + 1),
        )
    p_rot = rotation_from_quat(_quats(pose_path, poses))
    p_xyz = np.stack(
        [finite_column(pose_path, poses, c, max_abs=MAX_ABS_VALUE) for c in ("tx_m", "ty_m", "tz_m")], axis=1
    )
    p_yaw = np.arctan2(p_rot[:, 1, 0], p_rot[:, 0, 0])

    at = _timestamps(ann_path, ann)
    cats = string_column(ann_path, ann, "category")
    unknown = [i for i, c in enumerate(cats) if c not in CATEGORY_CLASS]
    if unknown:
        raise InputError(
            ann_path, f"unknown category {cats[unknown[0]]!r}", column="category", row=unknown[0]
        )
    cls_or_none = np.array([-1 if (cid := CATEGORY_CLASS[c]) is None else int(cid) for c in cats])
    size = np.stack(
        [finite_column(ann_path, ann, c, max_abs=MAX_ABS_VALUE) for c in ("length_m", "width_m", "height_m")],
        axis=1,
    )
    o_rot = rotation_from_quat(_quats(ann_path, ann))
    o_xyz = np.stack(
        [finite_column(ann_path, ann, c, max_abs=MAX_ABS_VALUE) for c in ("tx_m", "ty_m", "tz_m")], axis=1
    )

    stamps = np.unique(at)
    k = np.searchsorted(pt, at)
    k_c = np.clip(k, 0, len(pt) - 1)
    missing = np.flatnonzero(pt[k_c] != at)
    if missing.size:
        i = int(missing[0])
        raise InputError(
            ann_path, f"no ego pose at timestamp {at[i]} in {pose_path.name}", column="timestamp_ns", row=i
        )
    r_city = p_rot[k_c] @ o_rot  # (R, 3, 3)
    xyz_city = np.einsum("rij,rj->ri", p_rot[k_c], o_xyz) + p_xyz[k_c]
    yaw_city = np.arctan2(r_city[:, 1, 0], r_city[:, 0, 0])

    keep = cls_or_none >= 0
    uuids = string_column(ann_path, ann, "track_uuid")
    first_seen: dict[str, int] = {}
    for _t, u in sorted(zip(at[keep].tolist(), uuids[keep].tolist())):
        first_seen.setdefault(u, len(first_seen))
    order_ids = {u: i for i, u in enumerate(sorted(first_seen, key=lambda u: (first_seen[u], u)))}
    rows = AgentRows(
        t_ns=at[keep],
        agent_id=np.array([order_ids[u] for u in uuids[keep]], np.int64),
        class_id=cls_or_none[keep].astype(np.int32),
        xy_m=xyz_city[keep, :2],
        size_lwh_m=size[keep],
        yaw_rad=yaw_city[keep],
    )

    # Ego state per annotation stamp: pose, backward-difference velocity over ~0.1 s of poses.
    ks = np.searchsorted(pt, stamps)
    kp = np.clip(np.searchsorted(pt, stamps - EGO_VEL_WINDOW_NS), 0, len(pt) - 1)
    kp = np.where(kp == ks, np.maximum(ks - 1, 0), kp)
    dt = np.maximum((pt[ks] - pt[kp]) / 1e9, 1e-9)
    vel = (p_xyz[ks, :2] - p_xyz[kp, :2]) / dt[:, None]
    vel[ks == kp] = 0.0
    yaw_rate = np.angle(np.exp(1j * (p_yaw[ks] - p_yaw[kp]))) / dt
    speed = np.hypot(vel[:, 0], vel[:, 1])
    accel = np.r_[0.0, np.diff(speed) / np.maximum(np.diff(stamps) / 1e9, 1e-9)]
    ego_pose = {int(s): np.array([p_xyz[j, 0], p_xyz[j, 1], p_yaw[j]]) for s, j in zip(stamps, ks)}

    agents = {stamp: (tr, gt) for stamp, tr, gt in iter_agent_messages(rows, ego_pose, max_gap_s=0.5)}
    vmap = load_av2_map(find_map(src), stamp_ns=int(stamps[0]))
    with import_writer(out, src, overwrite=overwrite) as w:
        w.write(vmap)
        for i, s in enumerate(stamps.tolist()):
            w.write(ego_state(s, ego_pose[s], vel[i], accel[i], yaw_rate[i], EGO_SIZE_LWH_M))
            if s in agents:
                w.write(agents[s][0])
                w.write(agents[s][1])
            else:
                w.write(m.empty(m.Tracks, m.TOPIC_TRACKS, s, ego_pose=ego_pose[s]))
                w.write(m.empty(m.GroundTruth, m.TOPIC_GROUND_TRUTH, s))
        return dict(w.counts)
