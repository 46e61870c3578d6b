"""Numba kernels of the tracker: EKF predict, measurement models, gating and update.

Only ``@njit`` functions live here; :mod:`service.tracker.tracker` checks inputs and calls them.

State layout (S=6, float64, world frame), chosen per track by ``model``:
  * ``MODEL_CV`` (pedestrians, animals, unknown): constant velocity ``[x_m, y_m, vx_mps, vy_mps, 0, 0]``;
    indices 4 and 5 unused (their variances are held at 1 so that P stays invertible).
  * ``MODEL_CTRV`` (cars, trucks, buses, cyclists): constant turn rate with a random-walk
    longitudinal acceleration (CTRA), ``[x_m, y_m, yaw_rad, v_mps, yaw_rate_radps, accel_mps2]``.
    The name is kept for the wire-level meaning "turning model"; with ``sigma_jerk`` = 0 and
    ``accel`` = 0 it is exactly CTRV.

Measurement kinds (all world frame; each measurement carries its sensor's world pose and velocity
``[sx_m, sy_m, syaw_rad, svx_mps, svy_mps]``):
  * ``MEAS_POSE`` (LiDAR): ``[x_m, y_m, yaw_rad]``; the yaw row is zero for CV tracks, and a yaw
    innovation beyond +-pi/2 is folded by pi (box heading ambiguity).
  * ``MEAS_RADAR``: ``[range_m, bearing_rad, range_rate_mps]`` where the range rate is already
    ego-motion compensated (target velocity projected on the line of sight).
  * ``MEAS_BEARING`` (camera, LWIR): ``[bearing_rad]``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from bus.messages import NUM_CLASSES

STATE_DIM = 6
SD = STATE_DIM
MODEL_CV = 0
MODEL_CTRV = 1
MEAS_POSE = 0
MEAS_RADAR = 1
MEAS_BEARING = 2
MEAS_DIM = (3, 3, 1)  # indexed by kind
_EPS = 1e-9


@njit(cache=True, nogil=True)
def wrap_angle(a: float) -> float:
    """Wrap an angle to [-pi, pi)."""
    return (a + math.pi) % (2.0 * math.pi) - math.pi


@njit(cache=True, nogil=True)
def _reset_cv_unused(x, P, i):  # noqa: ANN001, ANN202
    """Zero the unused state entries 4 and 5 of a CV track, unit variance, no correlation."""
    for u in (4, 5):
        x[i, u] = 0.0
        for d in range(SD):
            P[i, u, d] = 0.0
            P[i, d, u] = 0.0
        P[i, u, u] = 1.0


@njit(cache=True, nogil=True)
def predict_kernel(x, P, model, sigma_a, sigma_w, sigma_j, idx, dt):  # noqa: ANN001, ANN201
    """Predict tracks ``idx`` by ``dt`` seconds in place.

    Args:
        x: (N_MAX, 6) float64 states.
        P: (N_MAX, 6, 6) float64 covariances.
        model: (N_MAX,) int8 ``MODEL_*``.
        sigma_a: (N_MAX,) float64 white acceleration noise, m/s^2.
        sigma_w: (N_MAX,) float64 white yaw acceleration noise, rad/s^2 (CTRV only).
        sigma_j: (N_MAX,) float64 white jerk noise driving the acceleration, m/s^3 (CTRV only).
        idx: (n,) int64 track slots to predict.
        dt: seconds, > 0.
    """
    F = np.zeros((SD, SD))
    Q = np.zeros((SD, SD))
    FP = np.zeros((SD, SD))
    for k in range(idx.shape[0]):
        i = idx[k]
        F[:, :] = 0.0
        for d in range(SD):
            F[d, d] = 1.0
        Q[:, :] = 0.0
        sa2 = sigma_a[i] * sigma_a[i]
        if model[i] == MODEL_CV:
            x[i, 0] += x[i, 2] * dt
            x[i, 1] += x[i, 3] * dt
            F[0, 2] = dt
            F[1, 3] = dt
            q11 = dt**4 / 4.0 * sa2
            q12 = dt**3 / 2.0 * sa2
            q22 = dt * dt * sa2
            Q[0, 0] = q11
            Q[1, 1] = q11
            Q[0, 2] = q12
            Q[2, 0] = q12
            Q[1, 3] = q12
            Q[3, 1] = q12
            Q[2, 2] = q22
            Q[3, 3] = q22
        else:
            px, py, yaw, v, w, acc = x[i, 0], x[i, 1], x[i, 2], x[i, 3], x[i, 4], x[i, 5]
            vm = v + 0.5 * acc * dt  # mean speed over the step
            c0, s0 = math.cos(yaw), math.sin(yaw)
            if abs(w) > 1e-4:
                yaw1 = yaw + w * dt
                c1, s1 = math.cos(yaw1), math.sin(yaw1)
                x[i, 0] = px + vm / w * (s1 - s0)
                x[i, 1] = py + vm / w * (c0 - c1)
                F[0, 2] = vm / w * (c1 - c0)
                F[0, 3] = (s1 - s0) / w
                F[0, 4] = vm * dt * c1 / w - vm / (w * w) * (s1 - s0)
                F[0, 5] = 0.5 * dt * (s1 - s0) / w
                F[1, 2] = vm / w * (s1 - s0)
                F[1, 3] = (c0 - c1) / w
                F[1, 4] = vm * dt * s1 / w - vm / (w * w) * (c0 - c1)
                F[1, 5] = 0.5 * dt * (c0 - c1) / w
            else:  # second order in w, so the mean and its Jacobian agree as w -> 0
                hx = c0 - 0.5 * w * dt * s0
                hy = s0 + 0.5 * w * dt * c0
                x[i, 0] = px + vm * dt * hx
                x[i, 1] = py + vm * dt * hy
                F[0, 2] = -vm * dt * hy
                F[0, 3] = dt * hx
                F[0, 4] = -0.5 * vm * s0 * dt * dt
                F[0, 5] = 0.5 * dt * dt * hx
                F[1, 2] = vm * dt * hx
                F[1, 3] = dt * hy
                F[1, 4] = 0.5 * vm * c0 * dt * dt
                F[1, 5] = 0.5 * dt * dt * hy
            x[i, 2] = wrap_angle(yaw + w * dt)
            x[i, 3] = v + acc * dt
            F[2, 4] = dt
            F[3, 5] = dt
            # Noise enters as white jerk on the acceleration and white yaw acceleration:
            # G diag(sj^2, sw^2) G^T, plus a little white acceleration on the speed.
            sw2 = sigma_w[i] * sigma_w[i]
            sj2 = sigma_j[i] * sigma_j[i]
            t2 = 0.5 * dt * dt
            t3 = dt * dt * dt / 6.0
            gj = (t3 * c0, t3 * s0, 0.0, t2, 0.0, dt)
            ga = (t2 * c0, t2 * s0, 0.0, dt, 0.0, 0.0)
            gw = (0.0, 0.0, t2, 0.0, dt, 0.0)
            for r in range(SD):
                for c in range(SD):
                    Q[r, c] = gj[r] * gj[c] * sj2 + gw[r] * gw[c] * sw2 + ga[r] * ga[c] * sa2
        Pi = P[i]
        for r in range(SD):  # FP = F @ P (F is identity plus a few entries)
            for c in range(SD):
                acc = 0.0
                for q in range(SD):
                    fq = F[r, q]
                    if fq != 0.0:
                        acc += fq * Pi[q, c]
                FP[r, c] = acc
        for r in range(SD):  # P = FP @ F^T + Q, symmetric
            for c in range(r, SD):
                acc = Q[r, c]
                for q in range(SD):
                    fq = F[c, q]
                    if fq != 0.0:
                        acc += FP[r, q] * fq
                P[i, r, c] = acc
                P[i, c, r] = acc
        if model[i] == MODEL_CV:
            _reset_cv_unused(x, P, i)


@njit(cache=True, nogil=True)
def _measure(x, model_i, kind, sensor, zhat, H):  # noqa: ANN001, ANN202
    """Predicted measurement ``zhat`` (m,) and Jacobian ``H`` (m, 5) of one track. Returns ok."""
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
        if model_i == MODEL_CTRV:
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
def _innovation(kind, z, zhat, model_i, y):  # noqa: ANN001, ANN202
    m = y.shape[0]
    for d in range(m):
        y[d] = z[d] - zhat[d]
    if kind == MEAS_POSE:
        if model_i == MODEL_CTRV:
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
def _inv_small(S, m_use, Si):  # noqa: ANN001, ANN202
    """Inverse of the leading ``m_use`` x ``m_use`` block of S into Si; returns its determinant."""
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
def _hph(H, P, m, out):  # noqa: ANN001, ANN202
    """out[:m, :m] = H P H^T and returns nothing; explicit loops (BLAS is slow for 5x5)."""
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
def _gate_pair(kind, z_j, R_j, zhat, HPH, model_i, m, m_gate, y, S, Si):  # noqa: ANN001, ANN202
    """(d2, log det S) of one pair on the first ``m_gate`` dimensions; d2 = inf if singular."""
    _innovation(kind, z_j, zhat, model_i, y)
    for r in range(m_gate):
        for c in range(m_gate):
            S[r, c] = HPH[r, c]
        S[r, r] += R_j[r]
    det = _inv_small(S, m_gate, Si)
    if det <= 0.0:
        return np.inf, 0.0
    d2 = 0.0
    for r in range(m_gate):
        for c in range(m_gate):
            d2 += y[r] * Si[r, c] * y[c]
    return d2, math.log(det)


@njit(cache=True, nogil=True)
def gate_kernel(
    x, P, model, idx, kind, sensors, z, R, starts, m_gate, gate_d2, max_dist_m, out_a, out_j, out_cost
):  # noqa: ANN001, ANN201
    """Gated (track, measurement) pairs with their cost ``d2 + log det S`` (sparse output).

    Measurements come in contiguous blocks, one per source frame (sensor); the predicted
    measurement of a track is computed once per block. Bearings are searched in a window of
    the sorted block instead of pair by pair.

    Args:
        x, P, model: filter state arrays (see :func:`predict_kernel`).
        idx: (n,) int64 candidate track slots.
        kind: ``MEAS_*``.
        sensors: (M, 5) float64 world pose and velocity of the sensor of each measurement.
        z: (M, m) float64 measurements; R: (M, m) float64 measurement variances (diagonal).
        starts: (F + 1,) int64 block offsets into the measurement rows.
        m_gate: number of leading measurement dimensions used for gating.
        gate_d2: chi-square gate on ``m_gate`` dimensions.
        max_dist_m: Euclidean pre-gate (<= 0: off) between the track position and the
            measurement position (POSE), or the point at the measured range and bearing (RADAR).
        out_a: (n * M,) int64 output: index into ``idx`` of each gated pair.
        out_j: (n * M,) int64 output: measurement row of each gated pair.
        out_cost: (n * M,) float64 output: squared Mahalanobis distance plus ``log det S``.

    Returns:
        Number of gated pairs written to the outputs.
    """
    m = z.shape[1]
    M = z.shape[0]
    zhat = np.zeros(m)
    H = np.zeros((m, SD))
    y = np.zeros(m)
    S = np.zeros((m, m))
    Si = np.zeros((m, m))
    HPH = np.zeros((m, m))
    md2 = max_dist_m * max_dist_m
    npairs = 0
    mx = np.empty(M)
    my = np.empty(M)
    for j in range(M):
        if kind == MEAS_POSE:
            mx[j] = z[j, 0]
            my[j] = z[j, 1]
        elif kind == MEAS_RADAR:
            mx[j] = sensors[j, 0] + z[j, 0] * math.cos(z[j, 1])
            my[j] = sensors[j, 1] + z[j, 0] * math.sin(z[j, 1])
        else:
            mx[j] = 0.0
            my[j] = 0.0
    for f in range(starts.shape[0] - 1):
        j0 = starts[f]
        j1 = starts[f + 1]
        if j1 <= j0:
            continue
        sensor = sensors[j0]
        nb = j1 - j0
        rel = np.empty(nb)
        rmax = 0.0
        # Sort key: bearing relative to the boresight (BEARING) or world x of the measured
        # position (POSE, RADAR), so candidates are found by binary search, not pair by pair.
        for jj in range(nb):
            if kind == MEAS_BEARING:
                rel[jj] = wrap_angle(z[j0 + jj, 0] - sensor[2])
                rmax = max(rmax, R[j0 + jj, 0])
            else:
                rel[jj] = mx[j0 + jj]
        order = np.argsort(rel)
        rel_sorted = rel[order]
        for a in range(idx.shape[0]):
            i = idx[a]
            if kind == MEAS_BEARING:
                if not _measure(x[i], model[i], kind, sensor, zhat, H):
                    continue
                rh = wrap_angle(zhat[0] - sensor[2])
                lo = np.searchsorted(rel_sorted, rh - 0.5)
                hi = np.searchsorted(rel_sorted, rh + 0.5, side="right")
                if hi <= lo:
                    continue
                _hph(H, P[i], m_gate, HPH)
                w = min(0.5, math.sqrt(gate_d2 * (HPH[0, 0] + rmax)))
                lo = np.searchsorted(rel_sorted, rh - w)
                hi = np.searchsorted(rel_sorted, rh + w, side="right")
                for q in range(lo, hi):
                    j = j0 + order[q]
                    d2, ld = _gate_pair(kind, z[j], R[j], zhat, HPH, model[i], m, m_gate, y, S, Si)
                    if d2 <= gate_d2:
                        out_a[npairs] = a
                        out_j[npairs] = j
                        out_cost[npairs] = d2 + ld
                        npairs += 1
                continue
            ready = False  # predicted measurement and H P H^T computed lazily, on the first candidate
            lo = 0
            hi = nb
            if max_dist_m > 0.0:
                lo = np.searchsorted(rel_sorted, x[i, 0] - max_dist_m)
                hi = np.searchsorted(rel_sorted, x[i, 0] + max_dist_m, side="right")
            for q in range(lo, hi):
                j = j0 + order[q]
                if max_dist_m > 0.0:
                    ddx = mx[j] - x[i, 0]
                    ddy = my[j] - x[i, 1]
                    if ddx * ddx + ddy * ddy > md2:
                        continue
                if not ready:
                    if not _measure(x[i], model[i], kind, sensor, zhat, H):
                        break
                    _hph(H, P[i], m_gate, HPH)
                    ready = True
                d2, ld = _gate_pair(kind, z[j], R[j], zhat, HPH, model[i], m, m_gate, y, S, Si)
                if d2 <= gate_d2:
                    out_a[npairs] = a
                    out_j[npairs] = j
                    out_cost[npairs] = d2 + ld
                    npairs += 1
    return npairs


@njit(cache=True, nogil=True)
def update_kernel(x, P, model, tracks, kind, sensors, z, R, dets):  # noqa: ANN001, ANN201
    """EKF update of track ``tracks[k]`` with measurement ``dets[k]``, in place (Joseph form).

    Pairs are applied in order, so a track listed twice is updated sequentially.

    Args:
        x, P, model: filter state arrays.
        tracks: (n,) int64 track slots; dets: (n,) int64 rows of ``z``/``R``/``sensors``.
        kind, sensors, z, R: as :func:`gate_kernel`.

    Returns:
        (n,) bool: True where the update was applied (False if S was singular or the result
        non-finite; the track is then left unchanged).
    """
    m = z.shape[1]
    zhat = np.zeros(m)
    H = np.zeros((m, SD))
    y = np.zeros(m)
    S = np.zeros((m, m))
    Si = np.zeros((m, m))
    PHt = np.zeros((SD, m))
    K = np.zeros((SD, m))
    A = np.zeros((SD, SD))
    AP = np.zeros((SD, SD))
    xn = np.zeros(SD)
    Pn = np.zeros((SD, SD))
    applied = np.zeros(tracks.shape[0], dtype=np.bool_)
    for kk in range(tracks.shape[0]):
        i = tracks[kk]
        j = dets[kk]
        if not _measure(x[i], model[i], kind, sensors[j], zhat, H):
            continue
        _innovation(kind, z[j], zhat, model[i], y)
        Pi = P[i]
        for a in range(SD):
            for r in range(m):
                acc = 0.0
                for b in range(SD):
                    acc += Pi[a, b] * H[r, b]
                PHt[a, r] = acc
        for r in range(m):
            for c in range(m):
                acc = 0.0
                for b in range(SD):
                    acc += H[r, b] * PHt[b, c]
                S[r, c] = acc
            S[r, r] += R[j, r]
        if _inv_small(S, m, Si) <= 0.0:
            continue
        for a in range(SD):
            for c in range(m):
                acc = 0.0
                for r in range(m):
                    acc += PHt[a, r] * Si[r, c]
                K[a, c] = acc
        for a in range(SD):
            acc = x[i, a]
            for r in range(m):
                acc += K[a, r] * y[r]
            xn[a] = acc
            for b in range(SD):
                acc2 = 1.0 if a == b else 0.0
                for r in range(m):
                    acc2 -= K[a, r] * H[r, b]
                A[a, b] = acc2
        for a in range(SD):
            for b in range(SD):
                acc = 0.0
                for c in range(SD):
                    acc += A[a, c] * Pi[c, b]
                AP[a, b] = acc
        finite = True
        for a in range(SD):
            if not math.isfinite(xn[a]):
                finite = False
            for b in range(a, SD):
                acc = 0.0
                for c in range(SD):
                    acc += AP[a, c] * A[b, c]
                for r in range(m):
                    acc += K[a, r] * R[j, r] * K[b, r]
                Pn[a, b] = acc
                Pn[b, a] = acc
                if not math.isfinite(acc):
                    finite = False
        if not finite:
            continue
        for a in range(SD):
            x[i, a] = xn[a]
            for b in range(SD):
                P[i, a, b] = Pn[a, b]
        if model[i] == MODEL_CTRV:
            x[i, 2] = wrap_angle(x[i, 2])
        else:
            _reset_cv_unused(x, P, i)
        applied[kk] = True
    return applied


@njit(cache=True, nogil=True)
def output_kernel(x, P, model, idx, pos, vel, yaw, cov4):  # noqa: ANN001, ANN201
    """Convert states of ``idx`` to position, velocity, yaw and the [x, y, vx, vy] covariance.

    Args:
        x, P, model: filter state arrays.
        idx: (n,) int64 slots.
        pos, vel: (n, 2) float64 outputs (m, m/s); yaw: (n,) float64 output, NaN for CV tracks
            (the caller supplies the heading from its own estimate).
        cov4: (n, 4, 4) float64 output.
    """
    J = np.zeros((4, SD))
    for a in range(idx.shape[0]):
        i = idx[a]
        pos[a, 0] = x[i, 0]
        pos[a, 1] = x[i, 1]
        J[:, :] = 0.0
        J[0, 0] = 1.0
        J[1, 1] = 1.0
        if model[i] == MODEL_CV:
            vel[a, 0] = x[i, 2]
            vel[a, 1] = x[i, 3]
            yaw[a] = np.nan
            J[2, 2] = 1.0
            J[3, 3] = 1.0
        else:
            c, s, v = math.cos(x[i, 2]), math.sin(x[i, 2]), x[i, 3]
            vel[a, 0] = v * c
            vel[a, 1] = v * s
            yaw[a] = x[i, 2]
            J[2, 2] = -v * s
            J[2, 3] = c
            J[3, 2] = v * c
            J[3, 3] = s
        cov4[a] = J @ P[i] @ J.T


@njit(cache=True, nogil=True)
def unambiguous_pairs_kernel(pa, pj, frame_of_j, n_tracks, n_meas, n_frames):  # noqa: ANN001, ANN201
    """Mark gated pairs that need no assignment solver.

    A pair (a, j) is unambiguous when track ``a`` gates with no other measurement of the same
    frame and measurement ``j`` gates with no other track.

    Args:
        pa: (K,) int64 track index (into the candidate list) of each gated pair.
        pj: (K,) int64 measurement row of each gated pair.
        frame_of_j: (M,) int64 source frame of each measurement row.
        n_tracks, n_meas, n_frames: sizes of the candidate list, measurements and frames.

    Returns:
        (K,) bool mask of unambiguous pairs.
    """
    row_count = np.zeros(n_frames * n_tracks, np.int64)
    col_count = np.zeros(n_meas, np.int64)
    for q in range(pa.shape[0]):
        row_count[frame_of_j[pj[q]] * n_tracks + pa[q]] += 1
        col_count[pj[q]] += 1
    out = np.zeros(pa.shape[0], np.bool_)
    for q in range(pa.shape[0]):
        out[q] = row_count[frame_of_j[pj[q]] * n_tracks + pa[q]] == 1 and col_count[pj[q]] == 1
    return out


@njit(cache=True, nogil=True)
def compact_pairs_kernel(pa, pj, frame_of_j, n_tracks, n_meas, n_frames):  # noqa: ANN001, ANN201
    """Dense row/column numbering of gated pairs for one assignment problem per batch.

    Rows are (frame, track) combinations, so a track can take one measurement from each frame;
    columns are measurements. The problem is block-diagonal by frame, so one solver call equals
    one call per frame.

    Returns:
        ``(ri, ci, row_track, col_meas)``: (K,) row and column of each pair, (R,) candidate index
        of each row, (Cc,) measurement row of each column.
    """
    row_id = np.full(n_frames * n_tracks, -1, np.int64)
    col_id = np.full(n_meas, -1, np.int64)
    K = pa.shape[0]
    ri = np.empty(K, np.int64)
    ci = np.empty(K, np.int64)
    row_track = np.empty(K, np.int64)
    col_meas = np.empty(K, np.int64)
    nr = 0
    nc = 0
    for q in range(K):
        key = frame_of_j[pj[q]] * n_tracks + pa[q]
        if row_id[key] < 0:
            row_id[key] = nr
            row_track[nr] = pa[q]
            nr += 1
        if col_id[pj[q]] < 0:
            col_id[pj[q]] = nc
            col_meas[nc] = pj[q]
            nc += 1
        ri[q] = row_id[key]
        ci[q] = col_id[pj[q]]
    return ri, ci, row_track[:nr], col_meas[:nc]


@njit(cache=True, nogil=True)
def fuse_class_kernel(class_logp, tracks, class_id, conf, weight, floor, out_argmax):  # noqa: ANN001, ANN201
    """Bayesian class fusion with a symmetric confusion model, one observation at a time.

    ``p(obs = c_o | true = c)`` is ``conf`` when ``c == c_o`` else ``(1 - conf) / (C - 1)``; the
    log-likelihood, times ``weight``, is added to the track's log-probabilities, which are
    normalised and floored at ``floor`` (so a track can change its mind).

    Args:
        class_logp: (N_MAX, C) float64 log class probabilities, updated in place.
        tracks: (n,) int64 slots; class_id: (n,) observed class; conf: (n,) float64 confidence.
        weight: modality weight; floor: minimum log-probability.
        out_argmax: (n,) int32 output, most probable class after each observation.
    """
    C = class_logp.shape[1]
    lp = np.empty(C)
    for q in range(tracks.shape[0]):
        i = tracks[q]
        hit = math.log(conf[q])
        miss = math.log((1.0 - conf[q]) / (C - 1))
        for it in range(2):
            mx = -np.inf
            for c in range(C):
                if it == 0:
                    lp[c] = class_logp[i, c] + weight * (hit if c == class_id[q] else miss)
                else:
                    lp[c] = max(lp[c], floor)
                mx = max(mx, lp[c])
            s = 0.0
            for c in range(C):
                s += math.exp(lp[c] - mx)
            norm = mx + math.log(s)
            for c in range(C):
                lp[c] -= norm
        best = 0
        for c in range(C):
            class_logp[i, c] = lp[c]
            if lp[c] > lp[best]:
                best = c
        out_argmax[q] = best


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


def warm_up() -> None:
    """Compile the numba kernels on dummy inputs (keeps JIT off the first real tick)."""
    x = np.zeros((2, STATE_DIM))
    x[1, 3] = 1.0
    P = np.tile(np.eye(STATE_DIM), (2, 1, 1))
    model = np.array([0, 1], np.int8)
    ones = np.ones(2)
    idx = np.array([0, 1], np.int64)
    predict_kernel(x, P, model, ones, ones, ones, idx, 0.1)
    sensor = np.array([[10.0, 10.0, 0.0, 0.0, 0.0]])
    for kind in (MEAS_POSE, MEAS_RADAR, MEAS_BEARING):
        md = MEAS_DIM[kind]
        z = np.zeros((1, md))
        R = np.ones((1, md))
        buf_i = np.empty(2, np.int64)
        starts = np.array([0, 1], np.int64)
        gate_kernel(
            x,
            P,
            model,
            idx,
            kind,
            sensor,
            z,
            R,
            starts,
            min(md, 2),
            10.0,
            5.0,
            buf_i,
            buf_i.copy(),
            np.empty(2),
        )
        update_kernel(x.copy(), P.copy(), model, idx, kind, sensor, z, R, np.zeros(2, np.int64))
    unambiguous_pairs_kernel(idx, idx, idx, 2, 2, 2)
    compact_pairs_kernel(idx, idx, idx, 2, 2, 2)
    fuse_class_kernel(
        np.zeros((2, NUM_CLASSES)),
        idx,
        np.array([1, 2], np.int32),
        np.full(2, 0.9),
        1.0,
        -7.0,
        np.empty(2, np.int32),
    )
    fo = np.zeros(1, np.int64)
    eg = np.zeros(6)
    for kind, md in ((MEAS_POSE, 3), (MEAS_RADAR, 3), (MEAS_BEARING, 1)):
        frames_to_world_kernel(
            kind, np.ones((1, 4)), fo, eg, np.zeros((1, 5)), np.eye(4)[None], np.eye(3)[None], np.ones(1),
            np.ones(3), np.empty((1, md)), np.empty((1, md)), np.empty((1, 5)),
        )  # fmt: skip
    out2 = np.empty((2, 2))
    output_kernel(x, P, model, idx, out2, out2.copy(), np.empty(2), np.empty((2, 4, 4)))
