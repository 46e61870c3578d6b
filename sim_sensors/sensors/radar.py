"""Radar model: point returns with range, azimuth, range rate and RCS (numba).

A detected object gives up to ``n_returns`` (per class) returns from random azimuth bins where
it is the nearest hit; the range rate is its velocity relative to the ego along the ray. Static
clutter closes at the ego's own speed. Returns are in the sensor frame: azimuth from the
boresight (rad, + left), range (m), range rate (m/s, + opening), RCS (dBsm).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from prescient.sim_sensors.layout import A_CLS, A_FLAGS, A_VX, A_VY, FLAG_EGO
from prescient.sim_sensors.rng import rng_normal_kernel, rng_poisson_kernel, rng_uniform_kernel
from prescient.sim_sensors.sensors.occlusion import ScanBuffers, scan_kernel


class RadarOut(NamedTuple):
    """Output buffers of :func:`radar_frame_kernel`; sensor k owns rows ``[k*cap, k*cap + counts[k])``.

    Attributes:
        ret: (S * cap, 4) float32 rows ``[range_m, azimuth_rad, range_rate_mps, rcs_dbsm]``.
        counts: (S,) int64 returns per sensor.
    """

    ret: np.ndarray
    counts: np.ndarray


@njit(cache=True, nogil=True)
def _owned_bin_kernel(owner, span, j, rng):
    """A random bin in ``span = (first, last)`` where object ``j`` is the nearest hit (8 tries), or -1.

    Args:
        owner: (B,) int64 nearest object per bin (:class:`ScanBuffers`).
    """
    lo, hi = span
    for _try in range(8):
        cand = lo + int(rng_uniform_kernel(rng) * (hi - lo + 1))
        if owner[cand] == j:
            return cand
    return -1


@njit(cache=True, nogil=True)
def _noisy_return_kernel(truth, sigmas, rng):
    """Noisy return ``(range_m, azimuth_rad, range_rate_mps, rcs_dbsm)`` of a true one.

    Args:
        truth: the true ``(range_m, azimuth_rad, range_rate_mps, rcs_dbsm)``.
        sigmas: ``(range_m, azimuth_rad, range_rate_mps)`` 1-sigma noise; RCS gets 1 dB.
    """
    r, az, rr, rcs = truth
    r_sig, az_sig, rr_sig = sigmas
    r = max(0.1, r + r_sig * rng_normal_kernel(rng))
    az = az + az_sig * rng_normal_kernel(rng)
    rr = rr + rr_sig * rng_normal_kernel(rng)
    return r, az, rr, rcs + 1.0 * rng_normal_kernel(rng)


@njit(cache=True, nogil=True)
def _clutter_kernel(rows, n, fa, sensor_yaw, fov, rr_sig, ego_v, rng):
    """Append a Poisson(``fa``) number of static clutter returns after the first ``n`` of ``rows``.

    Args:
        rows: (cap, 4) float32 the sensor's slice of the return buffer.
        fov: ``(hfov_rad, range_m, bin_width_rad)``; rr_sig: range-rate noise, m/s.

    Returns:
        The sensor's new return count.
    """
    hfov, rmax, _ = fov
    for _ in range(rng_poisson_kernel(rng, fa)):
        if n >= rows.shape[0]:
            break
        row = n
        az = (rng_uniform_kernel(rng) - 0.5) * hfov
        wa = sensor_yaw + az
        rows[row, 0] = 2.0 + (rmax - 2.0) * rng_uniform_kernel(rng)
        rows[row, 1] = az
        # static clutter: closes at the ego's own speed along the ray
        rows[row, 2] = -(ego_v[0] * math.cos(wa) + ego_v[1] * math.sin(wa)) + rr_sig * rng_normal_kernel(rng)
        rows[row, 3] = -10.0 + 5.0 * rng_normal_kernel(rng)
        n += 1
    return n


@njit(cache=True, nogil=True)
def radar_frame_kernel(poses, sp, AG, rcs_db, n_returns, ego_v, rng, scan, out):
    """Radar returns (sensor frame) of every corner sensor.

    Args:
        poses: (S, 3) world ``[x, y, yaw]`` of each sensor.
        sp: ``[hfov, range, res, height, min_frac, p_det, clutter_rate, range_sigma, az_sigma,
            rr_sigma, rcs_sigma]``.
        AG: (M, NA) packed agents at capture time (ego row last, never reported).
        rcs_db: (7,) mean RCS per class (dBsm); n_returns: (7,) max returns per class.
        ego_v: (2,) float64 ego (sensor) velocity in the world frame, m/s.
        rng: (1,) uint64 RNG state; scan: :class:`ScanBuffers` scratch; out: :class:`RadarOut`
            (either may be a plain tuple in field order).
    """
    scan, out = ScanBuffers(*scan), RadarOut(*out)  # plain tuples from the wrapper get their names back
    S = poses.shape[0]
    ret = out.ret
    cap = ret.shape[0] // S
    hfov, rmax, res = sp[0], sp[1], sp[2]
    min_frac, pd, fa, rcs_sig = sp[4], sp[5], sp[6], sp[10]
    sigmas = (sp[7], sp[8], sp[9])
    half = 0.5 * hfov
    fov = (hfov, rmax, res)
    depth, owner, vis_bins, tot_bins, bin_lo, bin_hi = scan
    for k in range(S):
        syaw = poses[k, 2]
        scan_kernel((poses[k, 0], poses[k, 1], syaw), fov, AG, scan)
        n = 0
        for j in range(AG.shape[0]):
            vis, tot = vis_bins[j], tot_bins[j]
            if (int(AG[j, A_FLAGS]) & FLAG_EGO) != 0 or tot == 0 or vis == 0:
                continue
            if vis / tot < min_frac or rng_uniform_kernel(rng) >= pd:
                continue
            cls = int(AG[j, A_CLS])
            n_ret = min(1 + int(rng_uniform_kernel(rng) * n_returns[cls]), vis)
            base_rcs = rcs_db[cls] + rcs_sig * rng_normal_kernel(rng)
            for _ in range(n_ret):
                if n >= cap:
                    break
                b = _owned_bin_kernel(owner, (bin_lo[j], bin_hi[j]), j, rng)
                if b < 0:
                    continue
                az = -half + (b + 0.5) * res + (rng_uniform_kernel(rng) - 0.5) * res
                wa = syaw + az
                rr = (AG[j, A_VX] - ego_v[0]) * math.cos(wa) + (AG[j, A_VY] - ego_v[1]) * math.sin(wa)
                row = k * cap + n
                ret[row, 0], ret[row, 1], ret[row, 2], ret[row, 3] = _noisy_return_kernel(
                    (depth[b], az, rr, base_rcs), sigmas, rng
                )
                n += 1
        out.counts[k] = _clutter_kernel(ret[k * cap : (k + 1) * cap], n, fa, syaw, fov, sigmas[2], ego_v, rng)
