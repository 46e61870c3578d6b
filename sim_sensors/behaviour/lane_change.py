"""Discretionary lane changes of cars and trucks stuck behind a slower leader (numba).

A change moves the vehicle to the neighbour lane at once (same arc length) and keeps its
position by starting with a lateral offset ``d`` that decays to zero over 3 s. Agents are the
record views ``AF``, ``AI`` (:func:`prescient.sim_sensors.layout.agent_records`).
"""

from __future__ import annotations

import math

from numba import njit

from prescient.sim_sensors.lanes import choose_next_kernel, lane_pose_kernel
from prescient.sim_sensors.layout import CLS_CAR, CLS_TRUCK, KIND_VEHICLE, MODE_LANE
from prescient.sim_sensors.rng import rng_uniform_kernel

_LC_DURATION_S = 3.0


@njit(cache=True, nogil=True, inline="always")
def blocked_kernel(a, b, ln, acc_i):
    """True when car / truck ``a, b`` is stuck: braking below 80 % of its desired speed, mid-lane.

    Args:
        ln: its lane's record; acc_i: this step's acceleration (m/s^2), speed already updated.
    """
    return (
        (b.cls == CLS_CAR or b.cls == CLS_TRUCK)
        and ln.kind == KIND_VEHICLE
        and not ln.is_intersection
        and a.lc_time <= 0.0
        and ln.length - a.s > 50.0
        and a.v < 0.8 * min(a.v0, ln.speed)
        and acc_i < 0.0
    )


@njit(cache=True, nogil=True)
def _lane_clear_kernel(AF, AI, act, tgt, s, v):
    """True when nobody on lane ``tgt`` is within 15 m + 1.5 s x ``v`` of arc length ``s``."""
    for j in act:
        if AI[j].mode == MODE_LANE and AI[j].lane == tgt and abs(AF[j].s - s) < 15.0 + 1.5 * v:
            return False
    return True


@njit(cache=True, nogil=True)
def lane_change_kernel(AF, AI, act, i, g, rng, is_ego):
    """Blocked vehicle ``i`` (that passed its RNG gate) changes lanes if it can; True if it did.

    A random side first, then the other; it takes the first neighbour with a clear gap.

    Args:
        act: (n,) int64 rows of the active agents; g: :class:`prescient.sim_sensors.lanes.LaneGraph`.
        rng: (1,) uint64 RNG state; is_ego: the ego takes turnarounds at dead ends.
    """
    a, b = AF[i], AI[i]
    lanes = g.lanes
    ln = lanes[b.lane]
    left, right = ln.left_nb, ln.right_nb
    first = left if rng_uniform_kernel(rng) < 0.5 else right
    for attempt in range(2):
        tgt = first if attempt == 0 else (right if first == left else left)
        if tgt < 0 or not _lane_clear_kernel(AF, AI, act, tgt, a.s, a.v):
            continue
        xo, yo, _ = lane_pose_kernel(g.pts, g.cum_s, ln, a.s, a.d)
        xn, yn, yn_yaw = lane_pose_kernel(g.pts, g.cum_s, lanes[tgt], a.s, 0.0)
        d = -(xo - xn) * math.sin(yn_yaw) + (yo - yn) * math.cos(yn_yaw)
        b.lane = tgt
        a.d = d
        a.lc_time = _LC_DURATION_S
        a.lc_rate = d / _LC_DURATION_S
        b.next = choose_next_kernel(lanes[tgt], is_ego, g.succ, rng)
        return True
    return False
