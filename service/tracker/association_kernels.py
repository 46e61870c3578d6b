"""Numba kernels of association: Mahalanobis gating and the bookkeeping of gated pairs; also the
close pairs of tracks that the lifecycle's duplicate merge checks (pairs by distance, too).

Only ``@njit`` functions (and their warm-up) live here; :mod:`prescient.service.tracker.association` checks
inputs and calls them. Measurement models come from :mod:`prescient.service.tracker.measurement_kernels`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from prescient.bus.messages import NUM_CLASSES
from prescient.service.tracker.layout import MEAS_BEARING, MEAS_DIM, MEAS_POSE, MEAS_RADAR
from prescient.service.tracker.layout import STATE_DIM as SD
from prescient.service.tracker.measurement_kernels import (
    hph_kernel,
    innovation_kernel,
    inv_small_kernel,
    measure_kernel,
    wrap_angle,
)


@njit(cache=True, nogil=True)
def _gate_pair(kind, z_j, R_j, zhat, HPH, model_i, m, m_gate, y, S, Si):  # noqa: ANN001, ANN202
    """(d2, log det S) of one pair on the first ``m_gate`` dimensions; d2 = inf if singular."""
    innovation_kernel(kind, z_j, zhat, model_i, y)
    for r in range(m_gate):
        for c in range(m_gate):
            S[r, c] = HPH[r, c]
        S[r, r] += R_j[r]
    det = inv_small_kernel(S, m_gate, Si)
    if det <= 0.0:
        return np.inf, 0.0
    d2 = 0.0
    for r in range(m_gate):
        for c in range(m_gate):
            d2 += y[r] * Si[r, c] * y[c]
    return d2, math.log(det)


@njit(cache=True, nogil=True)
def _measured_xy(kind, z, sensors, mx, my):  # noqa: ANN001, ANN202
    """World position of each measurement (M,) for the Euclidean pre-gate: the box centre
    (POSE), the point at the measured range and bearing (RADAR), zero (BEARING, not used)."""
    for j in range(z.shape[0]):
        if kind == MEAS_POSE:
            mx[j] = z[j, 0]
            my[j] = z[j, 1]
        elif kind == MEAS_RADAR:
            mx[j] = sensors[j, 0] + z[j, 0] * math.cos(z[j, 1])
            my[j] = sensors[j, 1] + z[j, 0] * math.sin(z[j, 1])
        else:
            mx[j] = 0.0
            my[j] = 0.0


@njit(cache=True, nogil=True)
def _block_keys(kind, z, R, sensor, mx, j0, j1):  # noqa: ANN001, ANN202
    """Sort key of each row of the block ``[j0, j1)``: bearing relative to the boresight
    (BEARING) or world x of the measured position (POSE, RADAR).

    Returns:
        (order, sorted keys, largest bearing variance of the block (BEARING, else 0)).
    """
    nb = j1 - j0
    rel = np.empty(nb)
    rmax = 0.0
    for jj in range(nb):
        if kind == MEAS_BEARING:
            rel[jj] = wrap_angle(z[j0 + jj, 0] - sensor[2])
            rmax = max(rmax, R[j0 + jj, 0])
        else:
            rel[jj] = mx[j0 + jj]
    order = np.argsort(rel)
    return order, rel[order], rmax


@njit(cache=True, nogil=True)
def _emit(d2, ld, gate_d2, a, j, out_a, out_j, out_cost, npairs):  # noqa: ANN001, ANN202
    """Write the pair (a, j) with cost ``d2 + ld`` if inside the gate; returns npairs."""
    if d2 <= gate_d2:
        out_a[npairs] = a
        out_j[npairs] = j
        out_cost[npairs] = d2 + ld
        return npairs + 1
    return npairs


@njit(cache=True, nogil=True)
def _gate_bearing_block(
    x, P, model, idx, sensor, z, R, j0, j1, gate_d2, scratch, out_a, out_j, out_cost, npairs
):  # noqa: ANN001, ANN202
    """Gate every track against the bearing block ``[j0, j1)`` (one camera) of
    :func:`gate_kernel`; ``scratch``: its (zhat, H, y, S, Si, HPH, mx). Returns the new pair count."""
    zhat, H, y, S, Si, HPH, mx = scratch
    order, rel_sorted, rmax = _block_keys(MEAS_BEARING, z, R, sensor, mx, j0, j1)
    lo_key = rel_sorted[0]
    hi_key = rel_sorted[rel_sorted.shape[0] - 1]
    m = z.shape[1]
    for a in range(idx.shape[0]):
        i = idx[a]
        # Bearing of the track from the sensor, as measure_kernel computes it: a track that sees
        # no detection within 0.5 rad is dropped here, before the Jacobian and the binary search.
        dx = x[i, 0] - sensor[0]
        dy = x[i, 1] - sensor[1]
        if dx * dx + dy * dy < 0.25:
            continue
        rh = wrap_angle(math.atan2(dy, dx) - sensor[2])
        if rh - 0.5 > hi_key or rh + 0.5 < lo_key:
            continue
        measure_kernel(x[i], model[i], MEAS_BEARING, sensor, zhat, H)
        lo = np.searchsorted(rel_sorted, rh - 0.5)
        hi = np.searchsorted(rel_sorted, rh + 0.5, side="right")
        if hi <= lo:
            continue
        hph_kernel(H, P[i], 1, HPH)
        w = min(0.5, math.sqrt(gate_d2 * (HPH[0, 0] + rmax)))
        lo = np.searchsorted(rel_sorted, rh - w)
        hi = np.searchsorted(rel_sorted, rh + w, side="right")
        for q in range(lo, hi):
            j = j0 + order[q]
            # Clearly outside the gate (by more than rounding: the exact innovation differs from
            # this difference of wrapped bearings by a few ulp): skip the exact test.
            e = abs(rel_sorted[q] - rh) - 1e-9
            if e > 0.0 and e * e > gate_d2 * (HPH[0, 0] + R[j, 0]) * (1.0 + 1e-9):
                continue
            d2, ld = _gate_pair(MEAS_BEARING, z[j], R[j], zhat, HPH, model[i], m, 1, y, S, Si)
            npairs = _emit(d2, ld, gate_d2, a, j, out_a, out_j, out_cost, npairs)
    return npairs


@njit(cache=True, nogil=True)
def gate_kernel(
    x, P, model, idx, kind, sensors, z, R, starts, m_gate, gate_d2, max_dist_m, out_a, out_j, out_cost
):  # noqa: ANN001, ANN201
    """Gated (track, measurement) pairs with their cost ``d2 + log det S`` (sparse output).

    Measurements come in contiguous blocks, one per source frame (sensor); the predicted
    measurement of a track is computed once per block. Candidates are found by binary search in the sorted block (bearing
    relative to the boresight, or world x of the measured position) instead of pair by pair,
    after a check against the block's key range that drops most (track, block) combinations.

    Args:
        x, P, model: filter state arrays (see :func:`~prescient.service.tracker.motion_kernels.predict_kernel`).
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
    _measured_xy(kind, z, sensors, mx, my)
    scratch = (zhat, H, y, S, Si, HPH, mx)
    for f in range(starts.shape[0] - 1):
        j0 = starts[f]
        j1 = starts[f + 1]
        if j1 <= j0:
            continue
        if kind == MEAS_BEARING:
            npairs = _gate_bearing_block(
                x, P, model, idx, sensors[j0], z, R, j0, j1, gate_d2, scratch, out_a, out_j, out_cost, npairs
            )
            continue
        sensor = sensors[j0]
        order, rel_sorted, rmax = _block_keys(kind, z, R, sensor, mx, j0, j1)
        lo_key = rel_sorted[0]
        hi_key = rel_sorted[j1 - j0 - 1]
        for a in range(idx.shape[0]):
            i = idx[a]
            ready = False  # predicted measurement and H P H^T computed lazily, on the first candidate
            lo = 0
            hi = j1 - j0
            if max_dist_m > 0.0:
                if x[i, 0] - max_dist_m > hi_key or x[i, 0] + max_dist_m < lo_key:
                    continue  # no measurement of the block within the pre-gate's x range
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
                    if not measure_kernel(x[i], model[i], kind, sensor, zhat, H):
                        break
                    hph_kernel(H, P[i], m_gate, HPH)
                    ready = True
                d2, ld = _gate_pair(kind, z[j], R[j], zhat, HPH, model[i], m, m_gate, y, S, Si)
                npairs = _emit(d2, ld, gate_d2, a, j, out_a, out_j, out_cost, npairs)
    return npairs


