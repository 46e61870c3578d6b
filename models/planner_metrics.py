"""What a planner asks of a multi-modal prediction, beyond best-of-K displacement.

Per agent (the accumulator in :mod:`prescient.models.eval_sim` averages them; :func:`ece` bins them):

* ``ml_ade`` / ``ml_fde``: displacement of the *most likely* mode (what a planner that takes one
  guess uses), at each horizon.
* ``top_closest``: 1 when the most likely mode is also the one closest to the truth at the horizon;
  ``top_prob``: its probability. Over many agents, the share of ``top_closest`` among agents whose
  ``top_prob`` is near p should be p: :func:`ece` measures how far it is.
* ``spread_m``: mean pairwise distance between the modes' positions at the horizon (how far apart
  the alternatives are; wide low-probability modes create phantom conflicts for a planner).
* ``rough_ml`` / ``rough_gt``: mean |second difference| of positions per step (m per step^2) of
  the most likely mode and of the true future up to the horizon; divided by dt^2 it is the
  acceleration a planner would read off the path. ``jerk_ml`` / ``jerk_gt``: mean |third
  difference| / dt^3 (m/s^3).

All inputs in one frame (metres); the metrics are frame-invariant.
"""

from __future__ import annotations

from typing import Any

import numpy as np

ECE_BINS = 10


def planner_metrics(
    traj_m: np.ndarray, probs: np.ndarray, gt_m: np.ndarray, n_steps: int, dt_s: float
) -> dict[str, np.ndarray]:
    """Per-agent planner metrics over steps ``1 .. n_steps``.

    Args:
        traj_m: (A, K, T, 2) predicted positions. probs: (A, K) mode probabilities.
        gt_m: (A, T, 2) true positions. n_steps: the horizon in steps (<= T). dt_s: step, s.

    Returns:
        ``{"ml_ade", "ml_fde", "top_closest", "top_prob", "spread_m", "rough_ml", "rough_gt",
        "jerk_ml", "jerk_gt"}``, each (A,) float64.
    """
    a, k, t, _ = traj_m.shape
    if not 1 <= n_steps <= t:
        raise ValueError(f"n_steps {n_steps} outside 1..{t}")
    rows = np.arange(a)
    top = np.asarray(probs).argmax(-1)
    pred = np.asarray(traj_m, np.float64)[..., :n_steps, :]
    gt = np.asarray(gt_m, np.float64)[:, :n_steps]
    ml = pred[rows, top]  # (A, n, 2)
    err_ml = np.linalg.norm(ml - gt, axis=-1)
    fde_modes = np.linalg.norm(pred[:, :, -1] - gt[:, None, -1], axis=-1)  # (A, K)
    end = pred[:, :, -1]  # (A, K, 2)
    pair = np.linalg.norm(end[:, :, None] - end[:, None, :], axis=-1)  # (A, K, K)
    spread = pair.sum((1, 2)) / max(k * (k - 1), 1)
    return {
        "ml_ade": err_ml.mean(-1),
        "ml_fde": err_ml[:, -1],
        "top_closest": (fde_modes.argmin(-1) == top).astype(np.float64),
        "top_prob": np.asarray(probs, np.float64)[rows, top],
        "spread_m": spread,
        "rough_ml": _mean_abs_diff(ml, 2),
        "rough_gt": _mean_abs_diff(gt, 2),
        "jerk_ml": _mean_abs_diff(ml, 3) / dt_s**3,
        "jerk_gt": _mean_abs_diff(gt, 3) / dt_s**3,
    }


def _mean_abs_diff(path: np.ndarray, order: int) -> np.ndarray:
    """(A,) mean norm of the ``order``-th difference along time of (A, n, 2) paths (0 if too short).

    The agent's current position (the origin of the path, step 0) is not in ``path``; differences
    are taken along the predicted steps only, the same way for prediction and truth.
    """
    if path.shape[1] <= order:
        return np.zeros(path.shape[0])
    return np.linalg.norm(np.diff(path, n=order, axis=1), axis=-1).mean(-1)


def ece(top_prob: np.ndarray, top_closest: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error of the most likely mode's probability.

    Agents are binned by ``top_prob`` into ``bins`` equal-width bins on [0, 1]; ECE is the
    agent-weighted mean over bins of |mean top_prob - share where the top mode was the closest|.
    NaN for no agents.
    """
    p = np.asarray(top_prob, np.float64)
    hit = np.asarray(top_closest, np.float64)
    if p.size == 0:
        return float("nan")
    idx = np.minimum((p * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            total += sel.sum() * abs(p[sel].mean() - hit[sel].mean())
    return float(total / p.size)


def planner_lines(summary: dict[str, Any], methods: tuple[str, ...] = ("model", "cv")) -> list[str]:
    """Markdown rows of the planner metrics per horizon (a :class:`MetricAccumulator` summary)."""
    lines = [
        "",
        "| horizon | method | most-likely ADE / FDE m | top mode closest | ECE | spread m | roughness pred / true (m/step^2) |",
        "|---|---|---|---|---|---|---|",
    ]
    for h, by_method in _by_horizon(summary, methods).items():
        for meth, r in by_method.items():
            lines.append(
                f"| {h} | {meth} | {r['ml_ade']:.2f} / {r['ml_fde']:.2f} | {r['top_closest']:.2f} | "
                f"{r.get('ece', float('nan')):.3f} | {r['spread_m']:.2f} | {r['rough_ml']:.4f} / {r['rough_gt']:.4f} |"
            )
    return lines


def _by_horizon(summary: dict[str, Any], methods: tuple[str, ...]) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for meth in methods:
        for h, r in summary["overall"].get(meth, {}).items():
            if r.get("ml_ade") is not None:
                out.setdefault(h, {})[meth] = r
    return out
