"""onnxruntime provider choice: TensorRT -> CUDA -> CPU, each only when present, the CPU always last.

``onnxruntime.get_available_providers()`` is faked: the CPU-only wheel installed here offers only
the CPU provider, the GPU wheel offers TensorRT and CUDA whether or not their libraries load.
"""

from __future__ import annotations

import logging
from pathlib import Path

import onnxruntime as ort
import pytest

from prescient.service.model_io import providers as p
from prescient.service.model_io.providers import (
    CPU_PROVIDER,
    CUDA_PROVIDER,
    DEFAULT_PROVIDERS,
    TENSORRT_PROVIDER,
    select_providers,
)
from prescient.service.predictor import OnnxPredictor

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "models" / "shipped" / "prescient.onnx"
GPU_BUILD = [TENSORRT_PROVIDER, CUDA_PROVIDER, CPU_PROVIDER]


@pytest.fixture
def fake_ort(monkeypatch, tmp_path):
    """Fake what the onnxruntime build offers; TensorRT's engine cache in a temporary folder."""
    monkeypatch.setenv(p.ENV_TRT_CACHE_DIR, str(tmp_path / "trt"))

    def offer(names: list[str], trt_loads: bool = True) -> None:
        monkeypatch.setattr(ort, "get_available_providers", lambda: list(names))
        monkeypatch.setattr(p, "tensorrt_loadable", lambda: trt_loads)

    return offer


def names(specs: list[tuple[str, dict[str, str]]]) -> list[str]:
    return [name for name, _ in specs]


def test_default_order_is_tensorrt_cuda_cpu():
    assert DEFAULT_PROVIDERS == (TENSORRT_PROVIDER, CUDA_PROVIDER, CPU_PROVIDER)


def test_gpu_build_with_tensorrt_gets_all_three_in_order(fake_ort, tmp_path):
    fake_ort(GPU_BUILD)
    specs = select_providers()
    assert names(specs) == GPU_BUILD
    trt = dict(specs)[TENSORRT_PROVIDER]
    assert trt["trt_fp16_enable"] == "False"  # fp16 off by default
    assert trt["trt_engine_cache_enable"] == "True"
    assert trt["trt_engine_cache_path"] == str(tmp_path / "trt")
    assert (tmp_path / "trt").is_dir()  # created, writable
    assert dict(specs)[CUDA_PROVIDER] == {} and dict(specs)[CPU_PROVIDER] == {}


def test_tensorrt_listed_but_not_loadable_is_skipped(fake_ort):
    fake_ort(GPU_BUILD, trt_loads=False)  # the CUDA image without TensorRT
    assert names(select_providers()) == [CUDA_PROVIDER, CPU_PROVIDER]


def test_cpu_build_gets_only_cpu(fake_ort):
    fake_ort([CPU_PROVIDER])
    assert names(select_providers()) == [CPU_PROVIDER]


@pytest.mark.parametrize(
    ("requested", "offered", "expected"),
    [
        ((CPU_PROVIDER,), GPU_BUILD, [CPU_PROVIDER]),  # `--cpu`
        ((CUDA_PROVIDER, CPU_PROVIDER), GPU_BUILD, [CUDA_PROVIDER, CPU_PROVIDER]),
        ((CPU_PROVIDER, CUDA_PROVIDER), GPU_BUILD, [CUDA_PROVIDER, CPU_PROVIDER]),  # CPU always last
        ((CUDA_PROVIDER,), GPU_BUILD, [CUDA_PROVIDER, CPU_PROVIDER]),  # CPU added when not asked
        ((), GPU_BUILD, [CPU_PROVIDER]),
        (
            (CUDA_PROVIDER, CUDA_PROVIDER, TENSORRT_PROVIDER),
            GPU_BUILD,
            [CUDA_PROVIDER, TENSORRT_PROVIDER, CPU_PROVIDER],
        ),
        (
            ("ROCMExecutionProvider", *DEFAULT_PROVIDERS),
            [CUDA_PROVIDER, CPU_PROVIDER],
            [CUDA_PROVIDER, CPU_PROVIDER],
        ),
        (DEFAULT_PROVIDERS, [TENSORRT_PROVIDER, CPU_PROVIDER], [TENSORRT_PROVIDER, CPU_PROVIDER]),
    ],
)
def test_order_kept_unavailable_skipped_cpu_last(fake_ort, requested, offered, expected):
    fake_ort(offered)
    assert names(select_providers(requested)) == expected


def test_explicit_arguments_need_no_onnxruntime(monkeypatch, tmp_path):
    monkeypatch.setattr(ort, "get_available_providers", lambda: pytest.fail("not to be asked"))
    specs = select_providers(available=GPU_BUILD, trt_loadable=True, trt_cache_dir=tmp_path, trt_fp16=True)
    assert names(specs) == GPU_BUILD
    assert dict(specs)[TENSORRT_PROVIDER]["trt_fp16_enable"] == "True"


def test_unwritable_tensorrt_cache_leaves_the_cache_off(tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with caplog.at_level(logging.WARNING, logger=p.__name__):
        opts = p.tensorrt_options(blocker / "trt")  # cannot be created below a file (root too)
    assert opts == {"trt_fp16_enable": "False"}
    assert "not writable" in caplog.text


def test_tensorrt_cache_dir_default_is_the_user_cache(monkeypatch):
    monkeypatch.delenv(p.ENV_TRT_CACHE_DIR, raising=False)
    assert p.tensorrt_cache_dir().parts[-2:] == ("prescient", "tensorrt")
    monkeypatch.setenv(p.ENV_TRT_CACHE_DIR, "/var/cache/prescient/tensorrt")
    assert p.tensorrt_cache_dir() == Path("/var/cache/prescient/tensorrt")


def test_tensorrt_loadable_is_a_bool():
    assert p.tensorrt_loadable() in (True, False)  # False on a machine without TensorRT 10


@pytest.mark.skipif(not SHIPPED.is_file(), reason="shipped model absent")
@pytest.mark.filterwarnings("ignore:Specified provider:UserWarning")  # onnxruntime drops the fakes
def test_session_reports_the_provider_really_in_use(fake_ort, caplog):
    """GPU providers claimed but not really there: the session runs on the CPU and says so."""
    real = ort.get_available_providers()
    fake_ort(GPU_BUILD)
    with caplog.at_level(logging.WARNING, logger=p.__name__):
        pred = OnnxPredictor(SHIPPED, intra_op_threads=1, warmup=False)
    assert pred.provider == pred.session.get_providers()[0]
    if CUDA_PROVIDER not in real:  # the CPU wheel (here): the faked GPU providers cannot start
        assert pred.provider == CPU_PROVIDER
        assert f"provider {TENSORRT_PROVIDER} is present but did not start" in caplog.text
