"""Net inputs from world-frame agent states, and net outputs back to the world frame (numpy; one
numba kernel for the per-tick output transform).

Used by both training (``models.train``) and the onboard predictor (``prescient.service.predictor``), so the
same code builds the features in both places. No torch here.

Frames: ``world`` (map), ``ego`` (x forward, y left, origin at the ego), ``agent`` (origin at the
agent's current position, x along its current heading). ``*_from_*`` names say the direction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numba import njit

from prescient.bus.messages import NUM_CLASSES
from prescient.service.model_io.config import EGO_FEATURES, HIST_FEATURES, STATE_FEATURES, ModelConfig
from prescient.service.tracks import TrackSnapshot

Float32Array = npt.NDArray[np.float32]
Int64Array = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class AgentInputs:
    """Net inputs for one scene (no batch axis) plus what is needed to go back to the world frame.

    Attributes:
        agent_hist: (N_MAX, H, 7) float32 agent frame history features (see ``HIST_FEATURES``).
        agent_state: (N_MAX, 15) float32 ego frame state features plus class one-hot.
        agent_valid: (N_MAX,) float32 1 for a real agent, 0 for padding.
        ego_state: (5,) float32 ``[vx_mps, vy_mps, length_m, width_m, plan_valid]`` ego frame.
        ego_plan: (P, 2) float32 plan points in the ego frame (zeros when no plan).
        agent_index: (N_MAX,) int64 index of each slot in the caller's agent arrays, -1 = padding.
        agent_pose_world: (N_MAX, 3) float64 ``[x_m, y_m, yaw_rad]`` world pose of each agent frame.
        num_dropped: agents beyond ``n_max`` that were left out (farthest from the ego first).
    """

    agent_hist: Float32Array
    agent_state: Float32Array
    agent_valid: Float32Array
    ego_state: Float32Array
    ego_plan: Float32Array
    agent_index: Int64Array
    agent_pose_world: npt.NDArray[np.float64]
    num_dropped: int

    def as_feed(self, n_slots: int | None = None) -> dict[str, Float32Array]:
        """The five agent inputs with a batch axis of 1, keyed by ONNX input name.

        Args:
            n_slots: keep only the first ``n_slots`` agent slots (the valid ones come first), for
                a model with a symbolic agent axis; None keeps all ``N_MAX``.
        """
        k = self.agent_valid.shape[0] if n_slots is None else n_slots
        return {
            "agent_hist": self.agent_hist[None, :k],
            "agent_state": self.agent_state[None, :k],
            "agent_valid": self.agent_valid[None, :k],
            "ego_state": self.ego_state[None],
            "ego_plan": self.ego_plan[None],
        }


def _rot(yaw_rad: np.ndarray | np.floating) -> np.ndarray:
    """(..., 2, 2) rotation matrices ``world_from_local`` for headings ``yaw_rad``."""
    c, s = np.cos(yaw_rad), np.sin(yaw_rad)
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)


def resample_plan(plan_xy: np.ndarray, num_points: int) -> np.ndarray:
    """Resample a polyline of S points to ``num_points`` points evenly spaced in index.

    Args:
        plan_xy: (S, 2) points, S >= 1.
        num_points: P.

    Returns:
        (P, 2) float64.
    """
    s = plan_xy.shape[0]
    if s == 1:
        return np.repeat(plan_xy.astype(np.float64), num_points, axis=0)
    u = np.linspace(0.0, s - 1, num_points)
    i0 = np.minimum(np.floor(u).astype(np.int64), s - 2)
    w = (u - i0)[:, None]
    return plan_xy[i0] * (1.0 - w) + plan_xy[i0 + 1] * w


def build_agent_inputs(
    cfg: ModelConfig,
    *,
    ego_pose: np.ndarray,
    ego_velocity_mps: np.ndarray,
    ego_size_lwh_m: np.ndarray,
    position_m: np.ndarray,
    yaw_rad: np.ndarray,
    velocity_mps: np.ndarray,
    size_lwh_m: np.ndarray,
    class_id: np.ndarray,
    history_xy_m: np.ndarray,
    history_valid: np.ndarray,
    history_yaw_rad: np.ndarray | None = None,
    plan_xy_m: np.ndarray | None = None,
    checked: bool = False,
) -> AgentInputs:
    """Build the net's agent inputs for one scene. Every input is in the world frame.

    Args:
        cfg: model configuration (N_MAX, H, P).
        ego_pose: (3,) ``[x_m, y_m, yaw_rad]`` of the ego.
        ego_velocity_mps: (2,) ego velocity.
        ego_size_lwh_m: (3,) or (2,) ego length, width(, height).
        position_m: (N, 2) current agent positions.
        yaw_rad: (N,) current headings.
        velocity_mps: (N, 2) current velocities.
        size_lwh_m: (N, 3) or (N, 2) sizes.
        class_id: (N,) ``AgentClass`` values.
        history_xy_m: (N, Hin, 2) positions, oldest first, ``cfg.dt_s`` apart, ending now;
            the last ``cfg.hist_steps`` are used (Hin >= H).
        history_valid: (N, Hin) bool.
        history_yaw_rad: (N, Hin) headings, or None (then the current yaw is used for every step).
        plan_xy_m: (S, 2) ego plan (path or timed positions), or None / empty for no plan.
        checked: the arrays were checked where they were made (a
            :class:`~prescient.service.tracks.TrackSnapshot`): skip the shape and finiteness checks.

    Returns:
        :class:`AgentInputs`.

    Raises:
        ValueError: on inconsistent shapes or non-finite values, naming the field.
    """
    if not checked:
        _check_agent_arrays(
            cfg,
            ego_pose,
            position_m,
            yaw_rad,
            velocity_mps,
            size_lwh_m,
            class_id,
            history_xy_m,
            history_valid,
        )
    n = position_m.shape[0]
    h = cfg.hist_steps
    ego_xy = np.asarray(ego_pose[:2], np.float64)
    ego_yaw = float(ego_pose[2])
    ego_from_world_rot = _rot(np.float64(ego_yaw)).T  # (2, 2)

    # Keep the N_MAX agents nearest to the ego.
    order = np.argsort(np.linalg.norm(position_m - ego_xy, axis=1), kind="stable")
    keep = order[: cfg.n_max]
    m = keep.size

    pos = position_m[keep].astype(np.float64)  # (m, 2) world
    yaw = yaw_rad[keep].astype(np.float64)
    vel = velocity_mps[keep].astype(np.float64)
    hxy = history_xy_m[keep, -h:].astype(np.float64)  # (m, H, 2)
    hval = history_valid[keep, -h:].astype(bool)
    hyaw = (
        history_yaw_rad[keep, -h:].astype(np.float64)
        if history_yaw_rad is not None
        else np.repeat(yaw[:, None], h, axis=1)
    )
    hxy = np.where(np.isfinite(hxy), hxy, 0.0)
    hval &= np.all(np.isfinite(history_xy_m[keep, -h:]), axis=-1)

    agent_from_world = np.swapaxes(_rot(yaw), -1, -2)  # (m, 2, 2)
    rel = np.einsum("mij,mhj->mhi", agent_from_world, hxy - pos[:, None, :])  # (m, H, 2)
    vstep = np.zeros_like(rel)
    vstep[:, 1:] = (rel[:, 1:] - rel[:, :-1]) / cfg.dt_s
    vstep[:, 1:] *= (hval[:, 1:] & hval[:, :-1])[..., None]
    vstep[:, 0] = vstep[:, 1]
    dyaw = hyaw - yaw[:, None]

    agent_hist = np.zeros((cfg.n_max, h, HIST_FEATURES), np.float32)
    valid_f = hval.astype(np.float64)[..., None]
    agent_hist[:m, :, 0:2] = rel * valid_f
    agent_hist[:m, :, 2:4] = vstep * valid_f
    agent_hist[:m, :, 4:5] = np.cos(dyaw)[..., None] * valid_f
    agent_hist[:m, :, 5:6] = np.sin(dyaw)[..., None] * valid_f
    agent_hist[:m, :, 6] = hval

    agent_state = np.zeros((cfg.n_max, STATE_FEATURES), np.float32)
    xy_ego = (pos - ego_xy) @ ego_from_world_rot.T
    v_ego = vel @ ego_from_world_rot.T
    yaw_ego = yaw - ego_yaw
    agent_state[:m, 0:2] = xy_ego
    agent_state[:m, 2] = np.cos(yaw_ego)
    agent_state[:m, 3] = np.sin(yaw_ego)
    agent_state[:m, 4:6] = v_ego
    agent_state[:m, 6:8] = size_lwh_m[keep, :2]
    cls = np.clip(class_id[keep].astype(np.int64), 0, NUM_CLASSES - 1)
    agent_state[np.arange(m), 8 + cls] = 1.0

    agent_valid = np.zeros(cfg.n_max, np.float32)
    agent_valid[:m] = 1.0

    ego_state = np.zeros(EGO_FEATURES, np.float32)
    ego_state[0:2] = ego_from_world_rot @ np.asarray(ego_velocity_mps, np.float64)
    ego_state[2:4] = np.asarray(ego_size_lwh_m, np.float64)[:2]
    ego_plan = np.zeros((cfg.plan_points, 2), np.float32)
    if plan_xy_m is not None and len(plan_xy_m) > 0 and np.all(np.isfinite(plan_xy_m)):
        plan_ego = (np.asarray(plan_xy_m, np.float64) - ego_xy) @ ego_from_world_rot.T
        ego_plan[:] = resample_plan(plan_ego, cfg.plan_points)
        ego_state[4] = 1.0

    agent_index = np.full(cfg.n_max, -1, np.int64)
    agent_index[:m] = keep
    agent_pose_world = np.zeros((cfg.n_max, 3), np.float64)
    agent_pose_world[:m, :2] = pos
    agent_pose_world[:m, 2] = yaw
    return AgentInputs(
        agent_hist=agent_hist,
        agent_state=agent_state,
        agent_valid=agent_valid,
        ego_state=ego_state,
        ego_plan=ego_plan,
        agent_index=agent_index,
        agent_pose_world=agent_pose_world,
        num_dropped=n - m,
    )


def _check_agent_arrays(
    cfg: ModelConfig,
    ego_pose: np.ndarray,
    position_m: np.ndarray,
    yaw_rad: np.ndarray,
    velocity_mps: np.ndarray,
    size_lwh_m: np.ndarray,
    class_id: np.ndarray,
    history_xy_m: np.ndarray,
    history_valid: np.ndarray,
) -> None:
    """Shapes and finiteness of :func:`build_agent_inputs`' arrays (ValueError naming the field)."""
    n = position_m.shape[0]
    h = cfg.hist_steps
    shapes = {
        "position_m": (position_m, (n, 2)),
        "yaw_rad": (yaw_rad, (n,)),
        "velocity_mps": (velocity_mps, (n, 2)),
        "class_id": (class_id, (n,)),
    }
    for name, (arr, shape) in shapes.items():
        if arr.shape != shape:
            raise ValueError(f"{name}: expected shape {shape}, got {arr.shape}")
    if size_lwh_m.ndim != 2 or size_lwh_m.shape[0] != n or size_lwh_m.shape[1] < 2:
        raise ValueError(f"size_lwh_m: expected shape ({n}, 2 or 3), got {size_lwh_m.shape}")
    if history_xy_m.ndim != 3 or history_xy_m.shape[0] != n or history_xy_m.shape[2] != 2:
        raise ValueError(f"history_xy_m: expected ({n}, >= {h}, 2), got {history_xy_m.shape}")
    if history_xy_m.shape[1] < h:
        raise ValueError(f"history_xy_m: needs >= {h} steps, got {history_xy_m.shape[1]}")
    if history_valid.shape != history_xy_m.shape[:2]:
        raise ValueError(f"history_valid: expected {history_xy_m.shape[:2]}, got {history_valid.shape}")
    for name, arr in (("ego_pose", ego_pose), ("position_m", position_m), ("velocity_mps", velocity_mps)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name}: non-finite values")


