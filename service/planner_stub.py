"""Planner stub: exercises every interface a real planner uses, without driving.

Per received :class:`~prescient.bus.messages.Predictions` it measures end-to-end latency (publish time of
the newest sensor input -> now, same host, monotonic clock), builds candidate ego plans from the
ego route (keep speed, slow down, stop), scores each against the predicted trajectories
(probability-weighted minimum distance and time to collision) and publishes a
:class:`~prescient.bus.messages.PlannerStatus`. Every ``conditional_every`` predictions it asks the service
for predictions conditioned on its candidates and scores those instead.

The scoring functions are pure (arrays in, arrays out) and tested on their own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from prescient.bus import messages as m

log = logging.getLogger(__name__)

COLLISION_RADIUS_M = 2.5  # ego and agent centres closer than this count as a collision
SAFE_DISTANCE_M = 4.0  # a plan is acceptable if its expected minimum distance stays above this
SAFE_TTC_S = 3.0
PLAN_NAMES = ("keep_speed", "slow_down", "stop")
# Older predictions describe a scene that has moved on (at 15 m/s, 7.5 m): the planner does not
# act on them and says so on planner.status. The same bound raises the "no predictions" alarm.
MAX_PREDICTION_AGE_S = 0.5


def candidate_plans(
    ego: m.EgoState, steps: int = m.PRED_HORIZON_STEPS, dt_s: float = m.PRED_DT_S
) -> np.ndarray:
    """Three candidate plans along the ego route.

    Args:
        ego: current ego state; its ``plan_xy_m`` route (world) is followed, or a straight line
            along the heading when the route is empty.

    Returns:
        (3, T, 2) float32 world positions at ``dt_s`` steps: keep speed, decelerate at 1.5 m/s^2
        to half speed, and stop at 3 m/s^2.
    """
    x, y, yaw = (float(v) for v in ego.pose)
    v0 = float(np.hypot(*ego.velocity_mps))
    t = np.arange(1, steps + 1, dtype=np.float64) * dt_s
    s_keep = v0 * t
    v_half = max(v0 * 0.5, 0.0)
    t_half = (v0 - v_half) / 1.5
    s_slow = np.where(
        t < t_half, v0 * t - 0.75 * t**2, v0 * t_half - 0.75 * t_half**2 + v_half * (t - t_half)
    )
    t_stop = v0 / 3.0
    s_stop = np.where(t < t_stop, v0 * t - 1.5 * t**2, v0 * t_stop - 1.5 * t_stop**2)
    route = np.asarray(ego.plan_xy_m, dtype=np.float64)
    if len(route) < 2:
        route = np.array([[x, y], [x + 1000.0 * np.cos(yaw), y + 1000.0 * np.sin(yaw)]])
    else:
        route = np.vstack([[x, y], route])
    seg = np.diff(route, axis=0)
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(seg[:, 0], seg[:, 1]))])
    plans = np.stack(
        [
            np.stack([np.interp(s, arc, route[:, 0]), np.interp(s, arc, route[:, 1])], -1)
            for s in (s_keep, s_slow, s_stop)
        ]
    )
    return plans.astype(np.float32)


def score_plans(
    plans_xy_m: np.ndarray, traj_m: np.ndarray, probs: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Score candidate plans against multi-modal predictions.

    Args:
        plans_xy_m: (B, T, 2) ego plans, world frame.
        traj_m: (N, K, T', 2) predicted agent trajectories, world frame, same time grid
            (the shorter of T and T' is used).
        probs: (N, K) mode probabilities.

    Returns:
        expected_min_dist_m: (B,) min over agents of sum_k p_k * min_t |ego_t - agent_k,t|
            (inf with no agents).
        ttc_s: (B,) earliest time any mode with p >= 0.05 comes within ``COLLISION_RADIUS_M``
            (inf if none).
    """
    b = plans_xy_m.shape[0]
    if traj_m.shape[0] == 0:
        return np.full(b, np.inf), np.full(b, np.inf)
    t = min(plans_xy_m.shape[1], traj_m.shape[2])
    # (B, N, K, T) distances between the ego on plan b and agent n's mode k at each step
    d = np.linalg.norm(plans_xy_m[:, None, None, :t, :] - traj_m[None, :, :, :t, :], axis=-1)
    expected_min = (d.min(axis=-1) * probs[None]).sum(-1).min(-1)
    hit = (d < COLLISION_RADIUS_M) & (probs[None, :, :, None] >= 0.05)
    first = np.where(hit.any(-1), hit.argmax(-1), np.iinfo(np.int64).max)  # (B, N, K)
    first_step = first.reshape(b, -1).min(-1)
    ttc = np.where(first_step == np.iinfo(np.int64).max, np.inf, (first_step + 1) * m.PRED_DT_S)
    return expected_min, ttc


def choose_plan(expected_min_dist_m: np.ndarray, ttc_s: np.ndarray) -> int:
    """Index of the first (fastest) plan that keeps distance and TTC margins; else the last (stop)."""
    ok = (expected_min_dist_m >= SAFE_DISTANCE_M) & (ttc_s >= SAFE_TTC_S)
    return int(np.argmax(ok)) if ok.any() else len(expected_min_dist_m) - 1


@dataclass
class Verdict:
    chosen_plan: int
    min_distance_m: float
    min_ttc_s: float
    status: str


def judge(plans_xy_m: np.ndarray, traj_m: np.ndarray, probs: np.ndarray, degraded: bool) -> Verdict:
    """Score, choose, and summarise as a status string."""
    dist, ttc = score_plans(plans_xy_m, traj_m, probs)
    k = choose_plan(dist, ttc)
    name = PLAN_NAMES[k] if k < len(PLAN_NAMES) else f"plan{k}"
    status = f"{name}{' (degraded predictions)' if degraded else ''}"
    big = 1e6  # the wire carries finite floats only
    return Verdict(k, float(min(dist[k], big)), float(min(ttc[k], big)), status)


def stale_verdict(age_s: float, n_plans: int, missing: bool = False) -> Verdict:
    """The verdict when predictions are too old or missing: the last (safest) plan, flagged.

    Args:
        age_s: age of the newest prediction (or time since the last one arrived), s.
        n_plans: number of candidate plans (the last one is ``stop``).
        missing: none arrived (else a stale one did).
    """
    k = n_plans - 1
    name = PLAN_NAMES[k] if k < len(PLAN_NAMES) else f"plan{k}"
    label = f"no predictions for {age_s:.1f} s" if missing else f"stale predictions ({age_s:.1f} s old)"
    return Verdict(k, 0.0, 0.0, f"{name} ({label}; not acted on)")
