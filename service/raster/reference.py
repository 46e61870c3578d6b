"""Slow, obviously-correct numpy reference of the rasterizer, for tests and the benchmark.

Every shape is tested against **every pixel centre** of the image with plain vectorised numpy:
boxes by projecting onto the box axes, polygons by even-odd ray casting, polylines by the exact
point-to-segment distance, LiDAR points by flooring. The static map is drawn **directly in the
ego raster** for each pose (no world pre-render, no warp).

Tolerance of the fast path against this reference (checked by the tests on seeded scenes):

* dynamic channels (agents, features, ego, lights, LiDAR): **exact** (same primitives, same
  float64 inside tests);
* static channels: the fast path samples a world-frame pre-render with nearest neighbour, so
  edges move by up to one pixel: every lit fast pixel has a lit reference pixel in its 3x3
  neighbourhood and vice versa, every differing pixel lies on the reference shape's one-pixel
  edge band, and areas of >= 500 px differ on <= 10 % of their pixels. Lane heading values agree
  within 1e-4 on >= 90 % of the pixels lit in both (the rest: overlapping lanes, last one wins).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from prescient.bus.messages import LidarFrame, Tracks, TrafficLights
from prescient.service.raster.dynamic import DynamicPrimitives
from prescient.service.raster.rasterizer import Rasterizer
from prescient.service.raster.render_context import apply
from prescient.service.raster.static_layers import CsrPrimitives
from prescient.service.tracks import TrackSnapshot

F32 = npt.NDArray[np.float32]


def _centres(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    cols, rows = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    return cols, rows  # (H, W) each


def box_mask(h: int, w: int, box: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixel centres inside one ``[col, row, ux, uy, half_len, half_wid]`` box."""
    pc, pr = _centres(h, w)
    dx = pc - box[0]
    dy = pr - box[1]
    a = dx * box[2] + dy * box[3]
    b = dy * box[2] - dx * box[3]
    return (np.abs(a) <= box[4]) & (np.abs(b) <= box[5])


def polygon_mask(h: int, w: int, pts: np.ndarray) -> np.ndarray:
    """(H, W) bool: even-odd ray cast towards +col from every pixel centre; pts (n, 2) col,row."""
    pc, pr = _centres(h, w)
    inside = np.zeros((h, w), bool)
    n = len(pts)
    if n < 3:
        return inside
    for i in range(n):
        ax, ay = pts[i]
        bx, by = pts[(i + 1) % n]
        crosses = (ay > pr) != (by > pr)
        with np.errstate(divide="ignore", invalid="ignore"):
            x = ax + (pr - ay) * (bx - ax) / (by - ay)
        inside ^= crosses & (pc < x)
    return inside


def segment_mask(h: int, w: int, a: np.ndarray, b: np.ndarray, half_width_px: float) -> np.ndarray:
    """(H, W) bool: pixel centres within ``half_width_px`` of segment a-b (pixel coordinates)."""
    pc, pr = _centres(h, w)
    px = pc - a[0]
    py = pr - a[1]
    dxs = b[0] - a[0]
    dys = b[1] - a[1]
    len2 = dxs * dxs + dys * dys
    t = np.clip((px * dxs + py * dys) / len2, 0.0, 1.0) if len2 > 0.0 else np.zeros_like(px)
    ex = px - t * dxs
    ey = py - t * dys
    return ex * ex + ey * ey <= half_width_px * half_width_px


def _segments(pts: np.ndarray):
    if len(pts) == 1:
        yield 0, pts[0], pts[0]
    for p in range(len(pts) - 1):
        yield p, pts[p], pts[p + 1]


def draw_dynamic_reference(raster: np.ndarray, prims: DynamicPrimitives, half_width_px: float) -> None:
    """Draw the dynamic primitives pixel by pixel, in the fast path's order (last write wins)."""
    _, h, w = raster.shape
    for m in range(len(prims.boxes)):
        mask = box_mask(h, w, prims.boxes[m])
        for ch, val in zip(prims.box_channels[m], prims.box_values[m]):
            if ch >= 0:
                raster[ch][mask] = val
    for ln in range(len(prims.line_channels)):
        pts = prims.line_points[prims.line_offsets[ln] : prims.line_offsets[ln + 1]]
        for _, a, b in _segments(pts):
            raster[prims.line_channels[ln]][segment_mask(h, w, a, b, half_width_px)] = prims.line_values[ln]
    for col, row in prims.splat_points:
        c, r = math.floor(col), math.floor(row)
        if 0 <= c < w and 0 <= r < h:
            raster[prims.splat_channel, r, c] = 1.0


def _draw_csr_reference(
    raster: np.ndarray, csr: CsrPrimitives, px_from_world: np.ndarray, polygons: bool, half_width_px: float
) -> list[tuple[np.ndarray, int]]:
    """Draw CSR shapes; return (mask, vertex) pairs of every segment for heading."""
    _, h, w = raster.shape
    pts_px = apply(px_from_world, csr.points_m)
    drawn = []
    for g in range(len(csr.channels)):
        s, e = csr.offsets[g], csr.offsets[g + 1]
        if polygons:
            raster[csr.channels[g]][polygon_mask(h, w, pts_px[s:e])] = csr.values[g]
            continue
        for p, a, b in _segments(pts_px[s:e]):
            mask = segment_mask(h, w, a, b, half_width_px)
            raster[csr.channels[g]][mask] = csr.values[g]
            drawn.append((mask, s + p))
    return drawn


def render_reference(
    rasterizer: Rasterizer,
    tracks: TrackSnapshot | Tracks | None,
    ego_pose: npt.ArrayLike,
    lights: TrafficLights | None = None,
    plan_xy_m: npt.ArrayLike | None = None,
    lidar: list[LidarFrame] | None = None,
    ego_history_xy_m: npt.ArrayLike | None = None,
) -> F32:
    """Reference raster for the same inputs as :meth:`Rasterizer.render` (a fresh array).

    Uses the rasterizer only for its configuration, its map primitives and
    :meth:`Rasterizer.prepare` (the numpy geometry step); all drawing is done here.
    """
    pose, prims = rasterizer.prepare(tracks, ego_pose, lights, plan_xy_m, lidar, ego_history_xy_m)
    raster = np.zeros(rasterizer.spec.shape, np.float32)
    hw = rasterizer.cfg.line_half_width_px
    sp = rasterizer.static_primitives
    if sp is not None:
        r_from_w = rasterizer.ctx.raster_from_world(pose)
        _draw_csr_reference(raster, sp.polygons, r_from_w, True, hw)
        _draw_csr_reference(raster, sp.polylines, r_from_w, False, hw)
        ego_yaw = float(pose[2])
        lane_yaw = np.arctan2(
            sp.centerlines.seg_sin.astype(np.float64), sp.centerlines.seg_cos.astype(np.float64)
        )
        for mask, p in _draw_csr_reference(raster, sp.centerlines, r_from_w, False, hw):
            raster[sp.cos_ch][mask] = math.cos(lane_yaw[p] - ego_yaw)
            raster[sp.sin_ch][mask] = math.sin(lane_yaw[p] - ego_yaw)
    draw_dynamic_reference(raster, prims, hw)
    return raster
