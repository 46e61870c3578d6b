"""Scene builders for tests, the benchmark and the offline CLI (seeded, no I/O).

* :func:`make_tracks` builds a :class:`Tracks` message from plain arrays (history filled by
  constant-velocity back-extrapolation unless given).
* :func:`random_scene` draws a seeded random scene (agents of every class, history, lights, LiDAR).
* :func:`grid_map` builds a small Manhattan-grid :class:`VectorMap` of any size.
* :class:`TrackHistory` turns a stream of :class:`GroundTruth` messages into :class:`Tracks`
  (perfect-perception stand-in when no tracker is available).
"""

from __future__ import annotations

from collections import deque

import numpy as np
import numpy.typing as npt

from prescient.bus.messages import (
    NUM_CLASSES,
    PRED_DT_S,
    TOPIC_MAP,
    TOPIC_TRACKS,
    TOPIC_TRAFFIC_LIGHTS,
    TRACK_HISTORY_STEPS,
    Corner,
    GroundTruth,
    Header,
    LaneType,
    LidarFrame,
    Modality,
    Tracks,
    TrackStatus,
    TrafficLights,
    VectorMap,
    empty,
    sensor_topic,
)

F64 = npt.NDArray[np.float64]


def make_tracks(
    position_m: npt.ArrayLike,
    yaw_rad: npt.ArrayLike,
    size_lw_m: npt.ArrayLike,
    class_id: npt.ArrayLike,
    velocity_mps: npt.ArrayLike | None = None,
    accel_mps2: npt.ArrayLike | None = None,
    attributes: npt.ArrayLike | None = None,
    ego_pose: npt.ArrayLike = (0.0, 0.0, 0.0),
    stamp_ns: int = 0,
    history_xy_m: npt.ArrayLike | None = None,
    history_yaw_rad: npt.ArrayLike | None = None,
    history_valid: npt.ArrayLike | None = None,
    track_id: npt.ArrayLike | None = None,
    age_s: npt.ArrayLike | None = None,
) -> Tracks:
    """A :class:`Tracks` message from world-frame arrays (N agents).

    Args:
        position_m: (N, 2) world. yaw_rad: (N,). size_lw_m: (N, 2) length, width.
        class_id: (N,) AgentClass values. velocity_mps / accel_mps2: (N, 2) world (default 0).
        attributes: (N,) uint8 Attribute bits. ego_pose: (3,) world.
        history_xy_m / history_yaw_rad / history_valid: (N, H, ...) oldest first; default:
            constant-velocity back-extrapolation, all valid.
        track_id: (N,) int64 (default 0..N-1). age_s: (N,) seconds (default 2.0).
    """
    pos = np.asarray(position_m, np.float32).reshape(-1, 2)
    n = len(pos)
    yaw = np.asarray(yaw_rad, np.float32).reshape(n)
    vel = (
        np.zeros((n, 2), np.float32)
        if velocity_mps is None
        else np.asarray(velocity_mps, np.float32).reshape(n, 2)
    )
    acc = (
        np.zeros((n, 2), np.float32)
        if accel_mps2 is None
        else np.asarray(accel_mps2, np.float32).reshape(n, 2)
    )
    lw = np.asarray(size_lw_m, np.float32).reshape(n, 2)
    cls = np.asarray(class_id, np.int32).reshape(n)
    probs = np.zeros((n, NUM_CLASSES), np.float32)
    probs[np.arange(n), np.clip(cls, 0, NUM_CLASSES - 1)] = 1.0
    back = (np.arange(TRACK_HISTORY_STEPS)[::-1] * PRED_DT_S).astype(np.float32)  # (H,) seconds back
    hist_xy = (
        pos[:, None, :] - back[None, :, None] * vel[:, None, :]
        if history_xy_m is None
        else np.asarray(history_xy_m, np.float32)
    )
    hist_yaw = (
        np.repeat(yaw[:, None], TRACK_HISTORY_STEPS, axis=1) if history_yaw_rad is None else history_yaw_rad
    )
    hist_valid = np.ones((n, TRACK_HISTORY_STEPS), bool) if history_valid is None else history_valid
    return Tracks(
        header=Header(topic=TOPIC_TRACKS, stamp_ns=stamp_ns),
        ego_pose=np.asarray(ego_pose, np.float64),
        track_id=np.arange(n, dtype=np.int64)
        if track_id is None
        else np.asarray(track_id, np.int64).reshape(n),
        class_id=cls,
        class_probs=probs,
        status=np.full(n, int(TrackStatus.CONFIRMED), np.uint8),
        position_m=pos,
        velocity_mps=vel,
        accel_mps2=acc,
        yaw_rad=yaw,
        yaw_rate_radps=np.zeros(n, np.float32),
        size_lwh_m=np.column_stack([lw, np.full(n, 1.5, np.float32)]).astype(np.float32),
        covariance=np.tile(np.eye(4, dtype=np.float32), (n, 1, 1)),
        attributes=np.zeros(n, np.uint8)
        if attributes is None
        else np.asarray(attributes, np.uint8).reshape(n),
        age_s=np.full(n, 2.0, np.float32) if age_s is None else np.asarray(age_s, np.float32).reshape(n),
        history_xy_m=np.ascontiguousarray(hist_xy, np.float32),
        history_yaw_rad=np.ascontiguousarray(hist_yaw, np.float32),
        history_valid=np.ascontiguousarray(hist_valid, bool),
    )


