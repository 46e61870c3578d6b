"""Numba kernels of the motion models: EKF predict (CV, CTRA), EKF update, and the conversion
of states to output quantities.

Only ``@njit`` functions (and their warm-up) live here; :mod:`prescient.service.tracker.motion` checks
inputs and calls them. State layouts (``MODEL_CV``, ``MODEL_CTRA``) are described in
:mod:`prescient.service.tracker.layout`. Every kernel works in place on the track table's ``x`` (N_MAX, 6)
and ``P`` (N_MAX, 6, 6) float64 arrays (world frame), on the slots it is given.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from prescient.service.tracker.layout import (
    MEAS_BEARING,
    MEAS_DIM,
    MEAS_POSE,
    MEAS_RADAR,
    MODEL_CTRA,
    MODEL_CV,
)
from prescient.service.tracker.layout import STATE_DIM as SD
from prescient.service.tracker.measurement_kernels import (
    innovation_kernel,
    inv_small_kernel,
    measure_kernel,
    wrap_angle,
)


@njit(cache=True, nogil=True)
def reset_cv_unused_kernel(x, P, i):  # noqa: ANN001, ANN201
    """Zero the unused state entries 4 and 5 of CV track ``i``, unit variance, no correlation."""
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
        sigma_w: (N_MAX,) float64 white yaw acceleration noise, rad/s^2 (CTRA only).
        sigma_j: (N_MAX,) float64 white jerk noise driving the acceleration, m/s^3 (CTRA only).
        idx: (n,) int64 track slots to predict.
        dt: seconds, > 0.
    """
    eye = np.eye(SD)
    F = np.zeros((SD, SD))
    Q = np.zeros((SD, SD))
    FP = np.zeros((SD, SD))
    for k in range(idx.shape[0]):
        i = idx[k]
        F[:, :] = eye  # a copy, not a loop: under the complexity limit without a helper call
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
            reset_cv_unused_kernel(x, P, i)


@njit(cache=True, nogil=True)
def _gain(P, i, H, R, j, m, PHt, S, Si, K):  # noqa: ANN001, ANN202
    """Kalman gain ``K = P H^T S^-1`` (6, m) of slot ``i`` and measurement row ``j``, with
    ``S = H P H^T + R``; False if S is singular. Arrays are indexed, not sliced (a view costs two
    reference-count updates)."""
    for a in range(SD):
        for r in range(m):
            acc = 0.0
            for b in range(SD):
                acc += P[i, a, b] * H[r, b]
            PHt[a, r] = acc
    for r in range(m):
        for c in range(m):
            acc = 0.0
            for b in range(SD):
                acc += H[r, b] * PHt[b, c]
            S[r, c] = acc
        S[r, r] += R[j, r]
    if inv_small_kernel(S, m, Si) <= 0.0:
        return False
    for a in range(SD):
        for c in range(m):
            acc = 0.0
            for r in range(m):
                acc += PHt[a, r] * Si[r, c]
            K[a, c] = acc
    return True


@njit(cache=True, nogil=True)
def _joseph(x, P, i, H, K, y, R, j, m, xn, A, AP, Pn):  # noqa: ANN001, ANN202
    """Updated state ``xn = x + K y`` and Joseph-form covariance
    ``Pn = (I - K H) P (I - K H)^T + K R K^T`` of slot ``i``; False if either is not finite."""
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
                acc += A[a, c] * P[i, c, b]
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
    return finite


@njit(cache=True, nogil=True)
def update_kernel(x, P, model, tracks, kind, sensors, z, R, dets):  # noqa: ANN001, ANN201
    """EKF update of track ``tracks[k]`` with measurement ``dets[k]``, in place (Joseph form).

    Pairs are applied in order, so a track listed twice is updated sequentially.

    Args:
        x, P, model: filter state arrays (see :func:`predict_kernel`).
        tracks: (n,) int64 track slots; dets: (n,) int64 rows of ``z``/``R``/``sensors``.
        kind: ``MEAS_*``.
        sensors: (M, 5) float64 world pose and velocity of the sensor of each measurement.
        z: (M, m) float64 measurements; R: (M, m) float64 measurement variances (diagonal).

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
        if not measure_kernel(x[i], model[i], kind, sensors[j], zhat, H):
            continue
        innovation_kernel(kind, z[j], zhat, model[i], y)
        if not _gain(P, i, H, R, j, m, PHt, S, Si, K):
            continue
        if not _joseph(x, P, i, H, K, y, R, j, m, xn, A, AP, Pn):
            continue
        for a in range(SD):
            x[i, a] = xn[a]
            for b in range(SD):
                P[i, a, b] = Pn[a, b]
        if model[i] == MODEL_CTRA:
            x[i, 2] = wrap_angle(x[i, 2])
        else:
            reset_cv_unused_kernel(x, P, i)
        applied[kk] = True
    return applied


@njit(cache=True, nogil=True)
def output_kernel(x, P, model, idx, pos, vel, yaw, cov4):  # noqa: ANN001, ANN201
    """Convert states of ``idx`` to position, velocity, yaw and the [x, y, vx, vy] covariance.

    Args:
        x, P, model: filter state arrays.
        idx: (n,) int64 slots.
        pos, vel: (n, 2) float64 outputs (m, m/s, world frame); yaw: (n,) float64 output, NaN for
            CV tracks (the caller supplies the heading from its own estimate).
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


def warm_up() -> None:
    """Compile this module's kernels on dummy inputs (keeps JIT off the first real tick)."""
    x = np.zeros((2, SD))
    x[1, 3] = 1.0
    P = np.tile(np.eye(SD), (2, 1, 1))
    model = np.array([MODEL_CV, MODEL_CTRA], np.int8)
    ones = np.ones(2)
    idx = np.array([0, 1], np.int64)
    predict_kernel(x, P, model, ones, ones, ones, idx, 0.1)
    sensor = np.array([[10.0, 10.0, 0.0, 0.0, 0.0]])
    for kind in (MEAS_POSE, MEAS_RADAR, MEAS_BEARING):
        md = MEAS_DIM[kind]
        z = np.zeros((1, md))
        R = np.ones((1, md))
        update_kernel(x.copy(), P.copy(), model, idx, kind, sensor, z, R, np.zeros(2, np.int64))
    out2 = np.empty((2, 2))
    output_kernel(x, P, model, idx, out2, out2.copy(), np.empty(2), np.empty((2, 4, 4)))
