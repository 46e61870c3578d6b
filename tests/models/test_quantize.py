"""Int8 QDQ quantisation of the tiny model: manifest, load checks, outputs near fp32; session options."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")  # the tiny model is exported with torch (the ``train`` extra)
pytest.importorskip("onnxruntime.quantization")
onnx = pytest.importorskip("onnx")

from prescient.models.export_tiny import write_tiny_onnx  # noqa: E402
from prescient.models.quantize import (  # noqa: E402
    PRECISION_INT8,
    QuantizeError,
    QuantizeOptions,
    calibration_samples,
    quantize_onnx,
)
from prescient.service.model_io.config import ModelConfig  # noqa: E402
from prescient.service.model_io.manifest import manifest_path_for, sha256_file  # noqa: E402
from prescient.service.model_io.sample_inputs import random_inputs  # noqa: E402
from prescient.service.predictor import OnnxPredictor  # noqa: E402


class _Feeds:
    """A CalibrationDataReader over seeded random inputs."""

    def __init__(self, cfg: ModelConfig, n: int) -> None:
        self.feeds = [random_inputs(cfg, 1, seed=100 + i, n_valid=5) for i in range(n)]

    def get_next(self) -> dict[str, np.ndarray] | None:
        return self.feeds.pop(0) if self.feeds else None


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("quant")
    fp32, manifest = write_tiny_onnx(d)
    cfg = ModelConfig.from_dict(json.loads(manifest.read_text())["model_config"])
    int8 = d / "tiny_int8.onnx"
    quantize_onnx(fp32, int8, _Feeds(cfg, 16), QuantizeOptions(num_samples=16), {"calibration_samples": 16})
    return fp32, int8


def _load(path: Path, **kw: object) -> OnnxPredictor:
    return OnnxPredictor(path, providers=("CPUExecutionProvider",), intra_op_threads=1, **kw)  # type: ignore[arg-type]


def test_int8_manifest_describes_the_file_and_keeps_the_contract(models: tuple[Path, Path]) -> None:
    fp32, int8 = models
    base = json.loads(manifest_path_for(fp32).read_text())
    man = json.loads(manifest_path_for(int8).read_text())
    assert man["precision"] == PRECISION_INT8 and "precision" not in base
    assert man["sha256"] == sha256_file(int8) != base["sha256"]
    assert man["file"] == int8.name and man["size_bytes"] == int8.stat().st_size
    for key in ("inputs", "outputs", "model_config", "raster_spec_version", "format_version"):
        assert man[key] == base[key]
    q = man["quantization"]
    assert q["format"] == "QDQ" and q["source_sha256"] == base["sha256"] and q["calibration_samples"] == 16


def test_int8_loads_with_float_io_and_stays_close_to_fp32(models: tuple[Path, Path]) -> None:
    fp32, int8 = models
    p32, p8 = _load(fp32), _load(int8)
    assert (p32.precision, p8.precision) == ("fp32", "int8")
    assert {i.type for i in p8.session.get_inputs() + p8.session.get_outputs()} == {"tensor(float)"}
    ops = {n.op_type for n in onnx.load(str(int8)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    feed = random_inputs(p32.cfg, 1, seed=7, n_valid=5)
    (t32, pr32, s32), (t8, pr8, s8) = p32._run(feed), p8._run(feed)
    # Random weights and a small calibration set: close, not equal (the shipped model's accuracy
    # change is measured by eval-sim / eval-av2).
    for got, want in ((t8, t32), (s8, s32), (pr8, pr32)):
        g, w = got[0, :5].ravel(), want[0, :5].ravel()
        assert float(np.corrcoef(g, w)[0, 1]) > 0.95
        assert float(np.abs(g - w).mean()) < 0.1 * float(np.abs(w).mean())
    assert not np.array_equal(t8, t32)


@pytest.mark.parametrize("level", ["disable", "basic", "extended"])
def test_other_optimisation_levels_match_all(models: tuple[Path, Path], level: str) -> None:
    ref, other = _load(models[0]), _load(models[0], optimization_level=level)
    feed = random_inputs(ref.cfg, 1, seed=5, n_valid=6)
    for w, g in zip(ref._run(feed), other._run(feed)):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)


def test_bad_optimisation_level_is_refused(models: tuple[Path, Path]) -> None:
    with pytest.raises(ValueError, match="optimization_level"):
        _load(models[0], optimization_level="max")


def test_calibration_refuses_held_out_seeds(tmp_path: Path) -> None:
    (tmp_path / "t_junction_s0101.npz").write_bytes(b"")
    with pytest.raises(QuantizeError, match="held-out"):
        calibration_samples(tmp_path, 4, 0)


def test_quantizing_an_int8_model_is_refused(models: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(QuantizeError, match="already int8"):
        quantize_onnx(models[1], tmp_path / "x.onnx", _Feeds(ModelConfig(), 1))
