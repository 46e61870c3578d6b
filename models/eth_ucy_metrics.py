"""ETH/UCY extras: a fixed fan of constant-velocity paths, and the KDE NLL distribution metric.

**CV fan.** An untrained 20-path baseline for best-of-20: from the last observed position and
velocity, every pair of a heading offset in :data:`FAN_HEADINGS_DEG` and a speed factor in
:data:`FAN_SPEED_FACTORS` (5 x 4 = 20 paths, equal weights). The grid is fixed by hand, not fitted
to any data. Path 0 is the exact constant-velocity path (offset 0, factor 1), so the fan's
most-likely mode (``argmax`` of equal weights picks index 0) is plain CV.

**KDE NLL** (as in Trajectron / Trajectron++ ``compute_kde_nll``): for each agent-window and each
future step t, a Gaussian kernel density with Scott's bandwidth is fitted to the K predicted
positions at t, weighted by the mode probabilities, and ``-log p(ground truth at t)`` is taken; it
is averaged over the steps, then over agent-windows. Units: nats, for positions in metres; lower is
better. :func:`kde_logpdf` computes exactly what ``scipy.stats.gaussian_kde(samples.T,
weights=w).logpdf(query)`` does (the tests check this), vectorised over agents and steps, because
one scipy fit costs about 0.5 ms and a test split has up to 6000 agent-windows x 12 steps.

Choices:

- The log-density is floored at :data:`LOG_PDF_FLOOR` = -20 nats, Trajectron++'s
  ``log_pdf_lower_bound``, so one far miss adds at most 20 to a step.
- A set whose weighted covariance has a standard deviation below :data:`DEGENERATE_STD_M` along
  some axis (all K points on one point or one line, e.g. a standing pedestrian under the CV fan) has
  no usable density: scipy raises ``LinAlgError`` for exact singularity and returns a needle for
  near-singularity. Such a set gets an isotropic jitter of :data:`JITTER_STD_M` (1 cm, about the
  annotation resolution), drawn from a fixed seed and the same for every set, so results do not depend
  on the order of evaluation. A set still degenerate after the jitter (its weight on one point) is
  skipped and counted.
- Papers report KDE NLL fitted on many more samples than 20, so compare rows of our table with each
  other, not with published KDE NLL.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

FAN_HEADINGS_DEG = (0.0, -12.0, 12.0, -24.0, 24.0)  # offsets from the CV heading, CV first
FAN_SPEED_FACTORS = (1.0, 0.8, 0.6, 1.3)  # pedestrians slow down more often than they speed up
FAN_SIZE = len(FAN_HEADINGS_DEG) * len(FAN_SPEED_FACTORS)  # 20

LOG_PDF_FLOOR = -20.0  # nats (Trajectron++ log_pdf_lower_bound)
DEGENERATE_STD_M = 1e-3
JITTER_STD_M = 1e-2
JITTER_SEED = 0


def cv_fan_predictions(
    position_m: np.ndarray, velocity_mps: np.ndarray, *, future_steps: int, dt_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """The fixed 20-path constant-velocity fan (see the module docstring).

    Args:
        position_m: (N, 2) last observed positions, metres.
        velocity_mps: (N, 2) last observed velocities, m/s, same frame.
        future_steps: T; the first step is ``dt_s`` after the last observation.
        dt_s: step, seconds.

    Returns:
        traj (N, 20, T, 2) float64 metres, same frame; probs (N, 20), all 1/20. Path k uses heading
        offset ``FAN_HEADINGS_DEG[k % 5]`` and speed factor ``FAN_SPEED_FACTORS[k // 5]``.
    """
    heading_rad = np.deg2rad(np.tile(FAN_HEADINGS_DEG, len(FAN_SPEED_FACTORS)))  # (20,)
    speed = np.repeat(FAN_SPEED_FACTORS, len(FAN_HEADINGS_DEG))  # (20,)
    c, s = np.cos(heading_rad) * speed, np.sin(heading_rad) * speed
    vx, vy = velocity_mps[:, 0:1], velocity_mps[:, 1:2]  # (N, 1)
    vel = np.stack([c * vx - s * vy, s * vx + c * vy], axis=-1)  # (N, 20, 2) rotated and scaled
    t_s = dt_s * np.arange(1, future_steps + 1)  # (T,)
    traj = position_m[:, None, None, :] + vel[:, :, None, :] * t_s[None, None, :, None]
    probs = np.full((position_m.shape[0], FAN_SIZE), 1.0 / FAN_SIZE)
    return traj, probs


def _weighted_cov(samples_m: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Unbiased weighted covariance, as ``np.cov(aweights=w)``. (..., K, 2), (..., K) -> (..., 2, 2)."""
    mean = np.einsum("...k,...ki->...i", w, samples_m)
    d = samples_m - mean[..., None, :]
    v2 = (w * w).sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):  # v2 == 1: all weight on one point
        return np.einsum("...k,...ki,...kj->...ij", w, d, d) / (1.0 - v2)[..., None, None]


