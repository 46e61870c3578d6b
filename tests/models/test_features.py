"""Feature building (world -> ego/agent frames) and the way back to the world frame."""

from __future__ import annotations

import numpy as np
import pytest

from prescient.models.export_tiny import tiny_config
from prescient.service.model_io.baselines import constant_turn_rate_predictions
from prescient.service.model_io.features import (
    build_agent_inputs,
    resample_plan,
    world_from_agent_predictions,
)


def _inputs(cfg, n=3, ego_pose=(10.0, 5.0, np.pi / 2), plan=None):
    yaw = np.full(n, np.pi / 4)
    speed = 2.0
    vel = np.stack([np.cos(yaw), np.sin(yaw)], 1) * speed
    pos = np.array([[12.0, 5.0], [10.0, 9.0], [40.0, 40.0]])[:n]
    t = (np.arange(cfg.hist_steps) - (cfg.hist_steps - 1)) * cfg.dt_s
    hist = pos[:, None] + vel[:, None] * t[None, :, None]
    return build_agent_inputs(
        cfg,
        ego_pose=np.array(ego_pose),
        ego_velocity_mps=np.array([0.0, 3.0]),
        ego_size_lwh_m=np.array([4.5, 2.0, 1.5]),
        position_m=pos,
        yaw_rad=yaw,
        velocity_mps=vel,
        size_lwh_m=np.tile([4.0, 1.8, 1.5], (n, 1)),
        class_id=np.array([1, 4, 5])[:n],
        history_xy_m=hist,
        history_valid=np.ones((n, cfg.hist_steps), bool),
        plan_xy_m=plan,
    )


def test_features_straight_mover_history_on_agent_x_axis():
    """An agent moving along its heading has history on the negative agent x axis, speed in vx."""
    cfg = tiny_config()
    inp = _inputs(cfg)
    h = inp.agent_hist[0]
    np.testing.assert_allclose(h[:, 1], 0.0, atol=1e-5)
    np.testing.assert_allclose(h[-1, :2], 0.0, atol=1e-6)
    assert np.all(np.diff(h[:, 0]) > 0) and h[0, 0] < 0
    np.testing.assert_allclose(h[:, 2], 2.0, atol=1e-4)
    np.testing.assert_allclose(h[:, 6], 1.0)


def test_features_ego_frame_state_and_ego_velocity():
    """Ego at (10,5) facing +y: world (12,5) is 2 m to the ego's right; ego speed along ego x."""
    cfg = tiny_config()
    inp = _inputs(cfg)
    slot = int(np.flatnonzero(inp.agent_index == 0)[0])
    np.testing.assert_allclose(inp.agent_state[slot, :2], [0.0, -2.0], atol=1e-5)
    np.testing.assert_allclose(
        inp.agent_state[slot, 2:4], [np.cos(-np.pi / 4), np.sin(-np.pi / 4)], atol=1e-6
    )
    assert inp.agent_state[slot, 8 + 1] == 1.0  # CAR one-hot
    np.testing.assert_allclose(inp.ego_state[:2], [3.0, 0.0], atol=1e-6)
    assert inp.ego_state[4] == 0.0  # no plan


def test_features_truncates_to_n_max_keeping_nearest():
    """With more agents than N_MAX, the farthest are dropped and counted."""
    cfg = tiny_config(n_max=2)
    inp = _inputs(cfg)
    assert inp.num_dropped == 1
    assert sorted(inp.agent_index.tolist()) == [0, 1]


def test_features_plan_in_ego_frame_and_flagged():
    """A plan straight ahead of the ego ends up on the ego x axis and sets plan_valid."""
    cfg = tiny_config()
    plan = np.array([[10.0, 5.0], [10.0, 25.0]])  # ego faces +y in the world
    inp = _inputs(cfg, plan=plan)
    np.testing.assert_allclose(inp.ego_plan[:, 1], 0.0, atol=1e-5)
    np.testing.assert_allclose(inp.ego_plan[-1, 0], 20.0, atol=1e-5)
    assert inp.ego_state[4] == 1.0


def test_features_bad_shape_raises_naming_field():
    """Inconsistent array shapes raise ValueError naming the field."""
    cfg = tiny_config()
    with pytest.raises(ValueError, match="velocity_mps"):
        build_agent_inputs(
            cfg,
            ego_pose=np.zeros(3),
            ego_velocity_mps=np.zeros(2),
            ego_size_lwh_m=np.zeros(3),
            position_m=np.zeros((2, 2)),
            yaw_rad=np.zeros(2),
            velocity_mps=np.zeros((3, 2)),
            size_lwh_m=np.zeros((2, 3)),
            class_id=np.zeros(2, int),
            history_xy_m=np.zeros((2, cfg.hist_steps, 2)),
            history_valid=np.ones((2, cfg.hist_steps), bool),
        )


def test_world_from_agent_inverts_agent_frame():
    """A point 1 m ahead of an agent at (3,4) heading +90 deg is (3,5) in the world."""
    traj = np.zeros((1, 1, 1, 2))
    traj[0, 0, 0] = [1.0, 0.0]
    scale = np.full((1, 1, 1, 2), [0.5, 0.1])
    w, s = world_from_agent_predictions(traj, scale, np.array([[3.0, 4.0, np.pi / 2]]))
    np.testing.assert_allclose(w[0, 0, 0], [3.0, 5.0], atol=1e-6)
    np.testing.assert_allclose(s[0, 0, 0], [0.1, 0.5], atol=1e-6)


def test_resample_plan_endpoints_and_count():
    """Resampling keeps the endpoints and returns P points."""
    out = resample_plan(np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]]), 5)
    assert out.shape == (5, 2)
    np.testing.assert_allclose(out[[0, -1], 0], [0.0, 3.0])


def test_constant_turn_rate_quarter_circle():
    """CTRV with v=pi/2 m/s and w=pi/2 rad/s over 1 s ends on the unit circle at (1, 1)."""
    out = constant_turn_rate_predictions(
        np.zeros((1, 2)), np.array([[np.pi / 2, 0.0]]), np.array([np.pi / 2]), future_steps=10, dt_s=0.1
    )
    np.testing.assert_allclose(out[0, -1], [1.0, 1.0], atol=1e-2)
