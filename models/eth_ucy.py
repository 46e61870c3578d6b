"""ETH/UCY pedestrian benchmark: standard protocol, windows, net inputs and metrics of one net family.

Protocol (Social GAN loader): 0.4 s steps, observe 8, predict 12; slide a window of 20 consecutive
annotated frames with stride 1; a pedestrian counts when present in all 20 frames; a window is kept
when at least 2 pedestrians qualify. Leave-one-scene-out: any directory laid out as
``SCENE/{train,val,test}/*.txt`` (tab-separated ``frame ped x y``) is accepted; for each scene the
net is trained on ``train``, the best epoch picked on ``val``, and scored on ``test``.

The model is :class:`prescient.models.net.TrajectoryNet` with K=20 modes and no map: its raster holds only
the agents' observed positions (one occupancy channel per observed step), centred on the mean
current position of the pedestrians, with no ego (``plan_valid`` 0, ego state zeros). Metrics:
best-of-20 and most-likely ADE/FDE in metres, and KDE NLL in nats, always beside constant velocity
(CV) and a fixed, untrained fan of 20 CV paths (CV-fan) on the same samples; the fan and KDE NLL
are defined in :mod:`prescient.models.eth_ucy_metrics`, training in :mod:`prescient.models.eth_ucy_train`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prescient.bus.messages import AgentClass
from prescient.models.eth_ucy_metrics import KdeNll, cv_fan_predictions
from prescient.service.model_io.baselines import constant_velocity_predictions
from prescient.service.model_io.config import ModelConfig
from prescient.service.model_io.features import build_agent_inputs, world_from_agent_predictions

OBS_STEPS = 8
PRED_STEPS = 12
DT_S = 0.4
NUM_MODES = 20
PED_SIZE_M = np.float32([0.5, 0.5, 1.7])


class EthUcyError(ValueError):
    """A scene directory or file that does not follow the ETH/UCY layout/format."""


@dataclass(frozen=True, eq=False)
class Window:
    """One 20-frame window. obs_m: (n, 8, 2); fut_m: (n, 12, 2), scene frame metres."""

    obs_m: np.ndarray
    fut_m: np.ndarray


DEFAULT_EPOCHS = 120  # passes over the train split per left-out scene (models/README.md: 40, 80, 120)


def eth_config(n_max: int = 64, decoder: str = "direct") -> ModelConfig:
    """The small, map-free :class:`ModelConfig` used on ETH/UCY (``decoder``: see ModelConfig)."""
    return ModelConfig(
        in_channels=OBS_STEPS,
        raster_hw=(64, 64),
        resolution_m_per_px=0.5,
        n_max=n_max,
        hist_steps=OBS_STEPS,
        future_steps=PRED_STEPS,
        dt_s=DT_S,
        num_modes=NUM_MODES,
        plan_points=2,
        stem_channels=16,
        stage_channels=(24, 32, 48),
        d_model=64,
        num_heads=4,
        num_layers=2,
        raster_spec_version="eth-ucy-occupancy-v1",
        channel_names=tuple(f"occupancy_t-{OBS_STEPS - 1 - i}" for i in range(OBS_STEPS)),
        decoder=decoder,
    )


def read_trajectory_file(path: Path) -> np.ndarray:
    """Read one ``frame ped x y`` text file into an (R, 4) float64 array.

    Raises:
        EthUcyError: not 4 numeric columns, or non-finite values.
    """
    try:
        data = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise EthUcyError(f"{path}: not a 4-column numeric file: {e}") from e
    if data.size == 0:
        return np.zeros((0, 4))
    if data.shape[1] != 4:
        raise EthUcyError(f"{path}: expected 4 columns (frame ped x y), got {data.shape[1]}")
    if not np.all(np.isfinite(data)):
        raise EthUcyError(f"{path}: non-finite values")
    return data


def windows_from_array(data: np.ndarray, min_peds: int = 2) -> list[Window]:
    """Social GAN windowing of one file's rows (see the module docstring)."""
    if data.shape[0] == 0:
        return []
    frames = np.unique(data[:, 0])
    seq = OBS_STEPS + PRED_STEPS
    by_frame = {f: data[data[:, 0] == f] for f in frames}
    out = []
    for i in range(len(frames) - seq + 1):
        rows = [by_frame[f] for f in frames[i : i + seq]]
        common = set(rows[0][:, 1].tolist())
        for r in rows[1:]:
            common &= set(r[:, 1].tolist())
        if len(common) < min_peds:
            continue
        peds = np.array(sorted(common))
        traj = np.zeros((peds.size, seq, 2))
        for t, r in enumerate(rows):
            order = np.argsort(r[:, 1])
            ids = r[order, 1]
            traj[:, t] = r[order][np.searchsorted(ids, peds), 2:4]
        out.append(Window(traj[:, :OBS_STEPS], traj[:, OBS_STEPS:]))
    return out


