"""Counterfactual-pair training losses: the prediction should move when, and only when, the plan moves the future.

The simulator branches one scene into several ego plans
(:func:`prescient.sim_sensors.counterfactual.branch`): same agents, same current state, different
ego futures, and the true future of every agent under each plan. Training on pairs (A, B) of
branches with :func:`counterfactual_pair_loss` adds, to the usual WTA loss on each branch, a term
that makes the predicted shift (probability-weighted mean path under A minus under B) match the
true shift per agent. Agents the plan does not reach have a true shift of zero, so the same term
penalises spurious plan sensitivity.

Shapes legend as in :mod:`prescient.service.model_io.config`: B scenes, N agents, K modes, T steps.
Both branches share the agents' current poses, so their agent frames coincide and shifts can be
compared in the agent frame directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from prescient.models.net import wta_laplace_loss

Prediction = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # traj, logits, scale of forward_logits


def mean_path(traj: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Probability-weighted mean path: traj (B, N, K, T, 2), logits (B, N, K) -> (B, N, T, 2)."""
    probs = torch.softmax(logits, dim=-1)
    return (probs[..., None, None] * traj).sum(dim=2)


def shift_steps(future_steps: int) -> tuple[int, int]:
    """Default scored steps: mid-horizon and the last one (4 s and 8 s for T = 80 at 0.1 s)."""
    return (future_steps // 2 - 1, future_steps - 1)


def counterfactual_shift_loss(
    traj_a: torch.Tensor,
    logits_a: torch.Tensor,
    traj_b: torch.Tensor,
    logits_b: torch.Tensor,
    future_a: torch.Tensor,
    future_b: torch.Tensor,
    valid_a: torch.Tensor,
    valid_b: torch.Tensor,
    *,
    steps: Sequence[int] | None = None,
    huber_m: float = 1.0,
    moved_threshold_m: float = 0.5,
    moved_weight: float = 1.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Huber loss between the predicted and the true plan-induced shift, per agent.

    Args:
        traj_a, traj_b: (B, N, K, T, 2) predicted positions under plans A and B, agent frame, m.
        logits_a, logits_b: (B, N, K) mode logits under A and B.
        future_a, future_b: (B, N, T, 2) true futures under A and B, agent frame, m.
        valid_a, valid_b: (B, N, T) 1 where that branch's future exists; a step counts when it
            exists in both.
        steps: future step indices scored (default :func:`shift_steps`).
        huber_m: Huber transition (``smooth_l1`` beta), metres, per axis.
        moved_threshold_m: an agent "moved" when its true shift at the last scored step exceeds
            this; reported separately.
        moved_weight: weight of moved agents relative to unmoved ones (they are few).

    Returns:
        (loss, stats): loss averaged over agents with a scored step; stats (floats):
        ``shift_loss``; ``shift_err_m`` mean shift error (L2) over scored steps and agents;
        ``shift_err_moved_m`` the same over moved agents (0 if none); ``spurious_shift_m`` mean
        predicted shift norm of unmoved agents (0 if none); ``moved_fraction``.
    """
    idx = list(shift_steps(traj_a.shape[3]) if steps is None else steps)
    pred = (mean_path(traj_a, logits_a) - mean_path(traj_b, logits_b))[:, :, idx]  # (B, N, S, 2)
    true = (future_a - future_b)[:, :, idx]
    v = (valid_a * valid_b)[:, :, idx].float()  # (B, N, S)
    true = true * v[..., None]  # zero where invalid: padding may hold anything
    per_step = F.smooth_l1_loss(pred, true, beta=huber_m, reduction="none").sum(-1)  # (B, N, S)
    n_steps = v.sum(-1)
    scored = (n_steps > 0).float()  # (B, N)
    per_agent = (per_step * v).sum(-1) / n_steps.clamp(min=1.0)
    moved = (torch.linalg.norm(true[:, :, -1], dim=-1) > moved_threshold_m).float() * scored
    weight = scored + (moved_weight - 1.0) * moved
    loss = (per_agent * weight).sum() / weight.sum().clamp(min=1e-6)

    with torch.no_grad():
        err = (torch.linalg.norm(pred - true, dim=-1) * v).sum(-1) / n_steps.clamp(min=1.0)  # (B, N)
        pred_norm = (torch.linalg.norm(pred, dim=-1) * v).sum(-1) / n_steps.clamp(min=1.0)
        unmoved = scored - moved

        def avg(x: torch.Tensor, w: torch.Tensor) -> float:
            return float((x * w).sum() / w.sum()) if float(w.sum()) > 0 else 0.0

        stats = {
            "shift_loss": float(loss.detach()),
            "shift_err_m": avg(err, scored),
            "shift_err_moved_m": avg(err, moved),
            "spurious_shift_m": avg(pred_norm, unmoved),
            "moved_fraction": avg(moved, scored),
        }
    return loss, stats


def counterfactual_pair_loss(
    pred_a: Prediction,
    pred_b: Prediction,
    future_a: torch.Tensor,
    valid_a: torch.Tensor,
    future_b: torch.Tensor,
    valid_b: torch.Tensor,
    *,
    shift_weight: float = 1.0,
    shift_kwargs: dict[str, Any] | None = None,
    **wta_kwargs: Any,
) -> tuple[torch.Tensor, dict[str, float]]:
    """WTA loss on each branch plus ``shift_weight`` times :func:`counterfactual_shift_loss`.

    Args:
        pred_a, pred_b: ``(traj, logits, scale)`` of :meth:`TrajectoryNet.forward_logits` for the
            same scene under plans A and B (shapes (B, N, K, T, 2), (B, N, K), (B, N, K, T, 2)).
        future_a, future_b: (B, N, T, 2) true futures under A and B, agent frame, metres.
        valid_a, valid_b: (B, N, T) validity of those futures.
        shift_weight: weight of the shift term.
        shift_kwargs: keyword arguments of :func:`counterfactual_shift_loss` (steps, huber_m, ...).
        **wta_kwargs: passed to :func:`prescient.models.net.wta_laplace_loss` (cls_weight,
            mixture_weight).

    Returns:
        (loss, stats): the WTA stats of each branch averaged (same keys), plus the shift stats.
    """
    loss_a, stats_a = wta_laplace_loss(*pred_a, future_a, valid_a, **wta_kwargs)
    loss_b, stats_b = wta_laplace_loss(*pred_b, future_b, valid_b, **wta_kwargs)
    shift, shift_stats = counterfactual_shift_loss(
        pred_a[0],
        pred_a[1],
        pred_b[0],
        pred_b[1],
        future_a,
        future_b,
        valid_a,
        valid_b,
        **(shift_kwargs or {}),
    )
    stats = {k: 0.5 * (stats_a[k] + stats_b[k]) for k in stats_a}
    stats.update(shift_stats)
    return 0.5 * (loss_a + loss_b) + shift_weight * shift, stats


def accel_match_loss(
    traj: torch.Tensor, future_m: torch.Tensor, future_valid: torch.Tensor, dt_s: float
) -> torch.Tensor:
    """Mean |a_pred - a_true| (m/s^2) of the mode closest to the truth (winner by ADE).

    Why: the L1 position loss barely sees wiggles of a few centimetres, yet a planner that
    differentiates the path reads them as m/s^2 of acceleration. Matching the winner's second
    differences to the truth's teaches its shape without pulling any mode towards constant
    velocity (penalising |a| alone would).

    Args:
        traj: (B, N, K, T, 2) agent frame, m. future_m: (B, N, T, 2). future_valid: (B, N, T).
        dt_s: step, s.

    Returns:
        Scalar; 0 when no agent has three consecutive valid steps.
    """
    fv = future_valid.float()
    err = torch.linalg.vector_norm(traj - future_m[:, :, None], dim=-1)  # (B, N, K, T)
    ade = (err * fv[:, :, None]).sum(-1) / fv.sum(-1, keepdim=True).clamp(min=1.0)
    win = ade.argmin(dim=-1)  # (B, N)
    idx = win[:, :, None, None, None].expand(-1, -1, 1, *traj.shape[-2:])
    best = traj.gather(2, idx)[:, :, 0]  # (B, N, T, 2)

    def d2(x: torch.Tensor) -> torch.Tensor:
        return x[..., 2:, :] - 2 * x[..., 1:-1, :] + x[..., :-2, :]

    ok = fv[..., 2:] * fv[..., 1:-1] * fv[..., :-2]  # (B, N, T-2)
    diff = torch.linalg.vector_norm(d2(best) - d2(future_m), dim=-1) / dt_s**2
    return (diff * ok).sum() / ok.sum().clamp(min=1.0)
