"""Pedestrians: walking the sidewalk graph, waiting at crossings, jaywalking (numba).

On the lane graph a pedestrian walks at its desired speed along walk lanes and crossing lanes.
Before a crossing it waits for the walk signal (plus a reaction time, longer with a phone) or,
at an unsignalised crossing, for a gap in traffic; a jaywalker gives up after 6 s and goes.
Jaywalkers also leave a sidewalk mid-block straight across the road (``MODE_FREE``) and rejoin
the nearest walk lane on the far side. One agent's rows are the records ``a = AF[i]``,
``b = AI[i]`` (:func:`prescient.sim_sensors.layout.agent_records`); lanes are lane records.
"""

from __future__ import annotations

import math

from numba import njit

from prescient.sim_sensors.angles import wrap_kernel
from prescient.sim_sensors.behaviour.intents import INTENT_CROSS, INTENT_JAYWALK, INTENT_NONE
from prescient.sim_sensors.lanes import (
    choose_next_kernel,
    lane_point_kernel,
    lane_pose_kernel,
    project_kernel,
)
from prescient.sim_sensors.layout import (
    CLS_ANIMAL,
    CLS_PED,
    FLAG_JAYWALKER,
    FLAG_PHONE,
    KIND_CROSS,
    KIND_WALK,
    MODE_FREE,
    MODE_LANE,
)

UNSIGNALISED_S = 1e8  # cross_elapsed above this: no signal, look for a gap in traffic instead


@njit(cache=True, nogil=True, inline="always")
def pedestrian_intent_kernel(a, b, ln, nx):
    """Walk at the desired speed; say whether a crossing or a jaywalk decision comes first.

    Args:
        ln, nx: records of the current and the next lane (``nx`` is not read without a next lane).
    """
    a.v = a.v0
    a.a = 0.0
    if b.next >= 0 and nx.kind == KIND_CROSS and ln.length - a.s < 0.6:
        return INTENT_CROSS
    if (
        ln.kind == KIND_WALK
        and ln.road_side != 0.0
        and (b.flags & FLAG_JAYWALKER) != 0
        and 5.0 < a.s < ln.length - 5.0
    ):
        return INTENT_JAYWALK
    return INTENT_NONE


@njit(cache=True, nogil=True)
def _traffic_near_kernel(AF, AI, act, x, y):
    """True when a moving (> 0.5 m/s) lane vehicle is within 20 m of (x, y)."""
    for j in act:
        cj = AI[j].cls
        if cj == CLS_PED or cj == CLS_ANIMAL or AI[j].mode != MODE_LANE:
            continue
        ddx, ddy = AF[j].x - x, AF[j].y - y
        if ddx * ddx + ddy * ddy < 400.0 and AF[j].v > 0.5:
            return True
    return False


@njit(cache=True, nogil=True)
def crossing_busy_kernel(AF, AI, act, pts, cum_s, cross):
    """True when a moving lane vehicle is within 20 m of the middle of crossing lane record ``cross``."""
    mx, my = lane_point_kernel(pts, cum_s, cross, 0.5 * cross.length)
    return _traffic_near_kernel(AF, AI, act, mx, my)


@njit(cache=True, nogil=True, inline="always")
def wait_or_go_kernel(a, b, ln, elapsed_s, busy, dt):
    """Pedestrian ``a, b`` at the start of a crossing goes on, or waits 0.3 m before it.

    It goes once the walk window has been open for its reaction time (2.5 s with a phone,
    0.8 s without); at an unsignalised crossing (``elapsed_s`` 1e9) when traffic is not
    ``busy``; a jaywalker after 6 s of waiting regardless.

    Args:
        ln: the record of the lane it is on.
        elapsed_s: seconds since the crossing's walk window opened (-1 closed, 1e9 unsignalised).
        busy: a moving vehicle is near the crossing (only asked for unsignalised crossings).
    """
    react = 2.5 if (b.flags & FLAG_PHONE) != 0 else 0.8
    go = elapsed_s >= react
    if elapsed_s > UNSIGNALISED_S and busy:
        go = False
    if (b.flags & FLAG_JAYWALKER) != 0 and a.wait > 6.0:
        go = True  # impatient: crosses against the signal
    if not go:
        a.v = 0.0
        a.s = min(a.s, ln.length - 0.3)
        a.wait += dt
    else:
        a.wait = 0.0


@njit(cache=True, nogil=True, inline="always")
def start_jaywalk_kernel(a, b, ln):
    """Jaywalker ``a, b`` turns from its sidewalk ``ln`` towards the road and hurries across."""
    b.mode = MODE_FREE
    a.free = ln.jay_dist
    a.yaw = wrap_kernel(a.yaw + ln.road_side * 0.5 * math.pi)
    a.v = 1.2 * a.v0


@njit(cache=True, nogil=True)
def _nearest_walk_lane_kernel(g, x, y):
    """(lane, arc length) of the walk lane closest to (x, y); lane -1 if the map has none."""
    lanes, pts, cum_s = g.lanes, g.pts, g.cum_s
    best, best_s, best_d = -1, 0.0, 1e30
    for k in range(lanes.shape[0]):
        if lanes[k].kind != KIND_WALK:
            continue
        sp, dd = project_kernel(pts, cum_s, lanes[k], x, y)
        if dd < best_d - 1e-6:
            best, best_s, best_d = k, sp, dd
    return best, best_s


@njit(cache=True, nogil=True, inline="always")
def walk_straight_kernel(a, dt):
    """Jaywalker ``a`` walks straight on for ``dt`` s; True once it reached the far sidewalk."""
    v = a.v
    a.x += v * math.cos(a.yaw) * dt
    a.y += v * math.sin(a.yaw) * dt
    a.free -= v * dt
    return a.free <= 0.0


@njit(cache=True, nogil=True)
def rejoin_kernel(a, b, g, rng):
    """Jaywalker ``a, b`` at the far sidewalk joins the nearest walk lane; False if there is none."""
    best, best_s = _nearest_walk_lane_kernel(g, a.x, a.y)
    if best < 0:
        return False
    ln = g.lanes[best]
    b.mode = MODE_LANE
    b.lane = best
    b.next = choose_next_kernel(ln, False, g.succ, rng)
    a.s = best_s
    a.v = a.v0
    a.x, a.y, a.yaw = lane_pose_kernel(g.pts, g.cum_s, ln, best_s, 0.0)
    return True
