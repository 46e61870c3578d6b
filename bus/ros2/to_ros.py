"""prescient messages -> ROS 2 message objects of a rosbags typestore (serialise with ``serialize_cdr``).

Every function takes ``stamp_ns``, the ROS time (ns since the UNIX epoch) the message is stamped
with: the log's ``header.stamp_ns`` plus the export's anchor (:mod:`~prescient.bus.ros2.export`).

Frames and conventions (Autoware's): object poses are box centres in ``map`` (z = half the box
height: prescient is 2-D and puts objects on the ground at z = 0); object twists and accelerations
are in the object's own frame (x along its heading), the ego twist in ``base_link``. Covariances
are 6x6 row-major over (x, y, z, roll, pitch, yaw); what prescient does not estimate stays 0.
"""

from __future__ import annotations

import math
from typing import Any, Final

import numpy as np

from prescient.bus import messages as m
from prescient.bus.ros2 import types as rt

# existence_probability per TrackStatus: prescient's tracker keeps a status, not a probability.
EXISTENCE_FROM_STATUS: Final[dict[int, float]] = {
    int(m.TrackStatus.TENTATIVE): 0.25,
    int(m.TrackStatus.CONFIRMED): 1.0,
    int(m.TrackStatus.COASTING): 0.5,
}
_STATIONARY_MPS: Final = 0.1  # TrackedObjectKinematics.is_stationary below this speed
_ZERO36: Final = np.zeros(36, np.float64)


def _vec3(store: Any, x: float = 0.0, y: float = 0.0, z: float = 0.0) -> Any:
    return store.types["geometry_msgs/msg/Vector3"](x=float(x), y=float(y), z=float(z))


def _pose(store: Any, x: float, y: float, z: float, yaw_rad: float) -> Any:
    point = store.types["geometry_msgs/msg/Point"](x=float(x), y=float(y), z=float(z))
    return store.types["geometry_msgs/msg/Pose"](
        position=point, orientation=rt.quaternion_from_yaw(store, yaw_rad)
    )


def _cov6(xy_cov: np.ndarray) -> np.ndarray:
    """(36,) float64 6x6 covariance with the (2, 2) ``xy_cov`` block at (x, y), zeros elsewhere."""
    c = np.zeros((6, 6), np.float64)
    c[:2, :2] = xy_cov
    return c.reshape(36)


def _body_cov(world_cov: np.ndarray, yaw_rad: float) -> np.ndarray:
    """(2, 2) covariance of a world-frame vector expressed in a body frame with heading ``yaw_rad``."""
    c, s = math.cos(yaw_rad), math.sin(yaw_rad)
    body_from_map = np.array([[c, s], [-s, c]])
    return body_from_map @ world_cov @ body_from_map.T


def classification(store: Any, class_probs: np.ndarray) -> list[Any]:
    """``ObjectClassification`` list of a (C,) probability row: every class above 0, most likely first."""
    cls = store.types["autoware_perception_msgs/msg/ObjectClassification"]
    order = np.argsort(-class_probs, kind="stable")
    out = [
        cls(label=rt.LABEL_FROM_CLASS[m.AgentClass(int(c))], probability=float(class_probs[c])) for c in order
    ]
    return [c for c in out if c.probability > 0.0] or [cls(label=rt.UNKNOWN, probability=1.0)]


def shape(store: Any, size_lwh_m: np.ndarray) -> Any:
    """``Shape`` BOUNDING_BOX with dimensions (x = length, y = width, z = height), metres."""
    return store.types["autoware_perception_msgs/msg/Shape"](
        type=0,
        footprint=store.types["geometry_msgs/msg/Polygon"](points=[]),
        dimensions=_vec3(store, *size_lwh_m),
    )


def _object_state(store: Any, tr: m.Tracks, i: int) -> tuple[Any, Any, Any]:
    """(PoseWithCovariance in map, TwistWithCovariance and AccelWithCovariance in the object frame) of track i."""
    t = store.types
    yaw = float(tr.yaw_rad[i])
    cov = tr.covariance[i].astype(np.float64)  # (4, 4) over [x, y, vx, vy], world frame
    pose = t["geometry_msgs/msg/PoseWithCovariance"](
        pose=_pose(store, tr.position_m[i, 0], tr.position_m[i, 1], 0.5 * tr.size_lwh_m[i, 2], yaw),
        covariance=_cov6(cov[:2, :2]),
    )
    v_body = rt.rotate(tr.velocity_mps[i], -yaw)
    twist = t["geometry_msgs/msg/TwistWithCovariance"](
        twist=t["geometry_msgs/msg/Twist"](
            linear=_vec3(store, v_body[0], v_body[1]), angular=_vec3(store, z=tr.yaw_rate_radps[i])
        ),
        covariance=_cov6(_body_cov(cov[2:, 2:], yaw)),
    )
    a_body = rt.rotate(tr.accel_mps2[i], -yaw)
    accel = t["geometry_msgs/msg/AccelWithCovariance"](
        accel=t["geometry_msgs/msg/Accel"](linear=_vec3(store, a_body[0], a_body[1]), angular=_vec3(store)),
        covariance=_ZERO36.copy(),
    )
    return pose, twist, accel