def _csr(parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(parts) + 1, np.int64)
    offsets[1:] = np.cumsum([len(p) for p in parts]) if parts else []
    pts = np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, 2), np.float32)
    return pts, offsets


def grid_map(
    n_blocks: int = 2, block_m: float = 80.0, lane_w_m: float = 3.5, map_id: str = "grid"
) -> VectorMap:
    """A Manhattan grid of two-way roads (one lane per direction), world frame.

    Roads run along x and y every ``block_m``; every road has a drivable polygon, two lanes
    (centerline, boundaries, speed limit 13.9 m/s), sidewalks on both sides; each lane entering
    a crossing point has a stop line and a traffic light (groups alternate x/y roads); a bike
    lane runs along the first x road; a crossing sits on each approach.

    Args:
        n_blocks: roads per direction minus one (map spans ``n_blocks * block_m``).
        block_m: road spacing, metres. lane_w_m: lane width, metres. map_id: the map id.
    """
    span = n_blocks * block_m
    coords = np.arange(n_blocks + 1) * block_m
    centers, lefts, rights, drivable, sidewalks, crossings = [], [], [], [], [], []
    lane_type, speed, inter, stop_lines, stop_lane, light_lane, light_group = [], [], [], [], [], [], []
    lane_id = 0
    ids = []
    for axis in (0, 1):
        for c in coords:
            a0, a1 = -10.0, span + 10.0
            road = np.array([[a0, c - lane_w_m], [a1, c - lane_w_m], [a1, c + lane_w_m], [a0, c + lane_w_m]])
            for side in (-1, 1):
                off = side * (lane_w_m + 1.0)
                sidewalks.append(
                    np.array(
                        [[a0, c + off - 1.0], [a1, c + off - 1.0], [a1, c + off + 1.0], [a0, c + off + 1.0]]
                    )
                )
            for direction in (1, -1):  # +1: travel along +axis in the lane right of centre
                lat = -direction * lane_w_m / 2.0
                xs = np.linspace(a0, a1, 25) if direction == 1 else np.linspace(a1, a0, 25)
                cl = np.column_stack([xs, np.full_like(xs, c + lat)])
                lb = np.column_stack([xs, np.full_like(xs, c + lat + direction * lane_w_m / 2.0)])
                rb = np.column_stack([xs, np.full_like(xs, c + lat - direction * lane_w_m / 2.0)])
                if axis == 1:
                    (
                        cl,
                        lb,
                        rb,
                    ) = cl[:, ::-1].copy(), lb[:, ::-1].copy(), rb[:, ::-1].copy()
                    # swapping axes mirrors; swap boundaries to keep left on the left
                    lb, rb = rb, lb
                centers.append(cl)
                lefts.append(lb)
                rights.append(rb)
                lane_type.append(int(LaneType.VEHICLE))
                speed.append(13.9)
                inter.append(False)
                ids.append(lane_id)
                # stop line + light before the first crossing road ahead
                stop_at = coords[0] - 5.0 * direction if direction == 1 else coords[-1] - 5.0 * direction
                seg = np.array([[stop_at, c + lat - lane_w_m / 2.0], [stop_at, c + lat + lane_w_m / 2.0]])
                if axis == 1:
                    seg = seg[:, ::-1].copy()
                stop_lines.append(seg)
                stop_lane.append(lane_id)
                light_lane.append(lane_id)
                light_group.append(axis)
                lane_id += 1
            if axis == 1:
                road = road[:, ::-1].copy()
            drivable.append(road)
            if axis == 0 and c == coords[0]:
                for _direction in (1,):  # one bike lane, eastbound
                    xs = np.linspace(a0, a1, 25)
                    y = c - lane_w_m - 1.0
                    centers.append(np.column_stack([xs, np.full_like(xs, y)]))
                    lefts.append(np.column_stack([xs, np.full_like(xs, y + 0.9)]))
                    rights.append(np.column_stack([xs, np.full_like(xs, y - 0.9)]))
                    lane_type.append(int(LaneType.BIKE))
                    speed.append(8.0)
                    inter.append(False)
                    ids.append(lane_id)
                    lane_id += 1
    for cx in coords:
        for cy in coords:
            crossings.append(
                np.array(
                    [
                        [cx - lane_w_m - 4, cy - lane_w_m],
                        [cx - lane_w_m - 1, cy - lane_w_m],
                        [cx - lane_w_m - 1, cy + lane_w_m],
                        [cx - lane_w_m - 4, cy + lane_w_m],
                    ]
                )
            )
    cl_pts, cl_off = _csr(centers)
    lb_pts, lb_off = _csr(lefts)
    rb_pts, rb_off = _csr(rights)
    x_pts, x_off = _csr(crossings)
    w_pts, w_off = _csr(sidewalks)
    d_pts, d_off = _csr(drivable)
    n_lanes = len(ids)
    return empty(
        VectorMap,
        TOPIC_MAP,
        map_id=map_id,
        lane_id=np.array(ids, np.int64),
        lane_type=np.array(lane_type, np.uint8),
        lane_is_intersection=np.array(inter, bool),
        lane_speed_limit_mps=np.array(speed, np.float32),
        lane_left_neighbor_id=np.full(n_lanes, -1, np.int64),
        lane_right_neighbor_id=np.full(n_lanes, -1, np.int64),
        centerline_xy_m=cl_pts,
        centerline_offsets=cl_off,
        left_boundary_xy_m=lb_pts,
        left_boundary_offsets=lb_off,
        right_boundary_xy_m=rb_pts,
        right_boundary_offsets=rb_off,
        successor_offsets=np.zeros(n_lanes + 1, np.int64),
        predecessor_offsets=np.zeros(n_lanes + 1, np.int64),
        crossing_xy_m=x_pts,
        crossing_offsets=x_off,
        sidewalk_xy_m=w_pts,
        sidewalk_offsets=w_off,
        drivable_xy_m=d_pts,
        drivable_offsets=d_off,
        stop_line_xy_m=np.array(stop_lines, np.float32).reshape(-1, 2, 2),
        stop_line_lane_id=np.array(stop_lane, np.int64),
        light_lane_id=np.array(light_lane, np.int64),
        light_group=np.array(light_group, np.int32),
        group_plan_s=np.array([[20.0, 3.0, 23.0], [20.0, 3.0, 23.0]], np.float32),
        group_offset_s=np.array([0.0, 23.0], np.float32),
    )


