"""LiDAR model: 3-D boxes from an object detector plus a sparse point cloud (numba).

Boxes: objects hit by at least two beams and visible enough are detected with a probability
growing with the number of beams, with Gaussian noise on centre, size and yaw (and the heading
flipped now and then, as box detectors do). Points: ``n_channels`` returns per azimuth bin on
the nearest object, spread over its height. Everything is in the sensor frame (x boresight,
y left, z up from the sensor), metres.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from prescient.sim_sensors.angles import wrap_kernel
from prescient.sim_sensors.layout import (
    A_CLS,
    A_FLAGS,
    A_H,
    A_L,
    A_W,
    A_X,
    A_Y,
    A_YAW,
    CLS_CAR,
    CLS_PED,
    FLAG_EGO,
)
from prescient.sim_sensors.rng import rng_normal_kernel, rng_poisson_kernel, rng_uniform_kernel
from prescient.sim_sensors.sensors.confusion import confuse_class_kernel
from prescient.sim_sensors.sensors.occlusion import ScanBuffers, scan_kernel


class LidarOut(NamedTuple):
    """Output buffers of :func:`lidar_frame_kernel`, float32 in the sensor frame.

    Sensor k owns box rows ``[k*cap, k*cap + counts[k])`` and point rows
    ``[k*pcap, k*pcap + pt_counts[k])``.

    Attributes:
        center: (S * cap, 3) box centre, m; size: (S * cap, 3) length, width, height, m.
        yaw: (S * cap,) rad; cls: (S * cap,) int32; score: (S * cap,) float32.
        counts: (S,) int64 boxes per sensor.
        pts: (S * pcap, 3) points, m; pt_counts: (S,) int64 points per sensor.
    """

    center: np.ndarray
    size: np.ndarray
    yaw: np.ndarray
    cls: np.ndarray
    score: np.ndarray
    counts: np.ndarray
    pts: np.ndarray
    pt_counts: np.ndarray


@njit(cache=True, nogil=True)
def _noisy_box_kernel(truth, noise, p_cls, rng):
    """A detector's box of a true sensor-frame box, with noise and class confusion.

    Args:
        truth: ``(x_m, y_m, z_m, length_m, width_m, height_m, yaw_rad, cls)`` in the sensor frame.
        noise: ``(pos_sigma_m, size_sigma_m, yaw_sigma_rad)``; p_cls: P(class right).

    Returns:
        ``(x, y, z, length, width, height, yaw, cls, score)``; sizes at least 0.1 m, yaw wrapped.
    """
    x, y, z, length, width, height, yaw, cls = truth
    pos_sig, size_sig, yaw_sig = noise
    x = x + pos_sig * rng_normal_kernel(rng)
    y = y + pos_sig * rng_normal_kernel(rng)
    z = z + pos_sig * rng_normal_kernel(rng)
    length = max(0.1, length + size_sig * rng_normal_kernel(rng))
    width = max(0.1, width + size_sig * rng_normal_kernel(rng))
    height = max(0.1, height + size_sig * rng_normal_kernel(rng))
    yaw = yaw + yaw_sig * rng_normal_kernel(rng)
    if rng_uniform_kernel(rng) < 0.02:
        yaw += math.pi  # heading ambiguity of box detectors
    if rng_uniform_kernel(rng) < p_cls:
        out_cls, score = cls, 0.6 + 0.35 * rng_uniform_kernel(rng)
    else:
        out_cls = confuse_class_kernel(cls, rng)
        score = 0.3 + 0.3 * rng_uniform_kernel(rng)
    return x, y, z, length, width, height, wrap_kernel(yaw), out_cls, score


@njit(cache=True, nogil=True)
def _false_alarms_kernel(out, k, cap, n, fa, fov, sz, rng):
    """Append a Poisson(``fa``) number of small phantom boxes for sensor ``k``; returns its count.

    Args:
        cap: box rows per sensor; n: boxes already written; fa: mean number of false alarms.
        fov: ``(hfov_rad, range_m, bin_width_rad)``; sz: sensor height, m.
    """
    hfov, rmax, _ = fov
    center, size, yaw, cls, score = out.center, out.size, out.yaw, out.cls, out.score
    for _ in range(rng_poisson_kernel(rng, fa)):
        if n >= cap:
            break
        row = k * cap + n
        r = 5.0 + (rmax - 5.0) * rng_uniform_kernel(rng)
        az = (rng_uniform_kernel(rng) - 0.5) * hfov
        center[row, 0], center[row, 1], center[row, 2] = r * math.cos(az), r * math.sin(az), 0.5 - sz
        size[row, 0], size[row, 1], size[row, 2] = 0.8, 0.8, 1.0
        yaw[row] = (rng_uniform_kernel(rng) - 0.5) * 2.0 * math.pi
        cls[row] = CLS_PED if rng_uniform_kernel(rng) < 0.5 else CLS_CAR
        score[row] = 0.2 + 0.2 * rng_uniform_kernel(rng)
        n += 1
    return n


@njit(cache=True, nogil=True)
def _points_kernel(out, k, AG, scan, fov, beams, rng):
    """Point cloud of sensor ``k`` from its depth buffer; returns the number of points written.

    Args:
        fov: ``(hfov_rad, range_m, bin_width_rad)``.
        beams: ``(height_m, point_sigma_m, n_channels)``: sensor height, range noise per point,
            vertical channels per azimuth bin.
    """
    hfov, rmax, res = fov
    sz, pt_sig, n_ch = beams
    half = 0.5 * hfov
    pts, depth, owner = out.pts, scan.depth, scan.owner
    pcap = pts.shape[0] // out.pt_counts.shape[0]
    m = 0
    for b in range(depth.shape[0]):
        j = owner[b]
        if j < 0 or depth[b] > rmax or (int(AG[j, A_FLAGS]) & FLAG_EGO) != 0:
            continue
        az = -half + (b + 0.5) * res
        ca, sa = math.cos(az), math.sin(az)
        for ch in range(n_ch):
            if m >= pcap:
                break
            r = depth[b] + pt_sig * rng_normal_kernel(rng)
            row = k * pcap + m
            pts[row, 0] = r * ca
            pts[row, 1] = r * sa
            pts[row, 2] = AG[j, A_H] * (ch + 0.5) / n_ch - sz
            m += 1
    return m


@njit(cache=True, nogil=True)
def lidar_frame_kernel(poses, sp, AG, rng, scan, out):
    """LiDAR boxes and sparse points (sensor frame) of every corner sensor.

    Args:
        poses: (S, 3) world ``[x, y, yaw]`` of each sensor.
        sp: ``[hfov, range, res, height, min_frac, p_det, fa_rate, pos_sigma, size_sigma,
            yaw_sigma, p_class, point_sigma, n_channels]``.
        AG: (M, NA) packed agents at capture time (ego row last, never reported).
        rng: (1,) uint64 RNG state; scan: :class:`ScanBuffers` scratch; out: :class:`LidarOut`
            (either may be a plain tuple in field order).
    """
    scan, out = ScanBuffers(*scan), LidarOut(*out)  # plain tuples from the wrapper get their names back
    S = poses.shape[0]
    center, size, out_yaw, out_cls, out_score = out.center, out.size, out.yaw, out.cls, out.score
    cap = out_cls.shape[0] // S
    hfov, rmax, res, sz = sp[0], sp[1], sp[2], sp[3]
    min_frac, pd, fa, p_cls = sp[4], sp[5], sp[6], sp[10]
    noise = (sp[7], sp[8], sp[9])
    beams = (sz, sp[11], int(sp[12]))
    fov = (hfov, rmax, res)
    vis_bins, tot_bins = scan.vis_bins, scan.tot_bins
    for k in range(S):
        sx, sy, syaw = poses[k, 0], poses[k, 1], poses[k, 2]
        cs, ss = math.cos(syaw), math.sin(syaw)
        scan_kernel((sx, sy, syaw), fov, AG, scan)
        n = 0
        for j in range(AG.shape[0]):
            if (int(AG[j, A_FLAGS]) & FLAG_EGO) != 0 or tot_bins[j] == 0 or n >= cap:
                continue
            vis = vis_bins[j]
            if vis / tot_bins[j] < min_frac or vis < 2:
                continue
            if rng_uniform_kernel(rng) >= pd * min(1.0, vis / 4.0):
                continue
            wx, wy = AG[j, A_X] - sx, AG[j, A_Y] - sy
            truth = (
                cs * wx + ss * wy, -ss * wx + cs * wy, 0.5 * AG[j, A_H] - sz,
                AG[j, A_L], AG[j, A_W], AG[j, A_H], AG[j, A_YAW] - syaw, int(AG[j, A_CLS]),
            )  # fmt: skip
            row = k * cap + n
            x, y, z, length, width, height, yaw, cls, score = _noisy_box_kernel(truth, noise, p_cls, rng)
            center[row, 0], center[row, 1], center[row, 2] = x, y, z
            size[row, 0], size[row, 1], size[row, 2] = length, width, height
            out_yaw[row], out_cls[row], out_score[row] = yaw, cls, score
            n += 1
        out.counts[k] = _false_alarms_kernel(out, k, cap, n, fa, fov, sz, rng)
        out.pt_counts[k] = _points_kernel(out, k, AG, scan, fov, beams, rng)
