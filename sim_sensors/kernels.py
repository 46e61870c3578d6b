"""Numba kernels of the simulator: RNG, lane geometry, agent stepping, sensor scans.

Only ``@njit`` functions and the column constants of the state arrays live here; the wrappers
(:mod:`sim_sensors.world`, :mod:`sim_sensors.sensors`) check inputs and own the buffers.

Agent state is struct-of-arrays packed in two 2-D arrays with fixed capacity C:
``F`` (C, NF) float64 and ``I`` (C, NI) int64, columns named by the ``F_*`` / ``I_*`` constants.
Positions are world frame (m), yaw rad ccw from +x, speeds m/s. ``(x, y)`` is the box centre.

Randomness comes from a splitmix64 stream whose state is a (1,) uint64 array owned by the caller,
so two simulations in one process never share a generator (numba's ``np.random`` is global).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# Float state columns.
F_X, F_Y, F_YAW, F_V, F_A, F_S, F_D, F_V0 = 0, 1, 2, 3, 4, 5, 6, 7
F_LEN, F_WID, F_HGT, F_TIMER, F_FREE, F_HOMEX, F_HOMEY, F_LCT = 8, 9, 10, 11, 12, 13, 14, 15
F_LCD, F_VX, F_VY, F_AX, F_AY, F_YAWRATE, F_WAIT = 16, 17, 18, 19, 20, 21, 22
NF = 23
# Int state columns.
I_ACTIVE, I_ID, I_CLS, I_LANE, I_NEXT, I_MODE, I_FLAGS, I_ATTR = 0, 1, 2, 3, 4, 5, 6, 7
NI = 8

MODE_LANE, MODE_FREE, MODE_ANIMAL = 0, 1, 2
FLAG_EGO, FLAG_PHONE, FLAG_JAYWALKER = 1, 2, 4
# Attribute bits (match bus.messages.Attribute).
ATTR_PHONE, ATTR_BRAKE, ATTR_LEFT, ATTR_RIGHT = 1, 2, 4, 8
# Classes (match bus.messages.AgentClass).
CLS_CAR, CLS_TRUCK, CLS_BUS, CLS_PED, CLS_CYCLIST, CLS_ANIMAL = 1, 2, 3, 4, 5, 6
# Lane kinds (match sim_sensors.maps).
K_VEH, K_BIKE, K_WALK, K_CROSS, K_TURN = 0, 1, 2, 3, 4

# Packed agent rows for the sensor kernels: (M, NA) float64.
A_X, A_Y, A_YAW, A_L, A_W, A_H, A_VX, A_VY, A_CLS, A_ATTR, A_FLAGS, A_ID = range(12)
NA = 12

# Behaviour parameter vector indices.
P_IDM_A, P_IDM_B, P_IDM_T, P_IDM_S0, P_LC_RATE, P_JAY_RATE, P_STUCK = range(7)
NP = 7

# Counter indices (despawn reasons etc.).
C_LEFT_MAP, C_STUCK, C_OUT_OF_BOUNDS, C_LANE_CHANGES, C_JAYWALKS = range(5)
NC = 5

_TWO_PI = 2.0 * math.pi


# ----------------------------------------------------------------------------------------------
# RNG (splitmix64).
# ----------------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def rng_u64_kernel(st: np.ndarray) -> np.uint64:
    """Next 64-bit output of the splitmix64 stream in ``st`` (1,) uint64 (updated in place)."""
    st[0] += np.uint64(0x9E3779B97F4A7C15)
    z = st[0]
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True, nogil=True)
def rng_uniform_kernel(st: np.ndarray) -> float:
    """Uniform float in [0, 1)."""
    return float(rng_u64_kernel(st) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(cache=True, nogil=True)
def rng_normal_kernel(st: np.ndarray) -> float:
    """Standard normal (Box-Muller)."""
    u1 = max(rng_uniform_kernel(st), 1e-300)
    u2 = rng_uniform_kernel(st)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(_TWO_PI * u2)


@njit(cache=True, nogil=True)
def rng_poisson_kernel(st: np.ndarray, lam: float) -> int:
    """Poisson variate (Knuth; fine for the small means used here)."""
    if lam <= 0.0:
        return 0
    limit = math.exp(-lam)
    k = 0
    p = rng_uniform_kernel(st)
    while p > limit and k < 1000:
        k += 1
        p *= rng_uniform_kernel(st)
    return k


@njit(cache=True, nogil=True)
def wrap_kernel(a: float) -> float:
    """Wrap an angle to [-pi, pi)."""
    return (a + math.pi) % _TWO_PI - math.pi


# ----------------------------------------------------------------------------------------------
# Lane geometry.
# ----------------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def lane_point_kernel(pts, off, cum_s, lane, s):
    """(x, y) at arc length ``s`` on ``lane`` (linear, extrapolated past the ends)."""
    a = off[lane]
    b = off[lane + 1]
    if s <= cum_s[a]:
        i = a
    elif s >= cum_s[b - 1]:
        i = b - 2
    else:
        lo, hi = a, b - 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if cum_s[mid] <= s:
                lo = mid
            else:
                hi = mid
        i = lo
    seg = cum_s[i + 1] - cum_s[i]
    t = (s - cum_s[i]) / seg if seg > 1e-9 else 0.0
    return pts[i, 0] + t * (pts[i + 1, 0] - pts[i, 0]), pts[i, 1] + t * (pts[i + 1, 1] - pts[i, 1])


@njit(cache=True, nogil=True)
def lane_pose_kernel(pts, off, cum_s, lane, s, d):
    """(x, y, yaw) at arc length ``s`` with lateral offset ``d`` (m, + left) on ``lane``.

    The heading is the chord over +-1 m, so it turns smoothly across polyline vertices.
    """
    x, y = lane_point_kernel(pts, off, cum_s, lane, s)
    x0, y0 = lane_point_kernel(pts, off, cum_s, lane, s - 1.0)
    x1, y1 = lane_point_kernel(pts, off, cum_s, lane, s + 1.0)
    yaw = math.atan2(y1 - y0, x1 - x0)
    return x - d * math.sin(yaw), y + d * math.cos(yaw), yaw


@njit(cache=True, nogil=True)
def project_kernel(pts, off, cum_s, lane, x, y):
    """Closest arc length on ``lane`` to (x, y) and the distance to it."""
    best_d2 = 1e30
    best_s = 0.0
    for i in range(off[lane], off[lane + 1] - 1):
        ax, ay = pts[i, 0], pts[i, 1]
        bx, by = pts[i + 1, 0] - ax, pts[i + 1, 1] - ay
        den = bx * bx + by * by
        t = 0.0 if den < 1e-12 else min(1.0, max(0.0, ((x - ax) * bx + (y - ay) * by) / den))
        px, py = ax + t * bx - x, ay + t * by - y
        d2 = px * px + py * py
        if d2 < best_d2:
            best_d2 = d2
            best_s = cum_s[i] + t * (cum_s[i + 1] - cum_s[i])
    return best_s, math.sqrt(best_d2)


@njit(cache=True, nogil=True)
def choose_next_kernel(lane, is_ego, succ_off, succ, turnaround, rng):
    """A random successor of ``lane``; the ego takes the turnaround at a dead end; -1 if none."""
    n = succ_off[lane + 1] - succ_off[lane]
    if n == 0:
        return turnaround[lane] if is_ego else -1
    k = min(n - 1, int(rng_uniform_kernel(rng) * n))
    return succ[succ_off[lane] + k]


# ----------------------------------------------------------------------------------------------
# Agent step.
# ----------------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def step_agents_kernel(
    F, I, pts, off, cum_s, length, kind, speed, stop_s, yield_, left_nb, right_nb, succ_off, succ,  # noqa: E741 (I: int state table, as in the kernels)
    pred_off, pred, road_side, jay_dist, turnaround, turn, is_inter, bounds, lane_light,
    cross_elapsed, params, t_s, dt, rng, counts,
):  # fmt: skip
    """Advance every active agent by ``dt`` seconds (in place).

    Args:
        F, I: (C, NF) float64 / (C, NI) int64 agent state (see module docstring).
        pts .. is_inter: lane graph arrays of :class:`sim_sensors.maps.MapData`.
        bounds: (4,) world box; agents leaving it are removed.
        lane_light: (L,) uint8 LightState of each lane's signal now (0 = no signal).
        cross_elapsed: (L,) float64 seconds since the walk window of a crossing lane opened,
            -1 when pedestrians must not start, 1e9 for unsignalised crossings.
        params: (NP,) behaviour parameters (``P_*``).
        t_s, dt: sim time before the step and the step, s.
        rng: (1,) uint64 RNG state.
        counts: (NC,) int64 event counters (``C_*``), incremented.
    """
    C = F.shape[0]
    n_act = 0
    act = np.empty(C, np.int64)
    for i in range(C):
        if I[i, I_ACTIVE] != 0:
            act[n_act] = i
            n_act += 1
    a_max, b_comf, t_head, s0 = params[P_IDM_A], params[P_IDM_B], params[P_IDM_T], params[P_IDM_S0]
    acc = np.zeros(C)
    # ---- pass 1: longitudinal decisions (accelerations) from the current state ----
    for ii in range(n_act):
        i = act[ii]
        mode = I[i, I_MODE]
        cls = I[i, I_CLS]
        if mode != MODE_LANE or cls == CLS_PED or cls == CLS_ANIMAL:
            continue
        lane = I[i, I_LANE]
        nxt = I[i, I_NEXT]
        s = F[i, F_S]
        v = F[i, F_V]
        L = length[lane]
        half_i = 0.5 * F[i, F_LEN]
        xi, yi, ci, si = F[i, F_X], F[i, F_Y], math.cos(F[i, F_YAW]), math.sin(F[i, F_YAW])
        gap = 1e9
        vl = 0.0
        for jj in range(n_act):
            j = act[jj]
            if j == i:
                continue
            lj = I[j, I_LANE]
            mj = I[j, I_MODE]
            g = 1e9
            if mj == MODE_LANE and lj == lane and F[j, F_S] > s:
                g = F[j, F_S] - s - half_i - 0.5 * F[j, F_LEN]
            elif mj == MODE_LANE and nxt >= 0 and lj == nxt:
                g = L - s + F[j, F_S] - half_i - 0.5 * F[j, F_LEN]
            else:
                if mj == MODE_LANE and kind[lj] == K_WALK:
                    continue
                dx, dy = F[j, F_X] - xi, F[j, F_Y] - yi
                if abs(dx) > 30.0 or abs(dy) > 30.0:
                    continue
                along = dx * ci + dy * si
                lat = -dx * si + dy * ci
                if along <= 0.0 or along > 25.0:
                    continue
                if abs(lat) > 0.5 * (F[i, F_WID] + F[j, F_WID]) + 0.3:
                    continue
                cj = math.cos(F[j, F_YAW] - F[i, F_YAW])
                if mj == MODE_LANE and cj < -0.5 and I[j, I_CLS] != CLS_PED:
                    continue  # oncoming traffic on its own lane
                g = along - half_i - 0.5 * max(F[j, F_LEN], F[j, F_WID])
                if g < gap:
                    gap = g
                    vl = max(0.0, F[j, F_V] * cj)
                continue
            if g < gap:
                gap = g
                vl = F[j, F_V]
        # signals and stop lines
        if stop_s[lane] >= 0.0 and (lane_light[lane] == 1 or lane_light[lane] == 2):
            g = stop_s[lane] - (s + half_i)
            if g > -0.5:
                if lane_light[lane] == 1 or g > v * v / (2.0 * 3.0):
                    if g < gap:
                        gap = max(g, 0.0)
                        vl = 0.0
        # give way at roundabout entries
        if yield_[lane] and nxt >= 0 and L - s < 30.0:
            must_yield = False
            for pk in range(pred_off[nxt], pred_off[nxt + 1]):
                p = pred[pk]
                if p == lane:
                    continue
                for jj in range(n_act):
                    j = act[jj]
                    if I[j, I_MODE] != MODE_LANE:
                        continue
                    lj = I[j, I_LANE]
                    dist = -1.0
                    if lj == p:
                        dist = length[p] - F[j, F_S]
                    else:
                        for qk in range(pred_off[p], pred_off[p + 1]):
                            if pred[qk] == lj:
                                dist = length[p] + length[lj] - F[j, F_S]
                    if dist >= 0.0 and dist < 12.0 + 2.5 * F[j, F_V]:
                        must_yield = True
                for jj in range(n_act):
                    j = act[jj]
                    if I[j, I_MODE] == MODE_LANE and I[j, I_LANE] == nxt and F[j, F_S] < 5.0:
                        must_yield = True
            if must_yield:
                g = (L - 6.0) - (s + half_i)
                if g > -1.0 and g < gap:
                    gap = max(g, 0.0)
                    vl = 0.0
        v0 = min(F[i, F_V0], speed[lane])
        a_free = a_max * (1.0 - (v / max(v0, 0.1)) ** 4)
        a_i = a_free
        if gap < 1e8:
            s_star = s0 + max(0.0, v * t_head + v * (v - vl) / (2.0 * math.sqrt(a_max * b_comf)))
            a_i = a_free - a_max * (s_star / max(gap, 0.1)) ** 2
        if nxt >= 0 and v > speed[nxt]:  # slow down before a sharper/slower lane
            a_curve = (speed[nxt] ** 2 - v * v) / (2.0 * max(L - s, 1.0))
            a_i = min(a_i, a_curve)
        acc[i] = min(max(a_i, -9.0), a_max)

    # ---- pass 2: integrate ----
    for ii in range(n_act):
        i = act[ii]
        mode = I[i, I_MODE]
        cls = I[i, I_CLS]
        is_ego = (I[i, I_FLAGS] & FLAG_EGO) != 0
        x_old, y_old, yaw_old = F[i, F_X], F[i, F_Y], F[i, F_YAW]
        vx_old, vy_old = F[i, F_VX], F[i, F_VY]
        attr = I[i, I_ATTR] & ATTR_PHONE
        if mode == MODE_LANE:
            lane = I[i, I_LANE]
            nxt = I[i, I_NEXT]
            s = F[i, F_S]
            L = length[lane]
            if cls == CLS_PED:
                v = F[i, F_V0]
                if nxt >= 0 and kind[nxt] == K_CROSS and L - s < 0.6:
                    el = cross_elapsed[nxt]
                    react = 2.5 if (I[i, I_FLAGS] & FLAG_PHONE) != 0 else 0.8
                    go = el >= react
                    if el > 1e8:  # unsignalised: wait for a gap in traffic
                        mx, my = lane_point_kernel(pts, off, cum_s, nxt, 0.5 * length[nxt])
                        for jj in range(n_act):
                            j = act[jj]
                            cj = I[j, I_CLS]
                            if cj == CLS_PED or cj == CLS_ANIMAL or I[j, I_MODE] != MODE_LANE:
                                continue
                            ddx, ddy = F[j, F_X] - mx, F[j, F_Y] - my
                            if ddx * ddx + ddy * ddy < 400.0 and F[j, F_V] > 0.5:
                                go = False
                    if (I[i, I_FLAGS] & FLAG_JAYWALKER) != 0 and F[i, F_WAIT] > 6.0:
                        go = True  # impatient: crosses against the signal
                    if not go:
                        v = 0.0
                        s = min(s, L - 0.3)
                        F[i, F_WAIT] += dt
                    else:
                        F[i, F_WAIT] = 0.0
                elif (
                    kind[lane] == K_WALK
                    and road_side[lane] != 0.0
                    and (I[i, I_FLAGS] & FLAG_JAYWALKER) != 0
                    and 5.0 < s < L - 5.0
                    and rng_uniform_kernel(rng) < params[P_JAY_RATE] * dt
                ):
                    I[i, I_MODE] = MODE_FREE
                    F[i, F_FREE] = jay_dist[lane]
                    F[i, F_YAW] = wrap_kernel(F[i, F_YAW] + road_side[lane] * 0.5 * math.pi)
                    F[i, F_V] = 1.2 * F[i, F_V0]
                    counts[C_JAYWALKS] += 1
                    continue
                F[i, F_V] = v
                F[i, F_A] = 0.0
            else:
                v = max(0.0, F[i, F_V] + acc[i] * dt)
                F[i, F_A] = (v - F[i, F_V]) / dt
                F[i, F_V] = v
                # discretionary lane change when blocked by a slower leader
                if (
                    (cls == CLS_CAR or cls == CLS_TRUCK)
                    and kind[lane] == K_VEH
                    and not is_inter[lane]
                    and F[i, F_LCT] <= 0.0
                    and L - s > 50.0
                    and v < 0.8 * min(F[i, F_V0], speed[lane])
                    and acc[i] < 0.0
                    and rng_uniform_kernel(rng) < params[P_LC_RATE] * dt
                ):
                    first = left_nb[lane] if rng_uniform_kernel(rng) < 0.5 else right_nb[lane]
                    for attempt in range(2):
                        tgt = (
                            first
                            if attempt == 0
                            else (right_nb[lane] if first == left_nb[lane] else left_nb[lane])
                        )
                        if tgt < 0:
                            continue
                        safe = True
                        for jj in range(n_act):
                            j = act[jj]
                            if (
                                I[j, I_MODE] == MODE_LANE
                                and I[j, I_LANE] == tgt
                                and abs(F[j, F_S] - s) < 15.0 + 1.5 * v
                            ):
                                safe = False
                        if safe:
                            xo, yo, _ = lane_pose_kernel(pts, off, cum_s, lane, s, F[i, F_D])
                            xn, yn, yn_yaw = lane_pose_kernel(pts, off, cum_s, tgt, s, 0.0)
                            d = -(xo - xn) * math.sin(yn_yaw) + (yo - yn) * math.cos(yn_yaw)
                            lane = tgt
                            I[i, I_LANE] = tgt
                            F[i, F_D] = d
                            F[i, F_LCT] = 3.0
                            F[i, F_LCD] = d / 3.0
                            nxt = choose_next_kernel(lane, is_ego, succ_off, succ, turnaround, rng)
                            I[i, I_NEXT] = nxt
                            L = length[lane]
                            counts[C_LANE_CHANGES] += 1
                            break
            s += F[i, F_V] * dt
            if F[i, F_LCT] > 0.0:
                F[i, F_LCT] -= dt
                F[i, F_D] -= F[i, F_LCD] * dt
                if F[i, F_LCT] <= 0.0:
                    F[i, F_D] = 0.0
            gone = False
            while s >= L:
                if nxt < 0:
                    if is_ego:
                        s = L
                        F[i, F_V] = 0.0
                        break
                    gone = True
                    break
                s -= L
                lane = nxt
                L = length[lane]
                nxt = choose_next_kernel(lane, is_ego, succ_off, succ, turnaround, rng)
            if gone:
                I[i, I_ACTIVE] = 0
                counts[C_LEFT_MAP] += 1
                continue
            I[i, I_LANE] = lane
            I[i, I_NEXT] = nxt
            F[i, F_S] = s
            x, y, yaw = lane_pose_kernel(pts, off, cum_s, lane, s, F[i, F_D])
            F[i, F_X], F[i, F_Y], F[i, F_YAW] = x, y, yaw
            if cls != CLS_PED:
                if F[i, F_A] < -0.5 or F[i, F_V] < 0.3:
                    attr |= ATTR_BRAKE
                sig = 0
                if is_inter[lane]:
                    sig = turn[lane]
                elif nxt >= 0 and L - s < 40.0:
                    sig = turn[nxt]
                if F[i, F_LCT] > 0.0:
                    sig = -1 if F[i, F_D] < 0.0 else 1
                if sig < 0:
                    attr |= ATTR_LEFT
                elif sig > 0:
                    attr |= ATTR_RIGHT
        elif mode == MODE_FREE:
            v = F[i, F_V]
            F[i, F_X] += v * math.cos(F[i, F_YAW]) * dt
            F[i, F_Y] += v * math.sin(F[i, F_YAW]) * dt
            F[i, F_FREE] -= v * dt
            if F[i, F_FREE] <= 0.0:  # reached the far sidewalk: rejoin the nearest walk lane
                best, best_s, best_d = -1, 0.0, 1e30
                for ln in range(len(length)):
                    if kind[ln] != K_WALK:
                        continue
                    sp, dd = project_kernel(pts, off, cum_s, ln, F[i, F_X], F[i, F_Y])
                    if dd < best_d - 1e-6:
                        best, best_s, best_d = ln, sp, dd
                if best < 0:
                    I[i, I_ACTIVE] = 0
                    continue
                I[i, I_MODE] = MODE_LANE
                I[i, I_LANE] = best
                I[i, I_NEXT] = choose_next_kernel(best, False, succ_off, succ, turnaround, rng)
                F[i, F_S] = best_s
                F[i, F_V] = F[i, F_V0]
                x, y, yaw = lane_pose_kernel(pts, off, cum_s, best, best_s, 0.0)
                F[i, F_X], F[i, F_Y], F[i, F_YAW] = x, y, yaw
        else:  # MODE_ANIMAL: wander around a home point near the sidewalk
            F[i, F_TIMER] -= dt
            if F[i, F_TIMER] <= 0.0:
                if rng_uniform_kernel(rng) < 0.4:
                    F[i, F_V] = 0.0
                    F[i, F_TIMER] = 1.0 + 3.0 * rng_uniform_kernel(rng)
                else:
                    F[i, F_V] = F[i, F_V0] * (0.5 + rng_uniform_kernel(rng))
                    F[i, F_TIMER] = 2.0 + 4.0 * rng_uniform_kernel(rng)
                    F[i, F_YAW] = wrap_kernel(F[i, F_YAW] + 0.8 * rng_normal_kernel(rng))
            hx, hy = F[i, F_HOMEX] - F[i, F_X], F[i, F_HOMEY] - F[i, F_Y]
            if hx * hx + hy * hy > 100.0:
                err = wrap_kernel(math.atan2(hy, hx) - F[i, F_YAW])
                F[i, F_YAW] = wrap_kernel(F[i, F_YAW] + max(-1.5 * dt, min(1.5 * dt, err)))
            F[i, F_YAW] = wrap_kernel(F[i, F_YAW] + 0.3 * math.sqrt(dt) * rng_normal_kernel(rng))
            F[i, F_X] += F[i, F_V] * math.cos(F[i, F_YAW]) * dt
            F[i, F_Y] += F[i, F_V] * math.sin(F[i, F_YAW]) * dt
        # derived kinematics
        yaw = F[i, F_YAW]
        vx, vy = F[i, F_V] * math.cos(yaw), F[i, F_V] * math.sin(yaw)
        if mode == MODE_LANE and F[i, F_LCT] > 0.0:
            vx += F[i, F_LCD] * math.sin(yaw)
            vy -= F[i, F_LCD] * math.cos(yaw)
        F[i, F_AX], F[i, F_AY] = (vx - vx_old) / dt, (vy - vy_old) / dt
        F[i, F_VX], F[i, F_VY] = vx, vy
        F[i, F_YAWRATE] = wrap_kernel(yaw - yaw_old) / dt
        I[i, I_ATTR] = attr
        if abs(F[i, F_X] - x_old) + abs(F[i, F_Y] - y_old) > 20.0:  # a jump: do not report it as motion
            F[i, F_AX], F[i, F_AY], F[i, F_YAWRATE] = 0.0, 0.0, 0.0
        if not is_ego:
            if (
                F[i, F_X] < bounds[0]
                or F[i, F_X] > bounds[2]
                or F[i, F_Y] < bounds[1]
                or F[i, F_Y] > bounds[3]
            ):
                I[i, I_ACTIVE] = 0
                counts[C_OUT_OF_BOUNDS] += 1
                continue
            if cls != CLS_PED and cls != CLS_ANIMAL:
                if F[i, F_V] < 0.1:
                    F[i, F_WAIT] += dt
                    if F[i, F_WAIT] > params[P_STUCK]:
                        I[i, I_ACTIVE] = 0
                        counts[C_STUCK] += 1
                else:
                    F[i, F_WAIT] = 0.0


# ----------------------------------------------------------------------------------------------
# Sensor scans.
# ----------------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _ray_box(ox, oy, dx, dy, cx, cy, c, s, hl, hw):
    """Distance along a unit ray to a 2-D oriented box, or -1 if missed / origin inside."""
    rx, ry = ox - cx, oy - cy
    px = c * rx + s * ry
    py = -s * rx + c * ry
    qx = c * dx + s * dy
    qy = -s * dx + c * dy
    tmin, tmax = -1e30, 1e30
    if abs(qx) < 1e-12:
        if abs(px) > hl:
            return -1.0
    else:
        t1, t2 = (-hl - px) / qx, (hl - px) / qx
        tmin = max(tmin, min(t1, t2))
        tmax = min(tmax, max(t1, t2))
    if abs(qy) < 1e-12:
        if abs(py) > hw:
            return -1.0
    else:
        t1, t2 = (-hw - py) / qy, (hw - py) / qy
        tmin = max(tmin, min(t1, t2))
        tmax = min(tmax, max(t1, t2))
    if tmax < tmin or tmin <= 0.0:
        return -1.0
    return tmin


@njit(cache=True, nogil=True)
def scan_kernel(sx, sy, syaw, hfov, rmax, res, AG, depth, owner, vis_bins, tot_bins, bin_lo, bin_hi):
    """Angular depth buffer of one sensor: which object each azimuth bin sees first.

    Args:
        sx, sy, syaw: sensor pose in the world frame (m, rad).
        hfov, rmax, res: field of view (rad), range (m), bin width (rad).
        AG: (M, NA) packed agents (the ego row occludes like any box).
        depth: (B,) float64 out, distance of the first hit per bin (rmax+1 if none).
        owner: (B,) int64 out, row of AG hit first per bin (-1 none).
        vis_bins / tot_bins: (M,) int64 out, bins where the object is first / bins it spans in FOV.
        bin_lo / bin_hi: (M,) int64 out, first / last bin spanned (-1 if outside the FOV).
    """
    B = depth.shape[0]
    M = AG.shape[0]
    for b in range(B):
        depth[b] = rmax + 1.0
        owner[b] = -1
    half = 0.5 * hfov
    for j in range(M):
        vis_bins[j] = 0
        tot_bins[j] = 0
        bin_lo[j] = -1
        bin_hi[j] = -1
        cx, cy = AG[j, A_X], AG[j, A_Y]
        hl, hw = 0.5 * AG[j, A_L], 0.5 * AG[j, A_W]
        dxc, dyc = cx - sx, cy - sy
        dc = math.sqrt(dxc * dxc + dyc * dyc)
        if dc - math.sqrt(hl * hl + hw * hw) > rmax:
            continue
        az_c = wrap_kernel(math.atan2(dyc, dxc) - syaw)
        c, s = math.cos(AG[j, A_YAW]), math.sin(AG[j, A_YAW])
        amin, amax = 1e9, -1e9
        for k in range(4):
            ex = hl if (k & 1) == 0 else -hl
            ey = hw if (k & 2) == 0 else -hw
            px = cx + c * ex - s * ey - sx
            py = cy + s * ex + c * ey - sy
            a = az_c + wrap_kernel(math.atan2(py, px) - syaw - az_c)
            amin = min(amin, a)
            amax = max(amax, a)
        if amax < -half or amin > half:
            continue
        b0 = max(0, int(math.floor((amin + half) / res)))
        b1 = min(B - 1, int(math.floor((amax + half) / res)))
        if b1 < b0:
            continue
        bin_lo[j] = b0
        bin_hi[j] = b1
        for b in range(b0, b1 + 1):
            az = syaw - half + (b + 0.5) * res
            t = _ray_box(sx, sy, math.cos(az), math.sin(az), cx, cy, c, s, hl, hw)
            if t > 0.0:
                tot_bins[j] += 1
                if t < depth[b]:
                    depth[b] = t
                    owner[b] = j
    for b in range(B):
        if owner[b] >= 0 and depth[b] <= rmax:
            vis_bins[owner[b]] += 1


@njit(cache=True, nogil=True)
def _confuse_class(cls, rng):
    """A plausible wrong class for ``cls``."""
    u = rng_uniform_kernel(rng)
    if cls == CLS_CAR:
        return CLS_TRUCK if u < 0.7 else CLS_BUS
    if cls == CLS_TRUCK:
        return CLS_BUS if u < 0.5 else CLS_CAR
    if cls == CLS_BUS:
        return CLS_TRUCK
    if cls == CLS_PED:
        return CLS_CYCLIST if u < 0.7 else CLS_ANIMAL
    if cls == CLS_CYCLIST:
        return CLS_PED
    return CLS_PED


@njit(cache=True, nogil=True)
def project_box_kernel(sx, sy, syaw, sz, f_px, cx_px, cy_px, w_px, h_px, ax, ay, ayaw, al, aw, ah):
    """Noise-free pixel box ``(u0, v0, u1, v1)`` of a 3-D box in a pinhole camera.

    The camera looks along the sensor x axis (u right = -y, v down = -z). Corners closer than
    0.3 m to the image plane are clamped to it. Returns u1 <= u0 when nothing is in the image.
    """
    c, s = math.cos(ayaw), math.sin(ayaw)
    cs, ss = math.cos(syaw), math.sin(syaw)
    u0, v0, u1, v1 = 1e9, 1e9, -1e9, -1e9
    for k in range(8):
        ex = 0.5 * al if (k & 1) == 0 else -0.5 * al
        ey = 0.5 * aw if (k & 2) == 0 else -0.5 * aw
        ez = ah if (k & 4) == 0 else 0.0
        wx = ax + c * ex - s * ey - sx
        wy = ay + s * ex + c * ey - sy
        xs = cs * wx + ss * wy
        ys = -ss * wx + cs * wy
        zs = ez - sz
        xs = max(xs, 0.3)
        u = cx_px - f_px * ys / xs
        v = cy_px - f_px * zs / xs
        u0, u1 = min(u0, u), max(u1, u)
        v0, v1 = min(v0, v), max(v1, v)
    return max(u0, 0.0), max(v0, 0.0), min(u1, w_px), min(v1, h_px)


@njit(cache=True, nogil=True)
def image_frame_kernel(
    poses, sp, AG, heat_k, thermal, night, rng, depth, owner, vis_bins, tot_bins, bin_lo, bin_hi,
    out_box, out_cls, out_conf, out_attr, out_heat, counts,
):  # fmt: skip
    """Camera (``thermal`` False) or LWIR (True) detections of every corner sensor.

    Args:
        poses: (S, 3) world ``[x, y, yaw]`` of each sensor.
        sp: spec vector ``[hfov, range, res, height, min_frac, p_det, fa_rate, px_sigma, w_px,
            h_px, p_class, night_range, night_pd, night_px]``.
        AG: (M, NA) packed agents at capture time (ego row last, never reported).
        heat_k: (7,) thermal contrast per class (K).
        out_*: (S * cap, ...) buffers; sensor k writes rows ``[k*cap, k*cap + counts[k])``.
    """
    S = poses.shape[0]
    cap = out_cls.shape[0] // S
    hfov, rmax, res, sz = sp[0], sp[1], sp[2], sp[3]
    min_frac, pd, fa, px_sig = sp[4], sp[5], sp[6], sp[7]
    w_px, h_px, p_cls = sp[8], sp[9], sp[10]
    min_px = 8.0 if thermal else 12.0
    if night and not thermal:
        rmax *= sp[11]
        pd *= sp[12]
        px_sig *= sp[13]
        p_cls *= 0.9
        min_px *= 2.5
    f_px = 0.5 * w_px / math.tan(0.5 * hfov)
    for k in range(S):
        n = 0
        sx, sy, syaw = poses[k, 0], poses[k, 1], poses[k, 2]
        scan_kernel(sx, sy, syaw, hfov, rmax, res, AG, depth, owner, vis_bins, tot_bins, bin_lo, bin_hi)
        for j in range(AG.shape[0]):
            if (int(AG[j, A_FLAGS]) & FLAG_EGO) != 0 or tot_bins[j] == 0 or n >= cap:
                continue
            frac = vis_bins[j] / tot_bins[j]
            if frac < min_frac:
                continue
            cls = int(AG[j, A_CLS])
            p = pd * min(1.0, frac / 0.5)
            heat = 0.0
            if thermal:
                heat = heat_k[cls] + rng_normal_kernel(rng)
                p *= min(1.0, max(heat, 0.0) / 6.0)
            u0, v0, u1, v1 = project_box_kernel(
                sx, sy, syaw, sz, f_px, 0.5 * w_px, 0.5 * h_px, w_px, h_px,
                AG[j, A_X], AG[j, A_Y], AG[j, A_YAW], AG[j, A_L], AG[j, A_W], AG[j, A_H],
            )  # fmt: skip
            if max(u1 - u0, v1 - v0) < min_px or u1 - u0 < 2.0 or v1 - v0 < 2.0:
                continue
            dxc, dyc = AG[j, A_X] - sx, AG[j, A_Y] - sy
            r = math.sqrt(dxc * dxc + dyc * dyc)
            if r > rmax or rng_uniform_kernel(rng) >= p:
                continue
            row = k * cap + n
            b0 = u0 + px_sig * rng_normal_kernel(rng)
            b1 = v0 + px_sig * rng_normal_kernel(rng)
            b2 = u1 + px_sig * rng_normal_kernel(rng)
            b3 = v1 + px_sig * rng_normal_kernel(rng)
            out_box[row, 0], out_box[row, 2] = min(b0, b2), max(b0, b2)
            out_box[row, 1], out_box[row, 3] = min(b1, b3), max(b1, b3)
            if thermal:
                warm = heat > 6.5
                true_warm = cls == CLS_PED or cls == CLS_CYCLIST or cls == CLS_ANIMAL
                if warm == true_warm and rng_uniform_kernel(rng) < p_cls:
                    out_cls[row] = cls
                    out_conf[row] = 0.55 + 0.4 * rng_uniform_kernel(rng)
                else:
                    out_cls[row] = (
                        _confuse_class(cls, rng) if warm == true_warm else (CLS_PED if warm else CLS_CAR)
                    )
                    out_conf[row] = 0.3 + 0.3 * rng_uniform_kernel(rng)
                out_attr[row] = 0
                out_heat[row] = heat
            else:
                if rng_uniform_kernel(rng) < p_cls:
                    out_cls[row] = cls
                    out_conf[row] = 0.6 + 0.35 * rng_uniform_kernel(rng)
                else:
                    out_cls[row] = _confuse_class(cls, rng)
                    out_conf[row] = 0.3 + 0.3 * rng_uniform_kernel(rng)
                true_attr = int(AG[j, A_ATTR])
                attr = 0
                if (true_attr & ATTR_PHONE) != 0 and r < 30.0 and rng_uniform_kernel(rng) < 0.8:
                    attr |= ATTR_PHONE
                # brake lights face backwards: visible when the sensor is behind the object
                behind = dxc * math.cos(AG[j, A_YAW]) + dyc * math.sin(AG[j, A_YAW]) > 0.0
                if (true_attr & ATTR_BRAKE) != 0 and behind and r < 80.0 and rng_uniform_kernel(rng) < 0.95:
                    attr |= ATTR_BRAKE
                if (true_attr & ATTR_LEFT) != 0 and r < 80.0 and rng_uniform_kernel(rng) < 0.9:
                    attr |= ATTR_LEFT
                if (true_attr & ATTR_RIGHT) != 0 and r < 80.0 and rng_uniform_kernel(rng) < 0.9:
                    attr |= ATTR_RIGHT
                out_attr[row] = attr
                out_heat[row] = 0.0
            n += 1
        for _ in range(rng_poisson_kernel(rng, fa)):
            if n >= cap:
                break
            row = k * cap + n
            bw = 15.0 + 80.0 * rng_uniform_kernel(rng)
            bh = 15.0 + 80.0 * rng_uniform_kernel(rng)
            u = rng_uniform_kernel(rng) * (w_px - bw)
            v = rng_uniform_kernel(rng) * (h_px - bh)
            out_box[row, 0], out_box[row, 1], out_box[row, 2], out_box[row, 3] = u, v, u + bw, v + bh
            out_cls[row] = 1 + int(rng_uniform_kernel(rng) * 6.0) % 6
            out_conf[row] = 0.3 + 0.2 * rng_uniform_kernel(rng)
            out_attr[row] = 0
            out_heat[row] = 7.0 * rng_uniform_kernel(rng) if thermal else 0.0
            n += 1
        counts[k] = n


@njit(cache=True, nogil=True)
def lidar_frame_kernel(
    poses, sp, AG, rng, depth, owner, vis_bins, tot_bins, bin_lo, bin_hi,
    out_center, out_size, out_yaw, out_cls, out_score, counts, out_pts, pt_counts,
):  # fmt: skip
    """LiDAR boxes and sparse points (sensor frame) of every corner sensor.

    Args:
        poses: (S, 3) world ``[x, y, yaw]`` of each sensor.
        sp: ``[hfov, range, res, height, min_frac, p_det, fa_rate, pos_sigma, size_sigma,
            yaw_sigma, p_class, point_sigma, n_channels]``.
        out_*: box buffers (S * cap, ...); out_pts: (S * pcap, 3) point buffer.
        counts / pt_counts: (S,) int64 out, boxes / points written per sensor.
    """
    S = poses.shape[0]
    cap = out_cls.shape[0] // S
    pcap = out_pts.shape[0] // S
    hfov, rmax, res, sz = sp[0], sp[1], sp[2], sp[3]
    min_frac, pd, fa, pos_sig, size_sig, yaw_sig, p_cls, pt_sig = (
        sp[4],
        sp[5],
        sp[6],
        sp[7],
        sp[8],
        sp[9],
        sp[10],
        sp[11],
    )
    n_ch = int(sp[12])
    half = 0.5 * hfov
    for k in range(S):
        sx, sy, syaw = poses[k, 0], poses[k, 1], poses[k, 2]
        cs, ss = math.cos(syaw), math.sin(syaw)
        scan_kernel(sx, sy, syaw, hfov, rmax, res, AG, depth, owner, vis_bins, tot_bins, bin_lo, bin_hi)
        n = 0
        for j in range(AG.shape[0]):
            if (int(AG[j, A_FLAGS]) & FLAG_EGO) != 0 or tot_bins[j] == 0 or n >= cap:
                continue
            frac = vis_bins[j] / tot_bins[j]
            if frac < min_frac or vis_bins[j] < 2:
                continue
            if rng_uniform_kernel(rng) >= pd * min(1.0, vis_bins[j] / 4.0):
                continue
            row = k * cap + n
            wx, wy = AG[j, A_X] - sx, AG[j, A_Y] - sy
            out_center[row, 0] = cs * wx + ss * wy + pos_sig * rng_normal_kernel(rng)
            out_center[row, 1] = -ss * wx + cs * wy + pos_sig * rng_normal_kernel(rng)
            out_center[row, 2] = 0.5 * AG[j, A_H] - sz + pos_sig * rng_normal_kernel(rng)
            out_size[row, 0] = max(0.1, AG[j, A_L] + size_sig * rng_normal_kernel(rng))
            out_size[row, 1] = max(0.1, AG[j, A_W] + size_sig * rng_normal_kernel(rng))
            out_size[row, 2] = max(0.1, AG[j, A_H] + size_sig * rng_normal_kernel(rng))
            yaw = AG[j, A_YAW] - syaw + yaw_sig * rng_normal_kernel(rng)
            if rng_uniform_kernel(rng) < 0.02:
                yaw += math.pi  # heading ambiguity of box detectors
            out_yaw[row] = wrap_kernel(yaw)
            cls = int(AG[j, A_CLS])
            if rng_uniform_kernel(rng) < p_cls:
                out_cls[row] = cls
                out_score[row] = 0.6 + 0.35 * rng_uniform_kernel(rng)
            else:
                out_cls[row] = _confuse_class(cls, rng)
                out_score[row] = 0.3 + 0.3 * rng_uniform_kernel(rng)
            n += 1
        for _ in range(rng_poisson_kernel(rng, fa)):
            if n >= cap:
                break
            row = k * cap + n
            r = 5.0 + (rmax - 5.0) * rng_uniform_kernel(rng)
            az = (rng_uniform_kernel(rng) - 0.5) * hfov
            out_center[row, 0], out_center[row, 1], out_center[row, 2] = (
                r * math.cos(az),
                r * math.sin(az),
                0.5 - sz,
            )
            out_size[row, 0], out_size[row, 1], out_size[row, 2] = 0.8, 0.8, 1.0
            out_yaw[row] = (rng_uniform_kernel(rng) - 0.5) * 2.0 * math.pi
            out_cls[row] = CLS_PED if rng_uniform_kernel(rng) < 0.5 else CLS_CAR
            out_score[row] = 0.2 + 0.2 * rng_uniform_kernel(rng)
            n += 1
        counts[k] = n
        m = 0
        for b in range(depth.shape[0]):
            j = owner[b]
            if j < 0 or depth[b] > rmax or (int(AG[j, A_FLAGS]) & FLAG_EGO) != 0:
                continue
            az = -half + (b + 0.5) * res
            ca, sa = math.cos(az), math.sin(az)
            for ch in range(n_ch):
                if m >= pcap:
                    break
                r = depth[b] + pt_sig * rng_normal_kernel(rng)
                row = k * pcap + m
                out_pts[row, 0] = r * ca
                out_pts[row, 1] = r * sa
                out_pts[row, 2] = AG[j, A_H] * (ch + 0.5) / n_ch - sz
                m += 1
        pt_counts[k] = m


@njit(cache=True, nogil=True)
def radar_frame_kernel(
    poses, sp, AG, rcs_db, n_returns, ego_vx, ego_vy, rng, depth, owner, vis_bins, tot_bins,
    bin_lo, bin_hi, out, counts,
):  # fmt: skip
    """Radar returns (sensor frame) of every corner sensor.

    Args:
        poses: (S, 3) world ``[x, y, yaw]`` of each sensor.
        sp: ``[hfov, range, res, height, min_frac, p_det, clutter_rate, range_sigma, az_sigma,
            rr_sigma, rcs_sigma]``.
        rcs_db: (7,) mean RCS per class (dBsm); n_returns: (7,) max returns per class.
        ego_vx, ego_vy: ego (sensor) velocity in the world frame, m/s.
        out: (S * cap, 4) rows ``[range_m, azimuth_rad, range_rate_mps, rcs_dbsm]``.
    """
    S = poses.shape[0]
    cap = out.shape[0] // S
    hfov, rmax, res = sp[0], sp[1], sp[2]
    min_frac, pd, fa, r_sig, az_sig, rr_sig, rcs_sig = sp[4], sp[5], sp[6], sp[7], sp[8], sp[9], sp[10]
    half = 0.5 * hfov
    for k in range(S):
        sx, sy, syaw = poses[k, 0], poses[k, 1], poses[k, 2]
        scan_kernel(sx, sy, syaw, hfov, rmax, res, AG, depth, owner, vis_bins, tot_bins, bin_lo, bin_hi)
        n = 0
        for j in range(AG.shape[0]):
            if (int(AG[j, A_FLAGS]) & FLAG_EGO) != 0 or tot_bins[j] == 0 or vis_bins[j] == 0:
                continue
            if vis_bins[j] / tot_bins[j] < min_frac or rng_uniform_kernel(rng) >= pd:
                continue
            cls = int(AG[j, A_CLS])
            n_ret = 1 + int(rng_uniform_kernel(rng) * n_returns[cls])
            n_ret = min(n_ret, vis_bins[j])
            base_rcs = rcs_db[cls] + rcs_sig * rng_normal_kernel(rng)
            for _ in range(n_ret):
                if n >= cap:
                    break
                b = -1
                for _try in range(8):
                    cand = bin_lo[j] + int(rng_uniform_kernel(rng) * (bin_hi[j] - bin_lo[j] + 1))
                    if owner[cand] == j:
                        b = cand
                        break
                if b < 0:
                    continue
                az = -half + (b + 0.5) * res + (rng_uniform_kernel(rng) - 0.5) * res
                wa = syaw + az
                rel_vx, rel_vy = AG[j, A_VX] - ego_vx, AG[j, A_VY] - ego_vy
                rr = rel_vx * math.cos(wa) + rel_vy * math.sin(wa)
                row = k * cap + n
                out[row, 0] = max(0.1, depth[b] + r_sig * rng_normal_kernel(rng))
                out[row, 1] = az + az_sig * rng_normal_kernel(rng)
                out[row, 2] = rr + rr_sig * rng_normal_kernel(rng)
                out[row, 3] = base_rcs + 1.0 * rng_normal_kernel(rng)
                n += 1
        for _ in range(rng_poisson_kernel(rng, fa)):
            if n >= cap:
                break
            row = k * cap + n
            az = (rng_uniform_kernel(rng) - 0.5) * hfov
            wa = syaw + az
            out[row, 0] = 2.0 + (rmax - 2.0) * rng_uniform_kernel(rng)
            out[row, 1] = az
            # static clutter: closes at the ego's own speed along the ray
            out[row, 2] = -(ego_vx * math.cos(wa) + ego_vy * math.sin(wa)) + rr_sig * rng_normal_kernel(rng)
            out[row, 3] = -10.0 + 5.0 * rng_normal_kernel(rng)
            n += 1
        counts[k] = n
