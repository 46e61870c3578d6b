"""Camera and LWIR (thermal) detector models: 2-D pixel boxes with class and attributes (numba).

Both are pinhole cameras looking along the sensor x axis (u right = -y, v down = -z) that report
noisy boxes of objects visible enough (occlusion) and large enough in the image. The camera also
reads pedestrians' phones, brake lights and indicators, and degrades at night; LWIR detects by
thermal contrast (warm people and animals, cool vehicles) and is blind to colour.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from prescient.sim_sensors.layout import (
    A_ATTR,
    A_CLS,
    A_FLAGS,
    A_H,
    A_L,
    A_W,
    A_X,
    A_Y,
    A_YAW,
    ATTR_BRAKE,
    ATTR_LEFT,
    ATTR_PHONE,
    ATTR_RIGHT,
    CLS_ANIMAL,
    CLS_CAR,
    CLS_CYCLIST,
    CLS_PED,
    FLAG_EGO,
)
from prescient.sim_sensors.rng import rng_normal_kernel, rng_poisson_kernel, rng_uniform_kernel
from prescient.sim_sensors.sensors.confusion import confuse_class_kernel
from prescient.sim_sensors.sensors.occlusion import ScanBuffers, scan_kernel


class ImageOut(NamedTuple):
    """Output buffers of :func:`image_frame_kernel`; sensor k owns rows ``[k*cap, k*cap + counts[k])``.

    Attributes:
        box: (S * cap, 4) float32 ``[u0, v0, u1, v1]`` px.
        cls: (S * cap,) int32 class; conf: (S * cap,) float32 class confidence.
        attr: (S * cap,) uint8 Attribute bits (camera; 0 for LWIR).
        heat: (S * cap,) float32 thermal contrast, K (LWIR; 0 for camera).
        counts: (S,) int64 rows written per sensor.
    """

    box: np.ndarray
    cls: np.ndarray
    conf: np.ndarray
    attr: np.ndarray
    heat: np.ndarray
    counts: np.ndarray


@njit(cache=True, nogil=True)
def project_box_kernel(sensor, camera, box):
    """Noise-free pixel box ``(u0, v0, u1, v1)`` of a 3-D box in a pinhole camera.

    The camera looks along the sensor x axis (u right = -y, v down = -z). Corners closer than
    0.3 m to the image plane are clamped to it. Returns u1 <= u0 when nothing is in the image.

    Args:
        sensor: ``(x_m, y_m, yaw_rad, height_m)`` world pose of the camera.
        camera: ``(f_px, cx_px, cy_px, width_px, height_px)`` focal length, principal point, image size.
        box: ``(x_m, y_m, yaw_rad, length_m, width_m, height_m)`` world box (bottom on the ground).
    """
    sx, sy, syaw, sz = sensor
    f_px, cx_px, cy_px, w_px, h_px = camera
    ax, ay, ayaw, al, aw, ah = box
    c, s = math.cos(ayaw), math.sin(ayaw)
    cs, ss = math.cos(syaw), math.sin(syaw)
    u0, v0, u1, v1 = 1e9, 1e9, -1e9, -1e9
    for k in range(8):
        ex = 0.5 * al if (k & 1) == 0 else -0.5 * al
        ey = 0.5 * aw if (k & 2) == 0 else -0.5 * aw
        ez = ah if (k & 4) == 0 else 0.0
        wx = ax + c * ex - s * ey - sx
        wy = ay + s * ex + c * ey - sy
        xs = cs * wx + ss * wy
        ys = -ss * wx + cs * wy
        zs = ez - sz
        xs = max(xs, 0.3)
        u = cx_px - f_px * ys / xs
        v = cy_px - f_px * zs / xs
        u0, u1 = min(u0, u), max(u1, u)
        v0, v1 = min(v0, v), max(v1, v)
    return max(u0, 0.0), max(v0, 0.0), min(u1, w_px), min(v1, h_px)


@njit(cache=True, nogil=True)
def _noisy_box_kernel(box, px_sig, rng):
    """``box`` (u0, v0, u1, v1) px with Gaussian edge noise (``px_sig`` px), edges re-sorted."""
    u0, v0, u1, v1 = box
    b0 = u0 + px_sig * rng_normal_kernel(rng)
    b1 = v0 + px_sig * rng_normal_kernel(rng)
    b2 = u1 + px_sig * rng_normal_kernel(rng)
    b3 = v1 + px_sig * rng_normal_kernel(rng)
    return min(b0, b2), min(b1, b3), max(b0, b2), max(b1, b3)


@njit(cache=True, nogil=True)
def _thermal_class_kernel(cls, heat, p_cls, rng):
    """LWIR ``(class, confidence)``: warm-looking things are people, cool ones cars, unless the
    contrast ``heat`` (K) misleads."""
    warm = heat > 6.5
    true_warm = cls == CLS_PED or cls == CLS_CYCLIST or cls == CLS_ANIMAL
    if warm == true_warm and rng_uniform_kernel(rng) < p_cls:
        return cls, 0.55 + 0.4 * rng_uniform_kernel(rng)
    out_cls = confuse_class_kernel(cls, rng) if warm == true_warm else (CLS_PED if warm else CLS_CAR)
    return out_cls, 0.3 + 0.3 * rng_uniform_kernel(rng)


@njit(cache=True, nogil=True)
def _camera_class_kernel(cls, p_cls, rng):
    """Camera ``(class, confidence)``: right with probability ``p_cls``, else a confusion."""
    if rng_uniform_kernel(rng) < p_cls:
        return cls, 0.6 + 0.35 * rng_uniform_kernel(rng)
    out_cls = confuse_class_kernel(cls, rng)
    return out_cls, 0.3 + 0.3 * rng_uniform_kernel(rng)


@njit(cache=True, nogil=True)
def _camera_attr_kernel(true_attr, r, behind, rng):
    """Attribute bits the camera reads at range ``r`` (m) off an object with ``true_attr`` bits.

    Brake lights face backwards: they show only when the sensor is ``behind`` the object.
    """
    attr = 0
    if (true_attr & ATTR_PHONE) != 0 and r < 30.0 and rng_uniform_kernel(rng) < 0.8:
        attr |= ATTR_PHONE
    if (true_attr & ATTR_BRAKE) != 0 and behind and r < 80.0 and rng_uniform_kernel(rng) < 0.95:
        attr |= ATTR_BRAKE
    if (true_attr & ATTR_LEFT) != 0 and r < 80.0 and rng_uniform_kernel(rng) < 0.9:
        attr |= ATTR_LEFT
    if (true_attr & ATTR_RIGHT) != 0 and r < 80.0 and rng_uniform_kernel(rng) < 0.9:
        attr |= ATTR_RIGHT
    return attr


@njit(cache=True, nogil=True)
def _false_alarms_kernel(out, k, cap, n, fa, image_wh, thermal, rng):
    """Append a Poisson(``fa``) number of random boxes for sensor ``k``; returns its new count.

    Args:
        cap: rows per sensor; n: rows already written; fa: mean number of false alarms.
        image_wh: ``(width_px, height_px)``; thermal: LWIR (random heat) or camera.
    """
    w_px, h_px = image_wh
    box, cls, conf, attr, heat = out.box, out.cls, out.conf, out.attr, out.heat
    for _ in range(rng_poisson_kernel(rng, fa)):
        if n >= cap:
            break
        row = k * cap + n
        bw = 15.0 + 80.0 * rng_uniform_kernel(rng)
        bh = 15.0 + 80.0 * rng_uniform_kernel(rng)
        u = rng_uniform_kernel(rng) * (w_px - bw)
        v = rng_uniform_kernel(rng) * (h_px - bh)
        box[row, 0], box[row, 1], box[row, 2], box[row, 3] = u, v, u + bw, v + bh
        cls[row] = 1 + int(rng_uniform_kernel(rng) * 6.0) % 6
        conf[row] = 0.3 + 0.2 * rng_uniform_kernel(rng)
        attr[row] = 0
        heat[row] = 7.0 * rng_uniform_kernel(rng) if thermal else 0.0
        n += 1
    return n


@njit(cache=True, nogil=True)
def image_frame_kernel(poses, sp, AG, heat_k, thermal, night, rng, scan, out):
    """Camera (``thermal`` False) or LWIR (True) detections of every corner sensor.

    Args:
        poses: (S, 3) world ``[x, y, yaw]`` of each sensor.
        sp: spec vector ``[hfov, range, res, height, min_frac, p_det, fa_rate, px_sigma, w_px,
            h_px, p_class, night_range, night_pd, night_px]``.
        AG: (M, NA) packed agents at capture time (ego row last, never reported).
        heat_k: (7,) thermal contrast per class (K).
        night: darkness (camera only: shorter range, fewer detections, noisier, larger minimum).
        rng: (1,) uint64 RNG state; scan: :class:`ScanBuffers` scratch; out: :class:`ImageOut`
            (either may be a plain tuple in field order).
    """
    scan, out = ScanBuffers(*scan), ImageOut(*out)  # plain tuples from the wrapper get their names back
    S = poses.shape[0]
    box_px, out_cls, out_conf, out_attr, out_heat, counts = out
    vis_bins, tot_bins = scan.vis_bins, scan.tot_bins
    cap = out_cls.shape[0] // S
    hfov, rmax, res, sz = sp[0], sp[1], sp[2], sp[3]
    min_frac, pd, fa, px_sig = sp[4], sp[5], sp[6], sp[7]
    w_px, h_px, p_cls = sp[8], sp[9], sp[10]
    min_px = 8.0 if thermal else 12.0
    if night and not thermal:
        rmax *= sp[11]
        pd *= sp[12]
        px_sig *= sp[13]
        p_cls *= 0.9
        min_px *= 2.5
    camera = (0.5 * w_px / math.tan(0.5 * hfov), 0.5 * w_px, 0.5 * h_px, w_px, h_px)
    for k in range(S):
        n = 0
        sx, sy, syaw = poses[k, 0], poses[k, 1], poses[k, 2]
        scan_kernel((sx, sy, syaw), (hfov, rmax, res), AG, scan)
        for j in range(AG.shape[0]):
            if (int(AG[j, A_FLAGS]) & FLAG_EGO) != 0 or tot_bins[j] == 0 or n >= cap:
                continue
            frac = vis_bins[j] / tot_bins[j]
            if frac < min_frac:
                continue
            cls = int(AG[j, A_CLS])
            p = pd * min(1.0, frac / 0.5)
            heat = 0.0
            if thermal:
                heat = heat_k[cls] + rng_normal_kernel(rng)
                p *= min(1.0, max(heat, 0.0) / 6.0)
            box = project_box_kernel(
                (sx, sy, syaw, sz),
                camera,
                (AG[j, A_X], AG[j, A_Y], AG[j, A_YAW], AG[j, A_L], AG[j, A_W], AG[j, A_H]),
            )
            bw, bh = box[2] - box[0], box[3] - box[1]
            if max(bw, bh) < min_px or bw < 2.0 or bh < 2.0:
                continue
            dxc, dyc = AG[j, A_X] - sx, AG[j, A_Y] - sy
            r = math.sqrt(dxc * dxc + dyc * dyc)
            if r > rmax or rng_uniform_kernel(rng) >= p:
                continue
            row = k * cap + n
            box_px[row, 0], box_px[row, 1], box_px[row, 2], box_px[row, 3] = _noisy_box_kernel(
                box, px_sig, rng
            )
            if thermal:
                out_cls[row], out_conf[row] = _thermal_class_kernel(cls, heat, p_cls, rng)
                out_attr[row] = 0
                out_heat[row] = heat
            else:
                out_cls[row], out_conf[row] = _camera_class_kernel(cls, p_cls, rng)
                behind = dxc * math.cos(AG[j, A_YAW]) + dyc * math.sin(AG[j, A_YAW]) > 0.0
                out_attr[row] = _camera_attr_kernel(int(AG[j, A_ATTR]), r, behind, rng)
                out_heat[row] = 0.0
            n += 1
        counts[k] = _false_alarms_kernel(out, k, cap, n, fa, (w_px, h_px), thermal, rng)
