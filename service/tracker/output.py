"""The tracker's output: one :class:`~prescient.service.tracks.TrackSnapshot` built from the track table."""

from __future__ import annotations

import numpy as np

from prescient.bus import messages as m
from prescient.service.tracker.layout import MODEL_CTRA
from prescient.service.tracker.table import ATTR_BITS, NS_PER_S, TrackTable
from prescient.service.tracks import TrackSnapshot

_ACCEL_BACK_STEPS = 5  # CV acceleration: velocity difference over 0.5 s of history


def _accel(table: TrackTable, idx: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """(n, 2) float32 world acceleration of slots ``idx``, m/s^2.

    CV tracks: finite difference of the velocity history over 0.5 s (zero until it exists).
    CTRA tracks: longitudinal acceleration plus the centripetal term ``v * yaw_rate``.
    """
    n = idx.size
    back = _ACCEL_BACK_STEPS
    old_ok = table.hist_valid[idx, -1 - back]
    accel = np.zeros((n, 2), np.float32)
    if n == 0:
        return accel
    dv = table.hist_vel_mps[idx, -1] - table.hist_vel_mps[idx, -1 - back]
    accel[old_ok] = dv[old_ok] / (back * m.PRED_DT_S)
    tv = table.model[idx] == MODEL_CTRA
    if tv.any():
        xs = table.x[idx[tv]]
        c, s_ = np.cos(yaw[tv]), np.sin(yaw[tv])
        accel[tv, 0] = xs[:, 5] * c - xs[:, 3] * xs[:, 4] * s_
        accel[tv, 1] = xs[:, 5] * s_ + xs[:, 3] * xs[:, 4] * c
    return accel


def snapshot_from_table(
    table: TrackTable,
    idx: np.ndarray,
    pos: np.ndarray,
    vel: np.ndarray,
    yaw: np.ndarray,
    cov: np.ndarray,
    now_ns: int,
    ego_pose: np.ndarray,
) -> TrackSnapshot:
    """The tracks of slots ``idx`` at ``now_ns`` (finite: the lifecycle dropped the others).

    Args:
        table: the track table (ids, classes, status, sizes, history of the slots).
        idx: (N,) int64 slots to publish, in output order.
        pos, vel: (N, 2) float64 world position m and velocity m/s at ``now_ns``.
        yaw: (N,) float64 world heading, rad; cov: (N, 4, 4) float64 covariance of
            ``[x, y, vx, vy]`` (see :meth:`~prescient.service.tracker.motion.Motion.extrapolate`).
        now_ns: output time, sensor clock.
        ego_pose: (3,) float64 ego ``[x_m, y_m, yaw_rad]`` world at ``now_ns`` (zeros if unknown).
    """
    n = idx.size
    accel = _accel(table, idx, yaw)
    probs = np.exp(table.class_logp[idx])
    probs /= probs.sum(axis=1, keepdims=True)
    attrs = (table.attr_score[idx] > 0.5) @ ATTR_BITS.astype(np.int64) if n else np.zeros(0, np.int64)
    yaw_rate = np.where(table.model[idx] == MODEL_CTRA, table.x[idx, 4], 0.0)
    return TrackSnapshot(
        stamp_ns=int(now_ns),
        ego_pose=ego_pose.astype(np.float64),
        track_id=table.track_id[idx].copy(),
        class_id=table.class_id[idx].copy(),
        class_probs=probs.astype(np.float32),
        status=table.status[idx].copy(),
        position_m=pos.astype(np.float32),
        velocity_mps=vel.astype(np.float32),
        accel_mps2=accel,
        yaw_rad=yaw.astype(np.float32),
        yaw_rate_radps=yaw_rate.astype(np.float32),
        size_lwh_m=table.size_lwh_m[idx].astype(np.float32),
        covariance=cov.astype(np.float32),
        attributes=np.asarray(attrs, np.uint8),
        age_s=((now_ns - table.birth_ns[idx]) / NS_PER_S).astype(np.float32),
        history_xy_m=table.hist_xy_m[idx].copy(),
        history_yaw_rad=table.hist_yaw_rad[idx].copy(),
        history_valid=table.hist_valid[idx].copy(),
    )
