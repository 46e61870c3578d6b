"""Car following: the gap to whatever is ahead, and the IDM acceleration towards it (numba).

Longitudinal decisions of vehicles on the lane graph (cars, trucks, buses, cyclists) are made
for every agent from the state at the start of the step, before anyone moves. Gaps are bumper to
bumper along the path (m); the leader speed ``vl`` is along our heading (m/s). Agent tables are
the record views of :func:`prescient.sim_sensors.layout.agent_records` (``AF``, ``AI``); one agent's rows
are the records ``a = AF[i]``, ``b = AI[i]``; lanes are :data:`prescient.sim_sensors.lanes.LANE_RECORD`.
"""

from __future__ import annotations

import math

from numba import njit

from prescient.sim_sensors.behaviour.right_of_way import stop_line_gap_kernel, yield_gap_kernel
from prescient.sim_sensors.layout import (
    CLS_ANIMAL,
    CLS_PED,
    KIND_WALK,
    MODE_LANE,
    P_IDM_A,
    P_IDM_B,
    P_IDM_S0,
    P_IDM_T,
)

_NO_GAP = 1e9  # "nothing ahead"; any real gap is smaller


@njit(cache=True, nogil=True, inline="always")
def _obstacle_gap_kernel(dx, dy, own, aj, bj):
    """Gap to an agent off our path's lanes, if it is in the 25 m corridor ahead of us.

    The corridor is as wide as both boxes plus 0.3 m; oncoming traffic on its own lane does
    not count.

    Args:
        dx, dy: the other agent's centre minus ours, world frame (m).
        own: ``(cos_yaw, sin_yaw, yaw_rad, width_m, half_length_m)`` of us.
        aj, bj: the other agent's records.

    Returns:
        ``(gap_m, speed_along_mps)``; ``(1e9, 0.0)`` when it is not in the way.
    """
    ci, si, yaw_i, wid_i, half_i = own
    along = dx * ci + dy * si
    lat = -dx * si + dy * ci
    if along <= 0.0 or along > 25.0:
        return _NO_GAP, 0.0
    if abs(lat) > 0.5 * (wid_i + aj.width) + 0.3:
        return _NO_GAP, 0.0
    cj = math.cos(aj.yaw - yaw_i)
    if bj.mode == MODE_LANE and cj < -0.5 and bj.cls != CLS_PED:
        return _NO_GAP, 0.0  # oncoming traffic on its own lane
    return along - half_i - 0.5 * max(aj.length, aj.width), max(0.0, aj.v * cj)


@njit(cache=True, nogil=True, inline="always")
def accel_kernel(a, ln, nx, nxt, gap, vl, idm):
    """IDM acceleration (m/s^2, clamped to [-9, a_max]) of vehicle ``a`` on lane ``ln``.

    Free-road term towards ``min(desired speed, speed limit)``, interaction term towards the
    leader at ``gap`` (m, >= 1e8: none) driving at ``vl`` (m/s), then capped by the deceleration
    needed to reach the next lane's (curve) speed limit at its start.

    Args:
        nx, nxt: the next lane's record and index (-1: none; then ``nx`` is not read).
        idm: ``(a_max_mps2, b_comfortable_mps2, headway_s, min_gap_m)``.
    """
    a_max, b_comf, t_head, s0 = idm
    v = a.v
    a_free = a_max * (1.0 - (v / max(min(a.v0, ln.speed), 0.1)) ** 4)
    a_i = a_free
    if gap < 1e8:
        s_star = s0 + max(0.0, v * t_head + v * (v - vl) / (2.0 * math.sqrt(a_max * b_comf)))
        a_i = a_free - a_max * (s_star / max(gap, 0.1)) ** 2
    if nxt >= 0 and v > nx.speed:  # slow down before a sharper/slower lane
        a_curve = (nx.speed**2 - v * v) / (2.0 * max(ln.length - a.s, 1.0))
        a_i = min(a_i, a_curve)
    return min(max(a_i, -9.0), a_max)


@njit(cache=True, nogil=True)
def longitudinal_pass_kernel(AF, AI, act, acc, g, env):
    """Acceleration of every lane vehicle for this step into ``acc`` (C,) m/s^2.

    The leader is the nearest of: an agent ahead on our lane or on our next lane (along the
    lane), anything else in the corridor ahead (:func:`_obstacle_gap_kernel`; pedestrians on
    walk lanes never), a red / yellow stop line, the give-way line of a roundabout entry when
    the ring is busy. The pair loop stays in this kernel on purpose: a helper call per pair
    costs more than the test it makes.

    Args:
        act: (n,) int64 rows of the active agents.
        g: :class:`prescient.sim_sensors.lanes.LaneGraph`; env: :class:`prescient.sim_sensors.behaviour.step.StepEnv`.
    """
    lanes, pred, lane_light, params = g.lanes, g.pred, env.lane_light, env.params
    idm = (params[P_IDM_A], params[P_IDM_B], params[P_IDM_T], params[P_IDM_S0])
    for i in act:
        b = AI[i]
        if b.mode != MODE_LANE or b.cls == CLS_PED or b.cls == CLS_ANIMAL:
            continue
        a = AF[i]
        lane, nxt, s = b.lane, b.next, a.s
        ln = lanes[lane]
        L = ln.length
        half_i = 0.5 * a.length
        own = (math.cos(a.yaw), math.sin(a.yaw), a.yaw, a.width, half_i)
        gap, vl = _NO_GAP, 0.0
        for j in act:
            if j == i:
                continue
            aj, bj = AF[j], AI[j]
            on_lane = bj.mode == MODE_LANE
            if on_lane and bj.lane == lane and aj.s > s:
                gj, vj = aj.s - s - half_i - 0.5 * aj.length, aj.v
            elif on_lane and nxt >= 0 and bj.lane == nxt:
                gj, vj = L - s + aj.s - half_i - 0.5 * aj.length, aj.v
            elif on_lane and lanes[bj.lane].kind == KIND_WALK:
                continue
            else:
                dx, dy = aj.x - a.x, aj.y - a.y
                if abs(dx) > 30.0 or abs(dy) > 30.0:  # cheap reject before the corridor test
                    continue
                gj, vj = _obstacle_gap_kernel(dx, dy, own, aj, bj)
            if gj < gap:
                gap, vl = gj, vj
        gap, vl = stop_line_gap_kernel(ln.stop_s, lane_light[lane], s + half_i, a.v, gap, vl)
        if ln.yield_:
            gap, vl = yield_gap_kernel(AF, AI, act, lanes, pred, i, gap, vl)
        acc[i] = accel_kernel(a, ln, lanes[nxt], nxt, gap, vl, idm)
