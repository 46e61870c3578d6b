"""Occlusion: an angular depth buffer per sensor, shared by every sensor model (numba).

A sensor at world pose ``(x_m, y_m, yaw_rad)`` sees the 2-D boxes of the packed agent table
``AG`` (:mod:`prescient.sim_sensors.layout`) through B azimuth bins of width ``res`` across its field of
view. Each bin keeps the nearest box it hits; an object's visible fraction is the share of the
bins it spans in which it is the nearest. The ego row occludes like any box.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from prescient.sim_sensors.angles import wrap_kernel
from prescient.sim_sensors.layout import A_L, A_W, A_X, A_Y, A_YAW


class ScanBuffers(NamedTuple):
    """Outputs of :func:`scan_kernel` (overwritten on each call). B bins, M agents.

    Attributes:
        depth: (B,) float64 distance of the first hit per bin, m (rmax + 1 if none).
        owner: (B,) int64 row of AG hit first per bin (-1 none).
        vis_bins / tot_bins: (M,) int64 bins where the object is first / bins it spans in FOV.
        bin_lo / bin_hi: (M,) int64 first / last bin spanned (-1 if outside the FOV).
    """

    depth: np.ndarray
    owner: np.ndarray
    vis_bins: np.ndarray
    tot_bins: np.ndarray
    bin_lo: np.ndarray
    bin_hi: np.ndarray


@njit(cache=True, nogil=True)
def ray_box_kernel(ray, box):
    """Distance (m) along a unit ray to a 2-D oriented box, or -1 if missed / origin inside.

    Args:
        ray: ``(x_m, y_m, dx, dy)`` origin and unit direction.
        box: ``(cx_m, cy_m, cos_yaw, sin_yaw, half_length_m, half_width_m)``.
    """
    ox, oy, dx, dy = ray
    cx, cy, c, s, hl, hw = box
    rx, ry = ox - cx, oy - cy
    px = c * rx + s * ry
    py = -s * rx + c * ry
    qx = c * dx + s * dy
    qy = -s * dx + c * dy
    tmin, tmax = -1e30, 1e30
    if abs(qx) < 1e-12:
        if abs(px) > hl:
            return -1.0
    else:
        t1, t2 = (-hl - px) / qx, (hl - px) / qx
        tmin = max(tmin, min(t1, t2))
        tmax = min(tmax, max(t1, t2))
    if abs(qy) < 1e-12:
        if abs(py) > hw:
            return -1.0
    else:
        t1, t2 = (-hw - py) / qy, (hw - py) / qy
        tmin = max(tmin, min(t1, t2))
        tmax = min(tmax, max(t1, t2))
    if tmax < tmin or tmin <= 0.0:
        return -1.0
    return tmin


@njit(cache=True, nogil=True, inline="always")
def _azimuth_span_kernel(sensor, box):
    """(min, max) sensor-frame azimuth (rad, unwrapped around the centre) of a box's corners.

    Args:
        sensor: ``(x_m, y_m, yaw_rad)``.
        box: ``(cx_m, cy_m, cos_yaw, sin_yaw, half_length_m, half_width_m)``.
    """
    sx, sy, syaw = sensor
    cx, cy, c, s, hl, hw = box
    az_c = wrap_kernel(math.atan2(cy - sy, cx - sx) - syaw)
    amin, amax = 1e9, -1e9
    for k in range(4):
        ex = hl if (k & 1) == 0 else -hl
        ey = hw if (k & 2) == 0 else -hw
        px = cx + c * ex - s * ey - sx
        py = cy + s * ex + c * ey - sy
        a = az_c + wrap_kernel(math.atan2(py, px) - syaw - az_c)
        amin = min(amin, a)
        amax = max(amax, a)
    return amin, amax


@njit(cache=True, nogil=True)
def scan_kernel(sensor, fov, AG, scan):
    """Angular depth buffer of one sensor: which object each azimuth bin sees first.

    Args:
        sensor: ``(x_m, y_m, yaw_rad)`` world pose of the sensor.
        fov: ``(hfov_rad, range_m, bin_width_rad)``.
        AG: (M, NA) float64 packed agents.
        scan: :class:`ScanBuffers`, B = len(depth) bins, overwritten.
    """
    sx, sy, syaw = sensor
    hfov, rmax, res = fov
    depth, owner, vis_bins, tot_bins, bin_lo, bin_hi = scan
    B = depth.shape[0]
    for b in range(B):
        depth[b] = rmax + 1.0
        owner[b] = -1
    half = 0.5 * hfov
    for j in range(AG.shape[0]):
        vis_bins[j] = 0
        tot_bins[j] = 0
        bin_lo[j] = -1
        bin_hi[j] = -1
        cx, cy = AG[j, A_X], AG[j, A_Y]
        hl, hw = 0.5 * AG[j, A_L], 0.5 * AG[j, A_W]
        dxc, dyc = cx - sx, cy - sy
        if math.sqrt(dxc * dxc + dyc * dyc) - math.sqrt(hl * hl + hw * hw) > rmax:
            continue
        box = (cx, cy, math.cos(AG[j, A_YAW]), math.sin(AG[j, A_YAW]), hl, hw)
        amin, amax = _azimuth_span_kernel(sensor, box)
        if amax < -half or amin > half:
            continue
        b0 = max(0, int(math.floor((amin + half) / res)))
        b1 = min(B - 1, int(math.floor((amax + half) / res)))
        if b1 < b0:
            continue
        bin_lo[j] = b0
        bin_hi[j] = b1
        for b in range(b0, b1 + 1):
            az = syaw - half + (b + 0.5) * res
            t = ray_box_kernel((sx, sy, math.cos(az), math.sin(az)), box)
            if t > 0.0:
                tot_bins[j] += 1
                if t < depth[b]:
                    depth[b] = t
                    owner[b] = j
    for b in range(B):
        if owner[b] >= 0 and depth[b] <= rmax:
            vis_bins[owner[b]] += 1