@njit(cache=True, nogil=True)
def split_pairs_kernel(pa, pj, pcost, frame_of_j, idx, n_frames, owner):  # noqa: ANN001, ANN201
    """Assign the gated pairs that need no solver; return the others.

    A pair (a, j) is unambiguous when track ``a`` gates with no other measurement of the same
    frame and measurement ``j`` gates with no other track: ``owner[j]`` becomes ``idx[a]``.

    Args:
        pa: (K,) int64 track index (into ``idx``) of each gated pair.
        pj: (K,) int64 measurement row of each gated pair; pcost: (K,) float64 its cost.
        frame_of_j: (M,) int64 source frame of each measurement row.
        idx: (n,) int64 candidate track slots.
        n_frames: frames in the batch.
        owner: (M,) int64, -1 where unassigned; written for the unambiguous pairs.

    Returns:
        ``(pa, pj, pcost)`` of the ambiguous pairs, (H,) each, in gating order.
    """
    n = idx.shape[0]
    K = pa.shape[0]
    row_count = np.zeros(n_frames * n, np.int64)
    col_count = np.zeros(owner.shape[0], np.int64)
    for q in range(K):
        row_count[frame_of_j[pj[q]] * n + pa[q]] += 1
        col_count[pj[q]] += 1
    nh = 0
    for q in range(K):
        if row_count[frame_of_j[pj[q]] * n + pa[q]] != 1 or col_count[pj[q]] != 1:
            nh += 1
    ha = np.empty(nh, np.int64)
    hj = np.empty(nh, np.int64)
    hcost = np.empty(nh)
    h = 0
    for q in range(K):
        j = pj[q]
        if row_count[frame_of_j[j] * n + pa[q]] == 1 and col_count[j] == 1:
            owner[j] = idx[pa[q]]
        else:
            ha[h] = pa[q]
            hj[h] = j
            hcost[h] = pcost[q]
            h += 1
    return ha, hj, hcost


