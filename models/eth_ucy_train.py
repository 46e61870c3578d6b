"""ETH/UCY training: the schedule and losses of the per-scene model (leave one scene out).

The net is :class:`prescient.models.net.TrajectoryNet` with the map-free :func:`eth_config`; data,
windows and metrics come from :mod:`prescient.models.eth_ucy`. Training is by epochs and steps
(never wall time): the same :class:`EthTrainConfig` and seed give the same weights on the same
machine. ``prescient train eth-ucy`` / ``prescient eval eth-ucy`` run :func:`train_scene` per scene.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from prescient.models.eth_ucy import (
    DEFAULT_EPOCHS,
    EthUcyError,
    Window,
    cv_fan_metrics,
    cv_metrics,
    eth_config,
    load_split,
    model_metrics,
    stack_batch,
    window_inputs,
)
from prescient.service.model_io.config import DECODERS

log = logging.getLogger(__name__)


SELECT_CRITERIA = ("min_ade", "min_ml_ade")  # see EthTrainConfig.select


@dataclass(frozen=True)
class EthTrainConfig:
    """How each left-out scene is trained: a schedule in epochs and steps, never wall time.

    Attributes:
        epochs: passes over ``train``; the learning rate follows the steps of all of them.
        seed: seeds numpy and torch (augmentation, init, batch order): the same seed gives the
            same weights on the same machine, however busy it is.
        batch_size: windows per step.
        lr: peak AdamW learning rate.
        mixture_weight: weight of the mixture NLL beside the winner-takes-all loss (0 = WTA only).
        soft_target_m: temperature (metres of ADE) of the soft mode-classification target; 0 =
            the winning mode (see :func:`prescient.models.net.wta_laplace_loss`).
        scale_aug: each training window is scaled by a factor drawn log-uniformly from
            ``[1/scale_aug, scale_aug]`` (speeds and spacing together; scenes differ in both);
            1 = off.
        flip_aug: each training window is mirrored (x -> -x) with probability 1/2 (pedestrians
            pass on either side).
        decoder: the net's trajectory head, ``"direct"`` or ``"basis"`` (see
            :class:`prescient.service.model_io.config.ModelConfig`).
        cosine: linear warm-up over the first 5 % of steps, then cosine decay to 1 % of ``lr``;
            False keeps ``lr`` constant.
        select: the epoch kept, by validation ``"min_ade"`` (best-of-20 ADE) or ``"min_ml_ade"``
            (best-of-20 ADE plus most-likely ADE).
        max_windows: cap on windows per split (quick runs / tests); None = all.
    """

    epochs: int = DEFAULT_EPOCHS
    seed: int = 0
    batch_size: int = 16
    lr: float = 1e-3
    mixture_weight: float = 0.5
    soft_target_m: float = 0.3
    scale_aug: float = 2.0
    flip_aug: bool = True
    decoder: str = "direct"
    cosine: bool = True
    select: str = "min_ade"
    max_windows: int | None = None

    def __post_init__(self) -> None:
        if self.select not in SELECT_CRITERIA:
            raise EthUcyError(f"select must be one of {SELECT_CRITERIA}, got {self.select!r}")
        if self.decoder not in DECODERS:
            raise EthUcyError(f"decoder must be one of {DECODERS}, got {self.decoder!r}")
        if (
            self.epochs < 1
            or self.batch_size < 1
            or not self.lr > 0
            or not self.mixture_weight >= 0
            or not self.soft_target_m >= 0
            or not self.scale_aug >= 1
        ):
            raise EthUcyError(
                "epochs and batch_size must be >= 1, lr > 0, mixture_weight and soft_target_m >= 0, scale_aug >= 1"
            )


def lr_factor(step: int, total_steps: int, cosine: bool) -> float:
    """Multiplier of the peak learning rate at ``step`` (0-based) of ``total_steps``."""
    if not cosine:
        return 1.0
    warm = max(1, total_steps // 20)
    if step < warm:
        return (step + 1) / warm
    frac = (step - warm) / max(1, total_steps - warm)
    return 0.01 + 0.99 * 0.5 * (1.0 + float(np.cos(np.pi * min(frac, 1.0))))


def _augmented_inputs(cfg, w: Window, rng: np.random.Generator, tc: EthTrainConfig) -> dict[str, np.ndarray]:
    """Net inputs of ``w`` under a random yaw and, when on, a random scale and mirror.

    Each draw happens only when its option is on, after the previous ones, so runs without it
    keep their random stream.
    """
    rotation_rad = float(rng.uniform(-np.pi, np.pi))
    if tc.scale_aug > 1.0:
        f = float(np.exp(rng.uniform(-np.log(tc.scale_aug), np.log(tc.scale_aug))))
        w = Window(w.obs_m * f, w.fut_m * f)
    if tc.flip_aug and rng.random() < 0.5:
        mirror = np.array([-1.0, 1.0])
        w = Window(w.obs_m * mirror, w.fut_m * mirror)
    return window_inputs(cfg, w, rotation_rad=rotation_rad)


def _val_score(val: dict[str, float], select: str) -> float:
    """Lower is better; see :attr:`EthTrainConfig.select`."""
    if select == "min_ml_ade":
        return val["min_ade_m"] + val["ml_ade_m"]
    return val["min_ade_m"]


def train_scene(scene_dir: Path, tc: EthTrainConfig | None = None, out_dir: Path | None = None) -> dict:
    """Train on ``scene_dir/train``, keep the best epoch on ``val`` (``tc.select``), score ``test``.

    Args:
        scene_dir: a ``SCENE`` folder with train/val/test.
        tc: the schedule and loss (defaults: :class:`EthTrainConfig`).
        out_dir: if given, the best checkpoint is saved there as ``<scene>.pt``.

    Returns:
        dict with scene, windows per split, epochs, best epoch, train seconds, the config,
        ``model``, ``cv`` and ``cv_fan`` metrics on ``test``.
    """
    import torch

    from prescient.models.export import save_checkpoint
    from prescient.models.net import TrajectoryNet, wta_laplace_loss

    tc = tc or EthTrainConfig()
    torch.manual_seed(tc.seed)
    rng = np.random.default_rng(tc.seed)
    splits = {s: load_split(scene_dir, s) for s in ("train", "val", "test")}
    if tc.max_windows is not None:
        splits = {s: w[: tc.max_windows] for s, w in splits.items()}
    n_max_seen = max(w.obs_m.shape[0] for ws in splits.values() for w in ws)
    cfg = eth_config(n_max=int(min(96, max(16, 8 * int(np.ceil(n_max_seen / 8))))), decoder=tc.decoder)
    model = TrajectoryNet(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=1e-4)
    train = splits["train"]
    total_steps = tc.epochs * -(-len(train) // tc.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, total_steps, tc.cosine))
    names = ("raster", "agent_hist", "agent_state", "agent_valid", "ego_state", "ego_plan")

    def run_batch(feed: dict[str, np.ndarray]):
        with torch.no_grad():
            out = model(*(torch.from_numpy(feed[n]) for n in names))
        return tuple(o.numpy() for o in out)

    t_start = time.monotonic()
    best: tuple[float, dict | None, int] = (np.inf, None, -1)
    for epoch in range(tc.epochs):
        model.train()
        order = rng.permutation(len(train))
        losses = []
        for i in range(0, len(order), tc.batch_size):
            items = [_augmented_inputs(cfg, train[j], rng, tc) for j in order[i : i + tc.batch_size]]
            feed = {k: torch.from_numpy(v) for k, v in stack_batch(items).items()}
            traj, logits, scale = model.forward_logits(*(feed[n] for n in names))
            loss, _ = wta_laplace_loss(
                traj,
                logits,
                scale,
                feed["future_m"],
                feed["future_valid"],
                mixture_weight=tc.mixture_weight,
                soft_target_m=tc.soft_target_m,
            )
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
        model.eval()
        val = model_metrics(run_batch, cfg, splits["val"])
        log.info(
            "%s epoch %d loss %.3f val minADE %.3f minFDE %.3f most-likely ADE %.3f (%.0f s)",
            scene_dir.name,
            epoch,
            float(np.mean(losses)) if losses else float("nan"),
            val["min_ade_m"],
            val["min_fde_m"],
            val["ml_ade_m"],
            time.monotonic() - t_start,
        )
        score = _val_score(val, tc.select)
        if score < best[0]:
            best = (score, {k: v.clone() for k, v in model.state_dict().items()}, epoch)
    if best[1] is not None:
        model.load_state_dict(best[1])
    model.eval()
    if out_dir is not None:
        save_checkpoint(
            Path(out_dir) / f"{scene_dir.name}.pt",
            model,
            {"scene": scene_dir.name, "seed": tc.seed, "best_epoch": best[2], "train_config": asdict(tc)},
        )
    return {
        "scene": scene_dir.name,
        "windows": {s: len(w) for s, w in splits.items()},
        "epochs": tc.epochs,
        "best_epoch": best[2],
        "train_config": asdict(tc),
        "train_s": time.monotonic() - t_start,
        "model": model_metrics(run_batch, cfg, splits["test"], kde=True),
        "cv": cv_metrics(splits["test"]),
        "cv_fan": cv_fan_metrics(splits["test"]),
    }
