"""One physics step of every agent: the entry kernel and the motion pass (numba).

The step has two passes over the active agents, in row order. First every lane vehicle decides
its acceleration from the state at the start of the step (:mod:`.following`); then agents move
one after another (later agents see earlier ones already moved, e.g. in the lane-change gap
check), and the world-frame velocity, acceleration and yaw rate are derived from the motion.

Kernels here take the agent tables as record views (:func:`prescient.sim_sensors.layout.agent_records`):
per-agent helpers get one agent's rows as two records, which numba passes as plain pointers,
where passing arrays would cost a reference-count round trip per array per call.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from prescient.sim_sensors.angles import wrap_kernel
from prescient.sim_sensors.behaviour.animals import wander_kernel
from prescient.sim_sensors.behaviour.ego_plan import ego_accel_kernel, ego_route_kernel, plan_active_kernel
from prescient.sim_sensors.behaviour.following import longitudinal_pass_kernel
from prescient.sim_sensors.behaviour.intents import (
    INTENT_CHANGE_LANE,
    INTENT_CROSS,
    INTENT_JAYWALK,
    INTENT_NONE,
)
from prescient.sim_sensors.behaviour.lane_change import lane_change_kernel
from prescient.sim_sensors.behaviour.lane_motion import (
    advance_kernel,
    enter_next_lane_kernel,
    lights_kernel,
    vehicle_intent_kernel,
)
from prescient.sim_sensors.behaviour.pedestrians import (
    UNSIGNALISED_S,
    crossing_busy_kernel,
    pedestrian_intent_kernel,
    rejoin_kernel,
    start_jaywalk_kernel,
    wait_or_go_kernel,
    walk_straight_kernel,
)
from prescient.sim_sensors.lanes import LaneGraph, lane_pose_kernel
from prescient.sim_sensors.layout import (
    ATTR_PHONE,
    C_JAYWALKS,
    C_LANE_CHANGES,
    C_LEFT_MAP,
    C_OUT_OF_BOUNDS,
    C_STUCK,
    CLS_ANIMAL,
    CLS_PED,
    EGO_FREE,
    FLAG_EGO,
    MODE_FREE,
    MODE_LANE,
    P_JAY_RATE,
    P_LC_RATE,
    P_STUCK,
)
from prescient.sim_sensors.rng import rng_uniform_kernel


class StepEnv(NamedTuple):
    """Everything of one step besides the agent tables and the lane graph (one numba argument).

    Attributes:
        lane_light: (L,) uint8 LightState of each lane's signal now (0 = no signal).
        cross_elapsed: (L,) float64 seconds since the walk window of a crossing lane opened,
            -1 when pedestrians must not start, 1e9 for unsignalised crossings.
        params: (NP,) float64 behaviour parameters (``P_*``).
        dt: step length, s.
        rng: (C,) uint64 RNG state of each agent row's own stream (advanced in place); row
            ``i`` draws from ``rng[i:i + 1]`` only (:mod:`prescient.sim_sensors.rng`).
        counts: (NC,) int64 event counters (``C_*``), incremented.
        ego_plan: (NE,) float64 ego plan override (``E_*``, :mod:`.ego_plan`); the default is off.
    """

    lane_light: np.ndarray
    cross_elapsed: np.ndarray
    params: np.ndarray
    dt: float
    rng: np.ndarray
    counts: np.ndarray
    ego_plan: np.ndarray = np.array([EGO_FREE, 0.0, 0.0, -1.0, -1.0])  # never written


@njit(cache=True, nogil=True, inline="always")
def _derive_kinematics_kernel(a, mode, prev, dt):
    """World velocity, acceleration and yaw rate of agent ``a`` from its move this step.

    Args:
        mode: its I_MODE at the start of the step.
        prev: ``(x_m, y_m, yaw_rad, vx_mps, vy_mps)`` at the start of the step.
    """
    x_old, y_old, yaw_old, vx_old, vy_old = prev
    yaw = a.yaw
    vx, vy = a.v * math.cos(yaw), a.v * math.sin(yaw)
    if mode == MODE_LANE and a.lc_time > 0.0:
        vx += a.lc_rate * math.sin(yaw)
        vy -= a.lc_rate * math.cos(yaw)
    a.ax, a.ay = (vx - vx_old) / dt, (vy - vy_old) / dt
    a.vx, a.vy = vx, vy
    a.yaw_rate = wrap_kernel(yaw - yaw_old) / dt
    if abs(a.x - x_old) + abs(a.y - y_old) > 20.0:  # a jump: do not report it as motion
        a.ax, a.ay, a.yaw_rate = 0.0, 0.0, 0.0


@njit(cache=True, nogil=True, inline="always")
def _despawn_reason_kernel(a, b, bounds, dt, stuck_s):
    """Why non-ego agent ``a, b`` leaves now: ``C_OUT_OF_BOUNDS``, ``C_STUCK`` or -1 (stays).

    Vehicles count their time stopped below 0.1 m/s; ``stuck_s`` of it removes them.

    Args:
        bounds: ``(x_min, y_min, x_max, y_max)`` m.
    """
    x_min, y_min, x_max, y_max = bounds
    if a.x < x_min or a.x > x_max or a.y < y_min or a.y > y_max:
        return C_OUT_OF_BOUNDS
    if b.cls != CLS_PED and b.cls != CLS_ANIMAL:
        if a.v < 0.1:
            a.wait += dt
            if a.wait > stuck_s:
                return C_STUCK
        else:
            a.wait = 0.0
    return -1


@njit(cache=True, nogil=True)
def _motion_pass_kernel(AF, AI, act, acc, g, env):
    """Move every active agent by its mode's model (in row order), then derive its kinematics.

    Args:
        act: (n,) int64 rows of the active agents; acc: (C,) accelerations of pass 1 (m/s^2).
        g: :class:`prescient.sim_sensors.lanes.LaneGraph`; env: :class:`StepEnv`.
    """
    lanes, pts, cum_s, counts, dt = g.lanes, g.pts, g.cum_s, env.counts, env.dt
    cross_elapsed, ego_planned = env.cross_elapsed, plan_active_kernel(env.ego_plan)
    p_lane_change, p_jaywalk = env.params[P_LC_RATE] * dt, env.params[P_JAY_RATE] * dt
    bounds, stuck_s = (g.bounds[0], g.bounds[1], g.bounds[2], g.bounds[3]), env.params[P_STUCK]
    for i in act:
        a, b = AF[i], AI[i]
        rng = env.rng[i : i + 1]  # this agent's own stream
        mode = b.mode
        is_ego = (b.flags & FLAG_EGO) != 0
        prev = (a.x, a.y, a.yaw, a.vx, a.vy)
        attr = b.attr & ATTR_PHONE
        if mode == MODE_LANE:
            ped = b.cls == CLS_PED
            ln, nx = lanes[b.lane], lanes[b.next]
            intent = (
                pedestrian_intent_kernel(a, b, ln, nx) if ped else vehicle_intent_kernel(a, b, ln, acc[i], dt)
            )
            if is_ego and ego_planned:
                intent = INTENT_NONE  # a planned ego slows on purpose: it does not look for a way past
            if intent == INTENT_CHANGE_LANE and rng_uniform_kernel(rng) < p_lane_change:
                if lane_change_kernel(AF, AI, act, i, g, rng, is_ego):
                    counts[C_LANE_CHANGES] += 1
            elif intent == INTENT_CROSS:
                elapsed_s = cross_elapsed[b.next]
                busy = elapsed_s > UNSIGNALISED_S and crossing_busy_kernel(AF, AI, act, pts, cum_s, nx)
                wait_or_go_kernel(a, b, ln, elapsed_s, busy, dt)
            elif intent == INTENT_JAYWALK and rng_uniform_kernel(rng) < p_jaywalk:
                start_jaywalk_kernel(a, b, ln)
                counts[C_JAYWALKS] += 1
                continue
            s = advance_kernel(a, dt)
            if s >= lanes[b.lane].length:
                arrived, s = enter_next_lane_kernel(a, b, s, g, rng, is_ego)
                if not arrived:
                    b.active = 0
                    counts[C_LEFT_MAP] += 1
                    continue
            a.s = s
            a.x, a.y, a.yaw = lane_pose_kernel(pts, cum_s, lanes[b.lane], s, a.d)
            if not ped:
                attr = lights_kernel(a, b, lanes[b.lane], lanes[b.next], attr)
        elif mode == MODE_FREE:
            if walk_straight_kernel(a, dt) and not rejoin_kernel(a, b, g, rng):
                b.active = 0
                continue
        else:
            wander_kernel(a, dt, rng)
        _derive_kinematics_kernel(a, mode, prev, dt)
        b.attr = attr
        reason = -1 if is_ego else _despawn_reason_kernel(a, b, bounds, dt, stuck_s)
        if reason >= 0:
            b.active = 0
            counts[reason] += 1


@njit(cache=True, nogil=True)
def step_agents_kernel(AF, AI, g, env):
    """Advance every active agent by ``env.dt`` seconds (in place).

    Args:
        AF, AI: (C,) record views of the agent tables (:func:`prescient.sim_sensors.layout.agent_records`).
        g: :class:`prescient.sim_sensors.lanes.LaneGraph` of the map, or a plain tuple in its field order.
        env: :class:`StepEnv` of this step (signals, parameters, RNG, counters, ego plan), or a
            plain tuple.

    Row 0 is the ego (:mod:`prescient.sim_sensors.layout`): its plan override is applied to it only.
    """
    g, env = LaneGraph(*g), StepEnv(*env)
    C = AF.shape[0]
    n_act = 0
    rows = np.empty(C, np.int64)
    for i in range(C):
        if AI[i].active != 0:
            rows[n_act] = i
            n_act += 1
    act = rows[:n_act]
    acc = np.zeros(C)
    ego_on_lane = AI[0].active != 0 and AI[0].mode == MODE_LANE
    if ego_on_lane:
        ego_route_kernel(AI[0], env.ego_plan)
    longitudinal_pass_kernel(AF, AI, act, acc, g, env)
    if ego_on_lane:
        acc[0] = ego_accel_kernel(AF[0], acc[0], env.ego_plan, env.dt)
    _motion_pass_kernel(AF, AI, act, acc, g, env)
    if AI[0].active != 0 and AI[0].mode == MODE_LANE:
        ego_route_kernel(AI[0], env.ego_plan)  # it may have entered the route lane this step