def load_split(scene_dir: Path, split: str) -> list[Window]:
    """All windows of ``scene_dir/split/*.txt`` (each file windowed on its own)."""
    d = scene_dir / split
    files = sorted(d.glob("*.txt"))
    if not files:
        raise EthUcyError(f"{d}: no *.txt files (expected SCENE/{{train,val,test}}/*.txt)")
    out: list[Window] = []
    for f in files:
        out.extend(windows_from_array(read_trajectory_file(f)))
    return out


def list_scenes(root: Path) -> list[Path]:
    """Scene folders under ``root`` that have train/val/test subfolders (sorted by name)."""
    if not root.is_dir():
        raise EthUcyError(f"{root}: not a directory")
    scenes = [p for p in sorted(root.iterdir()) if all((p / s).is_dir() for s in ("train", "val", "test"))]
    if not scenes:
        raise EthUcyError(f"{root}: no SCENE/{{train,val,test}} folders found")
    return scenes


def _heading(obs: np.ndarray) -> np.ndarray:
    """(n,) heading from the last displacement, falling back to the whole observed displacement."""
    last = obs[:, -1] - obs[:, -2]
    whole = obs[:, -1] - obs[:, 0]
    use = np.where((np.linalg.norm(last, axis=1) > 0.05)[:, None], last, whole)
    return np.arctan2(use[:, 1], use[:, 0])


def window_inputs(cfg: ModelConfig, w: Window, rotation_rad: float = 0.0) -> dict[str, np.ndarray]:
    """Net inputs (no batch axis) and agent-frame targets for one window.

    Args:
        cfg: the :func:`eth_config`.
        w: the window (at most ``cfg.n_max`` pedestrians are modelled; the nearest to the centre).
        rotation_rad: yaw of the raster frame in the scene frame (random for augmentation).

    Returns:
        dict with the six net inputs, ``future_m`` (N_MAX, T, 2) agent frame, ``future_valid``
        (N_MAX, T), ``agent_index`` (N_MAX,) and ``agent_pose_world`` (N_MAX, 3).
    """
    n = w.obs_m.shape[0]
    pos = w.obs_m[:, -1]
    centre = pos.mean(axis=0)
    ego_pose = np.array([centre[0], centre[1], rotation_rad])
    yaw = _heading(w.obs_m)
    vel = (w.obs_m[:, -1] - w.obs_m[:, -2]) / DT_S
    inputs = build_agent_inputs(
        cfg,
        ego_pose=ego_pose,
        ego_velocity_mps=np.zeros(2),
        ego_size_lwh_m=np.zeros(3),
        position_m=pos,
        yaw_rad=yaw,
        velocity_mps=vel,
        size_lwh_m=np.tile(PED_SIZE_M, (n, 1)),
        class_id=np.full(n, int(AgentClass.PEDESTRIAN)),
        history_xy_m=w.obs_m,
        history_valid=np.ones((n, OBS_STEPS), bool),
        history_yaw_rad=None,
    )
    # Occupancy raster: channel t holds every pedestrian's position at observed step t.
    c, s = np.cos(rotation_rad), np.sin(rotation_rad)
    ego_from_world = np.array([[c, s], [-s, c]])
    xy = (w.obs_m - centre) @ ego_from_world.T  # (n, 8, 2) ego frame
    (a, b, c0), (d, e, f) = cfg.raster_from_ego
    col = np.floor(a * xy[..., 0] + b * xy[..., 1] + c0).astype(np.int64)
    row = np.floor(d * xy[..., 0] + e * xy[..., 1] + f).astype(np.int64)
    h_px, w_px = cfg.raster_hw
    raster = np.zeros((cfg.in_channels, h_px, w_px), np.float32)
    t_idx = np.broadcast_to(np.arange(OBS_STEPS), col.shape)
    inside = (col >= 0) & (col < w_px) & (row >= 0) & (row < h_px)
    raster[t_idx[inside], row[inside], col[inside]] = 1.0

    m = int(np.count_nonzero(inputs.agent_index >= 0))
    idx = inputs.agent_index[:m]
    fut = np.zeros((cfg.n_max, PRED_STEPS, 2), np.float32)
    pose = inputs.agent_pose_world[:m]
    cy, sy = np.cos(pose[:, 2]), np.sin(pose[:, 2])
    rel = w.fut_m[idx] - pose[:, None, :2]
    fut[:m, :, 0] = cy[:, None] * rel[..., 0] + sy[:, None] * rel[..., 1]
    fut[:m, :, 1] = -sy[:, None] * rel[..., 0] + cy[:, None] * rel[..., 1]
    fut_valid = np.zeros((cfg.n_max, PRED_STEPS), np.float32)
    fut_valid[:m] = 1.0
    return {
        "raster": raster,
        "agent_hist": inputs.agent_hist,
        "agent_state": inputs.agent_state,
        "agent_valid": inputs.agent_valid,
        "ego_state": inputs.ego_state,
        "ego_plan": inputs.ego_plan,
        "future_m": fut,
        "future_valid": fut_valid,
        "agent_index": inputs.agent_index,
        "agent_pose_world": inputs.agent_pose_world,
    }


