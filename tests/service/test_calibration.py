"""Calibrated mode probabilities: per-class temperatures from the manifest, applied by the predictor."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from prescient.bus.messages import NUM_CLASSES
from prescient.service.model_io.calibration import (
    MANIFEST_KEY,
    calibrate_probs,
    map_top,
    temper,
    temperatures_from_manifest,
    top_maps_from_manifest,
)


def _probs(rng: np.random.Generator, a: int = 50, k: int = 6) -> np.ndarray:
    x = rng.normal(0, 2, (a, k))
    e = np.exp(x - x.max(1, keepdims=True))
    return (e / e.sum(1, keepdims=True)).astype(np.float32)


def test_temper_keeps_order_and_rows_and_softens_or_sharpens(rng) -> None:
    p = _probs(rng)
    np.testing.assert_allclose(temper(p, 1.0), p, atol=1e-6)
    for t, softer in ((2.0, True), (0.5, False)):
        q = temper(p, t)
        np.testing.assert_allclose(q.sum(1), 1.0, atol=1e-5)
        assert (q.argmax(1) == p.argmax(1)).all()
        assert ((q.max(1) < p.max(1)) if softer else (q.max(1) > p.max(1))).all()
    # by hand: p^(1/T) / sum
    want = p[0].astype(np.float64) ** 0.5
    np.testing.assert_allclose(temper(p[:1], 2.0)[0], want / want.sum(), rtol=1e-5)


def test_calibrate_probs_uses_each_agents_class() -> None:
    p = np.float32([[0.7, 0.2, 0.1], [0.7, 0.2, 0.1]])
    temps = np.ones(NUM_CLASSES)
    temps[2] = 3.0
    out = calibrate_probs(p, np.array([1, 2]), temps)
    np.testing.assert_allclose(out[0], p[0], atol=1e-6)  # class 1: T = 1
    assert out[1, 0] < 0.7
    np.testing.assert_array_equal(calibrate_probs(p, np.array([1, 2]), None), p)
    np.testing.assert_allclose(calibrate_probs(p, np.array([99, -1]), temps), p, atol=1e-6)  # unknown: id 0


@pytest.mark.parametrize(
    "entry, why",
    [
        ({"method": "isotonic", "by_class_id": [1.0] * NUM_CLASSES}, "method"),
        ({"method": "temperature", "by_class_id": [1.0] * (NUM_CLASSES - 1)}, "expected"),
        ({"method": "temperature", "by_class_id": [1.0] * (NUM_CLASSES - 1) + [0.0]}, "must lie"),
        ({"method": "temperature", "by_class_id": [1.0] * (NUM_CLASSES - 1) + [float("nan")]}, "must lie"),
        ({"method": "temperature"}, "by_class_id"),
    ],
)
def test_bad_calibration_entries_are_refused(entry: dict, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        temperatures_from_manifest({MANIFEST_KEY: entry})
    assert temperatures_from_manifest({}) is None


def test_predictor_applies_the_manifest_temperatures_and_refuses_bad_ones(tmp_path: Path, rng) -> None:
    pytest.importorskip("torch")
    from prescient.models.export_tiny import write_tiny_onnx
    from prescient.service.predictor import ModelLoadError, OnnxPredictor
    from tests.service.test_predictor import _raster, make_tracks

    onnx, manifest = write_tiny_onnx(tmp_path)
    plain = OnnxPredictor(onnx, manifest, intra_op_threads=1)
    cal_dir = tmp_path / "cal"
    cal_dir.mkdir()
    shutil.copy(onnx, cal_dir / onnx.name)
    doc = json.loads(manifest.read_text())
    temps = [1.0] * NUM_CLASSES
    temps[1] = 4.0  # make_tracks' class
    doc[MANIFEST_KEY] = {"method": "temperature", "by_class_id": temps}
    (cal_dir / manifest.name).write_text(json.dumps(doc))
    cal = OnnxPredictor(cal_dir / onnx.name, cal_dir / manifest.name, intra_op_threads=1)
    tracks = make_tracks(4, rng)
    raster = _raster(plain, rng)
    args = (raster, tracks, np.float32([1.0, 0.0]), np.float32([4.5, 2.0, 1.5]))
    a, b = plain.predict(*args), cal.predict(*args)
    np.testing.assert_allclose(b.mode_probs, temper(a.mode_probs, 4.0), atol=1e-5)
    np.testing.assert_array_equal(b.trajectories_m, a.trajectories_m)
    doc[MANIFEST_KEY]["by_class_id"] = [100.0] * NUM_CLASSES
    (cal_dir / manifest.name).write_text(json.dumps(doc))
    with pytest.raises(ModelLoadError, match="prob_calibration"):
        OnnxPredictor(cal_dir / onnx.name, cal_dir / manifest.name, intra_op_threads=1)
    # a top-label map of the tracks' class (1) is applied after the temperature
    doc[MANIFEST_KEY] = {"method": "temperature", "by_class_id": temps, "top_isotonic": {"1": HALF_MAP}}
    (cal_dir / manifest.name).write_text(json.dumps(doc))
    mapped = OnnxPredictor(cal_dir / onnx.name, cal_dir / manifest.name, intra_op_threads=1).predict(*args)
    want = map_top(
        temper(a.mode_probs, 4.0), np.ones(len(a.mode_probs), np.int64), top_maps_from_manifest(doc)
    )
    np.testing.assert_allclose(mapped.mode_probs, want, atol=1e-5)
    doc[MANIFEST_KEY]["top_isotonic"] = {"1": {"knots": [0.0, 0.5, 0.4, 1.0], "values": [0, 0.1, 0.2, 1]}}
    (cal_dir / manifest.name).write_text(json.dumps(doc))
    with pytest.raises(ModelLoadError, match="top_isotonic"):
        OnnxPredictor(cal_dir / onnx.name, cal_dir / manifest.name, intra_op_threads=1)


HALF_MAP = {"knots": [0.0, 1.0], "values": [0.0, 0.5]}  # f(p) = p / 2


def test_top_map_moves_only_the_top_probability_and_keeps_the_top_mode() -> None:
    """f(p) = p / 2 on class 2: the top mode's 0.8 becomes 0.4, the others share 0.6 in their
    proportions; a row whose mapped top would fall below its new second is kept level with it
    (0.6 -> 3/7, the second 0.3 -> 3/7); other classes and rows with a top probability of 1 are
    unchanged."""
    maps = top_maps_from_manifest({MANIFEST_KEY: {"top_isotonic": {"2": HALF_MAP}}})
    p = np.float32([[0.8, 0.1, 0.1], [0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [1.0, 0.0, 0.0]])
    out = map_top(p, np.array([2, 1, 2, 2]), maps)
    np.testing.assert_allclose(out[0], [0.4, 0.3, 0.3], atol=1e-6)
    np.testing.assert_allclose(out[1], p[1], atol=1e-6)
    np.testing.assert_allclose(out[2], [3 / 7, 3 / 7, 1 / 7], atol=1e-4)
    assert out[2, 0] > out[2, 1]  # still the top mode
    np.testing.assert_allclose(out[3], p[3], atol=1e-6)
    np.testing.assert_allclose(out.sum(1), 1.0, atol=1e-6)


def test_top_map_fit_on_a_miscalibrated_sample_lowers_its_ece(rng) -> None:
    """A sample whose top mode is the closest with probability 0.2 + 0.5 p (under-confident below
    p = 0.4, over-confident above) is calibrated by the fitted map."""
    from prescient.models.calibrate import TOP_MAP_KNOTS, fit_top_map
    from prescient.models.planner_metrics import ece

    p = _probs(rng, a=20_000, k=6)
    top = p.argmax(1)
    pt = p[np.arange(len(top)), top]
    hit = rng.random(len(top)) < 0.2 + 0.5 * pt
    closest = np.where(hit, top, (top + 1) % 6)
    values = fit_top_map(p, closest)
    assert values.shape == TOP_MAP_KNOTS.shape and np.all(np.diff(values) >= 0)
    out = map_top(p, np.zeros(len(p), np.int64), {0: (TOP_MAP_KNOTS, values)})
    before = ece(pt, hit.astype(float))
    after = ece(out[np.arange(len(top)), top], (out.argmax(1) == closest).astype(float))
    assert before > 0.1 and after < 0.02


@pytest.mark.parametrize(
    "maps, why",
    [
        ({"9": HALF_MAP}, "class id"),
        ({"1": {"knots": [0.0, 1.0], "values": [0.5, 0.4]}}, "nondecreasing"),
        ({"1": {"knots": [0.1, 1.0], "values": [0.0, 0.5]}}, "rising from 0 to 1"),
        ({"1": {"knots": [0.0, 1.0]}}, "values"),
        ({"1": {"knots": [0.0, 1.0], "values": [0.0, float("nan")]}}, "in \\[0, 1\\]"),
    ],
)
def test_bad_top_maps_are_refused(maps: dict, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        top_maps_from_manifest({MANIFEST_KEY: {"top_isotonic": maps}})
    assert top_maps_from_manifest({MANIFEST_KEY: {"method": "temperature"}}) == {}
