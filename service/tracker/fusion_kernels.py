"""Numba kernel of class fusion (Bayesian, symmetric confusion model).

Only ``@njit`` functions (and their warm-up) live here; :mod:`prescient.service.tracker.fusion` calls them.
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
