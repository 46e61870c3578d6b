"""Moving along the lane graph: speed update, lane transitions, lane-change offset, lights (numba).

One agent's rows are the records ``a = AF[i]``, ``b = AI[i]`` of
:func:`prescient.sim_sensors.layout.agent_records`; lanes are :data:`prescient.sim_sensors.lanes.LANE_RECORD`.
"""

from __future__ import annotations

from numba import njit

from prescient.sim_sensors.behaviour.intents import INTENT_CHANGE_LANE, INTENT_NONE
from prescient.sim_sensors.behaviour.lane_change import blocked_kernel
from prescient.sim_sensors.lanes import choose_next_kernel
from prescient.sim_sensors.layout import ATTR_BRAKE, ATTR_LEFT, ATTR_RIGHT

# How far before the end of its lane a vehicle shows the turn it will take (m).
INDICATOR_RANGE_M = 40.0

@njit(cache=True, nogil=True, inline="always")
def vehicle_intent_kernel(a, b, ln, acc_i, dt):
    """Apply this step's acceleration ``acc_i`` (m/s^2) to vehicle ``a``; return its intent.

    The speed never goes negative; ``a.a`` becomes the acceleration actually applied.
    """
    v = max(0.0, a.v + acc_i * dt)
    a.a = (v - a.v) / dt
    a.v = v
    return INTENT_CHANGE_LANE if blocked_kernel(a, b, ln, acc_i) else INTENT_NONE


@njit(cache=True, nogil=True)
def enter_next_lane_kernel(a, b, s, g, rng, is_ego):
    """Lane agent ``a, b`` reached arc length ``s`` >= its lane's length: move on to the chosen
    successor (and pick the next one), as often as needed; returns ``(arrived, s)``.

    ``arrived`` is False when there is no successor (the agent drove off the map); the ego
    never leaves: at a dead end without a turnaround it stops there.
    """
    lanes = g.lanes
    lane, nxt = b.lane, b.next
    L = lanes[lane].length
    while s >= L:
        if nxt < 0:
            if not is_ego:
                return False, s
            s = L
            a.v = 0.0
            break
        s -= L
        lane = nxt
        L = lanes[lane].length
        nxt = choose_next_kernel(lanes[lane], is_ego, g.succ, rng)
    b.lane = lane
    b.next = nxt
    return True, s


@njit(cache=True, nogil=True, inline="always")
def advance_kernel(a, dt):
    """Arc length (m) of lane agent ``a`` after this step; decays a lane change's lateral offset."""
    s = a.s + a.v * dt
    if a.lc_time > 0.0:
        a.lc_time -= dt
        a.d -= a.lc_rate * dt
        if a.lc_time <= 0.0:
            a.d = 0.0
    return s


@njit(cache=True, nogil=True, inline="always")
def lights_kernel(a, b, ln, nx, attr):
    """``attr`` plus the brake light and indicator bits of vehicle ``a, b`` on lane ``ln``.

    Indicators show the turn of the junction connector we are on or will enter (``nx``, the next
    lane's record) within ``INDICATOR_RANGE_M``, and the side of a lane change in progress.
    """
    if a.a < -0.5 or a.v < 0.3:
        attr |= ATTR_BRAKE
    sig = 0
    if ln.is_intersection:
        sig = ln.turn
    elif b.next >= 0 and ln.length - a.s < INDICATOR_RANGE_M:
        sig = nx.turn
    if a.lc_time > 0.0:
        sig = -1 if a.d < 0.0 else 1
    if sig < 0:
        attr |= ATTR_LEFT
    elif sig > 0:
        attr |= ATTR_RIGHT
    return attr
