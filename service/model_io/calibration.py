"""Calibrated mode probabilities: per-class temperature scaling read from the model's manifest.

A model's raw mode probabilities ``p`` (one row per agent) become ``p_k^(1/T) / sum_j p_j^(1/T)``
with the temperature ``T`` of the agent's class (``T > 1`` softens over-confident rows, ``T < 1``
sharpens them; the order of the modes, and so every best-of-K and most-likely figure, is unchanged).
The temperatures are fitted on validation data by ``prescient calibrate``
(:mod:`prescient.models.calibrate`) and stored in the manifest under :data:`MANIFEST_KEY`::

    "prob_calibration": {"method": "temperature", "by_class_id": [T_0, ..., T_{C-1}], ...}

A manifest without the key means no calibration (every ``T`` = 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from prescient.bus.messages import NUM_CLASSES

MANIFEST_KEY = "prob_calibration"
MIN_T, MAX_T = 0.05, 20.0  # the range a fit may return; outside it the manifest is refused


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


def calibrate_probs(
    probs: np.ndarray, class_id: np.ndarray, temps: npt.NDArray[np.float64] | None
) -> npt.NDArray[np.float32]:
    """``probs`` (A, K) with each row tempered by its class's temperature (``temps`` None: unchanged).

    Class ids outside 0..NUM_CLASSES-1 use the UNKNOWN class's temperature (id 0).
    """
    if temps is None or len(probs) == 0:
        return np.asarray(probs, np.float32)
    cid = np.asarray(class_id, np.int64)
    cid = np.where((cid >= 0) & (cid < NUM_CLASSES), cid, 0)
    return temper(probs, temps[cid])
