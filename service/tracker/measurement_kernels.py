"""Numba kernels of the measurement models: predicted measurement, innovation, small inverses,
and the conversion of raw detections into world-frame measurements.

Only ``@njit`` functions (and their warm-up) live here; the state and measurement layouts are in
:mod:`prescient.service.tracker.layout`, the EKF update that uses these models in
:mod:`prescient.service.tracker.motion_kernels`, the gating in :mod:`prescient.service.tracker.association_kernels`.

Kernels in other files call these; the on-disk cache follows a digest of every kernel module
(:mod:`prescient.bus.jit_cache`), so an edit here recompiles those callers too.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from prescient.service.tracker.layout import MEAS_BEARING, MEAS_POSE, MEAS_RADAR, MODEL_CTRA, MODEL_CV
from prescient.service.tracker.layout import STATE_DIM as SD

_EPS = 1e-9


@njit(cache=True, nogil=True)
def wrap_angle(a: float) -> float:
    """Wrap an angle to [-pi, pi)."""
    return (a + math.pi) % (2.0 * math.pi) - math.pi


@njit(cache=True, nogil=True)
def measure_kernel(x, model_i, kind, sensor, zhat, H):  # noqa: ANN001, ANN201
    """Predicted measurement of one track and its Jacobian.

    Args:
        x: (6,) float64 state of the track (layout of ``model_i``).
        model_i: ``MODEL_*`` of the track.
        kind: ``MEAS_*``.
        sensor: (5,) float64 world pose and velocity of the sensor.
        zhat: (m,) float64 output, predicted measurement.
        H: (m, 6) float64 output, Jacobian of ``zhat`` by the state.

    Returns:
        False when the track sits on the sensor (range below 0.5 m: bearing undefined).
    """
    H[:, :] = 0.0
    px, py = x[0], x[1]
    if model_i == MODEL_CV:
        vx, vy = x[2], x[3]
    else:
        vx, vy = x[3] * math.cos(x[2]), x[3] * math.sin(x[2])
    if kind == MEAS_POSE:
        zhat[0] = px
        zhat[1] = py
        H[0, 0] = 1.0
        H[1, 1] = 1.0
        if model_i == MODEL_CTRA:
            zhat[2] = x[2]
            H[2, 2] = 1.0
        else:
            zhat[2] = 0.0
        return True
    dx = px - sensor[0]
    dy = py - sensor[1]
    r2 = dx * dx + dy * dy
    if r2 < 0.25:
        return False
    r = math.sqrt(r2)
    if kind == MEAS_BEARING:
        zhat[0] = math.atan2(dy, dx)
        H[0, 0] = -dy / r2
        H[0, 1] = dx / r2
        return True
    ux, uy = dx / r, dy / r
    rr = ux * vx + uy * vy
    zhat[0] = r
    zhat[1] = math.atan2(dy, dx)
    zhat[2] = rr
    H[0, 0] = ux
    H[0, 1] = uy
    H[1, 0] = -dy / r2
    H[1, 1] = dx / r2
    H[2, 0] = (vx - rr * ux) / r
    H[2, 1] = (vy - rr * uy) / r
    if model_i == MODEL_CV:
        H[2, 2] = ux
        H[2, 3] = uy
    else:
        c, s = math.cos(x[2]), math.sin(x[2])
        H[2, 2] = x[3] * (-ux * s + uy * c)
        H[2, 3] = ux * c + uy * s
    return True


@njit(cache=True, nogil=True)
def innovation_kernel(kind, z, zhat, model_i, y):  # noqa: ANN001, ANN201
    """Innovation ``y = z - zhat`` (m,) with angles wrapped; the LiDAR yaw folded by pi for CTRA
    tracks (box heading ambiguity) and zeroed for CV tracks."""
    m = y.shape[0]
    for d in range(m):
        y[d] = z[d] - zhat[d]
    if kind == MEAS_POSE:
        if model_i == MODEL_CTRA:
            e = wrap_angle(y[2])
            if e > 0.5 * math.pi:
                e -= math.pi
            elif e < -0.5 * math.pi:
                e += math.pi
            y[2] = e
        else:
            y[2] = 0.0
    elif kind == MEAS_RADAR:
        y[1] = wrap_angle(y[1])
    else:
        y[0] = wrap_angle(y[0])


@njit(cache=True, nogil=True)
def inv_small_kernel(S, m_use, Si):  # noqa: ANN001, ANN201
    """Inverse of the leading ``m_use`` x ``m_use`` block (1 to 3) of S into Si.

    Returns:
        The block's determinant, or 0.0 (Si then all zero) when it is not safely positive.
    """
    Si[:, :] = 0.0
    if m_use == 1:
        det = S[0, 0]
        if det <= _EPS:
            return 0.0
        Si[0, 0] = 1.0 / det
        return det
    if m_use == 2:
        det = S[0, 0] * S[1, 1] - S[0, 1] * S[1, 0]
        if det <= _EPS * _EPS:
            return 0.0
        Si[0, 0] = S[1, 1] / det
        Si[1, 1] = S[0, 0] / det
        Si[0, 1] = -S[0, 1] / det
        Si[1, 0] = -S[1, 0] / det
        return det
    a, b, c = S[0, 0], S[0, 1], S[0, 2]
    d, e, f = S[1, 0], S[1, 1], S[1, 2]
    g, h, k = S[2, 0], S[2, 1], S[2, 2]
    A = e * k - f * h
    B = -(d * k - f * g)
    C = d * h - e * g
    det = a * A + b * B + c * C
    if det <= _EPS**3:
        return 0.0
    Si[0, 0] = A / det
    Si[1, 0] = B / det
    Si[2, 0] = C / det
    Si[0, 1] = -(b * k - c * h) / det
    Si[1, 1] = (a * k - c * g) / det
    Si[2, 1] = -(a * h - b * g) / det
    Si[0, 2] = (b * f - c * e) / det
    Si[1, 2] = -(a * f - c * d) / det
    Si[2, 2] = (a * e - b * d) / det
    return det


@njit(cache=True, nogil=True)
def hph_kernel(H, P, m, out):  # noqa: ANN001, ANN201
    """``out[:m, :m] = H P H^T`` for (m, 6) H and (6, 6) P; explicit loops (BLAS is slow for 6x6)."""
    for r in range(m):
        for c in range(r, m):
            acc = 0.0
            for a in range(SD):
                ha = H[r, a]
                if ha == 0.0:
                    continue
                for b in range(SD):
                    acc += ha * P[a, b] * H[c, b]
            out[r, c] = acc
            out[c, r] = acc


@njit(cache=True, nogil=True)
def frames_to_world_kernel(
    kind, raw, frame_of, ego, sensors_f, mounts, intrinsics, width_px, params, out_z, out_R, out_sensors
):  # noqa: ANN001, ANN201
    """Convert the detections of a batch of frames into world-frame measurements.

    Args:
        kind: ``MEAS_*``.
        raw: (M, 4) float64 per-detection inputs: POSE ``[x_s, y_s, z_s, yaw_s]`` (sensor frame),
            RADAR ``[range_m, azimuth_rad, range_rate_mps, 0]``, BEARING ``[u_min, v_min, u_max,
            v_max]`` pixels.
        frame_of: (M,) int64 frame of each row.
        ego: (6,) float64 ego ``[x_m, y_m, yaw_rad, vx_mps, vy_mps, yaw_rate_radps]`` world.
        sensors_f: (F, 5) float64 world pose and velocity of each frame's sensor.
        mounts: (F, 4, 4) float64 ``ego_from_sensor`` of each frame.
        intrinsics: (F, 3, 3) float64 (BEARING only).
        width_px: (F,) float64 image width (BEARING only).
        params: (6,) float64: POSE ``[pos_std, pos_std_per_m, yaw_std]``; RADAR ``[range_std,
            bearing_std, rr_std]``; BEARING ``[bearing_std, width_frac]``.
        out_z, out_R: (M, m) float64 measurements and variances; out_sensors: (M, 5).
    """
    for j in range(raw.shape[0]):
        f = frame_of[j]
        s = sensors_f[f]
        for d in range(5):
            out_sensors[j, d] = s[d]
        syaw = s[2]
        if kind == MEAS_POSE:
            e = mounts[f]
            px = e[0, 0] * raw[j, 0] + e[0, 1] * raw[j, 1] + e[0, 2] * raw[j, 2] + e[0, 3]
            py = e[1, 0] * raw[j, 0] + e[1, 1] * raw[j, 1] + e[1, 2] * raw[j, 2] + e[1, 3]
            ce, se = math.cos(ego[2]), math.sin(ego[2])
            out_z[j, 0] = ego[0] + ce * px - se * py
            out_z[j, 1] = ego[1] + se * px + ce * py
            out_z[j, 2] = wrap_angle(raw[j, 3] + syaw)
            std = params[0] + params[1] * math.sqrt(raw[j, 0] ** 2 + raw[j, 1] ** 2)
            out_R[j, 0] = std * std
            out_R[j, 1] = std * std
            out_R[j, 2] = params[2] * params[2]
        elif kind == MEAS_RADAR:
            az = raw[j, 1] + syaw
            out_z[j, 0] = raw[j, 0]
            out_z[j, 1] = wrap_angle(az)
            out_z[j, 2] = raw[j, 2] + math.cos(az) * s[3] + math.sin(az) * s[4]
            out_R[j, 0] = params[0] * params[0]
            out_R[j, 1] = params[1] * params[1]
            out_R[j, 2] = params[2] * params[2]
        else:
            K = intrinsics[f]
            u = 0.5 * (raw[j, 0] + raw[j, 2])
            out_z[j, 0] = wrap_angle(math.atan2(-(u - K[0, 2]), K[0, 0]) + syaw)
            half_w = 0.5 * (raw[j, 2] - raw[j, 0]) / K[0, 0]
            std = params[0]
            if raw[j, 0] <= 1.0 or raw[j, 2] >= width_px[f] - 1.0:
                std = max(half_w, std)
            else:
                std = std + params[1] * half_w
            out_R[j, 0] = std * std


@njit(cache=True, nogil=True)
def frame_poses_kernel(ego, mounts, counts):  # noqa: ANN001, ANN201
    """World pose and velocity of each frame's sensor, and the row layout of the batch.

    Args:
        ego: (6,) float64 ego ``[x_m, y_m, yaw_rad, vx_mps, vy_mps, yaw_rate_radps]`` world.
        mounts: (F, 4, 4) float64 ``ego_from_sensor`` of each frame.
        counts: (F,) int64 detections of each frame.

    Returns:
        ``(sensors_f, frame_of, starts)``: (F, 5) float64 sensor ``[x_m, y_m, yaw_rad, vx_mps,
        vy_mps]`` world (velocity: ego velocity plus yaw rate x lever arm); (M,) int64 frame of
        each row; (F + 1,) int64 first row of each frame.
    """
    nf = mounts.shape[0]
    ce, se = math.cos(ego[2]), math.sin(ego[2])
    sensors_f = np.empty((nf, 5))
    starts = np.zeros(nf + 1, np.int64)
    for i in range(nf):
        e = mounts[i]
        rx, ry = ce * e[0, 3] - se * e[1, 3], se * e[0, 3] + ce * e[1, 3]
        sensors_f[i, 0] = ego[0] + rx
        sensors_f[i, 1] = ego[1] + ry
        sensors_f[i, 2] = ego[2] + math.atan2(e[1, 0], e[0, 0])
        sensors_f[i, 3] = ego[3] - ego[5] * ry
        sensors_f[i, 4] = ego[4] + ego[5] * rx
        starts[i + 1] = starts[i] + counts[i]
    frame_of = np.empty(starts[nf], np.int64)
    for i in range(nf):
        frame_of[starts[i] : starts[i + 1]] = i
    return sensors_f, frame_of, starts


def warm_up() -> None:
    """Compile this module's kernels on dummy inputs (keeps JIT off the first real tick)."""
    fo = np.zeros(1, np.int64)
    eg = np.zeros(6)
    for kind, md in ((MEAS_POSE, 3), (MEAS_RADAR, 3), (MEAS_BEARING, 1)):
        frames_to_world_kernel(
            kind, np.ones((1, 4)), fo, eg, np.zeros((1, 5)), np.eye(4)[None], np.eye(3)[None], np.ones(1),
            np.ones(3), np.empty((1, md)), np.empty((1, md)), np.empty((1, 5)),
        )  # fmt: skip
    frame_poses_kernel(eg, np.eye(4)[None], np.ones(1, np.int64))
