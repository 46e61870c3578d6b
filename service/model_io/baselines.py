"""Physics baselines (numpy only): constant velocity and constant turn rate.

They are the evaluation reference next to the learned model, and the onboard fallback when the
model is missing or late (see :func:`prescient.service.predictor.constant_velocity_predictions`).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Float32Array = npt.NDArray[np.float32]

# Laplace scale growth of the fallback: b(t) = base + rate * t (metres, t in seconds).
CV_SCALE_BASE_M = 0.2
CV_SCALE_RATE_MPS = 0.5


def constant_velocity_predictions(
    position_m: np.ndarray,
    velocity_mps: np.ndarray,
    *,
    num_modes: int,
    future_steps: int,
    dt_s: float,
) -> tuple[Float32Array, Float32Array, Float32Array]:
    """Constant-velocity trajectories in whatever frame the inputs are in.

    Every mode holds the same path; mode 0 gets probability 1 (the others 0), so a consumer
    that takes the most likely mode gets the physics answer and best-of-K metrics equal the
    single prediction.

    Args:
        position_m: (N, 2) current positions.
        velocity_mps: (N, 2) current velocities (same frame).
        num_modes: K.
        future_steps: T; the first step is ``dt_s`` after now.
        dt_s: step, seconds.

    Returns:
        traj (N, K, T, 2) float32, probs (N, K) float32, scale (N, K, T, 2) float32 growing
        linearly with time.
    """
    if position_m.shape != velocity_mps.shape or position_m.ndim != 2 or position_m.shape[1] != 2:
        raise ValueError(
            f"position_m {position_m.shape} and velocity_mps {velocity_mps.shape} must both be (N, 2)"
        )
    n = position_m.shape[0]
    t_s = dt_s * np.arange(1, future_steps + 1, dtype=np.float64)  # (T,)
    vel = np.where(np.isfinite(velocity_mps), velocity_mps, 0.0)
    path = position_m[:, None, :] + vel[:, None, :] * t_s[None, :, None]  # (N, T, 2)
    traj = np.repeat(path[:, None], num_modes, axis=1).astype(np.float32)
    probs = np.zeros((n, num_modes), np.float32)
    probs[:, 0] = 1.0
    b = (CV_SCALE_BASE_M + CV_SCALE_RATE_MPS * t_s).astype(np.float32)
    scale = np.broadcast_to(b[None, None, :, None], (n, num_modes, future_steps, 2)).copy()
    return traj, probs, scale


def constant_turn_rate_predictions(
    position_m: np.ndarray,
    velocity_mps: np.ndarray,
    yaw_rate_radps: np.ndarray,
    *,
    future_steps: int,
    dt_s: float,
) -> Float32Array:
    """Constant speed and turn rate (CTRV) paths, one mode.

    Args:
        position_m: (N, 2); velocity_mps: (N, 2); yaw_rate_radps: (N,).
        future_steps: T. dt_s: step, seconds.

    Returns:
        (N, T, 2) float32 positions.
    """
    speed = np.linalg.norm(velocity_mps, axis=1)  # (N,)
    heading = np.arctan2(velocity_mps[:, 1], velocity_mps[:, 0])
    out = np.zeros((position_m.shape[0], future_steps, 2), np.float64)
    pos = position_m.astype(np.float64).copy()
    for t in range(future_steps):
        # Midpoint heading per step keeps the arc accurate at 10 Hz.
        mid = heading + 0.5 * yaw_rate_radps * dt_s
        pos = pos + dt_s * speed[:, None] * np.stack([np.cos(mid), np.sin(mid)], axis=1)
        heading = heading + yaw_rate_radps * dt_s
        out[:, t] = pos
    return out.astype(np.float32)