def _uuid(store: Any, track_id: int) -> Any:
    return store.types["unique_identifier_msgs/msg/UUID"](uuid=rt.uuid_from_track_id(track_id))


def tracked_objects(store: Any, tr: m.Tracks, stamp_ns: int) -> Any:
    """``TrackedObjects`` in ``map`` of one :class:`~prescient.bus.messages.Tracks` (N objects)."""
    t = store.types
    objects = []
    for i in range(len(tr.track_id)):
        pose, twist, accel = _object_state(store, tr, i)
        kin = t["autoware_perception_msgs/msg/TrackedObjectKinematics"](
            pose_with_covariance=pose,
            twist_with_covariance=twist,
            acceleration_with_covariance=accel,
            orientation_availability=2,  # AVAILABLE: the tracker's yaw tells front from back
            is_stationary=bool(np.hypot(*tr.velocity_mps[i]) < _STATIONARY_MPS),
        )
        objects.append(
            t["autoware_perception_msgs/msg/TrackedObject"](
                object_id=_uuid(store, int(tr.track_id[i])),
                existence_probability=EXISTENCE_FROM_STATUS.get(int(tr.status[i]), 1.0),
                classification=classification(store, tr.class_probs[i]),
                kinematics=kin,
                shape=shape(store, tr.size_lwh_m[i]),
            )
        )
    return t[rt.TRACKED_OBJECTS](header=rt.header(store, stamp_ns, rt.FRAME_MAP), objects=objects)


def _path_poses(store: Any, start_xy: np.ndarray, start_yaw: float, traj_m: np.ndarray) -> list[Any]:
    """(T + 1) poses: the current one, then each step of ``traj_m`` (T, 2) heading along the path.

    A step shorter than 1 cm keeps the previous heading (a parked agent does not spin).
    """
    xy = np.vstack([start_xy[None, :], traj_m]).astype(np.float64)  # (T + 1, 2)
    d = np.diff(xy, axis=0)  # (T, 2)
    heading = np.r_[start_yaw, np.arctan2(d[:, 1], d[:, 0])]
    moving = np.r_[True, (d * d).sum(axis=1) > 1e-4]
    idx = np.where(moving, np.arange(len(xy)), 0)
    np.maximum.accumulate(idx, out=idx)  # index of the last step that moved
    yaw = heading[idx]
    return [_pose(store, x, y, 0.0, a) for (x, y), a in zip(xy, yaw)]


