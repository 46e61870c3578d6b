"""Safety and prediction scores of one simulated scene (pure functions of arrays; no Ray, no I/O).

Definitions (world frame, metres, seconds):

* **gap**: the distance between the ego box and an agent's box (oriented rectangles from the
  ground truth; the ego box centre is ``EGO_CENTER_FROM_REAR_AXLE_M`` ahead of its rear-axle
  pose). 0 when they overlap: a **collision**. A **near miss** is a gap below
  :data:`NEAR_MISS_M` (1 m) without a collision.
* **TTC** (truth): for every agent at every ground-truth frame, the time until the ego and the
  agent, both holding their current velocity, come within the planner stub's
  ``COLLISION_RADIUS_M`` (2.5 m, centre to centre); 0 when already that close; none beyond
  :data:`TTC_HORIZON_S`.
* **hard braking**: the ego's deceleration (from the speed of consecutive ``EgoState``) above
  :data:`HARD_BRAKE_MPS2` (4 m/s^2).

Severity (worst first, :func:`severity_key`): a collision, then a near miss, then the lower
minimum TTC, then the larger model minFDE6 at the longest horizon scored.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from prescient.service.planner_stub import COLLISION_RADIUS_M

NEAR_MISS_M = 1.0
HARD_BRAKE_MPS2 = 4.0
TTC_HORIZON_S = 10.0


def box_corners(
    xy_m: np.ndarray, yaw_rad: np.ndarray, length_m: np.ndarray, width_m: np.ndarray
) -> np.ndarray:
    """(N, 4, 2) corners of N oriented boxes (centre (N, 2), yaw (N,), length and width (N,))."""
    c, s = np.cos(yaw_rad), np.sin(yaw_rad)
    ux = np.stack([c, s], -1) * (length_m / 2)[:, None]  # (N, 2) half-length along the heading
    uy = np.stack([-s, c], -1) * (width_m / 2)[:, None]  # (N, 2) half-width across it
    signs = np.array([[1, 1], [1, -1], [-1, -1], [-1, 1]], np.float64)  # (4, 2)
    return xy_m[:, None] + signs[None, :, :1] * ux[:, None] + signs[None, :, 1:] * uy[:, None]


def _point_segment_dist(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance of points p (..., 2) to segments a-b (..., 2), broadcast."""
    ab = b - a
    t = np.clip(((p - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0.0, 1.0)
    return np.linalg.norm(a + t[..., None] * ab - p, axis=-1)


def _overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) separating-axis test of box ``a`` (4, 2) against boxes ``b`` (N, 4, 2)."""
    sep = np.zeros(len(b), bool)
    axes = [a[1] - a[0], a[3] - a[0]]
    for bb in (b[:, 1] - b[:, 0], b[:, 3] - b[:, 0]):
        axes.append(bb)
    for ax in axes:
        axn = np.broadcast_to(ax, (len(b), 2))  # (N, 2)
        pa = (a[None] * axn[:, None]).sum(-1)  # (N, 4)
        pb = (b * axn[:, None]).sum(-1)  # (N, 4)
        sep |= (pa.max(1) < pb.min(1)) | (pb.max(1) < pa.min(1))
    return ~sep


def box_gaps(ego: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(N,) distance from the ego box (4, 2) to each box (N, 4, 2); 0 where they overlap."""
    if len(boxes) == 0:
        return np.zeros(0)
    e_next, b_next = np.roll(ego, -1, 0), np.roll(boxes, -1, 1)
    d1 = _point_segment_dist(ego[None, :, None], boxes[:, None], b_next[:, None]).min((1, 2))  # ego corners
    d2 = _point_segment_dist(boxes[:, :, None], ego[None, None], e_next[None, None]).min((1, 2))
    return np.where(_overlap(ego, boxes), 0.0, np.minimum(d1, d2))


def ttc_s(rel_xy_m: np.ndarray, rel_v_mps: np.ndarray, radius_m: float = COLLISION_RADIUS_M) -> np.ndarray:
    """(N,) constant-velocity time until |rel_xy + rel_v t| < radius (inf: never within the horizon)."""
    p, v = rel_xy_m, rel_v_mps
    a = (v * v).sum(-1)
    b = 2 * (p * v).sum(-1)
    c = (p * p).sum(-1) - radius_m**2
    disc = b * b - 4 * a * c
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (-b - np.sqrt(np.maximum(disc, 0.0))) / (2 * a)
    out = np.where((disc >= 0) & (a > 1e-9) & (t >= 0) & (t <= TTC_HORIZON_S), t, np.inf)
    return np.where(c <= 0, 0.0, out)


def max_decel_mps2(t_s: np.ndarray, speed_mps: np.ndarray) -> tuple[float, float]:
    """(largest deceleration m/s^2, seconds spent above HARD_BRAKE_MPS2) from (M,) ego speeds."""
    if len(t_s) < 2:
        return 0.0, 0.0
    dt = np.diff(t_s)
    decel = -np.diff(speed_mps) / np.maximum(dt, 1e-9)
    return float(max(decel.max(), 0.0)), float(dt[decel > HARD_BRAKE_MPS2].sum())


def severity_key(rec: dict[str, Any]) -> tuple[int, int, float, float]:
    """Sort key, worst first: collision, near miss, lower min TTC, larger model minFDE6."""
    s = rec.get("safety", {})
    ttc = s.get("min_ttc_s")
    fde = (rec.get("prediction") or {}).get("model_min_fde")
    return (
        0 if s.get("collision") else 1,
        0 if s.get("near_miss") else 1,
        math.inf if ttc is None else float(ttc),
        -(fde if fde is not None else 0.0),
    )


def finite_or_none(x: float, ndigits: int = 3) -> float | None:
    """``round(x)``, or None for inf/NaN (JSON has neither)."""
    return round(float(x), ndigits) if math.isfinite(x) else None
