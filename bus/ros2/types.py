"""The ROS 2 typestore and the conversions both directions share.

Message types: the Autoware ``.msg`` files shipped in ``msgs/`` (see ``msgs/README.md`` for their
origin) registered with rosbags' ``get_types_from_msg`` on top of rosbags' ROS 2 Humble or Jazzy
store (std_msgs, geometry_msgs, nav_msgs, tf2_msgs, visualization_msgs, unique_identifier_msgs).
No message type is invented here.
"""

from __future__ import annotations

import functools
import hashlib
import math
from pathlib import Path
from typing import Any, Final

import numpy as np

from prescient.bus import messages as m

MSGS_DIR: Final = Path(__file__).parent / "msgs"
DISTROS: Final = ("humble", "jazzy")
# rosbag2 metadata version 8: the newest whose ``offered_qos_profiles`` is still a YAML string,
# which Humble's ``ros2 bag`` parses (version 9 makes it a list: Humble fails with "bad conversion").
BAG_VERSION: Final = 8

# Message type names.
PREDICTED_OBJECTS: Final = "autoware_perception_msgs/msg/PredictedObjects"
TRACKED_OBJECTS: Final = "autoware_perception_msgs/msg/TrackedObjects"
DETECTED_OBJECTS: Final = "autoware_perception_msgs/msg/DetectedObjects"
ODOMETRY: Final = "nav_msgs/msg/Odometry"
TF_MESSAGE: Final = "tf2_msgs/msg/TFMessage"
MARKER_ARRAY: Final = "visualization_msgs/msg/MarkerArray"

# Topic names: Autoware's where Autoware has the topic, ``/prescient/...`` otherwise.
TOPIC_PREDICTED: Final = "/perception/object_recognition/objects"
TOPIC_TRACKED: Final = "/perception/object_recognition/tracking/objects"
TOPIC_ODOMETRY: Final = "/localization/kinematic_state"
TOPIC_TF: Final = "/tf"
TOPIC_TRACK_MARKERS: Final = "/prescient/markers/tracks"
TOPIC_PREDICTION_MARKERS: Final = "/prescient/markers/predictions"


def detections_topic(prescient_topic: str) -> str:
    """ROS topic of one sensor's detections, e.g. ``sensor.lidar.fl`` -> ``/prescient/detection/lidar/fl``."""
    return "/prescient/detection/" + "/".join(prescient_topic.split(".")[1:])


FRAME_MAP: Final = "map"
FRAME_BASE_LINK: Final = "base_link"

# Keys of the bag's ``custom_data`` (metadata.yaml) written by the export and read by the import.
META_STAMP_OFFSET: Final = "prescient.stamp_offset_ns"
META_TIME_SOURCE: Final = "prescient.time_source"
META_SOURCE_LOG: Final = "prescient.source_log"

# ObjectClassification labels (autoware_perception_msgs/msg/ObjectClassification constants).
UNKNOWN, CAR, TRUCK, BUS, TRAILER, MOTORCYCLE, BICYCLE, PEDESTRIAN, ANIMAL = range(9)
A = m.AgentClass
LABEL_FROM_CLASS: Final = {
    A.UNKNOWN: UNKNOWN,
    A.CAR: CAR,
    A.TRUCK: TRUCK,
    A.BUS: BUS,
    A.PEDESTRIAN: PEDESTRIAN,
    A.CYCLIST: BICYCLE,  # Autoware's labels split riders by vehicle; ours do not
    A.ANIMAL: ANIMAL,
}
# Every other label (HAZARD, OVER_DRIVABLE, UNDER_DRIVABLE, newer ones) is UNKNOWN.
CLASS_FROM_LABEL: Final = {v: k for k, v in LABEL_FROM_CLASS.items()} | {
    TRAILER: A.TRUCK,
    MOTORCYCLE: A.CYCLIST,
}

# Object ids: 8 fixed bytes, then the prescient track id as a big-endian int64. The tag lets the
# import give back the exact track ids of a bag this module wrote.
UUID_TAG: Final = hashlib.sha256(b"prescient.track_id").digest()[:8]


@functools.cache
def typestore(distro: str = "humble") -> Any:
    """rosbags' ROS 2 store for ``distro`` with the Autoware types registered (cached).

    Raises:
        ValueError: ``distro`` is not one of :data:`DISTROS`.
    """
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    stores = {"humble": Stores.ROS2_HUMBLE, "jazzy": Stores.ROS2_JAZZY}
    if distro not in stores:
        raise ValueError(f"ROS distro must be one of {DISTROS}, got {distro!r}")
    store = get_typestore(stores[distro])
    types: dict[str, Any] = {}
    for path in sorted(MSGS_DIR.glob("*/msg/*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{path.parts[-3]}/msg/{path.stem}"))
    store.register(types)
    return store


def ros_time(store: Any, stamp_ns: int) -> Any:
    """``builtin_interfaces/Time`` of a non-negative time in ns."""
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return store.types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)


def ns_from_time(t: Any) -> int:
    """ns of a ``builtin_interfaces/Time`` (or Duration)."""
    return int(t.sec) * 1_000_000_000 + int(t.nanosec)


def header(store: Any, stamp_ns: int, frame_id: str) -> Any:
    """``std_msgs/Header`` at ``stamp_ns`` (ROS time, ns) in ``frame_id``."""
    return store.types["std_msgs/msg/Header"](stamp=ros_time(store, stamp_ns), frame_id=frame_id)


def quaternion_from_yaw(store: Any, yaw_rad: float) -> Any:
    """``geometry_msgs/Quaternion`` of a rotation by ``yaw_rad`` about +z."""
    half = 0.5 * float(yaw_rad)
    return store.types["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=math.sin(half), w=math.cos(half))


def yaw_from_quaternion(q: Any) -> float:
    """Yaw (rad, about +z, in (-pi, pi]) of a ``geometry_msgs/Quaternion`` (need not be unit)."""
    return math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))


def rotate(xy: np.ndarray, yaw_rad: float) -> np.ndarray:
    """(..., 2) vectors rotated by ``yaw_rad``: ``map_from_body`` applied when yaw is the body's heading."""
    c, s = math.cos(yaw_rad), math.sin(yaw_rad)
    xy = np.asarray(xy, np.float64)
    return np.stack([c * xy[..., 0] - s * xy[..., 1], s * xy[..., 0] + c * xy[..., 1]], axis=-1)


def uuid_from_track_id(track_id: int) -> np.ndarray:
    """(16,) uint8 ``unique_identifier_msgs/UUID`` bytes of a prescient track id (deterministic)."""
    return np.frombuffer(UUID_TAG + int(track_id).to_bytes(8, "big", signed=True), np.uint8).copy()


def track_id_from_uuid(uuid: np.ndarray) -> int | None:
    """The track id a :func:`uuid_from_track_id` uuid carries, or None for any other uuid."""
    raw = bytes(np.asarray(uuid, np.uint8))
    if len(raw) != 16 or raw[:8] != UUID_TAG:
        return None
    return int.from_bytes(raw[8:], "big", signed=True)


def class_from_classification(classification: list[Any]) -> m.AgentClass:
    """The class of the most probable ``ObjectClassification`` (UNKNOWN for an empty list)."""
    if not classification:
        return A.UNKNOWN
    best = max(classification, key=lambda c: c.probability)
    return CLASS_FROM_LABEL.get(int(best.label), A.UNKNOWN)
