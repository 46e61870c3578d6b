"""EKF kernels against hand-computed values and finite-difference Jacobians."""

from __future__ import annotations

import math

import numpy as np

from prescient.service.tracker import association_kernels as ak
from prescient.service.tracker import layout as L
from prescient.service.tracker import measurement_kernels as mek
from prescient.service.tracker import motion_kernels as mk


def _one(model: int, state: list[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.zeros((1, L.STATE_DIM))
    x[0, : len(state)] = state
    P = np.eye(L.STATE_DIM)[None].copy()
    return x, P, np.array([model], np.int8)


def test_predict_cv_moves_by_velocity_and_grows_covariance() -> None:
    """CV: x += v dt; P grows by F P F^T + Q."""
    x, P, model = _one(L.MODEL_CV, [1.0, 2.0, 3.0, -1.0, 0.0])
    mk.predict_kernel(x, P, model, np.ones(1), np.ones(1), np.ones(1), np.array([0]), 0.5)
    np.testing.assert_allclose(x[0, :4], [2.5, 1.5, 3.0, -1.0])
    # P00 = 1 + dt^2 * 1 + dt^4/4 * sa^2
    assert math.isclose(P[0, 0, 0], 1 + 0.25 + 0.0625 / 4)
    np.testing.assert_allclose(P[0], P[0].T)


def test_predict_ctrv_follows_circle() -> None:
    """CTRA, zero acceleration, yaw rate w for pi/(2w) s: a quarter circle of radius v/w."""
    x, P, model = _one(L.MODEL_CTRA, [0.0, 0.0, 0.0, 2.0, 0.5])
    mk.predict_kernel(
        x, P, model, np.full(1, 1e-6), np.full(1, 1e-6), np.full(1, 1e-6), np.array([0]), math.pi
    )
    r = 2.0 / 0.5
    np.testing.assert_allclose(x[0, :3], [r, r, math.pi / 2], atol=1e-9)


def _numeric_jacobian(kind: int, model: int, state: np.ndarray, sensor: np.ndarray) -> np.ndarray:
    md = L.MEAS_DIM[kind]
    sd = L.STATE_DIM
    zhat, H = np.zeros(md), np.zeros((md, sd))
    J = np.zeros((md, sd))
    for d in range(sd):
        e = np.zeros(sd)
        e[d] = 1e-6
        mek.measure_kernel(state + e, model, kind, sensor, zhat, H)
        zp = zhat.copy()
        mek.measure_kernel(state - e, model, kind, sensor, zhat, H)
        J[:, d] = (zp - zhat) / 2e-6
    return J


def test_predict_ctra_jacobian_matches_finite_differences() -> None:
    """The CTRA transition Jacobian (through P) matches a numeric Jacobian of the mean."""
    dt = 0.3
    for w in (0.4, 0.0):
        base = np.array([3.0, -1.0, 0.6, 7.0, w, 1.2])
        J = np.zeros((6, 6))
        for d in range(6):
            e = np.zeros(6)
            e[d] = 1e-6
            xp, P, model = _one(L.MODEL_CTRA, list(base + e))
            xm, _, _ = _one(L.MODEL_CTRA, list(base - e))
            z = np.zeros(1)
            mk.predict_kernel(xp, P, model, z, z, z, np.array([0]), dt)
            mk.predict_kernel(xm, P.copy(), model, z, z, z, np.array([0]), dt)
            J[:, d] = (xp[0] - xm[0]) / 2e-6
        x, P, model = _one(L.MODEL_CTRA, list(base))
        z = np.zeros(1)
        mk.predict_kernel(x, P, model, z, z, z, np.array([0]), dt)
        # With P0 = I and no noise, P1 = F F^T; compare with the numeric J J^T.
        np.testing.assert_allclose(P[0], J @ J.T, atol=1e-4)


def test_measure_jacobians_match_finite_differences() -> None:
    """Analytic H of radar and bearing models equals the numeric Jacobian for CV and CTRA."""
    sensor = np.array([1.0, -2.0, 0.3, 5.0, 0.5])
    for model, state in (
        (L.MODEL_CV, np.array([20.0, 7.0, 3.0, -2.0, 0.0, 0.0])),
        (L.MODEL_CTRA, np.array([20.0, 7.0, 0.7, 6.0, 0.1, 0.5])),
    ):
        for kind in (L.MEAS_RADAR, L.MEAS_BEARING, L.MEAS_POSE):
            md = L.MEAS_DIM[kind]
            zhat, H = np.zeros(md), np.zeros((md, L.STATE_DIM))
            assert mek.measure_kernel(state, model, kind, sensor, zhat, H)
            J = _numeric_jacobian(kind, model, state, sensor)
            if kind == L.MEAS_POSE and model == L.MODEL_CV:
                J[2] = 0.0  # yaw row unused for CV
            np.testing.assert_allclose(H, J, atol=1e-5, err_msg=f"kind {kind} model {model}")


def test_update_pose_pulls_state_toward_measurement_and_shrinks_covariance() -> None:
    """A LiDAR update with equal prior and measurement variance lands half way."""
    x, P, model = _one(L.MODEL_CV, [0.0, 0.0, 0.0, 0.0, 0.0])
    z = np.array([[2.0, -2.0, 0.0]])
    R = np.array([[1.0, 1.0, 1.0]])
    ok = mk.update_kernel(x, P, model, np.array([0]), L.MEAS_POSE, np.zeros((1, 5)), z, R, np.array([0]))
    assert ok.all()
    np.testing.assert_allclose(x[0, :2], [1.0, -1.0])
    np.testing.assert_allclose(P[0, 0, 0], 0.5)


def test_update_radar_doppler_corrects_velocity() -> None:
    """A radial range rate of +3 m/s on a stationary CV track makes it recede."""
    x, P, model = _one(L.MODEL_CV, [10.0, 0.0, 0.0, 0.0, 0.0])
    P[0, 2, 2] = P[0, 3, 3] = 25.0
    z = np.array([[10.0, 0.0, 3.0]])
    R = np.array([[0.1, 1e-4, 0.01]])
    mk.update_kernel(x, P, model, np.array([0]), L.MEAS_RADAR, np.zeros((1, 5)), z, R, np.array([0]))
    assert 2.9 < x[0, 2] < 3.0
    assert abs(x[0, 3]) < 1e-6


def test_gate_kernel_returns_only_pairs_inside_gate() -> None:
    """Two tracks, two LiDAR measurements: each gates only with its own neighbour."""
    x = np.zeros((2, L.STATE_DIM))
    x[1, :2] = [10.0, 0.0]
    P = np.tile(np.eye(L.STATE_DIM) * 0.1, (2, 1, 1))
    model = np.zeros(2, np.int8)
    z = np.array([[0.2, 0.0, 0.0], [10.1, 0.3, 0.0]])
    R = np.full((2, 3), 0.01)
    a, j, cost = np.empty(4, np.int64), np.empty(4, np.int64), np.empty(4)
    n = ak.gate_kernel(
        x,
        P,
        model,
        np.array([0, 1]),
        L.MEAS_POSE,
        np.zeros((2, 5)),
        z,
        R,
        np.array([0, 2]),
        2,
        13.8,
        6.0,
        a,
        j,
        cost,
    )
    assert n == 2
    assert sorted(zip(a[:n].tolist(), j[:n].tolist())) == [(0, 0), (1, 1)]


def test_close_pairs_sweep_equals_the_double_loop_and_a_kd_tree() -> None:
    """The sorted sweep returns exactly the double loop's pairs, in its order (ties in x, NaN
    positions, empty and single inputs included), and the pairs cKDTree finds."""
    from scipy.spatial import cKDTree

    from prescient.service.tracker.association_kernels import close_pairs_kernel

    def double_loop(x: np.ndarray, idx: np.ndarray, r: float) -> np.ndarray:
        out = [
            (a, b)
            for a in range(len(idx))
            for b in range(a + 1, len(idx))
            if (x[idx[a], 0] - x[idx[b], 0]) ** 2 + (x[idx[a], 1] - x[idx[b], 1]) ** 2 <= r * r
        ]
        return np.array(out, np.int64).reshape(-1, 2)

    rng = np.random.default_rng(7)
    for trial in range(60):
        n = int(rng.integers(0, 120))
        x = rng.normal(0.0, float(rng.choice([1.0, 5.0, 40.0])), (n + 10, 6))
        x[:, 0] = np.round(x[:, 0], int(rng.integers(0, 3)))  # ties in x
        if trial % 5 == 0 and n:
            x[rng.integers(0, n + 10, 3), 0] = np.nan
        idx = np.sort(rng.choice(n + 10, n, replace=False)).astype(np.int64)
        got = close_pairs_kernel(x, idx, 1.2)
        np.testing.assert_array_equal(got, double_loop(x, idx, 1.2))
        if n and np.isfinite(x[idx, :2]).all():
            want = {tuple(p) for p in cKDTree(x[idx, :2]).query_pairs(1.2)}
            assert {tuple(p) for p in got} == want
