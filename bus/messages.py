"""The one schema module: every message that crosses the prescient bus.

Conventions (see README "Frames and units"):
  * Times are ``int`` nanoseconds. ``stamp_ns`` is the capture / measurement time on the
    simulation (or log) clock; ``sent_mono_ns`` is ``time.monotonic_ns()`` at publish.
  * ``world`` is the map frame (x east, y north, metres, yaw counter-clockwise from +x).
    ``ego`` is the vehicle frame (x forward, y left, origin at the rear-axle centre on the ground).
    ``sensor`` frames follow the same axis convention (x along the boresight).
  * Array fields are numpy arrays; their dtype and symbolic shape are declared with
    :func:`array_field` and checked by :mod:`prescient.bus.codec`. A symbolic dimension (``"N"``) must take
    the same value in every field of one message, so inconsistent lengths are rejected.
  * Ragged lists (lane centerlines, polygons) are flattened into one points array plus an
    ``*_offsets`` array of length ``count + 1`` (CSR layout, like Argoverse's sparse arrays).

Shapes legend: N tracks/objects, M radar returns, P lidar points, K modes, T future steps,
H history steps, C classes, Q controlled lanes, L lanes.

When changing any message: bump ``SCHEMA_VERSION``. A field added later carries its version
(``scalar_field(..., since=N)``) and a default: payloads of older versions, down to
``MIN_SCHEMA_VERSION``, still decode (recorded logs stay replayable) with the default filled in.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from prescient.bus.enums import CORNER_TAGS as CORNER_TAGS
from prescient.bus.enums import DEFAULT_SIZE_LWH_M as DEFAULT_SIZE_LWH_M
from prescient.bus.enums import MODALITY_TAGS as MODALITY_TAGS
from prescient.bus.enums import NUM_CLASSES as NUM_CLASSES

# The enumerations live in prescient.bus.enums; also part of this module's interface.
from prescient.bus.enums import AgentClass as AgentClass
from prescient.bus.enums import AgentSource as AgentSource
from prescient.bus.enums import Attribute as Attribute
from prescient.bus.enums import Corner as Corner
from prescient.bus.enums import LaneType as LaneType
from prescient.bus.enums import LightState as LightState
from prescient.bus.enums import Modality as Modality
from prescient.bus.enums import TrackStatus as TrackStatus

# The schema machinery (field declarations, the header, the @message decorator) is prescient.bus.schema;
# it is part of this module's interface, so what it defines is re-exported here.
from prescient.bus.schema import MESSAGE_TYPES as MESSAGE_TYPES
from prescient.bus.schema import MIN_SCHEMA_VERSION as MIN_SCHEMA_VERSION
from prescient.bus.schema import SCHEMA_VERSION as SCHEMA_VERSION
from prescient.bus.schema import ArraySpec as ArraySpec
from prescient.bus.schema import Header as Header
from prescient.bus.schema import Message as Message
from prescient.bus.schema import added_fields as added_fields
from prescient.bus.schema import array_field as array_field
from prescient.bus.schema import array_specs as array_specs
from prescient.bus.schema import empty as empty
from prescient.bus.schema import message as message
from prescient.bus.schema import scalar_field as scalar_field
from prescient.bus.schema import scalar_specs as scalar_specs

Float32Array = npt.NDArray[np.float32]
Float64Array = npt.NDArray[np.float64]
Int64Array = npt.NDArray[np.int64]
Int32Array = npt.NDArray[np.int32]
UInt8Array = npt.NDArray[np.uint8]
BoolArray = npt.NDArray[np.bool_]

# ----------------------------------------------------------------------------------------------
# Constants shared by every process.
# ----------------------------------------------------------------------------------------------
PRED_DT_S: Final = 0.1
PRED_HORIZON_STEPS: Final = 80  # T: 8 s at 10 Hz
TRACK_HISTORY_STEPS: Final = 20  # H: 2 s at 10 Hz, oldest first


# ----------------------------------------------------------------------------------------------
# Topics: constants, never inline strings.
# ----------------------------------------------------------------------------------------------
def sensor_topic(modality: Modality, corner: Corner) -> str:
    """Topic of one corner sensor, e.g. ``sensor.lidar.fl``."""
    return f"sensor.{MODALITY_TAGS[Modality(modality)]}.{CORNER_TAGS[Corner(corner)]}"


SENSOR_TOPICS: Final = tuple(sensor_topic(m, c) for m in Modality for c in Corner)
TOPIC_EGO: Final = "ego.state"
TOPIC_GROUND_TRUTH: Final = "sim.ground_truth"
TOPIC_TRAFFIC_LIGHTS: Final = "map.traffic_lights"
TOPIC_MAP: Final = "map.vector"  # also the reply type of the map request/reply endpoint
TOPIC_TRACKS: Final = "perception.tracks"
TOPIC_PREDICTIONS: Final = "pred.trajectories"
TOPIC_PLANNER_STATUS: Final = "planner.status"
TOPIC_CONDITIONAL_REQUEST: Final = "pred.conditional.request"
TOPIC_CONDITIONAL_REPLY: Final = "pred.conditional.reply"
TOPIC_MAP_REQUEST: Final = "map.request"
TOPIC_HEALTH_PREFIX: Final = "health."  # health.<node>


def health_topic(node: str) -> str:
    return f"{TOPIC_HEALTH_PREFIX}{node}"


# ----------------------------------------------------------------------------------------------
# Sensor frames. Detections are in the *sensor* frame; ``ego_from_sensor`` (4x4, float64) is the
# mounting pose so every frame is self-describing for the tracker.
# ----------------------------------------------------------------------------------------------
@message
class CameraFrame(Message):
    """2-D detections from one corner camera (pinhole; no range).

    boxes_px: (N, 4) float32 ``[u_min, v_min, u_max, v_max]`` in pixels, u right, v down.
    intrinsics: (3, 3) float64 pinhole matrix K. ``image_wh_px``: (2,) int32 width, height.
    """

    header: Header
    sensor_id: str = scalar_field(str)
    ego_from_sensor: Float64Array = array_field(np.float64, 4, 4)
    intrinsics: Float64Array = array_field(np.float64, 3, 3)
    image_wh_px: Int32Array = array_field(np.int32, 2)
    boxes_px: Float32Array = array_field(np.float32, "N", 4)
    class_id: Int32Array = array_field(np.int32, "N")
    class_conf: Float32Array = array_field(np.float32, "N")
    attributes: UInt8Array = array_field(np.uint8, "N")


@message
class LwirFrame(Message):
    """Long-wave infrared detections: 2-D thermal boxes with a heat-based class.

    boxes_px: (N, 4) float32 as :class:`CameraFrame`; heat: (N,) float32 apparent temperature
    contrast against background, kelvin.
    """

    header: Header
    sensor_id: str = scalar_field(str)
    ego_from_sensor: Float64Array = array_field(np.float64, 4, 4)
    intrinsics: Float64Array = array_field(np.float64, 3, 3)
    image_wh_px: Int32Array = array_field(np.int32, 2)
    boxes_px: Float32Array = array_field(np.float32, "N", 4)
    class_id: Int32Array = array_field(np.int32, "N")
    class_conf: Float32Array = array_field(np.float32, "N")
    heat_k: Float32Array = array_field(np.float32, "N")


@message
class LidarFrame(Message):
    """LiDAR detector output (3-D oriented boxes) plus a sparse point cloud, sensor frame.

    center_m: (N, 3) float32; size_lwh_m: (N, 3) float32; yaw_rad: (N,) float32;
    points_m: (P, 3) float32 points on visible surfaces.
    """

    header: Header
    sensor_id: str = scalar_field(str)
    ego_from_sensor: Float64Array = array_field(np.float64, 4, 4)
    center_m: Float32Array = array_field(np.float32, "N", 3)
    size_lwh_m: Float32Array = array_field(np.float32, "N", 3)
    yaw_rad: Float32Array = array_field(np.float32, "N")
    class_id: Int32Array = array_field(np.int32, "N")
    score: Float32Array = array_field(np.float32, "N")
    points_m: Float32Array = array_field(np.float32, "P", 3)


@message
class RadarFrame(Message):
    """Radar returns in the sensor frame (several per large object, plus clutter).

    All (M,) float32: range_m, azimuth_rad (ccw from boresight), range_rate_mps (positive =
    receding, relative to the sensor), rcs_dbsm.
    """

    header: Header
    sensor_id: str = scalar_field(str)
    ego_from_sensor: Float64Array = array_field(np.float64, 4, 4)
    range_m: Float32Array = array_field(np.float32, "M")
    azimuth_rad: Float32Array = array_field(np.float32, "M")
    range_rate_mps: Float32Array = array_field(np.float32, "M")
    rcs_dbsm: Float32Array = array_field(np.float32, "M")


@message
class EgoState(Message):
    """Ego pose and motion in the world frame, plus its route plan.

    pose: (3,) float64 ``[x_m, y_m, yaw_rad]`` world; velocity_mps: (2,) float32 world frame;
    size_lwh_m: (3,) float32; plan_xy_m: (S, 2) float32 planned path in world frame (may be empty).
    """

    header: Header
    pose: Float64Array = array_field(np.float64, 3)
    velocity_mps: Float32Array = array_field(np.float32, 2)
    accel_mps2: float = scalar_field(float)
    yaw_rate_radps: float = scalar_field(float)
    size_lwh_m: Float32Array = array_field(np.float32, 3)
    plan_xy_m: Float32Array = array_field(np.float32, "S", 2)


@message
class GroundTruth(Message):
    """Simulator ground truth (evaluation only; never an input to the service). World frame."""

    header: Header
    agent_id: Int64Array = array_field(np.int64, "N")
    class_id: Int32Array = array_field(np.int32, "N")
    position_m: Float32Array = array_field(np.float32, "N", 2)
    yaw_rad: Float32Array = array_field(np.float32, "N")
    velocity_mps: Float32Array = array_field(np.float32, "N", 2)
    accel_mps2: Float32Array = array_field(np.float32, "N", 2)
    size_lwh_m: Float32Array = array_field(np.float32, "N", 3)
    attributes: UInt8Array = array_field(np.uint8, "N")


@message
class VectorMap(Message):
    """Vector HD map in the world frame, close to the Argoverse 2 schema.

    Lanes (L): ids, type, intersection flag, speed limit, neighbour ids (-1 = none); centerline
    and left/right boundaries as CSR point lists (offsets (L+1,)); predecessor/successor id lists
    as CSR. Polygons (crossings, sidewalks, drivable areas) as CSR point lists. Stop lines (S, 2, 2)
    each with the lane it belongs to. Traffic lights: each controlled lane (Q) belongs to a signal
    group; each group (G) has a fixed-time plan ``[green_s, yellow_s, red_s]`` and an offset.
    """

    header: Header
    map_id: str = scalar_field(str)
    lane_id: Int64Array = array_field(np.int64, "L")
    lane_type: UInt8Array = array_field(np.uint8, "L")
    lane_is_intersection: BoolArray = array_field(np.bool_, "L")
    lane_speed_limit_mps: Float32Array = array_field(np.float32, "L")
    lane_left_neighbor_id: Int64Array = array_field(np.int64, "L")
    lane_right_neighbor_id: Int64Array = array_field(np.int64, "L")
    centerline_xy_m: Float32Array = array_field(np.float32, "Pc", 2)
    centerline_offsets: Int64Array = array_field(np.int64, "L1")
    left_boundary_xy_m: Float32Array = array_field(np.float32, "Pl", 2)
    left_boundary_offsets: Int64Array = array_field(np.int64, "L1")
    right_boundary_xy_m: Float32Array = array_field(np.float32, "Pr", 2)
    right_boundary_offsets: Int64Array = array_field(np.int64, "L1")
    successor_ids: Int64Array = array_field(np.int64, "Ns")
    successor_offsets: Int64Array = array_field(np.int64, "L1")
    predecessor_ids: Int64Array = array_field(np.int64, "Np")
    predecessor_offsets: Int64Array = array_field(np.int64, "L1")
    crossing_xy_m: Float32Array = array_field(np.float32, "Px", 2)
    crossing_offsets: Int64Array = array_field(np.int64, "X1")
    sidewalk_xy_m: Float32Array = array_field(np.float32, "Pw", 2)
    sidewalk_offsets: Int64Array = array_field(np.int64, "W1")
    drivable_xy_m: Float32Array = array_field(np.float32, "Pd", 2)
    drivable_offsets: Int64Array = array_field(np.int64, "D1")
    stop_line_xy_m: Float32Array = array_field(np.float32, "S", 2, 2)
    stop_line_lane_id: Int64Array = array_field(np.int64, "S")
    light_lane_id: Int64Array = array_field(np.int64, "Q")
    light_group: Int32Array = array_field(np.int32, "Q")
    group_plan_s: Float32Array = array_field(np.float32, "G", 3)
    group_offset_s: Float32Array = array_field(np.float32, "G")


# CSR pairs checked by the codec: offsets start at 0, never decrease, and end at the number of
# points.
CSR_FIELDS: Final = {
    # (points field, offsets field, owner field whose length + 1 the offsets must have, or None)
    "VectorMap": (
        ("centerline_xy_m", "centerline_offsets", "lane_id"),
        ("left_boundary_xy_m", "left_boundary_offsets", "lane_id"),
        ("right_boundary_xy_m", "right_boundary_offsets", "lane_id"),
        ("successor_ids", "successor_offsets", "lane_id"),
        ("predecessor_ids", "predecessor_offsets", "lane_id"),
        ("crossing_xy_m", "crossing_offsets", None),
        ("sidewalk_xy_m", "sidewalk_offsets", None),
        ("drivable_xy_m", "drivable_offsets", None),
    )
}


@message
class MapRequest(Message):
    """Ask the map server for a map (empty ``map_id`` = the current one)."""

    header: Header
    map_id: str = scalar_field(str, "")


@message
class TrafficLights(Message):
    """Traffic-light state per controlled lane. lane_id: (Q,) int64; state: (Q,) uint8 LightState."""

    header: Header
    lane_id: Int64Array = array_field(np.int64, "Q")
    state: UInt8Array = array_field(np.uint8, "Q")


@message
class Tracks(Message):
    """Fused perception tracks in the world frame at ``header.stamp_ns``.

    class_probs: (N, C) rows sum to 1; covariance: (N, 4, 4) over ``[x, y, vx, vy]`` (m, m/s);
    history_*: (N, H) oldest first at ``PRED_DT_S`` spacing ending at the current state;
    ego_pose: (3,) float64 world ``[x_m, y_m, yaw_rad]`` of the ego at the same stamp.
    """

    header: Header
    ego_pose: Float64Array = array_field(np.float64, 3)
    track_id: Int64Array = array_field(np.int64, "N")
    class_id: Int32Array = array_field(np.int32, "N")
    class_probs: Float32Array = array_field(np.float32, "N", NUM_CLASSES)
    status: UInt8Array = array_field(np.uint8, "N")
    position_m: Float32Array = array_field(np.float32, "N", 2)
    velocity_mps: Float32Array = array_field(np.float32, "N", 2)
    accel_mps2: Float32Array = array_field(np.float32, "N", 2)
    yaw_rad: Float32Array = array_field(np.float32, "N")
    yaw_rate_radps: Float32Array = array_field(np.float32, "N")
    size_lwh_m: Float32Array = array_field(np.float32, "N", 3)
    covariance: Float32Array = array_field(np.float32, "N", 4, 4)
    attributes: UInt8Array = array_field(np.uint8, "N")
    age_s: Float32Array = array_field(np.float32, "N")
    history_xy_m: Float32Array = array_field(np.float32, "N", TRACK_HISTORY_STEPS, 2)
    history_yaw_rad: Float32Array = array_field(np.float32, "N", TRACK_HISTORY_STEPS)
    history_valid: BoolArray = array_field(np.bool_, "N", TRACK_HISTORY_STEPS)


@message
class Predictions(Message):
    """K weighted trajectories per agent, world frame, starting ``dt_s`` after ``header.stamp_ns``.

    mode_probs: (N, K) rows sum to 1; trajectories_m: (N, K, T, 2); scale_m: (N, K, T, 2) Laplace
    scale per step (>0). ``source_stamp_ns`` is the capture time of the newest input *applied* to
    the tracks this was computed from (0: none yet) and ``source_sent_mono_ns`` the monotonic time
    it was published (processing latency = receive time - that, on one host); ``timings_ns`` holds
    per-stage durations (decode, track, raster, infer, ...) plus ``reorder_held``, how much newer
    the newest received input was (sensor clock: the reorder window's share of the data age).
    ``degraded`` is true when the physics fallback produced it; ``reason`` says why.
    ``agent_source`` (N,) says it per agent (:class:`AgentSource`): an agent beyond the model's slots
    gets the fallback on a model tick too.
    """

    header: Header
    model_id: str = scalar_field(str)
    dt_s: float = scalar_field(float)
    plan_id: int = scalar_field(int)  # -1: unconditioned; >=0 index of a candidate plan
    source_stamp_ns: int = scalar_field(int)
    source_sent_mono_ns: int = scalar_field(int)  # publish time of that input (end-to-end latency)
    degraded: bool = scalar_field(bool)
    reason: str = scalar_field(str)
    timings_ns: dict = scalar_field(dict)
    track_id: Int64Array = array_field(np.int64, "N")
    class_id: Int32Array = array_field(np.int32, "N")
    mode_probs: Float32Array = array_field(np.float32, "N", "K")
    trajectories_m: Float32Array = array_field(np.float32, "N", "K", "T", 2)
    scale_m: Float32Array = array_field(np.float32, "N", "K", "T", 2)
    # Per agent, an AgentSource: the model, or the constant-velocity fallback and why.
    agent_source: UInt8Array = array_field(np.uint8, "N", since=5, fill=int(AgentSource.UNKNOWN))


@message
class ConditionalRequest(Message):
    """Planner -> service: predictions conditioned on each of B candidate ego plans.

    plans_xy_m: (B, T, 2) world frame, ego positions at ``PRED_DT_S`` steps.
    """

    header: Header
    request_id: int = scalar_field(int)
    plans_xy_m: Float32Array = array_field(np.float32, "B", "T", 2)


@message
class ConditionalReply(Message):
    """Service -> planner: per candidate plan b, the same layout as :class:`Predictions`."""

    header: Header
    request_id: int = scalar_field(int)
    model_id: str = scalar_field(str)
    source_stamp_ns: int = scalar_field(int)
    degraded: bool = scalar_field(bool)
    reason: str = scalar_field(str)
    timings_ns: dict = scalar_field(dict)
    track_id: Int64Array = array_field(np.int64, "N")
    mode_probs: Float32Array = array_field(np.float32, "B", "N", "K")
    trajectories_m: Float32Array = array_field(np.float32, "B", "N", "K", "T", 2)
    scale_m: Float32Array = array_field(np.float32, "B", "N", "K", "T", 2)


@message
class PlannerStatus(Message):
    """Planner stub verdict per received prediction."""

    header: Header
    prediction_seq: int = scalar_field(int)
    e2e_latency_ns: int = scalar_field(int)  # processing latency (see prescient.service.planner_node)
    chosen_plan: int = scalar_field(int)
    min_distance_m: float = scalar_field(float)
    min_ttc_s: float = scalar_field(float)
    status: str = scalar_field(str)
    data_age_ns: int = scalar_field(int, 0, since=3)  # capture of the newest input used -> received


@message
class Health(Message):
    """Per-node health: counters keyed by ``topic:reason`` and live state."""

    header: Header
    node: str = scalar_field(str)
    provider: str = scalar_field(str)
    degraded: bool = scalar_field(bool)
    reason: str = scalar_field(str)
    ticks: int = scalar_field(int)
    deadline_misses: int = scalar_field(int)
    rejected: dict = scalar_field(dict)
    seq_gaps: dict = scalar_field(dict)
    # ``ok`` | ``degraded`` | ``failed`` (``degraded`` stays True for both of the last two).
    state: str = scalar_field(str, "ok", since=2)
    # Liveness figures, integers with units in the key: ``tick_rate_mhz``, ``model_share_permille``,
    # ``input_age_ms:<topic group>``, ``prediction_age_ms``.
    live: dict = scalar_field(dict, {}, since=2)
    precision: str = scalar_field(str, "", since=4)  # the model's weights: ``fp32``, ``int8``; "" without one


def topic_type(topic: str) -> type | None:
    """The message type a topic must carry, or None for topics with no fixed type."""
    if topic.startswith("sensor."):
        modality = topic.split(".")[1] if topic.count(".") == 2 else ""
        return {"camera": CameraFrame, "lidar": LidarFrame, "radar": RadarFrame, "lwir": LwirFrame}.get(
            modality
        )
    if topic.startswith(TOPIC_HEALTH_PREFIX):
        return Health
    return {
        TOPIC_EGO: EgoState,
        TOPIC_GROUND_TRUTH: GroundTruth,
        TOPIC_TRAFFIC_LIGHTS: TrafficLights,
        TOPIC_MAP: VectorMap,
        TOPIC_MAP_REQUEST: MapRequest,
        TOPIC_TRACKS: Tracks,
        TOPIC_PREDICTIONS: Predictions,
        TOPIC_PLANNER_STATUS: PlannerStatus,
        TOPIC_CONDITIONAL_REQUEST: ConditionalRequest,
        TOPIC_CONDITIONAL_REPLY: ConditionalReply,
    }.get(topic)
