"""Calibrated mode probabilities: per-class temperature scaling read from the model's manifest.

A model's raw mode probabilities ``p`` (one row per agent) become ``p_k^(1/T) / sum_j p_j^(1/T)``
with the temperature ``T`` of the agent's class (``T > 1`` softens over-confident rows, ``T < 1``
sharpens them; the order of the modes, and so every best-of-K and most-likely figure, is unchanged).
The temperatures are fitted on validation data by ``prescient calibrate``
(:mod:`prescient.models.calibrate`) and stored in the manifest under :data:`MANIFEST_KEY`::

    "prob_calibration": {"method": "temperature", "by_class_id": [T_0, ..., T_{C-1}], ...}

A manifest without the key means no calibration (every ``T`` = 1).

A class may also carry a **top-label map** (Gupta & Ramdas 2021): after tempering, the most
likely mode's probability ``p`` becomes ``f(p)``, a nondecreasing piecewise-linear map fitted to
how often "the top mode ended closest" at each ``p`` (an isotonic or a logistic fit, chosen per
class group on split validation runs: :func:`prescient.models.calibrate.choose_top_map`), and
the other modes share ``1 - f(p)`` in their tempered proportions. A temperature cannot
straighten a reliability curve that is under-confident in one range and over-confident in
another; the map can. The key keeps its name whichever fit made the values. The top mode stays
the top mode::

    "top_isotonic": {"<class id>": {"knots": [0.0, ..., 1.0], "values": [...]}, ...}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from prescient.bus.messages import NUM_CLASSES

MANIFEST_KEY = "prob_calibration"
MIN_T, MAX_T = 0.05, 20.0  # the range a fit may return; outside it the manifest is refused
MAX_KNOTS = 64

TopMaps = dict[int, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]]


def temperatures_from_manifest(manifest: Mapping[str, Any]) -> npt.NDArray[np.float64] | None:
    """(NUM_CLASSES,) temperatures by class id, or None when the manifest has no calibration.

    Raises:
        ValueError: a calibration entry of another method, length, or with a temperature outside
            [MIN_T, MAX_T] (or not finite).
    """
    cal = manifest.get(MANIFEST_KEY)
    if cal is None:
        return None
    if not isinstance(cal, Mapping) or cal.get("method") != "temperature":
        raise ValueError(f"{MANIFEST_KEY}: expected method 'temperature', got {cal!r:.80}")
    try:
        temps = np.asarray(cal["by_class_id"], np.float64)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{MANIFEST_KEY}.by_class_id: {e}") from e
    if temps.shape != (NUM_CLASSES,):
        raise ValueError(
            f"{MANIFEST_KEY}.by_class_id: expected {NUM_CLASSES} values, got shape {temps.shape}"
        )
    if not (np.all(np.isfinite(temps)) and np.all(temps >= MIN_T) and np.all(temps <= MAX_T)):
        raise ValueError(f"{MANIFEST_KEY}.by_class_id: temperatures must lie in [{MIN_T}, {MAX_T}]: {temps}")
    return temps


def temper(probs: np.ndarray, temperature: np.ndarray | float) -> npt.NDArray[np.float32]:
    """Rows of ``probs`` (A, K) raised to ``1 / temperature`` (scalar or (A,)) and renormalised."""
    logp = np.log(np.maximum(np.asarray(probs, np.float64), 1e-30))
    z = logp / np.reshape(np.asarray(temperature, np.float64), (-1, 1))
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def top_maps_from_manifest(manifest: Mapping[str, Any]) -> TopMaps:
    """Top-label maps by class id (empty when the manifest has none).

    Raises:
        ValueError: a class id outside 0..NUM_CLASSES-1, or knots that are not strictly
            increasing from 0 to 1, values not nondecreasing in [0, 1], lengths that differ or
            exceed :data:`MAX_KNOTS`.
    """
    cal = manifest.get(MANIFEST_KEY)
    raw = cal.get("top_isotonic") if isinstance(cal, Mapping) else None
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ValueError(f"{MANIFEST_KEY}.top_isotonic: expected a mapping, got {raw!r:.80}")
    maps: TopMaps = {}
    for key, entry in raw.items():
        where = f"{MANIFEST_KEY}.top_isotonic[{key!r}]"
        try:
            cid = int(key)
            knots = np.asarray(entry["knots"], np.float64)
            values = np.asarray(entry["values"], np.float64)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{where}: {e}") from e
        ok = (
            0 <= cid < NUM_CLASSES
            and knots.ndim == 1
            and 2 <= knots.size <= MAX_KNOTS
            and values.shape == knots.shape
            and bool(np.all(np.isfinite(knots)) and np.all(np.isfinite(values)))
            and knots[0] == 0.0
            and knots[-1] == 1.0
            and bool(np.all(np.diff(knots) > 0))
            and bool(np.all(np.diff(values) >= 0))
            and values[0] >= 0.0
            and values[-1] <= 1.0
        )
        if not ok:
            raise ValueError(
                f"{where}: need a class id in 0..{NUM_CLASSES - 1} and 2..{MAX_KNOTS} knots rising from 0 to 1 "
                "with nondecreasing values in [0, 1]"
            )
        maps[cid] = (knots, values)
    return maps


def map_top(probs: np.ndarray, class_id: np.ndarray, maps: TopMaps) -> npt.NDArray[np.float32]:
    """Rows of ``probs`` (A, K) whose class has a map get their top probability mapped and the
    rest rescaled to sum to 1; the top mode stays the top (the mapped value is kept at or above
    what the second mode then gets). Rows with a top probability of 1 are left as they are."""
    out = np.asarray(probs, np.float64).copy()
    if not maps or len(out) == 0 or out.shape[1] < 2:
        return out.astype(np.float32)
    cid = np.asarray(class_id, np.int64)
    rows = np.arange(len(out))
    top = out.argmax(1)
    p = out[rows, top]
    second = np.sort(out, axis=1)[:, -2]
    q = p.copy()
    for c, (knots, values) in maps.items():
        sel = cid == c
        q[sel] = np.interp(p[sel], knots, values)
    # Level with the rescaled second mode is the floor; a margin above it keeps the top mode the
    # argmax after the float32 round trip, so most-likely figures do not change.
    floor = second / np.maximum(1.0 - p + second, 1e-12)
    q = np.clip(q, np.minimum(floor * (1.0 + 1e-4) + 1e-6, p), 1.0)
    scale = np.where(p < 1.0 - 1e-9, (1.0 - q) / np.maximum(1.0 - p, 1e-12), 1.0)
    q = np.where(p < 1.0 - 1e-9, q, p)
    out *= scale[:, None]
    out[rows, top] = q
    return (out / out.sum(1, keepdims=True)).astype(np.float32)


def calibrate_probs(
    probs: np.ndarray,
    class_id: np.ndarray,
    temps: npt.NDArray[np.float64] | None,
    top_maps: TopMaps | None = None,
) -> npt.NDArray[np.float32]:
    """``probs`` (A, K) with each row tempered by its class's temperature (``temps`` None: unchanged),
    then its top probability mapped where its class has a top-label map.

    Class ids outside 0..NUM_CLASSES-1 use the UNKNOWN class's temperature (id 0) and map.
    """
    if temps is None or len(probs) == 0:
        return np.asarray(probs, np.float32)
    cid = np.asarray(class_id, np.int64)
    cid = np.where((cid >= 0) & (cid < NUM_CLASSES), cid, 0)
    return map_top(temper(probs, temps[cid]), cid, top_maps or {})
