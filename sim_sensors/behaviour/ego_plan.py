"""The ego's plan override: a speed cap and a forced route choice on top of its own driver (numba).

In a normal run the override is off (``E_MODE == EGO_FREE``, no route lane) and the ego drives
like any car (IDM, random route). Counterfactual branches
(:mod:`prescient.sim_sensors.counterfactual`) set it to make the ego slow down, stop or turn
elsewhere; the plan only ever brakes harder than the driver would, so the ego still stops for
leaders and red lights. The plan is the ``(NE,)`` float64 array of :mod:`prescient.sim_sensors.layout`
(``E_*`` columns). One agent's rows are the records ``a = AF[i]``, ``b = AI[i]``.
"""

from __future__ import annotations

from numba import njit

from prescient.sim_sensors.layout import E_DECEL, E_MODE, E_ROUTE_LANE, E_ROUTE_NEXT, E_SPEED, EGO_CAP_SPEED


@njit(cache=True, nogil=True, inline="always")
def plan_active_kernel(plan):
    """True when the plan overrides the ego's speed (then the ego makes no lane changes of its own)."""
    return plan[E_MODE] == EGO_CAP_SPEED


@njit(cache=True, nogil=True, inline="always")
def ego_accel_kernel(a, acc_i, plan, dt):
    """The ego's acceleration (m/s^2) this step: its driver's ``acc_i``, capped by the plan.

    With ``EGO_CAP_SPEED`` the ego brakes at ``E_DECEL`` (never harder, unless its driver does)
    until its speed is ``E_SPEED``, then holds it (0: stops and stays stopped).
    """
    if plan[E_MODE] != EGO_CAP_SPEED:
        return acc_i
    a_plan = max(-plan[E_DECEL], (plan[E_SPEED] - a.v) / dt)
    return min(acc_i, a_plan)


@njit(cache=True, nogil=True, inline="always")
def ego_route_kernel(b, plan):
    """On the plan's route lane, make the ego's next lane the plan's (a different junction exit)."""
    lane = int(plan[E_ROUTE_LANE])
    if lane >= 0 and b.lane == lane:
        b.next = int(plan[E_ROUTE_NEXT])
