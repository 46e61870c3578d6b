"""Evaluation metrics on hand-built cases, and the physics baselines on exact motion."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prescient.models.eval_sim import (
    MetricAccumulator,
    baseline_predictions,
    format_report,
    trajectory_metrics,
)


def test_metrics_equal_hand_computed_values():
    """Two modes 1 m and 3 m beside a straight path, scale 1, probs 0.25 / 0.75, 1 s horizon."""
    t = 10
    gt = np.zeros((1, t, 2))
    gt[0, :, 0] = np.arange(1, t + 1) * 0.5
    traj = np.repeat(gt[:, None], 2, axis=1).copy()
    traj[0, 0, :, 1] += 1.0
    traj[0, 1, :, 1] += 3.0
    probs = np.array([[0.25, 0.75]])
    scale = np.ones_like(traj)
    out = trajectory_metrics(traj, probs, scale, gt, dt_s=0.1, horizons_s=(1.0, 0.5))
    r = out["1s"]
    assert r["min_ade"][0] == pytest.approx(1.0)
    assert r["min_fde"][0] == pytest.approx(1.0)
    assert r["miss"][0] == 0.0
    assert r["brier_min_fde"][0] == pytest.approx(1.0 + 0.75**2)
    # log p(path | mode) = sum over 10 steps and 2 axes of -log(2 b) - |err| / b.
    lp0 = 20 * -math.log(2.0) - 10 * 1.0
    lp1 = 20 * -math.log(2.0) - 10 * 3.0
    want = -math.log(0.25 * math.exp(lp0) + 0.75 * math.exp(lp1))
    assert r["nll"][0] == pytest.approx(want, rel=1e-9)
    # Half-second horizon: 5 steps, same offsets.
    assert out["0.5s"]["min_fde"][0] == pytest.approx(1.0)
    lp0_half = 10 * -math.log(2.0) - 5.0
    lp1_half = 10 * -math.log(2.0) - 15.0
    want_half = -math.log(0.25 * math.exp(lp0_half) + 0.75 * math.exp(lp1_half))
    assert out["0.5s"]["nll"][0] == pytest.approx(want_half, rel=1e-9)


def test_miss_rate_and_best_mode_by_endpoint():
    """min FDE picks the mode closest at the horizon even if another has a lower ADE."""
    gt = np.zeros((1, 4, 2))
    traj = np.zeros((1, 2, 4, 2))
    traj[0, 0, :3, 0] = 0.0
    traj[0, 0, 3, 0] = 5.0  # perfect until the end, then 5 m off
    traj[0, 1, :, 0] = 2.5  # 2.5 m off everywhere
    probs = np.array([[0.9, 0.1]])
    r = trajectory_metrics(traj, probs, np.ones_like(traj), gt, dt_s=0.1, horizons_s=(0.4,))["0.4s"]
    assert r["min_ade"][0] == pytest.approx(1.25)
    assert r["min_fde"][0] == pytest.approx(2.5)
    assert r["miss"][0] == 1.0
    assert r["brier_min_fde"][0] == pytest.approx(2.5 + 0.9**2)


def test_cv_and_ctrv_exact_on_straight_line():
    """Constant velocity along any heading: CV and CTRV (zero turn rate) have zero error."""
    v = np.array([[3.0, 4.0], [10.0, 0.0], [0.0, -1.2]])
    t_s = 0.1 * np.arange(1, 81)
    gt = v[:, None, :] * t_s[None, :, None]
    base = baseline_predictions(v, np.zeros(3), num_modes=6, future_steps=80, dt_s=0.1)
    for name in ("cv", "ctrv"):
        traj, probs, scale = base[name]
        r = trajectory_metrics(traj, probs, scale, gt)
        for h in ("1s", "3s", "5s", "8s"):
            assert np.max(r[h]["min_ade"]) < 1e-4 and np.max(r[h]["min_fde"]) < 1e-4
            assert r[h]["miss"].sum() == 0


def test_cv_error_on_constant_acceleration_and_ctrv_on_circle():
    """CV misses by a t^2 / 2 under constant acceleration; CTRV follows a circle CV cannot."""
    a_mps2 = 1.0
    t_s = 0.1 * np.arange(1, 81)
    gt = np.stack([5.0 * t_s + 0.5 * a_mps2 * t_s**2, np.zeros_like(t_s)], -1)[None]
    traj, probs, scale = baseline_predictions(np.array([[5.0, 0.0]]), np.zeros(1), 6, 80, 0.1)["cv"]
    r = trajectory_metrics(traj, probs, scale, gt)
    assert r["8s"]["min_fde"][0] == pytest.approx(0.5 * a_mps2 * 64.0, rel=1e-5)
    assert r["1s"]["min_fde"][0] == pytest.approx(0.5, rel=1e-4)
    # Circle of radius 20 m at 5 m/s, starting along +x at the origin.
    w = 5.0 / 20.0
    circle = np.stack([20 * np.sin(w * t_s), 20 * (1 - np.cos(w * t_s))], -1)[None]
    base = baseline_predictions(np.array([[5.0, 0.0]]), np.array([w]), 6, 80, 0.1)
    ctrv = trajectory_metrics(*base["ctrv"], circle)
    cv = trajectory_metrics(*base["cv"], circle)
    assert ctrv["8s"]["min_fde"][0] < 1e-3
    assert cv["8s"]["min_fde"][0] > 10.0


def test_accumulator_groups_classes_and_report_formats():
    acc = MetricAccumulator()
    gt = np.zeros((3, 80, 2))
    traj = np.zeros((3, 1, 80, 2))
    traj[:, 0, :, 0] = np.array([1.0, 2.0, 3.0])[:, None]
    res = trajectory_metrics(traj, np.ones((3, 1)), np.ones_like(traj), gt)
    acc.add({"model": res, "cv": res, "ctrv": res}, np.array([1, 4, 2]))
    s = acc.summary()
    assert s["agents"] == 3
    assert s["overall"]["model"]["8s"]["min_ade"] == pytest.approx(2.0)
    assert s["per_class"]["vehicle"]["agents"] == 2
    assert s["per_class"]["vehicle"]["model"]["8s"]["min_fde"] == pytest.approx(2.0)
    assert s["per_class"]["pedestrian"]["model"]["8s"]["min_fde"] == pytest.approx(2.0)
    text = format_report(
        {"kind": "sim", "model": "m", "data": "d", "scenes": 1, "runs": ["r"], "results": {"route": s}}
    )
    assert "| 8s | model | 2.00 | 2.00 |" in text and "| vehicle | 2 |" in text


def test_metrics_reject_bad_shapes():
    with pytest.raises(ValueError, match="shapes"):
        trajectory_metrics(
            np.zeros((2, 3, 10, 2)), np.ones((2, 3)), np.ones((2, 3, 10, 2)), np.zeros((2, 9, 2))
        )
