"""Right of way: stopping for red / yellow signals, giving way at roundabout entries (numba).

Agent tables are the record views of :func:`prescient.sim_sensors.layout.agent_records` (``AF``, ``AI``),
lanes the records of :class:`prescient.sim_sensors.lanes.LaneGraph`.
"""

from __future__ import annotations

from numba import njit

from prescient.sim_sensors.layout import MODE_LANE

_RED, _YELLOW = 1, 2  # prescient.bus.messages.LightState
_YELLOW_DECEL_MPS2 = 3.0  # a vehicle that would need more than this to stop drives through yellow


@njit(cache=True, nogil=True, inline="always")
def stop_line_gap_kernel(stop_s, light, front_s, v, gap, vl):
    """``(gap, vl)`` after treating the lane's stop line as a standing leader when it must stop.

    Args:
        stop_s: stop line arc length on the lane (m), -1 if none.
        light: LightState of the lane's signal now (0 none).
        front_s: arc length of the vehicle's front bumper (m); v: its speed (m/s).
        gap, vl: gap (m) and speed (m/s) of the leader found so far.
    """
    if stop_s >= 0.0 and (light == _RED or light == _YELLOW):
        g = stop_s - front_s
        if g > -0.5:
            if light == _RED or g > v * v / (2.0 * _YELLOW_DECEL_MPS2):
                if g < gap:
                    gap = max(g, 0.0)
                    vl = 0.0
    return gap, vl


@njit(cache=True, nogil=True)
def _approaching_kernel(AF, AI, act, lanes, pred, p):
    """True when a lane agent on lane ``p``, or on a predecessor of ``p``, is close to p's end.

    Close means within 12 m plus 2.5 s at its own speed (a gap a merging car should not take).
    """
    lp = lanes[p]
    for j in act:
        bj = AI[j]
        if bj.mode != MODE_LANE:
            continue
        lj = bj.lane
        dist = -1.0
        if lj == p:
            dist = lp.length - AF[j].s
        else:
            for qk in range(lp.pred_lo, lp.pred_hi):
                if pred[qk] == lj:
                    dist = lp.length + lanes[lj].length - AF[j].s
        if dist >= 0.0 and dist < 12.0 + 2.5 * AF[j].v:
            return True
    return False


@njit(cache=True, nogil=True)
def _entry_occupied_kernel(AF, AI, act, nxt):
    """True when a lane agent is within the first 5 m of lane ``nxt``."""
    for j in act:
        if AI[j].mode == MODE_LANE and AI[j].lane == nxt and AF[j].s < 5.0:
            return True
    return False


@njit(cache=True, nogil=True)
def must_yield_kernel(AF, AI, act, lanes, pred, lane, nxt):
    """True when a vehicle on yield lane ``lane`` must wait before entering ``nxt``.

    Only merges count: ``nxt`` needs a predecessor other than ``lane``. Then it yields to
    traffic approaching on that predecessor and to anyone still at the start of ``nxt``.

    Args:
        act: (n,) int64 rows of the active agents; lanes: (L,) lane records; pred: predecessor ids.
    """
    nx = lanes[nxt]
    for pk in range(nx.pred_lo, nx.pred_hi):
        p = pred[pk]
        if p == lane:
            continue
        if _approaching_kernel(AF, AI, act, lanes, pred, p) or _entry_occupied_kernel(AF, AI, act, nxt):
            return True
    return False


@njit(cache=True, nogil=True)
def yield_gap_kernel(AF, AI, act, lanes, pred, i, gap, vl):
    """``(gap, vl)`` of vehicle ``i`` on a yield lane after treating its give-way line as a leader.

    The line is 6 m before the lane end and counts within the last 30 m when the vehicle must
    yield (:func:`must_yield_kernel`).
    """
    a, b = AF[i], AI[i]
    L = lanes[b.lane].length
    if b.next >= 0 and L - a.s < 30.0 and must_yield_kernel(AF, AI, act, lanes, pred, b.lane, b.next):
        yg = (L - 6.0) - (a.s + 0.5 * a.length)
        if yg > -1.0 and yg < gap:
            gap = max(yg, 0.0)
            vl = 0.0
    return gap, vl
