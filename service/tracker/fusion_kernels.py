"""Numba kernels of fusion: class fusion (Bayesian, symmetric confusion model) and the
bookkeeping of associated pairs (hit counts, clocks, box size and heading, attribute scores), and
the status that the lifecycle derives from those counts and clocks at every tick.

Only ``@njit`` functions (and their warm-up) live here; :mod:`prescient.service.tracker.fusion` calls them.
The EMA kernels reproduce numpy's fancy-index assignment ``a[ti] = f(a[ti], ...)`` exactly: every
new value is computed from the values before the batch, and a slot listed twice (two corners)
keeps the last one.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from prescient.bus.messages import NUM_CLASSES


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
def hits_kernel(last_update_ns, hits, last_position_ns, last_pos_xy_m, position_hits, x, ti, t, position):  # noqa: ANN001, ANN201
    """Count one hit for each pair's slot ``ti[k]`` (twice for a slot listed twice) at time ``t``.

    Args:
        last_update_ns, hits, last_position_ns, last_pos_xy_m, position_hits, x: track table
            arrays (see :class:`~prescient.service.tracker.table.TrackTable`), updated in place.
        ti: (n,) int64 slots; t: capture time, ns.
        position: whether the measurements give positions (also counts a position hit and
            records the position, already updated, as the last one).
    """
    for k in range(ti.shape[0]):
        i = ti[k]
        last_update_ns[i] = t
        hits[i] += 1
        if position:
            last_position_ns[i] = t
            last_pos_xy_m[i, 0] = x[i, 0]
            last_pos_xy_m[i, 1] = x[i, 1]
            position_hits[i] += 1


@njit(cache=True, nogil=True)
def fuse_boxes_kernel(size_lwh_m, yaw_aux_rad, model, ti, box_size, box_yaw, dj, alpha, model_cv):  # noqa: ANN001, ANN201
    """Size EMA of LiDAR boxes; circular EMA (mod pi, weight 0.3) of the box heading of CV tracks.

    Args:
        size_lwh_m: (N, 3) float64, yaw_aux_rad: (N,) float64, model: (N,) int8 track table
            arrays (the first two updated in place).
        ti: (n,) int64 slots; dj: (n,) int64 their measurement rows.
        box_size: (M, 3) float64 box sizes; box_yaw: (M,) float64 world box headings.
        alpha: size EMA weight; model_cv: the CV model id.
    """
    n = ti.shape[0]
    size_new = np.empty((n, 3))
    yaw_new = np.empty(n)
    for k in range(n):
        i = ti[k]
        j = dj[k]
        for d in range(3):
            size_new[k, d] = (1 - alpha) * size_lwh_m[i, d] + alpha * box_size[j, d]
        if model[i] == model_cv:
            # Mod pi: a box heading is ambiguous by half a turn.
            e = (box_yaw[j] - yaw_aux_rad[i] + 0.5 * math.pi) % math.pi - 0.5 * math.pi
            yaw_new[k] = yaw_aux_rad[i] + 0.3 * e
    for k in range(n):
        i = ti[k]
        for d in range(3):
            size_lwh_m[i, d] = size_new[k, d]
        if model[i] == model_cv:
            yaw_aux_rad[i] = yaw_new[k]


@njit(cache=True, nogil=True)
def attr_ema_kernel(attr_score, ti, attributes, dj, bits, alpha):  # noqa: ANN001, ANN201
    """EMA of each attribute bit: ``score = (1 - alpha) score + alpha [bit set]``.

    Args:
        attr_score: (N, A) float64 track table scores, updated in place.
        ti: (n,) int64 slots; dj: (n,) int64 their measurement rows.
        attributes: (M,) uint8 attribute bits of each row; bits: (A,) uint8 the bit of each column.
        alpha: EMA weight.
    """
    n = ti.shape[0]
    A = bits.shape[0]
    new = np.empty((n, A))
    for k in range(n):
        for b in range(A):
            on = 1.0 if (attributes[dj[k]] & bits[b]) > 0 else 0.0
            new[k, b] = (1 - alpha) * attr_score[ti[k], b] + alpha * on
    for k in range(n):
        for b in range(A):
            attr_score[ti[k], b] = new[k, b]


@njit(cache=True, nogil=True)
def update_status_kernel(
    status, hits, position_hits, last_position_ns, last_update_ns, class_id, idx, now_ns, limits
):  # noqa: ANN001, ANN201
    """Promote, coast and un-coast slots ``idx`` at ``now_ns``; flag the timed-out ones.

    A tentative track with ``confirm_hits`` hits, ``confirm_position_hits`` of them position
    updates, is confirmed; a confirmed or coasting one coasts when its last position update is
    more than ``coast_ns`` old, else is confirmed. Time-outs: a tentative track not promoted
    with no update for ``tentative_timeout_ns``, a confirmed or coasting one with no position
    update for its class's ``max_coast_ns``.

    Args:
        status: (N,) uint8 :class:`~prescient.bus.messages.TrackStatus` (0 tentative, 1 confirmed,
            2 coasting), updated in place; hits, position_hits: (N,) int32; last_position_ns,
            last_update_ns: (N,) int64; class_id: (N,) int32: track table arrays.
        idx: (n,) int64 live slots; now_ns: tick time, ns.
        limits: ``(confirm_hits, confirm_position_hits, tentative_timeout_ns, coast_ns,
            max_coast_ns)``, the last a (C,) int64 array by class.

    Returns:
        (n,) bool each: tentative time-outs, coast time-outs (to delete).
    """
    confirm_hits, confirm_position_hits, tentative_timeout_ns, coast_ns, max_coast_ns = limits
    n = idx.shape[0]
    drop_tentative = np.zeros(n, np.bool_)
    drop_coast = np.zeros(n, np.bool_)
    for a in range(n):
        i = idx[a]
        since_pos = now_ns - last_position_ns[i]
        if status[i] == 0:
            if hits[i] >= confirm_hits and position_hits[i] >= confirm_position_hits:
                status[i] = 1
            else:
                drop_tentative[a] = now_ns - last_update_ns[i] > tentative_timeout_ns
                continue
        status[i] = 2 if since_pos > coast_ns else 1
        drop_coast[a] = since_pos > max_coast_ns[class_id[i]]
    return drop_tentative, drop_coast


def warm_up() -> None:
    """Compile this module's kernel on dummy inputs (keeps JIT off the first real tick)."""
    fuse_class_kernel(
        np.zeros((2, NUM_CLASSES)),
        np.array([0, 1], np.int64),
        np.array([1, 2], np.int32),
        np.full(2, 0.9),
        1.0,
        -7.0,
        np.empty(2, np.int32),
    )
    slots = np.array([0, 1, 0], np.int64)  # slot 0 twice, as two corners can list it
    ns = np.zeros(2, np.int64)
    counts = np.zeros(2, np.int32)
    x = np.zeros((2, 6))
    hits_kernel(ns, counts, ns.copy(), np.zeros((2, 2)), counts.copy(), x, slots, 0, True)
    boxes = np.ones((2, 3))  # box_yaw: a column of z, as the caller passes it
    fuse_boxes_kernel(
        boxes.copy(), np.zeros(2), np.zeros(2, np.int8), slots, boxes, boxes[:, 2], slots, 0.3, 0
    )
    attr_ema_kernel(boxes.copy(), slots, np.ones(2, np.uint8), slots, np.array([1, 2, 4], np.uint8), 0.3)
    limits = (3, 2, 10**9, 10**9, np.full(NUM_CLASSES, 10**9, np.int64))
    update_status_kernel(np.zeros(2, np.uint8), counts, counts, ns, ns, counts, slots[:2], 0, limits)