def agent_inputs_from_tracks(
    cfg: ModelConfig,
    tracks: TrackSnapshot,
    ego_velocity_mps: np.ndarray,
    ego_size_lwh_m: np.ndarray,
    plan_xy_m: np.ndarray | None = None,
) -> AgentInputs:
    """:func:`build_agent_inputs` for a :class:`~prescient.service.tracks.TrackSnapshot` (world frame).

    The snapshot's shapes and finite states are its guarantee, so nothing is checked again
    (:meth:`~prescient.service.tracks.TrackSnapshot.from_message` turns a wire ``Tracks`` into one).
    """
    return build_agent_inputs(
        cfg,
        ego_pose=tracks.ego_pose,
        ego_velocity_mps=ego_velocity_mps,
        ego_size_lwh_m=ego_size_lwh_m,
        position_m=tracks.position_m,
        yaw_rad=tracks.yaw_rad,
        velocity_mps=tracks.velocity_mps,
        size_lwh_m=tracks.size_lwh_m,
        class_id=tracks.class_id,
        history_xy_m=tracks.history_xy_m,
        history_valid=tracks.history_valid,
        history_yaw_rad=tracks.history_yaw_rad,
        plan_xy_m=plan_xy_m,
        checked=True,
    )


def world_from_agent_predictions(
    traj_agent_m: np.ndarray, scale_agent_m: np.ndarray, agent_pose_world: np.ndarray
) -> tuple[Float32Array, Float32Array]:
    """Agent-frame trajectories and Laplace scales to the world frame.

    Args:
        traj_agent_m: (N, K, T, 2) positions in each agent's frame.
        scale_agent_m: (N, K, T, 2) per-axis Laplace scales in the agent frame.
        agent_pose_world: (N, 3) ``[x_m, y_m, yaw_rad]`` world pose of each agent frame.

    Returns:
        traj_world_m (N, K, T, 2) float32 and scale_world_m (N, K, T, 2) float32. The scales are
        mapped with ``|R| b`` (absolute rotation), a conservative axis-aligned bound: a per-axis
        scale is not closed under rotation.
    """
    # One pass in a kernel: per-component numpy took ~1.1 ms per tick for 128 x 6 x 80 points
    # (einsum ~2.5 ms); the same float64 arithmetic, rounded to float32 once.
    traj = np.empty(traj_agent_m.shape, np.float32)
    scale = np.empty(scale_agent_m.shape, np.float32)
    _world_from_agent_kernel(
        np.ascontiguousarray(traj_agent_m, np.float32),
        np.ascontiguousarray(scale_agent_m, np.float32),
        np.ascontiguousarray(agent_pose_world, np.float64),
        traj,
        scale,
    )
    return traj, scale


@njit(cache=True, nogil=True)
def _world_from_agent_kernel(traj, scale, pose, traj_out, scale_out):  # noqa: ANN001, ANN202
    """``traj_out = R(yaw) traj + p`` and ``scale_out = |R(yaw)| scale`` per agent (see above)."""
    n, k, t, _ = traj.shape
    for i in range(n):
        c = math.cos(pose[i, 2])
        s = math.sin(pose[i, 2])
        ac = abs(c)
        as_ = abs(s)
        px = pose[i, 0]
        py = pose[i, 1]
        for a in range(k):
            for b in range(t):
                x = np.float64(traj[i, a, b, 0])
                y = np.float64(traj[i, a, b, 1])
                traj_out[i, a, b, 0] = c * x - s * y + px
                traj_out[i, a, b, 1] = s * x + c * y + py
                sx = np.float64(scale[i, a, b, 0])
                sy = np.float64(scale[i, a, b, 1])
                scale_out[i, a, b, 0] = ac * sx + as_ * sy
                scale_out[i, a, b, 1] = as_ * sx + ac * sy
