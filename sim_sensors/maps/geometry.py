"""Polyline helpers of the map builders (world frame, m; headings are unit vectors or rad)."""

from __future__ import annotations

import math

import numpy as np

STEP_M = 2.0  # polyline spacing
MAX_LAT_ACCEL_MPS2 = 2.5  # comfortable lateral acceleration that sets curve speed limits


def line(p0: np.ndarray, p1: np.ndarray, step: float = STEP_M) -> np.ndarray:
    """(n, 2) straight polyline from ``p0`` to ``p1``, points at most ``step`` m apart."""
    n = max(2, int(math.ceil(np.linalg.norm(p1 - p0) / step)) + 1)
    t = np.linspace(0.0, 1.0, n)[:, None]
    return p0[None] * (1 - t) + p1[None] * t


def bezier(p0: np.ndarray, h0: np.ndarray, p1: np.ndarray, h1: np.ndarray, c_frac: float = 0.4) -> np.ndarray:
    """Cubic Bezier from ``p0`` heading ``h0`` to ``p1`` heading ``h1`` (unit vectors)."""
    d = float(np.linalg.norm(p1 - p0))
    c = c_frac * d
    q = np.stack([p0, p0 + h0 * c, p1 - h1 * c, p1])
    n = max(6, int(math.ceil(1.3 * d / STEP_M)) + 1)
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 3 * q[0] + 3 * (1 - t) ** 2 * t * q[1] + 3 * (1 - t) * t**2 * q[2] + t**3 * q[3]


def arc(center: np.ndarray, r: float, a0: float, a1: float) -> np.ndarray:
    """(n, 2) circular arc of radius ``r`` (m) from angle ``a0`` to ``a1`` (rad, ccw from +x)."""
    n = max(3, int(math.ceil(abs(a1 - a0) * r / STEP_M)) + 1)
    a = np.linspace(a0, a1, n)
    return center[None] + r * np.stack([np.cos(a), np.sin(a)], axis=1)


def normals(pts: np.ndarray) -> np.ndarray:
    """(n, 2) unit left normals of a polyline (central differences)."""
    tang = np.gradient(pts, axis=0)
    tang /= np.maximum(np.linalg.norm(tang, axis=1, keepdims=True), 1e-9)
    return np.stack([-tang[:, 1], tang[:, 0]], axis=1)


def curve_speed(pts: np.ndarray, limit: float) -> float:
    """Speed limit (m/s) of a polyline from its tightest curvature (``MAX_LAT_ACCEL_MPS2``)."""
    seg = np.diff(pts, axis=0)
    ang = np.arctan2(seg[:, 1], seg[:, 0])
    if len(ang) < 2:
        return limit
    dang = np.abs((np.diff(ang) + np.pi) % (2 * np.pi) - np.pi)
    ds = 0.5 * (np.linalg.norm(seg[1:], axis=1) + np.linalg.norm(seg[:-1], axis=1))
    kappa = float(np.max(dang / np.maximum(ds, 1e-6)))
    if kappa < 1e-4:
        return limit
    return float(min(limit, max(2.0, math.sqrt(MAX_LAT_ACCEL_MPS2 / kappa))))


def strip(pts: np.ndarray, width: float) -> np.ndarray:
    """Closed outline (2n, 2) of a band ``width`` m wide centred on a polyline."""
    nrm = normals(pts)
    return np.concatenate([pts + nrm * width / 2, (pts - nrm * width / 2)[::-1]])


def rect(p0: np.ndarray, p1: np.ndarray, width: float) -> np.ndarray:
    """Outline (4, 2) of a rectangle ``width`` m wide along the segment ``p0 -> p1``."""
    return strip(np.stack([p0, p1]), width)


def unit(a: float) -> np.ndarray:
    """(2,) unit vector at angle ``a`` (rad, ccw from +x)."""
    return np.array([math.cos(a), math.sin(a)])
