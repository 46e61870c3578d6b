"""Validation of a ``train-sim`` run, the checkpoint choice, and which weights a run trains."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from prescient.models.net import TrajectoryNet, wta_laplace_loss

if TYPE_CHECKING:
    from prescient.models.sim_samples import SimSamples

_INPUTS = ("raster", "agent_hist", "agent_state", "agent_valid", "ego_state", "ego_plan")

# What a run may train alone (``TrainConfig.train_only``): the named submodule's weights; every
# other weight, and every BatchNorm's running statistics, stay as loaded.
TRAIN_ONLY = ("scorer",)


def _forward(model: TrajectoryNet, bt: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    return model.forward_logits(
        bt["raster"], bt["agent_hist"], bt["agent_state"], bt["agent_valid"], bt["ego_state"], bt["ego_plan"]
    )


@torch.no_grad()
def validate(model: TrajectoryNet, data: SimSamples, items: list[int], batch_size: int) -> dict[str, float]:
    """Mean loss terms; minADE_K / minFDE_K, most-likely ADE / FDE (the highest-logit mode) and
    how often that mode is the closest (metres / share, over agents with a full 8 s future)."""
    model.eval()
    tot: dict[str, float] = {"loss": 0.0, "nll": 0.0, "ce": 0.0}
    sums = {"min_ade_m": 0.0, "min_fde_m": 0.0, "ml_ade_m": 0.0, "ml_fde_m": 0.0, "top_closest": 0.0}
    n_full = 0
    n_batches = 0
    for k in range(0, len(items), batch_size):
        bt = data.batch(items[k : k + batch_size])
        traj, logits, scale = _forward(model, bt)
        loss, stats = wta_laplace_loss(traj, logits, scale, bt["fut"], bt["fv"])
        tot["loss"] += float(loss)
        tot["nll"] += stats["nll"]
        tot["ce"] += stats["ce"]
        n_batches += 1
        full = bt["fv"].min(-1).values > 0  # (B, N)
        err = torch.linalg.norm(traj - bt["fut"][:, :, None], dim=-1)  # (B, N, K, T)
        ade_k = err.mean(-1)  # (B, N, K)
        top = logits.argmax(-1, keepdim=True)  # (B, N, 1)
        sums["min_ade_m"] += float(ade_k.min(-1).values[full].sum())
        sums["min_fde_m"] += float(err[..., -1].min(-1).values[full].sum())
        sums["ml_ade_m"] += float(ade_k.gather(-1, top)[..., 0][full].sum())
        sums["ml_fde_m"] += float(err[..., -1].gather(-1, top)[..., 0][full].sum())
        sums["top_closest"] += float((ade_k.argmin(-1) == top[..., 0])[full].sum())
        n_full += int(full.sum())
    out = {k: v / max(n_batches, 1) for k, v in tot.items()}
    out.update({k: v / max(n_full, 1) for k, v in sums.items()})
    out["agents"] = float(n_full)
    return out


def is_better(val: dict[str, float], best: dict[str, float] | None, train_only: str | None) -> bool:
    """Whether validation ``val`` beats ``best``: by minADE_K; by the mode cross-entropy when
    only the scorer trains (its paths, so minADE_K, cannot change)."""
    if best is None:
        return True
    key = "ce" if train_only == "scorer" else "min_ade_m"
    return val[key] < best[key]


def freeze_for(model: TrajectoryNet, train_only: str | None) -> list[torch.nn.Parameter]:
    """The parameters a run trains; with ``train_only`` every other one gets ``requires_grad``
    False and the frozen modules must run in eval mode (see :func:`set_train_mode`).

    Raises:
        ValueError: ``train_only`` names no trainable part of this model.
    """
    if train_only is None:
        return list(model.parameters())
    if train_only not in TRAIN_ONLY or not hasattr(model, train_only):
        raise ValueError(
            f"train_only {train_only!r}: the model has no such part (trainable alone: {TRAIN_ONLY})"
        )
    part = getattr(model, train_only)
    keep = {id(p) for p in part.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)
    return list(part.parameters())


def set_train_mode(model: TrajectoryNet, train_only: str | None) -> None:
    """Training mode for what trains; eval mode for the rest (frozen BatchNorm statistics)."""
    if train_only is None:
        model.train()
        return
    model.eval()
    getattr(model, train_only).train()