@njit(cache=True, nogil=True)
def class_match_kernel(probs, pa, class_id, conf, pj):  # noqa: ANN001, ANN201
    """Class agreement of gated pairs: ``max(C * sum_c p(c) L(obs | c), 1e-12)``.

    ``L`` is the symmetric confusion model of
    :func:`~prescient.service.tracker.fusion.class_likelihood` (``conf`` on the observed class,
    ``(1 - conf) / (C - 1)`` elsewhere); the sum runs over the classes in order, as numpy's row
    sum of the (pairs, C) product does, so the result is bit for bit the same.

    Args:
        probs: (n, C) float64 class probabilities of the candidate tracks.
        pa: (K,) int64 track index (into ``probs``) of each pair; pj: (K,) int64 measurement row.
        class_id: (M,) observed class of each row; conf: (M,) float64 its confidence.

    Returns:
        (K,) float64, 1 where the classes carry no information, up to C.
    """
    C = probs.shape[1]
    out = np.empty(pa.shape[0])
    for q in range(pa.shape[0]):
        j = pj[q]
        a = pa[q]
        cj = class_id[j]
        other = (1.0 - conf[j]) / (C - 1)
        s = probs[a, 0] * (conf[j] if cj == 0 else other)
        for c in range(1, C):
            s += probs[a, c] * (conf[j] if cj == c else other)
        v = s * C
        out[q] = v if not v < 1e-12 else 1e-12
    return out


