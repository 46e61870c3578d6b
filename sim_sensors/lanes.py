"""Lane geometry for the kernels: the lane graph as per-lane records, and arc-length math (numba).

A lane is a polyline: lane ``l`` owns points ``pts[lo:hi]`` (world frame, m) where ``lo, hi`` are
its record's ``pt_lo, pt_hi``, and ``cum_s`` holds each point's arc length from its lane start
(m). Arc length ``s`` runs along the lane; the lateral offset ``d`` is + left of the direction
of travel. Kernels take one lane as its record (``lanes[l]``, a pointer), not as an index into
a dozen arrays: numba reference-counts every array argument of a call, records cost nothing.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from prescient.sim_sensors.rng import rng_uniform_kernel

# One lane of the graph; fields as the MapData attributes of the same name (``off``,
# ``succ_off``, ``pred_off`` split into [lo, hi) pairs per lane).
LANE_RECORD = np.dtype(
    [
        ("length", np.float64),  # m
        ("speed", np.float64),  # speed limit incl. curvature, m/s
        ("stop_s", np.float64),  # stop line arc length, m; -1 none
        ("road_side", np.float64),  # walk lanes: +1 road on the left, -1 right, 0 n/a
        ("jay_dist", np.float64),  # walk lanes: distance across the road, m
        ("kind", np.int32),  # KIND_*
        ("left_nb", np.int32),  # parallel neighbour lanes, -1 none
        ("right_nb", np.int32),
        ("turnaround", np.int32),  # ego-only U-turn from this lane's end, -1 none
        ("turn", np.int32),  # -1 left, 0 straight, +1 right
        ("yield_", np.bool_),  # gives way at its end
        ("is_intersection", np.bool_),
        ("pt_lo", np.int64),  # points pts[pt_lo:pt_hi]
        ("pt_hi", np.int64),
        ("succ_lo", np.int64),  # successors succ[succ_lo:succ_hi]
        ("succ_hi", np.int64),
        ("pred_lo", np.int64),  # predecessors pred[pred_lo:pred_hi]
        ("pred_hi", np.int64),
    ]
)


class LaneGraph(NamedTuple):
    """The lane graph as the behaviour kernels read it (one numba argument). L lanes, P points.

    Attributes:
        lanes: (L,) LANE_RECORD per-lane attributes.
        pts: (P, 2) float64 centerline points, m (MapData.pts, not copied).
        cum_s: (P,) float64 arc length of each point, m (MapData.cum_s).
        succ / pred: successor / predecessor lane indices, int64 (MapData.succ / pred).
        bounds: (4,) float64 ``[x_min, y_min, x_max, y_max]``, m; agents leaving it are removed.
    """

    lanes: np.ndarray
    pts: np.ndarray
    cum_s: np.ndarray
    succ: np.ndarray
    pred: np.ndarray
    bounds: np.ndarray


def lane_graph(md) -> LaneGraph:  # md: prescient.sim_sensors.maps.MapData (not imported: maps stays numba-free)
    """The :class:`LaneGraph` of a MapData (per-lane attributes copied into records, exactly)."""
    lanes = np.zeros(md.n_lanes, LANE_RECORD)
    for name in ("length", "speed", "stop_s", "road_side", "jay_dist", "kind", "left_nb", "right_nb"):
        lanes[name] = getattr(md, name)
    for name in ("turnaround", "turn", "yield_", "is_intersection"):
        lanes[name] = getattr(md, name)
    for prefix, off in (("pt", md.off), ("succ", md.succ_off), ("pred", md.pred_off)):
        lanes[f"{prefix}_lo"], lanes[f"{prefix}_hi"] = off[:-1], off[1:]
    return LaneGraph(lanes, md.pts, md.cum_s, md.succ, md.pred, md.bounds)


@njit(cache=True, nogil=True)
def lane_point_kernel(pts, cum_s, ln, s):
    """(x, y) at arc length ``s`` on lane record ``ln`` (linear, extrapolated past the ends)."""
    a = ln.pt_lo
    b = ln.pt_hi
    if s <= cum_s[a]:
        i = a
    elif s >= cum_s[b - 1]:
        i = b - 2
    else:
        lo, hi = a, b - 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if cum_s[mid] <= s:
                lo = mid
            else:
                hi = mid
        i = lo
    seg = cum_s[i + 1] - cum_s[i]
    t = (s - cum_s[i]) / seg if seg > 1e-9 else 0.0
    return pts[i, 0] + t * (pts[i + 1, 0] - pts[i, 0]), pts[i, 1] + t * (pts[i + 1, 1] - pts[i, 1])


@njit(cache=True, nogil=True)
def lane_pose_kernel(pts, cum_s, ln, s, d):
    """(x, y, yaw) at arc length ``s`` with lateral offset ``d`` (m, + left) on lane record ``ln``.

    The heading is the chord over +-1 m, so it turns smoothly across polyline vertices.
    """
    x, y = lane_point_kernel(pts, cum_s, ln, s)
    x0, y0 = lane_point_kernel(pts, cum_s, ln, s - 1.0)
    x1, y1 = lane_point_kernel(pts, cum_s, ln, s + 1.0)
    yaw = math.atan2(y1 - y0, x1 - x0)
    return x - d * math.sin(yaw), y + d * math.cos(yaw), yaw


@njit(cache=True, nogil=True)
def project_kernel(pts, cum_s, ln, x, y):
    """Closest arc length on lane record ``ln`` to (x, y) and the distance to it (m)."""
    best_d2 = 1e30
    best_s = 0.0
    for i in range(ln.pt_lo, ln.pt_hi - 1):
        ax, ay = pts[i, 0], pts[i, 1]
        bx, by = pts[i + 1, 0] - ax, pts[i + 1, 1] - ay
        den = bx * bx + by * by
        t = 0.0 if den < 1e-12 else min(1.0, max(0.0, ((x - ax) * bx + (y - ay) * by) / den))
        px, py = ax + t * bx - x, ay + t * by - y
        d2 = px * px + py * py
        if d2 < best_d2:
            best_d2 = d2
            best_s = cum_s[i] + t * (cum_s[i + 1] - cum_s[i])
    return best_s, math.sqrt(best_d2)


@njit(cache=True, nogil=True)
def choose_next_kernel(ln, is_ego, succ, rng):
    """A random successor of lane record ``ln``; the ego takes the turnaround at a dead end; -1 if none."""
    n = ln.succ_hi - ln.succ_lo
    if n == 0:
        return ln.turnaround if is_ego else -1
    k = min(n - 1, int(rng_uniform_kernel(rng) * n))
    return succ[ln.succ_lo + k]


# Entry points for Python callers: they take the lane as an index, because numba unboxes a
# numpy record passed from Python about four times slower than a few arrays.
@njit(cache=True, nogil=True)
def _lane_pose_at_kernel(lanes, pts, cum_s, lane, s, d):
    return lane_pose_kernel(pts, cum_s, lanes[lane], s, d)


@njit(cache=True, nogil=True)
def _choose_next_at_kernel(lanes, succ, lane, is_ego, rng):
    return choose_next_kernel(lanes[lane], is_ego, succ, rng)


def lane_pose(g: LaneGraph, lane: int, s: float, d: float) -> tuple[float, float, float]:
    """(x_m, y_m, yaw_rad) at arc length ``s`` (m), lateral offset ``d`` (m) on ``lane`` (Python callers)."""
    return _lane_pose_at_kernel(g.lanes, g.pts, g.cum_s, lane, s, d)


def choose_next(g: LaneGraph, lane: int, is_ego: bool, rng: np.ndarray) -> int:
    """Next lane after ``lane`` drawn from the kernel RNG state ``rng`` (1,) uint64 (Python callers)."""
    return int(_choose_next_at_kernel(g.lanes, g.succ, lane, is_ego, rng))