def _is_degenerate(cov: np.ndarray) -> np.ndarray:
    """(..., 2, 2) -> (...,) bool: some axis has a standard deviation under DEGENERATE_STD_M (or NaN)."""
    with np.errstate(invalid="ignore"):
        low = np.linalg.eigvalsh(np.nan_to_num(cov, nan=0.0))[..., 0]
    return ~np.isfinite(cov).all(axis=(-1, -2)) | (low < DEGENERATE_STD_M**2)


def kde_logpdf(samples_m: np.ndarray, weights: np.ndarray, query_m: np.ndarray) -> np.ndarray:
    """Log-density of a weighted Gaussian KDE (Scott's bandwidth), as ``scipy.stats.gaussian_kde``.

    Args:
        samples_m: (..., K, 2) sample positions, metres.
        weights: (..., K) non-negative sample weights (normalised here).
        query_m: (..., 2) where to evaluate, metres.

    Returns:
        (...,) log-density, nats (log 1/m^2); NaN where the weighted covariance is singular.
    """
    w = weights / weights.sum(-1, keepdims=True)
    n_eff = 1.0 / (w * w).sum(-1)
    factor2 = n_eff ** (-2.0 / 6.0)  # Scott: n_eff^(-1/(d+4)) with d = 2, squared
    cov = _weighted_cov(samples_m, w) * factor2[..., None, None]  # kernel covariance
    det = cov[..., 0, 0] * cov[..., 1, 1] - cov[..., 0, 1] * cov[..., 1, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.stack([cov[..., 1, 1], -cov[..., 0, 1], -cov[..., 1, 0], cov[..., 0, 0]], -1)
        inv = inv.reshape(cov.shape) / det[..., None, None]
        r = query_m[..., None, :] - samples_m  # (..., K, 2)
        maha = np.einsum("...ki,...ij,...kj->...k", r, inv, r)
        log_w = np.log(w)  # -inf for zero weights drops those samples
    out = logsumexp(log_w - 0.5 * maha, axis=-1) - np.log(2.0 * np.pi) - 0.5 * np.log(det)
    return np.where(det > 0, out, np.nan)


def kde_nll(traj_m: np.ndarray, probs: np.ndarray, gt_m: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Per agent-window KDE NLL with the floor, jitter and skip rules of the module docstring.

    Args:
        traj_m: (n, K, T, 2) predicted paths, metres.
        probs: (n, K) mode probabilities (used as KDE weights).
        gt_m: (n, T, 2) ground truth, same frame.

    Returns:
        nll (n,) nats, mean over the scored steps (NaN if no step was scored); the number of
        (agent-window, step) sets jittered; the number skipped.
    """
    samples = np.moveaxis(np.asarray(traj_m, np.float64), 1, 2)  # (n, T, K, 2)
    w = np.broadcast_to(np.asarray(probs, np.float64)[:, None, :], samples.shape[:-1])  # (n, T, K)
    w = w / w.sum(-1, keepdims=True)
    bad = _is_degenerate(_weighted_cov(samples, w))  # (n, T)
    jitter = np.random.default_rng(JITTER_SEED).normal(0.0, JITTER_STD_M, samples.shape[-2:])  # (K, 2)
    samples = np.where(bad[..., None, None], samples + jitter, samples)
    skip = _is_degenerate(_weighted_cov(samples, w))
    log_p = np.maximum(kde_logpdf(samples, w, np.asarray(gt_m, np.float64)), LOG_PDF_FLOOR)
    log_p = np.where(skip, np.nan, log_p)
    scored = (~skip).sum(-1)
    with np.errstate(invalid="ignore"):
        nll = -np.where(skip, 0.0, log_p).sum(-1) / scored
    return np.where(scored > 0, nll, np.nan), int(bad.sum()), int(skip.sum())


@dataclass
class KdeNll:
    """Accumulated KDE NLL over agent-windows (see :func:`kde_nll`)."""

    total: float = 0.0
    n: int = 0
    jittered: int = 0
    skipped: int = 0

    def add(self, traj_m: np.ndarray, probs: np.ndarray, gt_m: np.ndarray) -> None:
        """traj_m (n, K, T, 2), probs (n, K), gt_m (n, T, 2), same frame, metres."""
        nll, jittered, skipped = kde_nll(traj_m, probs, gt_m)
        ok = np.isfinite(nll)
        self.total += float(nll[ok].sum())
        self.n += int(ok.sum())
        self.jittered += jittered
        self.skipped += skipped

    def summary(self) -> dict[str, float]:
        """``kde_nll`` (nats, mean over scored agent-windows; NaN if none), and the counts."""
        return {
            "kde_nll": self.total / self.n if self.n else float("nan"),
            "kde_n": self.n,
            "kde_jittered_sets": self.jittered,
            "kde_skipped_sets": self.skipped,
        }
