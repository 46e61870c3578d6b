"""``prescient bench infer`` on the tiny model: every variant runs interleaved and reports its stats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")  # the tiny model is exported with torch (the ``train`` extra)
pytest.importorskip("onnxruntime.quantization")

from prescient.benchmarks import bench_infer  # noqa: E402
from prescient.models.export_tiny import write_tiny_onnx  # noqa: E402
from prescient.models.quantize import QuantizeOptions, quantize_onnx  # noqa: E402
from prescient.service.model_io.config import ModelConfig  # noqa: E402
from prescient.service.model_io.sample_inputs import random_inputs  # noqa: E402


class _Feeds:
    def __init__(self, cfg: ModelConfig, n: int) -> None:
        self.feeds = [random_inputs(cfg, 1, seed=i, n_valid=5) for i in range(n)]

    def get_next(self) -> dict[str, np.ndarray] | None:
        return self.feeds.pop(0) if self.feeds else None


def test_bench_infer_times_fp32_and_int8_variants(tmp_path: Path) -> None:
    fp32, manifest = write_tiny_onnx(tmp_path)
    cfg = ModelConfig.from_dict(json.loads(manifest.read_text())["model_config"])
    int8 = tmp_path / "tiny_int8.onnx"
    quantize_onnx(fp32, int8, _Feeds(cfg, 4), QuantizeOptions(num_samples=4))
    names = "fp32-all,fp32-all-iobind,int8-all-iobind"
    out = tmp_path / "bench.json"
    rc = bench_infer.main(
        ["--model", str(fp32), "--int8", str(int8), "--variants", names, "--agents", "5"]
        + ["--runs", "6", "--block", "3", "--warmup", "1", "--out", str(out)]
    )
    assert rc == 0
    report = json.loads(out.read_text())
    rows = {r["name"]: r for r in report["results"]}
    assert list(rows) == names.split(",")
    assert rows["int8-all-iobind"]["manifest_precision"] == "int8" and rows["int8-all-iobind"]["io_binding"]
    assert rows["fp32-all"]["manifest_precision"] == "fp32"
    for r in rows.values():
        assert r["n"] == 6 and 0 < r["p50_ms"] <= r["p99_ms"] <= r["max_ms"]
    assert "| int8-all-iobind | int8 |" in bench_infer.format_table(report["results"])


def test_bench_infer_skips_int8_variants_without_an_int8_model(tmp_path: Path, capsys) -> None:
    fp32, _ = write_tiny_onnx(tmp_path)
    rc = bench_infer.main(
        ["--model", str(fp32), "--int8", str(tmp_path / "absent.onnx"), "--variants", "fp32-basic,int8-all"]
        + ["--agents", "5", "--runs", "2", "--block", "2", "--warmup", "0", "--out", str(tmp_path)]
    )
    assert rc == 0
    assert "skipped (no int8 model" in capsys.readouterr().out
    rows = json.loads((tmp_path / "bench_infer.json").read_text())["results"]
    assert [r["name"] for r in rows] == ["fp32-basic"]


def test_unknown_variant_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        bench_infer.main(["--variants", "fp64", "--out", str(tmp_path)])


def test_io_binding_pass_gives_the_same_outputs_as_run(tmp_path: Path) -> None:
    from prescient.service.predictor import OnnxPredictor

    fp32, _ = write_tiny_onnx(tmp_path)
    plain = OnnxPredictor(fp32, providers=("CPUExecutionProvider",), intra_op_threads=1)
    bound = OnnxPredictor(fp32, providers=("CPUExecutionProvider",), intra_op_threads=1)
    run = bench_infer.bound_runner(bound.session, bound.cfg)
    for seed in (1, 2):
        feed = random_inputs(plain.cfg, 1, seed=seed, n_valid=6)
        for want, got in zip(plain._run(feed), run(feed)):
            np.testing.assert_array_equal(got, want)


def test_bench_infer_times_a_baseline_export_beside_a_dynamic_agent_one(tmp_path: Path) -> None:
    """--baseline adds the other file, run with the service's settings, to the same interleaved run."""
    dyn_dir, fixed_dir = tmp_path / "dyn", tmp_path / "fixed"
    dyn_dir.mkdir(), fixed_dir.mkdir()
    dyn, _ = write_tiny_onnx(dyn_dir, dynamic_agents=True)
    fixed, _ = write_tiny_onnx(fixed_dir)
    out = tmp_path / "bench.json"
    rc = bench_infer.main(
        ["--model", str(dyn), "--baseline", str(fixed), "--variants", "fp32-all-nospin", "--agents", "3"]
        + ["--runs", "4", "--block", "2", "--warmup", "1", "--out", str(out)]
    )
    assert rc == 0
    report = json.loads(out.read_text())
    assert [r["name"] for r in report["results"]] == ["fp32-all-nospin", bench_infer.BASELINE.name]
    assert report["models"]["baseline"] == str(fixed.resolve())
    with pytest.raises(SystemExit):  # a missing baseline is a usage error
        bench_infer.main(["--baseline", str(tmp_path / "absent.onnx"), "--out", str(tmp_path)])
