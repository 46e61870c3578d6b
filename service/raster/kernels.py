"""Numba drawing kernels (only ``@njit`` functions live here).

Every kernel works in **continuous pixel coordinates** ``(col, row)`` of the image it draws into
(see :mod:`prescient.service.raster.render_context`): the caller transforms geometry with numpy first, so
the same kernels draw both the ego raster and the world-frame static pre-render. A pixel
``[r, c]`` is inside a shape when its centre ``(c + 0.5, r + 0.5)`` is; each inside test is
written with the same float64 operations as :mod:`prescient.service.raster.reference`, so occupancy
matches the reference bit for bit.

Kernels take arrays and scalars only, allocate nothing per pixel, and never touch Python objects.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def fill_boxes_kernel(raster, boxes, channels, values):  # pragma: no cover - compiled
    """Fill oriented boxes, writing several channel values per box.

    Args:
        raster: (C, H, W) float32, written in place.
        boxes: (M, 6) float64 ``[col, row, ux, uy, half_len_px, half_wid_px]``: centre, unit vector
            of the box's long axis in pixel coordinates, half sizes in pixels.
        channels: (M, K) int64 channel written by each box (-1 = none).
        values: (M, K) float32 value written to each channel inside the box (last box wins).
    """
    _, h, w = raster.shape
    for m in range(boxes.shape[0]):
        cx = boxes[m, 0]
        cy = boxes[m, 1]
        ux = boxes[m, 2]
        uy = boxes[m, 3]
        hl = boxes[m, 4]
        hw = boxes[m, 5]
        ext_c = abs(ux) * hl + abs(uy) * hw
        ext_r = abs(uy) * hl + abs(ux) * hw
        c0 = max(0, int(math.floor(cx - ext_c)) - 1)
        c1 = min(w, int(math.ceil(cx + ext_c)) + 1)
        r0 = max(0, int(math.floor(cy - ext_r)) - 1)
        r1 = min(h, int(math.ceil(cy + ext_r)) + 1)
        for r in range(r0, r1):
            dy = (r + 0.5) - cy
            for c in range(c0, c1):
                dx = (c + 0.5) - cx
                a = dx * ux + dy * uy
                b = dy * ux - dx * uy
                if abs(a) <= hl and abs(b) <= hw:
                    for k in range(channels.shape[1]):
                        ch = channels[m, k]
                        if ch >= 0:
                            raster[ch, r, c] = values[m, k]


@njit(cache=True, nogil=True)
def draw_polylines_kernel(
    raster, points, offsets, channels, values, seg_cos, seg_sin, cos_ch, sin_ch, half_width_px
):  # pragma: no cover - compiled
    """Draw thick polylines: a pixel is lit when its centre is within ``half_width_px`` of a segment.

    Args:
        raster: (C, H, W) float32, written in place.
        points: (P, 2) float64 ``(col, row)`` vertices of all polylines, CSR by ``offsets``.
        offsets: (L + 1,) int64; polyline l has vertices ``offsets[l]:offsets[l + 1]``. A single
            vertex draws a dot.
        channels: (L,) int64 channel of each polyline. values: (L,) float32 its value.
        seg_cos, seg_sin: (P,) float32 values written to ``cos_ch``/``sin_ch`` (when >= 0) by the
            segment starting at each vertex (e.g. lane heading).
        cos_ch, sin_ch: channel indices or -1.
        half_width_px: line half width in pixels.
    """
    _, h, w = raster.shape
    hw2 = half_width_px * half_width_px
    for ln in range(offsets.shape[0] - 1):
        start = offsets[ln]
        stop = offsets[ln + 1]
        if stop <= start:
            continue
        ch = channels[ln]
        val = values[ln]
        last = max(start, stop - 2)
        for p in range(start, last + 1):
            q = p + 1 if p + 1 < stop else p
            ax = points[p, 0]
            ay = points[p, 1]
            dxs = points[q, 0] - ax
            dys = points[q, 1] - ay
            len2 = dxs * dxs + dys * dys
            c0 = max(0, int(math.floor(min(ax, ax + dxs) - half_width_px)) - 1)
            c1 = min(w, int(math.ceil(max(ax, ax + dxs) + half_width_px)) + 1)
            r0 = max(0, int(math.floor(min(ay, ay + dys) - half_width_px)) - 1)
            r1 = min(h, int(math.ceil(max(ay, ay + dys) + half_width_px)) + 1)
            for r in range(r0, r1):
                py = (r + 0.5) - ay
                for c in range(c0, c1):
                    px = (c + 0.5) - ax
                    t = 0.0
                    if len2 > 0.0:
                        t = (px * dxs + py * dys) / len2
                        if t < 0.0:
                            t = 0.0
                        elif t > 1.0:
                            t = 1.0
                    ex = px - t * dxs
                    ey = py - t * dys
                    if ex * ex + ey * ey <= hw2:
                        raster[ch, r, c] = val
                        if cos_ch >= 0:
                            raster[cos_ch, r, c] = seg_cos[p]
                        if sin_ch >= 0:
                            raster[sin_ch, r, c] = seg_sin[p]


@njit(cache=True, nogil=True)
def fill_polygons_kernel(raster, points, offsets, channels, values, scratch):  # pragma: no cover - compiled
    """Fill simple or self-intersecting polygons (even-odd rule) by scanlines through pixel centres.

    Pixel ``[r, c]`` is inside when a ray from its centre towards +col crosses the boundary an odd
    number of times; the crossing abscissae of row ``r`` are computed exactly as the reference's.

    Args:
        raster: (C, H, W) float32, written in place.
        points: (P, 2) float64 ``(col, row)`` vertices, CSR by ``offsets``; the closing edge is
            implicit (a repeated first vertex is harmless).
        offsets: (G + 1,) int64. channels: (G,) int64. values: (G,) float32.
        scratch: (>= max vertices per polygon,) float64 work space for the crossings.
    """
    _, h, w = raster.shape
    for g in range(offsets.shape[0] - 1):
        start = offsets[g]
        stop = offsets[g + 1]
        n = stop - start
        if n < 3:
            continue
        ch = channels[g]
        val = values[g]
        ymin = points[start, 1]
        ymax = points[start, 1]
        for i in range(start, stop):
            ymin = min(ymin, points[i, 1])
            ymax = max(ymax, points[i, 1])
        r0 = max(0, int(math.floor(ymin)) - 1)
        r1 = min(h, int(math.ceil(ymax)) + 1)
        for r in range(r0, r1):
            py = r + 0.5
            k = 0
            for i in range(n):
                ax = points[start + i, 0]
                ay = points[start + i, 1]
                j = start + i + 1 if i + 1 < n else start
                bx = points[j, 0]
                by = points[j, 1]
                if (ay > py) != (by > py):
                    x = ax + (py - ay) * (bx - ax) / (by - ay)
                    # insertion sort into scratch[:k]
                    pos = k
                    while pos > 0 and scratch[pos - 1] > x:
                        scratch[pos] = scratch[pos - 1]
                        pos -= 1
                    scratch[pos] = x
                    k += 1
            for pair in range(0, k - 1, 2):
                xa = scratch[pair]
                xb = scratch[pair + 1]
                c0 = max(0, int(math.floor(xa - 0.5)) - 1)
                c1 = min(w, int(math.ceil(xb)) + 1)
                for c in range(c0, c1):
                    pc = c + 0.5
                    if xa <= pc and pc < xb:
                        raster[ch, r, c] = val


@njit(cache=True, nogil=True)
def splat_points_kernel(raster, channel, points, value):  # pragma: no cover - compiled
    """Set ``raster[channel]`` to ``value`` at every pixel containing a point.

    Args:
        raster: (C, H, W) float32, written in place.
        channel: channel index.
        points: (P, 2) float64 ``(col, row)``; points outside the image are ignored.
        value: value written.
    """
    _, h, w = raster.shape
    for i in range(points.shape[0]):
        fc = math.floor(points[i, 0])
        fr = math.floor(points[i, 1])
        if 0.0 <= fc < w and 0.0 <= fr < h:
            raster[channel, int(fr), int(fc)] = value


@njit(cache=True, nogil=True)
def warp_nearest_kernel(
    raster, out_channels, src, src_w, src_from_raster, cos_k, sin_k, cos_yaw, sin_yaw, index_scratch
):  # pragma: no cover - compiled
    """Nearest-neighbour resample of pre-rendered layers into the raster (the trajdata pattern).

    Every pixel of each ``out_channels`` plane is written (0 outside the source), so the caller
    need not clear those planes. Two source planes ``cos_k``/``sin_k`` (-1 = none) hold a world-frame
    direction and are rotated into the ego frame: ``cos(a - yaw)``, ``sin(a - yaw)``.

    Args:
        raster: (C, H, W) float32, written in place.
        out_channels: (Cs,) int64 raster channel of each source plane.
        src: (Cs, Hs * Ws) float32 source planes, row-major.
        src_w: Ws, source columns.
        src_from_raster: (3, 3) float64 ``(col, row, 1)`` raster -> ``(col, row, 1)`` source.
        cos_k, sin_k: source plane indices of the direction pair, or -1.
        cos_yaw, sin_yaw: cos and sin of the ego yaw in the world frame.
        index_scratch: (H * W,) int64 work space.
    """
    _, h, w = raster.shape
    n_src = src.shape[1]
    src_h = n_src // src_w
    m00 = src_from_raster[0, 0]
    m01 = src_from_raster[0, 1]
    m02 = src_from_raster[0, 2]
    m10 = src_from_raster[1, 0]
    m11 = src_from_raster[1, 1]
    m12 = src_from_raster[1, 2]
    for r in range(h):
        pr = r + 0.5
        for c in range(w):
            pc = c + 0.5
            sc = math.floor(m00 * pc + m01 * pr + m02)
            sr = math.floor(m10 * pc + m11 * pr + m12)
            if 0.0 <= sc < src_w and 0.0 <= sr < src_h:
                index_scratch[r * w + c] = int(sr) * src_w + int(sc)
            else:
                index_scratch[r * w + c] = -1
    for k in range(out_channels.shape[0]):
        if k == sin_k:
            continue
        ch = out_channels[k]
        if k == cos_k and sin_k >= 0:
            ch_s = out_channels[sin_k]
            for r in range(h):
                for c in range(w):
                    idx = index_scratch[r * w + c]
                    if idx >= 0:
                        cw = src[k, idx]
                        sw = src[sin_k, idx]
                        raster[ch, r, c] = cw * cos_yaw + sw * sin_yaw
                        raster[ch_s, r, c] = sw * cos_yaw - cw * sin_yaw
                    else:
                        raster[ch, r, c] = 0.0
                        raster[ch_s, r, c] = 0.0
            continue
        for r in range(h):
            for c in range(w):
                idx = index_scratch[r * w + c]
                raster[ch, r, c] = src[k, idx] if idx >= 0 else 0.0


@njit(cache=True, nogil=True)
def clear_channels_kernel(raster, first, stop):  # pragma: no cover - compiled
    """Zero channels ``first:stop`` of a (C, H, W) float32 raster in place."""
    for ch in range(first, stop):
        raster[ch, :, :] = 0.0


def warm_up_kernels() -> None:
    """Compile (or load from cache) every kernel with the dtypes the rasterizer uses."""
    raster = np.zeros((4, 8, 8), np.float32)
    fill_boxes_kernel(
        raster,
        np.array([[4.0, 4.0, 1.0, 0.0, 2.0, 1.0]]),
        np.array([[0, -1]], np.int64),
        np.array([[1.0, 0.0]], np.float32),
    )
    pts = np.array([[1.0, 1.0], [6.0, 5.0], [2.0, 6.0]])
    off = np.array([0, 3], np.int64)
    draw_polylines_kernel(
        raster,
        pts,
        off,
        np.array([1], np.int64),
        np.array([1.0], np.float32),
        np.zeros(3, np.float32),
        np.zeros(3, np.float32),
        2,
        3,
        0.75,
    )
    fill_polygons_kernel(raster, pts, off, np.array([1], np.int64), np.array([1.0], np.float32), np.zeros(8))
    splat_points_kernel(raster, 0, pts, np.float32(1.0))
    warp_nearest_kernel(
        raster,
        np.array([0, 1], np.int64),
        np.zeros((2, 64), np.float32),
        8,
        np.eye(3),
        0,
        1,
        1.0,
        0.0,
        np.zeros(64, np.int64),
    )
    clear_channels_kernel(raster, 0, 4)