def random_scene(
    rng: np.random.Generator,
    n_agents: int,
    ego_pose: npt.ArrayLike = (80.0, 80.0, 0.3),
    spread_m: float = 60.0,
    vector_map: VectorMap | None = None,
    n_lidar_points: int = 2000,
) -> dict:
    """A seeded random scene around ``ego_pose``: keyword arguments for ``Rasterizer.render``.

    Agents of every class with random pose, size, velocity, attributes and partly-invalid
    history; random light states for the map's controlled lanes; a plan, an ego history and one
    LiDAR frame.
    """
    pose = np.asarray(ego_pose, np.float64)
    cls = rng.integers(0, NUM_CLASSES, n_agents)
    pos = pose[:2] + rng.uniform(-spread_m, spread_m, (n_agents, 2))
    yaw = rng.uniform(-np.pi, np.pi, n_agents)
    big = (cls >= 1) & (cls <= 3)
    length = np.where(big, rng.uniform(3.5, 12.0, n_agents), rng.uniform(0.4, 2.0, n_agents))
    width = np.where(big, rng.uniform(1.6, 2.8, n_agents), rng.uniform(0.4, 1.0, n_agents))
    vel = rng.normal(0.0, 5.0, (n_agents, 2))
    acc = rng.normal(0.0, 1.0, (n_agents, 2))
    attrs = rng.integers(0, 16, n_agents)
    tracks = make_tracks(pos, yaw, np.column_stack([length, width]), cls, vel, acc, attrs, ego_pose=pose)
    hv = tracks.history_valid.copy()
    hv[rng.random(hv.shape) < 0.1] = False
    hist_yaw = tracks.history_yaw_rad + rng.normal(0.0, 0.05, tracks.history_yaw_rad.shape).astype(np.float32)
    tracks = make_tracks(
        pos,
        yaw,
        np.column_stack([length, width]),
        cls,
        vel,
        acc,
        attrs,
        ego_pose=pose,
        history_xy_m=tracks.history_xy_m,
        history_yaw_rad=hist_yaw,
        history_valid=hv,
    )
    lights = None
    if vector_map is not None and len(vector_map.light_lane_id):
        q = len(vector_map.light_lane_id)
        lights = TrafficLights(
            header=Header(topic=TOPIC_TRAFFIC_LIGHTS),
            lane_id=np.asarray(vector_map.light_lane_id, np.int64),
            state=rng.integers(0, 4, q).astype(np.uint8),
        )
    c, s = np.cos(pose[2]), np.sin(pose[2])
    fwd = np.array([c, s])
    plan = (
        pose[:2]
        + np.outer(np.linspace(0.0, 40.0, 30), fwd)
        + np.outer(np.linspace(0, 4, 30) ** 2 * 0.3, [-s, c])
    )
    history = pose[:2] - np.outer(np.linspace(20.0, 0.0, 20), fwd)
    pts = np.column_stack(
        [rng.uniform(-60, 60, (n_lidar_points, 2)), rng.uniform(-1.0, 2.0, n_lidar_points)]
    ).astype(np.float32)
    mount = np.eye(4)
    mount[:3, 3] = [1.0, 0.5, 1.8]
    lidar = empty(
        LidarFrame, sensor_topic(Modality.LIDAR, Corner.FRONT_LEFT), ego_from_sensor=mount, points_m=pts
    )
    return {
        "tracks": tracks,
        "ego_pose": pose,
        "lights": lights,
        "plan_xy_m": plan,
        "lidar": [lidar],
        "ego_history_xy_m": history,
    }


