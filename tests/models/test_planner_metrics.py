"""Planner-facing metrics (models/planner_metrics.py) on cases worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from prescient.models.planner_metrics import ece, planner_metrics

DT = 0.1


def _line(v_mps: float, n: int = 80, lateral_m: float = 0.0) -> np.ndarray:
    t = DT * np.arange(1, n + 1)
    return np.stack([v_mps * t, np.full(n, lateral_m)], -1)


def test_most_likely_mode_is_scored_not_the_best() -> None:
    """Truth goes straight at 10 m/s; mode 0 (p 0.3) is exact, mode 1 (p 0.7) is 4 m to the side."""
    gt = _line(10.0)[None]
    traj = np.stack([_line(10.0), _line(10.0, lateral_m=4.0)])[None]
    out = planner_metrics(traj, np.array([[0.3, 0.7]]), gt, n_steps=80, dt_s=DT)
    assert out["ml_fde"][0] == pytest.approx(4.0) and out["ml_ade"][0] == pytest.approx(4.0)
    assert out["top_closest"][0] == 0.0 and out["top_prob"][0] == pytest.approx(0.7)
    assert out["spread_m"][0] == pytest.approx(4.0)
    # Straight constant-speed paths have no second or third difference.
    for k in ("rough_ml", "rough_gt", "jerk_ml", "jerk_gt"):
        assert out[k][0] == pytest.approx(0.0, abs=1e-9)


def test_a_jagged_path_is_rough() -> None:
    """+-0.1 m of zig-zag on a straight path: second differences of 0.4 m per step^2."""
    zig = _line(10.0)
    zig[:, 1] = 0.1 * (-1.0) ** np.arange(80)
    out = planner_metrics(zig[None, None], np.ones((1, 1)), _line(10.0)[None], n_steps=80, dt_s=DT)
    assert out["rough_ml"][0] == pytest.approx(0.4)
    assert out["jerk_ml"][0] == pytest.approx(0.8 / DT**3)
    assert out["rough_gt"][0] == pytest.approx(0.0, abs=1e-9)


def test_horizon_cuts_the_path() -> None:
    gt = _line(10.0)[None]
    traj = _line(11.0)[None, None]
    out = planner_metrics(traj, np.ones((1, 1)), gt, n_steps=10, dt_s=DT)
    assert out["ml_fde"][0] == pytest.approx(1.0)  # 1 m/s faster for 1 s
    with pytest.raises(ValueError):
        planner_metrics(traj, np.ones((1, 1)), gt, n_steps=81, dt_s=DT)


def test_ece_of_calibrated_and_overconfident_modes() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0.2, 1.0, 200_000)
    calibrated = (rng.uniform(size=p.size) < p).astype(float)
    assert ece(p, calibrated) < 0.01
    # Says 0.9, right half the time: ECE 0.4.
    assert ece(np.full(1000, 0.9), np.tile([1.0, 0.0], 500)) == pytest.approx(0.4)
    assert np.isnan(ece(np.zeros(0), np.zeros(0)))