@njit(cache=True, nogil=True)
def cost_matrix_kernel(pa, pj, pcost, frame_of_j, n_tracks, n_meas, n_frames, big):  # noqa: ANN001, ANN201
    """Dense cost matrix of gated pairs: one assignment problem per batch.

    Rows are (frame, track) combinations, so a track can take one measurement from each frame;
    columns are measurements, both numbered in order of first appearance. The problem is
    block-diagonal by frame, so one solver call equals one call per frame.

    Args:
        pa, pj, pcost: (K,) candidate index, measurement row and cost of each pair.
        frame_of_j: (M,) int64 source frame of each measurement row.
        n_tracks, n_meas, n_frames: sizes of the candidate list, measurements and frames.
        big: cost of the entries without a pair.

    Returns:
        ``(cost, row_track, col_meas)``: (R, Cc) float64 costs, (R,) candidate index of each
        row, (Cc,) measurement row of each column.
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
    cost = np.full((nr, nc), big)
    for q in range(K):
        cost[ri[q], ci[q]] = pcost[q]
    return cost, row_track[:nr], col_meas[:nc]


@njit(cache=True, nogil=True)
def close_pairs_kernel(x, idx, radius_m):  # noqa: ANN001, ANN201
    """Pairs of slots whose positions lie within ``radius_m`` of each other.

    The same pairs as ``cKDTree(x[idx, :2]).query_pairs(radius_m)``: squared distance
    ``dx * dx + dy * dy`` at most ``radius_m * radius_m``. A sweep over the slots sorted by x:
    each one is compared only with those after it until ``dx * dx`` alone exceeds the radius
    (a dense scene's several hundred tentative tracks made the plain double loop the
    lifecycle's largest cost), and the pairs are put back in the double loop's order.

    Args:
        x: (N, 6) float64 track states (world ``[x_m, y_m, ...]``).
        idx: (n,) int64 live slots.
        radius_m: the search radius, m.

    Returns:
        (K, 2) int64 positions ``(a, b)`` into ``idx``, ``a < b``, ordered by ``a`` then ``b``.
    """
    n = idx.shape[0]
    r2 = radius_m * radius_m
    xs = np.empty(n)
    for a in range(n):
        xs[a] = x[idx[a], 0]
    order = np.argsort(xs, kind="mergesort")
    out = np.empty((16, 2), np.int64)
    k = 0
    for p in range(n):
        a = order[p]
        ya = x[idx[a], 1]
        for q in range(p + 1, n):
            b = order[q]
            dx = xs[b] - xs[a]
            if dx * dx > r2:
                break  # sorted by x: every later slot is at least this far
            dy = x[idx[b], 1] - ya
            if dx * dx + dy * dy <= r2:
                if k == out.shape[0]:
                    grown = np.empty((2 * k, 2), np.int64)
                    grown[:k] = out
                    out = grown
                out[k, 0] = min(a, b)
                out[k, 1] = max(a, b)
                k += 1
    pairs = out[:k]
    key = pairs[:, 0] * n + pairs[:, 1]
    return pairs[np.argsort(key, kind="mergesort")]


def warm_up() -> None:
    """Compile this module's kernels on dummy inputs (keeps JIT off the first real tick)."""
    x = np.zeros((2, SD))
    x[1, 3] = 1.0
    P = np.tile(np.eye(SD), (2, 1, 1))
    model = np.array([0, 1], np.int8)
    idx = np.array([0, 1], np.int64)
    sensor = np.array([[10.0, 10.0, 0.0, 0.0, 0.0]])
    starts = np.array([0, 1], np.int64)
    for kind in (MEAS_POSE, MEAS_RADAR, MEAS_BEARING):
        md = MEAS_DIM[kind]
        buf_i = np.empty(2, np.int64)
        gate_kernel(
            x, P, model, idx, kind, sensor, np.zeros((1, md)), np.ones((1, md)), starts, min(md, 2), 10.0, 5.0,
            buf_i, buf_i.copy(), np.empty(2),
        )  # fmt: skip
    owner = np.full(2, -1, np.int64)
    ha, hj, hc = split_pairs_kernel(idx, idx, np.zeros(2), idx, idx, 2, owner)
    class_match_kernel(
        np.full((2, NUM_CLASSES), 1.0 / NUM_CLASSES), idx, np.array([1, 2], np.int32), np.full(2, 0.9), idx
    )
    cost_matrix_kernel(ha, hj, hc, idx, 2, 2, 2, 1e6)
    close_pairs_kernel(x, idx, 1.0)