def predicted_objects(
    store: Any, pred: m.Predictions, tracks: m.Tracks | None, stamp_ns: int
) -> tuple[Any, int]:
    """``PredictedObjects`` in ``map``: K weighted paths per agent, plus the agent's current state.

    Autoware's ``PredictedPath.path[0]`` is the object at ``header.stamp``; prescient's
    trajectories start one ``dt_s`` later, so each path is the track's current position followed
    by the T predicted steps (``time_step`` = ``dt_s``, ``confidence`` = the mode's probability).
    The current state (pose, twist, shape, class) comes from ``tracks``, the Tracks message of the
    same stamp; an agent it lacks is left out, since planning needs its shape.

    Returns:
        the message and how many agents were left out.
    """
    t = store.types
    row = {int(k): i for i, k in enumerate(tracks.track_id)} if tracks is not None else {}
    dt_ns = int(round(pred.dt_s * 1e9))
    step = t["builtin_interfaces/msg/Duration"](sec=dt_ns // 1_000_000_000, nanosec=dt_ns % 1_000_000_000)
    objects, missing = [], 0
    for n, tid in enumerate(pred.track_id.tolist()):
        i = row.get(int(tid))
        if tracks is None or i is None:
            missing += 1
            continue
        pose, twist, accel = _object_state(store, tracks, i)
        paths = [
            t["autoware_perception_msgs/msg/PredictedPath"](
                path=_path_poses(
                    store, tracks.position_m[i], float(tracks.yaw_rad[i]), pred.trajectories_m[n, k]
                ),
                time_step=step,
                confidence=float(pred.mode_probs[n, k]),
            )
            for k in range(pred.mode_probs.shape[1])
        ]
        kin = t["autoware_perception_msgs/msg/PredictedObjectKinematics"](
            initial_pose_with_covariance=pose,
            initial_twist_with_covariance=twist,
            initial_acceleration_with_covariance=accel,
            predicted_paths=paths,
        )
        objects.append(
            t["autoware_perception_msgs/msg/PredictedObject"](
                object_id=_uuid(store, int(tid)),
                existence_probability=EXISTENCE_FROM_STATUS.get(int(tracks.status[i]), 1.0),
                classification=classification(store, tracks.class_probs[i]),
                kinematics=kin,
                shape=shape(store, tracks.size_lwh_m[i]),
            )
        )
    msg = t[rt.PREDICTED_OBJECTS](header=rt.header(store, stamp_ns, rt.FRAME_MAP), objects=objects)
    return msg, missing


def detected_objects(store: Any, frame: m.LidarFrame, stamp_ns: int) -> Any:
    """``DetectedObjects`` in ``base_link`` of one LiDAR frame's boxes (moved by ``ego_from_sensor``)."""
    t = store.types
    ego_from_sensor = frame.ego_from_sensor
    mount_yaw = math.atan2(ego_from_sensor[1, 0], ego_from_sensor[0, 0])
    centers = frame.center_m.astype(np.float64) @ ego_from_sensor[:3, :3].T + ego_from_sensor[:3, 3]  # (N, 3)
    objects = []
    for i in range(len(frame.class_id)):
        score = float(frame.score[i])
        pose = t["geometry_msgs/msg/PoseWithCovariance"](
            pose=_pose(
                store, centers[i, 0], centers[i, 1], centers[i, 2], float(frame.yaw_rad[i]) + mount_yaw
            ),
            covariance=_ZERO36.copy(),
        )
        kin = t["autoware_perception_msgs/msg/DetectedObjectKinematics"](
            pose_with_covariance=pose,
            has_position_covariance=False,
            orientation_availability=2,  # AVAILABLE
            twist_with_covariance=t["geometry_msgs/msg/TwistWithCovariance"](
                twist=t["geometry_msgs/msg/Twist"](linear=_vec3(store), angular=_vec3(store)),
                covariance=_ZERO36.copy(),
            ),
            has_twist=False,  # a single LiDAR frame measures no velocity
            has_twist_covariance=False,
        )
        label = rt.LABEL_FROM_CLASS.get(m.AgentClass(int(frame.class_id[i])), rt.UNKNOWN)
        cls = t["autoware_perception_msgs/msg/ObjectClassification"](label=label, probability=score)
        objects.append(
            t["autoware_perception_msgs/msg/DetectedObject"](
                existence_probability=score,
                classification=[cls],
                kinematics=kin,
                shape=shape(store, frame.size_lwh_m[i]),
            )
        )
    return t[rt.DETECTED_OBJECTS](header=rt.header(store, stamp_ns, rt.FRAME_BASE_LINK), objects=objects)


def odometry(store: Any, ego: m.EgoState, stamp_ns: int) -> Any:
    """``nav_msgs/Odometry``: ``map_from_base_link`` pose, twist in ``base_link``."""
    t = store.types
    x, y, yaw = (float(v) for v in ego.pose)
    v_body = rt.rotate(ego.velocity_mps, -yaw)
    return t[rt.ODOMETRY](
        header=rt.header(store, stamp_ns, rt.FRAME_MAP),
        child_frame_id=rt.FRAME_BASE_LINK,
        pose=t["geometry_msgs/msg/PoseWithCovariance"](
            pose=_pose(store, x, y, 0.0, yaw), covariance=_ZERO36.copy()
        ),
        twist=t["geometry_msgs/msg/TwistWithCovariance"](
            twist=t["geometry_msgs/msg/Twist"](
                linear=_vec3(store, v_body[0], v_body[1]), angular=_vec3(store, z=ego.yaw_rate_radps)
            ),
            covariance=_ZERO36.copy(),
        ),
    )


def tf_map_from_base_link(store: Any, ego: m.EgoState, stamp_ns: int) -> Any:
    """``tf2_msgs/TFMessage`` with the one transform ``map -> base_link`` (the ego pose)."""
    t = store.types
    x, y, yaw = (float(v) for v in ego.pose)
    transform = t["geometry_msgs/msg/Transform"](
        translation=_vec3(store, x, y), rotation=rt.quaternion_from_yaw(store, yaw)
    )
    stamped = t["geometry_msgs/msg/TransformStamped"](
        header=rt.header(store, stamp_ns, rt.FRAME_MAP),
        child_frame_id=rt.FRAME_BASE_LINK,
        transform=transform,
    )
    return t[rt.TF_MESSAGE](transforms=[stamped])
