"""Shared by the importers: ground-truth agent rows -> per-timestamp ``Tracks`` / ``GroundTruth``.

Ground truth is presented as a perfect tracker would: causal. Velocities (when the data set has
none) are backward differences, zero at an agent's first observation; accelerations and yaw
rates are backward differences too. History (``TRACK_HISTORY_STEPS`` at ``PRED_DT_S``) is linearly
interpolated from the agent's own past samples, never extrapolated, and not across gaps longer than
``max_gap_s``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Final

import numpy as np

from prescient.bus import messages as m

H: Final = m.TRACK_HISTORY_STEPS
HIST_DT_NS: Final = int(round(m.PRED_DT_S * 1e9))
# Variances over [x, y, vx, vy] of a ground-truth "track" (m^2, (m/s)^2): small, not zero.
GT_COVARIANCE: Final = np.diag([0.01, 0.01, 0.04, 0.04]).astype(np.float32)
_MIN_SPEED_FOR_YAW_MPS: Final = 0.2


@dataclasses.dataclass
class AgentRows:
    """Long table of agent observations, world frame. R rows, any order.

    Attributes:
        t_ns: (R,) int64 timestamps.
        agent_id: (R,) int64.
        class_id: (R,) int32 AgentClass values.
        xy_m: (R, 2) float64 positions.
        size_lwh_m: (R, 3) float64.
        yaw_rad: (R,) float64 or None (then from the velocity direction).
        velocity_mps: (R, 2) float64 or None (then backward differences).
    """

    t_ns: np.ndarray
    agent_id: np.ndarray
    class_id: np.ndarray
    xy_m: np.ndarray
    size_lwh_m: np.ndarray
    yaw_rad: np.ndarray | None = None
    velocity_mps: np.ndarray | None = None


@dataclasses.dataclass
class _Derived:
    t_ns: np.ndarray
    agent_id: np.ndarray
    class_id: np.ndarray
    xy_m: np.ndarray
    size_lwh_m: np.ndarray
    yaw_rad: np.ndarray
    velocity_mps: np.ndarray
    accel_mps2: np.ndarray
    yaw_rate_radps: np.ndarray
    age_s: np.ndarray
    history_xy_m: np.ndarray  # (R, H, 2)
    history_yaw_rad: np.ndarray  # (R, H)
    history_valid: np.ndarray  # (R, H)


def _derive(rows: AgentRows, max_gap_s: float) -> _Derived:
    order = np.lexsort((rows.t_ns, rows.agent_id))
    t = rows.t_ns[order].astype(np.int64)
    aid = rows.agent_id[order]
    xy = rows.xy_m[order].astype(np.float64)
    n = len(t)
    vel = np.zeros((n, 2)) if rows.velocity_mps is None else rows.velocity_mps[order].astype(np.float64)
    yaw = np.zeros(n) if rows.yaw_rad is None else rows.yaw_rad[order].astype(np.float64)
    acc = np.zeros((n, 2))
    yaw_rate = np.zeros(n)
    age = np.zeros(n)
    hist_xy = np.zeros((n, H, 2))
    hist_yaw = np.zeros((n, H))
    hist_valid = np.zeros((n, H), bool)
    offsets = (np.arange(H) - (H - 1)) * HIST_DT_NS  # (H,) oldest first, ending at 0
    max_gap_ns = int(max_gap_s * 1e9)
    starts = np.flatnonzero(np.r_[True, aid[1:] != aid[:-1]])
    ends = np.r_[starts[1:], n]
    for s, e in zip(starts, ends):
        ts = t[s:e]
        dt_s = np.diff(ts) / 1e9  # (n_a - 1,)
        if rows.velocity_mps is None:
            vel[s + 1 : e] = np.diff(xy[s:e], axis=0) / dt_s[:, None]
        if rows.yaw_rad is None:
            speed = np.hypot(vel[s:e, 0], vel[s:e, 1])
            heading = np.arctan2(vel[s:e, 1], vel[s:e, 0])
            moving = speed > _MIN_SPEED_FOR_YAW_MPS
            # carry the last moving heading forward (stationary agents keep their yaw)
            idx = np.where(moving, np.arange(e - s), 0)
            np.maximum.accumulate(idx, out=idx)
            first_moving = np.flatnonzero(moving)
            if first_moving.size:
                idx[: first_moving[0]] = first_moving[0]
                yaw[s:e] = heading[idx]
        if e - s > 1:
            acc[s + 1 : e] = np.diff(vel[s:e], axis=0) / dt_s[:, None]
            yaw_rate[s + 1 : e] = np.diff(np.unwrap(yaw[s:e])) / dt_s
        age[s:e] = (ts - ts[0]) / 1e9
        # History: interpolate the agent's past at t + offsets (never beyond its first sample).
        q = ts[:, None] + offsets[None, :]  # (n_a, H)
        k = np.searchsorted(ts, q, side="right") - 1  # last sample at or before q
        in_range = k >= 0
        k0 = np.clip(k, 0, len(ts) - 1)
        k1 = np.clip(k0 + 1, 0, len(ts) - 1)
        gap = ts[k1] - ts[k0]
        exact = ts[k0] == q
        valid = in_range & (exact | (gap <= max_gap_ns))
        hist_valid[s:e] = valid
        qf = q.astype(np.float64)
        tsf = ts.astype(np.float64)
        hist_xy[s:e, :, 0] = np.interp(qf, tsf, xy[s:e, 0])
        hist_xy[s:e, :, 1] = np.interp(qf, tsf, xy[s:e, 1])
        hist_yaw[s:e] = yaw[s:e][k0]
    hist_xy[~hist_valid] = 0.0
    hist_yaw[~hist_valid] = 0.0
    return _Derived(
        t,
        aid,
        rows.class_id[order],
        xy,
        rows.size_lwh_m[order].astype(np.float64),
        yaw,
        vel,
        acc,
        yaw_rate,
        age,
        hist_xy,
        hist_yaw,
        hist_valid,
    )


def iter_agent_messages(
    rows: AgentRows,
    ego_pose_at: dict[int, np.ndarray] | np.ndarray,
    *,
    max_gap_s: float = 1.0,
) -> Iterator[tuple[int, m.Tracks, m.GroundTruth]]:
    """Per distinct timestamp (ascending): ``(stamp_ns, Tracks, GroundTruth)``, world frame.

    Args:
        rows: the agent observations.
        ego_pose_at: (3,) world ``[x_m, y_m, yaw_rad]`` used for every stamp, or a map
            stamp_ns -> (3,) pose.
        max_gap_s: history is not interpolated across gaps between samples longer than this.
    """
    if len(rows.t_ns) == 0:
        return
    d = _derive(rows, max_gap_s)
    order = np.lexsort((d.agent_id, d.t_ns))
    t_sorted = d.t_ns[order]
    starts = np.flatnonzero(np.r_[True, t_sorted[1:] != t_sorted[:-1]])
    ends = np.r_[starts[1:], len(order)]
    eye = np.eye(m.NUM_CLASSES, dtype=np.float32)
    for s, e in zip(starts, ends):
        idx = order[s:e]
        stamp = int(t_sorted[s])
        n = len(idx)
        pose = ego_pose_at if isinstance(ego_pose_at, np.ndarray) else ego_pose_at[stamp]
        f32 = np.float32
        cls = d.class_id[idx].astype(np.int32)
        tracks = m.Tracks(
            header=m.Header(topic=m.TOPIC_TRACKS, stamp_ns=stamp),
            ego_pose=np.asarray(pose, np.float64),
            track_id=d.agent_id[idx].astype(np.int64),
            class_id=cls,
            class_probs=eye[cls],
            status=np.full(n, m.TrackStatus.CONFIRMED, np.uint8),
            position_m=d.xy_m[idx].astype(f32),
            velocity_mps=d.velocity_mps[idx].astype(f32),
            accel_mps2=d.accel_mps2[idx].astype(f32),
            yaw_rad=d.yaw_rad[idx].astype(f32),
            yaw_rate_radps=d.yaw_rate_radps[idx].astype(f32),
            size_lwh_m=d.size_lwh_m[idx].astype(f32),
            covariance=np.broadcast_to(GT_COVARIANCE, (n, 4, 4)).copy(),
            attributes=np.zeros(n, np.uint8),
            age_s=d.age_s[idx].astype(f32),
            history_xy_m=d.history_xy_m[idx].astype(f32),
            history_yaw_rad=d.history_yaw_rad[idx].astype(f32),
            history_valid=d.history_valid[idx],
        )
        gt = m.GroundTruth(
            header=m.Header(topic=m.TOPIC_GROUND_TRUTH, stamp_ns=stamp),
            agent_id=tracks.track_id,
            class_id=cls,
            position_m=tracks.position_m,
            yaw_rad=tracks.yaw_rad,
            velocity_mps=tracks.velocity_mps,
            accel_mps2=tracks.accel_mps2,
            size_lwh_m=tracks.size_lwh_m,
            attributes=tracks.attributes,
        )
        yield stamp, tracks, gt


def default_sizes(class_id: np.ndarray) -> np.ndarray:
    """(R, 3) default box sizes for an (R,) array of AgentClass values."""
    table = np.array([m.DEFAULT_SIZE_LWH_M[c] for c in m.AgentClass], np.float64)
    return table[class_id]


def ego_state(
    stamp_ns: int,
    pose: np.ndarray,
    velocity_mps: np.ndarray,
    accel_mps2: float,
    yaw_rate_radps: float,
    size_lwh_m: tuple[float, float, float],
) -> m.EgoState:
    """An EgoState in the world frame with an empty plan."""
    return m.EgoState(
        header=m.Header(topic=m.TOPIC_EGO, stamp_ns=stamp_ns),
        pose=np.asarray(pose, np.float64),
        velocity_mps=np.asarray(velocity_mps, np.float32),
        accel_mps2=float(accel_mps2),
        yaw_rate_radps=float(yaw_rate_radps),
        size_lwh_m=np.asarray(size_lwh_m, np.float32),
        plan_xy_m=np.zeros((0, 2), np.float32),
    )