class TrackHistory:
    """Perfect-perception :class:`Tracks` from :class:`GroundTruth` messages (no tracker needed).

    Keeps the last ``TRACK_HISTORY_STEPS`` ground-truth frames per agent id and emits world-frame
    tracks with confidence 1, status CONFIRMED, history oldest first (invalid where the agent was
    not seen). Assumes the messages arrive at ``PRED_DT_S`` spacing.
    """

    def __init__(self) -> None:
        """Empty history."""
        self._frames: deque[GroundTruth] = deque(maxlen=TRACK_HISTORY_STEPS)
        self._first_seen_ns: dict[int, int] = {}

    def update(self, gt: GroundTruth, ego_pose: npt.ArrayLike) -> Tracks:
        """Add one frame and return the tracks at its stamp.

        Args:
            gt: ground truth at ``gt.header.stamp_ns``.
            ego_pose: (3,) world pose of the ego at the same stamp.
        """
        self._frames.append(gt)
        now = gt.header.stamp_ns
        for aid in gt.agent_id.tolist():
            self._first_seen_ns.setdefault(int(aid), now)
        n = len(gt.agent_id)
        hist_xy = np.zeros((n, TRACK_HISTORY_STEPS, 2), np.float32)
        hist_yaw = np.zeros((n, TRACK_HISTORY_STEPS), np.float32)
        valid = np.zeros((n, TRACK_HISTORY_STEPS), bool)
        row = {int(a): i for i, a in enumerate(gt.agent_id.tolist())}
        frames = list(self._frames)
        for k, frame in enumerate(frames):
            col = TRACK_HISTORY_STEPS - len(frames) + k
            for j, aid in enumerate(frame.agent_id.tolist()):
                i = row.get(int(aid))
                if i is not None:
                    hist_xy[i, col] = frame.position_m[j]
                    hist_yaw[i, col] = frame.yaw_rad[j]
                    valid[i, col] = True
        age = np.array([(now - self._first_seen_ns[int(a)]) * 1e-9 for a in gt.agent_id.tolist()], np.float32)
        return make_tracks(
            gt.position_m,
            gt.yaw_rad,
            gt.size_lwh_m[:, :2],
            gt.class_id,
            gt.velocity_mps,
            gt.accel_mps2,
            gt.attributes,
            ego_pose=ego_pose,
            stamp_ns=now,
            history_xy_m=hist_xy,
            history_yaw_rad=hist_yaw,
            history_valid=valid,
            track_id=gt.agent_id,
            age_s=age,
        )