def stack_batch(items: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Stack per-window dicts along a new batch axis."""
    return {k: np.stack([it[k] for it in items]) for k in items[0]}


@dataclass
class Metrics:
    """Accumulated per-agent ADE/FDE sums (metres), and KDE NLL when ``kde`` is given."""

    n: int = 0
    min_ade: float = 0.0
    min_fde: float = 0.0
    ml_ade: float = 0.0
    ml_fde: float = 0.0
    kde: KdeNll | None = None

    def add(self, traj: np.ndarray, probs: np.ndarray, gt: np.ndarray) -> None:
        """traj (n, K, T, 2), probs (n, K), gt (n, T, 2), same frame."""
        err = np.linalg.norm(traj - gt[:, None], axis=-1)  # (n, K, T)
        ade, fde = err.mean(-1), err[..., -1]
        best = probs.argmax(-1)
        r = np.arange(traj.shape[0])
        self.n += traj.shape[0]
        self.min_ade += float(ade.min(-1).sum())
        self.min_fde += float(fde.min(-1).sum())
        self.ml_ade += float(ade[r, best].sum())
        self.ml_fde += float(fde[r, best].sum())
        if self.kde is not None:
            self.kde.add(traj, probs, gt)

    def summary(self) -> dict[str, float]:
        """Means per agent-window; with ``kde``, also ``kde_nll`` (nats) and its set counts."""
        d = max(self.n, 1)
        out = {
            "n": self.n,
            "min_ade_m": self.min_ade / d,
            "min_fde_m": self.min_fde / d,
            "ml_ade_m": self.ml_ade / d,
            "ml_fde_m": self.ml_fde / d,
        }
        if self.kde is not None:
            out.update(self.kde.summary())
        return out


def _last_velocity(w: Window) -> np.ndarray:
    """(n, 2) m/s from the last observed displacement."""
    return (w.obs_m[:, -1] - w.obs_m[:, -2]) / DT_S


def cv_metrics(windows: list[Window]) -> dict[str, float]:
    """Constant velocity (last observed displacement) on the same agent-windows."""
    m = Metrics()
    for w in windows:
        traj, probs, _ = constant_velocity_predictions(
            w.obs_m[:, -1], _last_velocity(w), num_modes=1, future_steps=PRED_STEPS, dt_s=DT_S
        )
        m.add(traj, probs, w.fut_m)
    return m.summary()


def cv_fan_metrics(windows: list[Window]) -> dict[str, float]:
    """The fixed 20-path CV fan (no fitting) on the same agent-windows, with KDE NLL.

    Its most-likely mode is plain CV (path 0), so ``ml_*`` equal :func:`cv_metrics`.
    """
    m = Metrics(kde=KdeNll())
    for w in windows:
        traj, probs = cv_fan_predictions(
            w.obs_m[:, -1], _last_velocity(w), future_steps=PRED_STEPS, dt_s=DT_S
        )
        m.add(traj, probs, w.fut_m)
    return m.summary()


def model_metrics(
    run_batch, cfg: ModelConfig, windows: list[Window], batch_size: int = 32, kde: bool = False
) -> dict[str, float]:
    """Score a model on windows. ``run_batch(feed) -> (traj, probs, scale)`` (numpy, agent frame).

    Windows with more than ``n_max`` pedestrians are scored on the nearest ``n_max`` only;
    ``skipped_agents`` counts the rest (0 on the shared scenes with the default ``n_max``).
    ``kde`` adds KDE NLL (weighted by the mode probabilities); off for per-epoch validation.
    """
    m = Metrics(kde=KdeNll() if kde else None)
    skipped = 0
    for i in range(0, len(windows), batch_size):
        chunk = windows[i : i + batch_size]
        items = [window_inputs(cfg, w) for w in chunk]
        feed = stack_batch(items)
        traj, probs, scale = run_batch(feed)
        for j, (w, it) in enumerate(zip(chunk, items)):
            k = int(np.count_nonzero(it["agent_index"] >= 0))
            skipped += w.obs_m.shape[0] - k
            tw, _ = world_from_agent_predictions(traj[j, :k], scale[j, :k], it["agent_pose_world"][:k])
            m.add(tw, probs[j, :k], w.fut_m[it["agent_index"][:k]])
    out = m.summary()
    out["skipped_agents"] = skipped
    return out
