"""The dynamic scene of one tick as pixel-space primitives: boxes, polylines and points.

:func:`prepare_dynamic` turns tracks, the ego, traffic lights, the plan, the ego's past path and
LiDAR points into :class:`DynamicPrimitives` with numpy; the rasterizer's numba kernels and the
numpy reference both draw them. Inputs are checked here, once, with :class:`RasterInputError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from prescient.bus.messages import (
    NUM_CLASSES,
    TRACK_HISTORY_STEPS,
    Attribute,
    LidarFrame,
    LightState,
    TrackStatus,
)
from prescient.service.raster.channels import CLASS_GROUPS, GROUP_OF_CLASS, ChannelSpec
from prescient.service.raster.config import RasterConfig
from prescient.service.raster.render_context import F32, F64, RenderContext, apply, ego_from_world
from prescient.service.tracks import TrackSnapshot

_ATTR_CHANNELS = (
    (Attribute.PHONE, "attr_phone"),
    (Attribute.BRAKE_LIGHTS, "attr_brake_lights"),
    (Attribute.LEFT_SIGNAL, "attr_left_signal"),
    (Attribute.RIGHT_SIGNAL, "attr_right_signal"),
)
_FEATURES = (
    "agent_vx",
    "agent_vy",
    "agent_heading_cos",
    "agent_heading_sin",
    "agent_ax",
    "agent_ay",
    "agent_confidence",
    "agent_age",
) + tuple(name for _, name in _ATTR_CHANNELS)
_LIGHT_CHANNEL = {
    LightState.RED: "tl_red",
    LightState.YELLOW: "tl_yellow",
    LightState.GREEN: "tl_green",
    LightState.UNKNOWN: "tl_unknown",
}


class RasterInputError(ValueError):
    """An input to :meth:`Rasterizer.render` that cannot be drawn (the message names it)."""


@dataclass
class DynamicPrimitives:
    """The per-tick scene in raster pixel coordinates, drawn in this order.

    Attributes:
        boxes: (M, 6) float64 ``[col, row, ux, uy, half_len_px, half_wid_px]``.
        box_channels: (M, K) int64 (-1 = none). box_values: (M, K) float32.
        line_points: (P, 2) float64 ``(col, row)``; line_offsets: (L + 1,) int64;
        line_channels: (L,) int64; line_values: (L,) float32.
        splat_points: (S, 2) float64 ``(col, row)`` of LiDAR points, written to ``splat_channel``.
    """

    boxes: F64
    box_channels: npt.NDArray[np.int64]
    box_values: F32
    line_points: F64
    line_offsets: npt.NDArray[np.int64]
    line_channels: npt.NDArray[np.int64]
    line_values: F32
    splat_points: F64
    splat_channel: int


@dataclass
class RasterStats:
    """Counters of inputs skipped (never raised) while rendering."""

    frames: int = 0
    tracks_dropped_nonfinite: int = 0
    tracks_dropped_bad_class: int = 0
    light_lanes_unknown: int = 0
    lidar_points_nonfinite: int = 0
    counts: dict[str, int] = field(default_factory=dict)


def _check_pose(ego_pose: npt.ArrayLike) -> F64:
    pose = np.asarray(ego_pose, dtype=np.float64)
    if pose.shape != (3,):
        raise RasterInputError(f"ego_pose: expected shape (3,) [x_m, y_m, yaw_rad], got {pose.shape}")
    if not np.all(np.isfinite(pose)):
        raise RasterInputError(f"ego_pose: non-finite value {pose.tolist()}")
    return pose


def _check_xy(name: str, xy: npt.ArrayLike | None) -> F64 | None:
    if xy is None:
        return None
    arr = np.asarray(xy, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise RasterInputError(f"{name}: expected shape (S, 2) world metres, got {arr.shape}")
    finite = np.all(np.isfinite(arr), axis=1)
    return arr[finite]


class _Layout:
    """Channel indices the renderer needs, resolved once from the channel table."""

    def __init__(self, channels: tuple[ChannelSpec, ...], cfg: RasterConfig) -> None:
        idx = {c.name: c.index for c in channels}
        n_frames = cfg.history_frames
        # occ[group, frame]
        self.occ = np.array(
            [
                [idx[c.name] for c in channels if c.group == "agents" and c.name.startswith(f"occ_{g}_")]
                for g in CLASS_GROUPS
            ],
            np.int64,
        )
        if self.occ.shape != (len(CLASS_GROUPS), n_frames):
            raise ValueError(f"channel table has occupancy {self.occ.shape}, config {n_frames} frames")
        self.features = np.array([idx[n] for n in _FEATURES], np.int64)
        self.lights = {state: idx[name] for state, name in _LIGHT_CHANNEL.items()}
        self.ego_box = idx["ego_box"]
        self.ego_past = idx["ego_past_path"]
        self.ego_plan = idx["ego_plan"]
        self.lidar = idx["lidar_occupancy"]
        self.first_dynamic = min(c.index for c in channels if c.group != "static")
        group_of_class = np.full(NUM_CLASSES, -1, np.int64)
        for cls, g in GROUP_OF_CLASS.items():
            group_of_class[int(cls)] = g
        self.group_of_class = group_of_class


def _box_rows(
    ctx_raster_from_world: F64, xy_m: F64, yaw_rad: F64, length_m: F64, width_m: F64, res_m: float
) -> F64:
    """(M, 6) pixel-space box rows from world-frame centres, yaws and sizes."""
    centre = apply(ctx_raster_from_world, xy_m)  # (M, 2) col,row
    lin = ctx_raster_from_world[:2, :2] * res_m  # orthonormal (a reflection): world dir -> pixel dir
    d = np.stack([np.cos(yaw_rad), np.sin(yaw_rad)], axis=1) @ lin.T  # (M, 2)
    half_l = np.maximum(length_m, 0.0) / (2.0 * res_m)
    half_w = np.maximum(width_m, 0.0) / (2.0 * res_m)
    return np.column_stack([centre, d, half_l, half_w]).astype(np.float64)


def prepare_dynamic(
    ctx: RenderContext,
    layout: _Layout,
    cfg: RasterConfig,
    tracks: TrackSnapshot | None,
    ego_pose: F64,
    light_points_m: F64,
    light_offsets: npt.NDArray[np.int64],
    light_lane_states: npt.NDArray[np.int64],
    plan_xy_m: F64 | None,
    lidar: list[LidarFrame] | None,
    ego_history_xy_m: F64 | None,
    stats: RasterStats,
) -> DynamicPrimitives:
    """Turn the tick's inputs into pixel-space primitives (numpy; shared by fast path and reference).

    Args:
        ctx: render context. layout: channel indices. cfg: raster config.
        tracks: world-frame tracks (checked: known classes, finite states) or None.
        ego_pose: (3,) float64 world ``[x_m, y_m, yaw_rad]``.
        light_points_m, light_offsets: controlled-lane centerlines (world, CSR).
        light_lane_states: (Q,) LightState of each controlled lane.
        plan_xy_m: (S, 2) world or None. ego_history_xy_m: (H, 2) world or None.
        lidar: LiDAR frames (points in their sensor frames) or None.
        stats: counters updated for skipped inputs.

    Returns:
        The primitives, in drawing order.
    """
    res = ctx.resolution_m
    r_from_w = ctx.raster_from_world(ego_pose)
    ego_yaw = float(ego_pose[2])
    cy, sy = math.cos(ego_yaw), math.sin(ego_yaw)
    n_feat = len(layout.features)
    box_parts: list[F64] = []
    ch_parts: list[npt.NDArray[np.int64]] = []
    val_parts: list[F32] = []

    if tracks is not None and len(tracks):
        # Every class has a group and every state is finite (a TrackSnapshot's guarantee).
        grp = layout.group_of_class[np.asarray(tracks.class_id, np.int64)]
        keep = np.flatnonzero(grp >= 0)
        size = np.asarray(tracks.size_lwh_m, np.float64)[keep]
        grp = grp[keep]
        # History frames, oldest first, occupancy only.
        hist_xy = tracks.history_xy_m
        for f in range(cfg.history_frames - 1, 0, -1):
            col = TRACK_HISTORY_STEPS - 1 - cfg.history_offsets_steps[f]
            xy = np.asarray(hist_xy[keep, col], np.float64)
            yaw = np.asarray(tracks.history_yaw_rad[keep, col], np.float64)
            sel = np.flatnonzero(tracks.history_valid[keep, col])
            if len(sel) == 0:
                continue
            box_parts.append(_box_rows(r_from_w, xy[sel], yaw[sel], size[sel, 0], size[sel, 1], res))
            chans = np.full((len(sel), 1 + n_feat), -1, np.int64)
            chans[:, 0] = layout.occ[grp[sel], f]
            ch_parts.append(chans)
            vals = np.zeros((len(sel), 1 + n_feat), np.float32)
            vals[:, 0] = 1.0
            val_parts.append(vals)
        # Current frame with features.
        if len(keep):
            xy = np.asarray(tracks.position_m, np.float64)[keep]
            yaw = np.asarray(tracks.yaw_rad, np.float64)[keep]
            box_parts.append(_box_rows(r_from_w, xy, yaw, size[:, 0], size[:, 1], res))
            chans = np.empty((len(keep), 1 + n_feat), np.int64)
            chans[:, 0] = layout.occ[grp, 0]
            chans[:, 1:] = layout.features[None, :]
            ch_parts.append(chans)
            v = np.asarray(tracks.velocity_mps, np.float64)[keep]
            a = np.asarray(tracks.accel_mps2, np.float64)[keep]
            rel_yaw = yaw - ego_yaw
            probs = np.asarray(tracks.class_probs, np.float64)[keep]
            conf = np.where(np.all(np.isfinite(probs), axis=1), probs.max(axis=1, initial=0.0), 0.0)
            conf = np.where(tracks.status[keep] == TrackStatus.CONFIRMED, conf, 0.5 * conf)
            age = np.asarray(tracks.age_s, np.float64)[keep]
            attrs = np.asarray(tracks.attributes, np.int64)[keep]
            vs, acs = cfg.velocity_scale_mps, cfg.accel_scale_mps2
            feats = [
                np.clip((v[:, 0] * cy + v[:, 1] * sy) / vs, -2.0, 2.0),
                np.clip((-v[:, 0] * sy + v[:, 1] * cy) / vs, -2.0, 2.0),
                np.cos(rel_yaw),
                np.sin(rel_yaw),
                np.clip((a[:, 0] * cy + a[:, 1] * sy) / acs, -2.0, 2.0),
                np.clip((-a[:, 0] * sy + a[:, 1] * cy) / acs, -2.0, 2.0),
                np.clip(conf, 0.0, 1.0),
                np.clip(np.nan_to_num(age, nan=0.0) / cfg.age_scale_s, 0.0, 1.0),
            ] + [((attrs & int(bit)) != 0).astype(np.float64) for bit, _ in _ATTR_CHANNELS]
            vals = np.empty((len(keep), 1 + n_feat), np.float32)
            vals[:, 0] = 1.0
            vals[:, 1:] = np.stack(feats, axis=1)
            val_parts.append(vals)
    # Ego box, last so it is never hidden by a phantom track.
    length, width = cfg.ego_size_lwh_m[0], cfg.ego_size_lwh_m[1]
    world_from_ego = np.asarray(np.linalg.inv(ego_from_world(ego_pose)), np.float64)
    ego_centre = apply(world_from_ego, [[cfg.ego_rear_axle_to_center_m, 0.0]])
    box_parts.append(
        _box_rows(r_from_w, ego_centre, np.array([ego_yaw]), np.array([length]), np.array([width]), res)
    )
    chans = np.full((1, 1 + n_feat), -1, np.int64)
    chans[0, 0] = layout.ego_box
    ch_parts.append(chans)
    val_parts.append(np.array([[1.0] + [0.0] * n_feat], np.float32))

    # Polylines: traffic lights, ego past path, plan.
    line_pts: list[F64] = []
    lens: list[int] = []
    line_ch: list[int] = []
    q = len(light_offsets) - 1
    if q > 0:
        line_pts.append(apply(r_from_w, light_points_m))
        lens += np.diff(light_offsets).tolist()
        line_ch += [layout.lights[LightState(int(s))] for s in light_lane_states]
    for path_xy, ch in ((ego_history_xy_m, layout.ego_past), (plan_xy_m, layout.ego_plan)):
        if path_xy is not None and len(path_xy):
            line_pts.append(apply(r_from_w, path_xy))
            lens.append(len(path_xy))
            line_ch.append(ch)
    offsets = np.zeros(len(lens) + 1, np.int64)
    offsets[1:] = np.cumsum(lens) if lens else []

    # LiDAR points: sensor -> ego (4x4 mount) -> z band -> pixels.
    splat = np.zeros((0, 2))
    if lidar:
        parts = []
        for frame in lidar:
            pts = np.asarray(frame.points_m, np.float64)
            if len(pts) == 0:
                continue
            good = np.all(np.isfinite(pts), axis=1)
            stats.lidar_points_nonfinite += int(np.count_nonzero(~good))
            m = np.asarray(frame.ego_from_sensor, np.float64)
            ego_pts = pts[good] @ m[:3, :3].T + m[:3, 3]
            band = (ego_pts[:, 2] >= cfg.lidar_z_min_m) & (ego_pts[:, 2] <= cfg.lidar_z_max_m)
            parts.append(ctx.pixels_from_ego(ego_pts[band, :2]))
        if parts:
            splat = np.concatenate(parts)

    return DynamicPrimitives(
        boxes=np.concatenate(box_parts),
        box_channels=np.concatenate(ch_parts),
        box_values=np.concatenate(val_parts),
        line_points=np.concatenate(line_pts) if line_pts else np.zeros((0, 2)),
        line_offsets=offsets,
        line_channels=np.array(line_ch, np.int64),
        line_values=np.ones(len(line_ch), np.float32),
        splat_points=splat,
        splat_channel=layout.lidar,
    )
