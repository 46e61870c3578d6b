"""Planner stub scoring: candidate plans, distances, TTC and the choice."""

from __future__ import annotations

import numpy as np

from prescient.bus import messages as m
from prescient.service.planner_stub import candidate_plans, choose_plan, judge, score_plans


def _ego(speed_mps: float = 10.0, route: np.ndarray | None = None) -> m.EgoState:
    return m.empty(
        m.EgoState,
        m.TOPIC_EGO,
        pose=np.array([0.0, 0.0, 0.0]),
        velocity_mps=np.array([speed_mps, 0.0], np.float32),
        size_lwh_m=np.array([4.5, 1.9, 1.5], np.float32),
        plan_xy_m=np.zeros((0, 2), np.float32) if route is None else route.astype(np.float32),
    )


def test_candidate_plans_keep_slow_stop_distances() -> None:
    plans = candidate_plans(_ego(10.0))
    assert plans.shape == (3, m.PRED_HORIZON_STEPS, 2)
    assert np.isclose(plans[0, -1, 0], 80.0, atol=1e-3)  # 10 m/s for 8 s straight ahead
    assert plans[1, -1, 0] < plans[0, -1, 0]
    assert np.isclose(plans[2, -1, 0], 10.0**2 / (2 * 3.0), atol=1e-3)  # braking distance at 3 m/s^2
    assert np.allclose(plans[..., 1], 0.0)


def test_candidate_plans_follow_route_around_corner() -> None:
    route = np.array([[10.0, 0.0], [10.0, 100.0]])
    plans = candidate_plans(_ego(10.0, route))
    assert np.allclose(plans[0, -1], [10.0, 70.0], atol=1e-3)  # 10 m to the corner, 70 m up


def test_score_plans_crossing_agent_gives_ttc_and_choice() -> None:
    plans = candidate_plans(_ego(10.0))
    t = np.arange(1, m.PRED_HORIZON_STEPS + 1) * m.PRED_DT_S
    # Agent crossing the ego's keep-speed path at x=30 m at t=3 s (mode 0, p=0.9); mode 1 stays put.
    crossing = np.stack([np.full_like(t, 30.0), -15.0 + 5.0 * t], -1)
    parked = np.stack([np.full_like(t, 30.0), np.full_like(t, -15.0)], -1)
    traj = np.stack([crossing, parked])[None].astype(np.float32)
    probs = np.array([[0.9, 0.1]], np.float32)
    dist, ttc = score_plans(plans, traj, probs)
    assert np.isclose(ttc[0], 3.0, atol=0.2)
    assert np.isinf(ttc[2])  # stopping at ~16.7 m never meets it
    assert np.isclose(dist[0], 0.9 * 0.0 + 0.1 * 15.0, atol=0.05) and dist[2] > 10.0
    assert choose_plan(dist, ttc) in (1, 2)
    v = judge(plans, traj, probs, degraded=True)
    assert v.chosen_plan == choose_plan(dist, ttc) and "degraded" in v.status
    assert np.isfinite(v.min_ttc_s)


def test_score_plans_no_agents_keeps_speed() -> None:
    plans = candidate_plans(_ego())
    dist, ttc = score_plans(plans, np.zeros((0, 6, 80, 2), np.float32), np.zeros((0, 6), np.float32))
    assert np.isinf(dist).all() and choose_plan(dist, ttc) == 0
    assert (
        judge(plans, np.zeros((0, 6, 80, 2), np.float32), np.zeros((0, 6), np.float32), False).min_distance_m
        == 1e6
    )


def test_stale_or_missing_predictions_choose_stop_and_say_so() -> None:
    from prescient.service.planner_stub import PLAN_NAMES, stale_verdict

    v = stale_verdict(4.2, 3)
    assert v.chosen_plan == 2 and PLAN_NAMES[2] in v.status and "stale predictions (4.2 s old)" in v.status
    v = stale_verdict(0.6, 3, missing=True)
    assert v.chosen_plan == 2 and "no predictions for 0.6 s" in v.status
