"""Which onnxruntime execution providers to ask for, with their options (TensorRT, CUDA, CPU).

:func:`select_providers` keeps the caller's order, skips what this onnxruntime build does not offer
(and TensorRT when its runtime library does not load) and always ends with the CPU; the provider
that really runs is read back from the session (:class:`prescient.service.predictor.OnnxPredictor`).
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import onnxruntime as ort

log = logging.getLogger(__name__)

TENSORRT_PROVIDER = "TensorrtExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"
# In order of preference; each is used only when present (see select_providers), the CPU always last.
DEFAULT_PROVIDERS = (TENSORRT_PROVIDER, CUDA_PROVIDER, CPU_PROVIDER)
# onnxruntime-gpu lists TensorRT whenever it was compiled in; its provider library loads TensorRT 10
# (libnvinfer.so.10), which the CUDA base image does not ship. Without it, asking for TensorRT costs
# an "EP Error" banner and a second session creation, so it is only asked for when this loads.
TENSORRT_LIBRARY = "libnvinfer.so.10"
# TensorRT builds an engine per model and input shapes (tens of seconds); the cache keeps it across
# starts. Default: the user's cache folder; the GPU image points this at a folder of its own.
ENV_TRT_CACHE_DIR = "PRESCIENT_TRT_CACHE_DIR"

ProviderSpec = tuple[str, dict[str, str]]


def tensorrt_cache_dir() -> Path:
    """``$PRESCIENT_TRT_CACHE_DIR``, else ``<user cache>/prescient/tensorrt`` (not created here)."""
    env = os.environ.get(ENV_TRT_CACHE_DIR, "").strip()
    if env:
        return Path(env)
    from platformdirs import user_cache_path

    return user_cache_path("prescient", appauthor=False) / "tensorrt"


def tensorrt_loadable() -> bool:
    """Whether the TensorRT runtime library that onnxruntime's TensorRT provider needs can load."""
    try:
        ctypes.CDLL(TENSORRT_LIBRARY)
    except OSError:
        return False
    return True


def tensorrt_options(cache_dir: Path | None = None, fp16: bool = False) -> dict[str, str]:
    """TensorRT provider options: engine and timing caches in a writable folder, fp16 off unless asked.

    A folder that cannot be created or written leaves the caches off (engines are then rebuilt at
    every start) rather than failing the session.
    """
    opts = {"trt_fp16_enable": str(bool(fp16))}
    folder = tensorrt_cache_dir() if cache_dir is None else Path(cache_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        writable = os.access(folder, os.W_OK | os.X_OK)
    except OSError:
        writable = False
    if not writable:
        log.warning("TensorRT cache folder %s is not writable: engines are rebuilt at every start", folder)
        return opts
    opts.update(
        trt_engine_cache_enable="True",
        trt_engine_cache_path=str(folder),
        trt_timing_cache_enable="True",
        trt_timing_cache_path=str(folder),
    )
    return opts


def select_providers(
    requested: Sequence[str] = DEFAULT_PROVIDERS,
    available: Sequence[str] | None = None,
    *,
    trt_loadable: bool | None = None,
    trt_cache_dir: Path | None = None,
    trt_fp16: bool = False,
) -> list[ProviderSpec]:
    """The providers to give onnxruntime, with their options, in order of preference.

    ``requested`` keeps its order; a provider onnxruntime does not offer
    (``available``, default ``ort.get_available_providers()``) is skipped, as is TensorRT when its
    library does not load (``trt_loadable``, default :func:`tensorrt_loadable`); duplicates are
    dropped and the CPU provider always ends the list, requested or not, so a session always
    starts. Which one really runs is read back from the session (``get_providers()[0]``).
    """
    offered = set(ort.get_available_providers() if available is None else available)
    out: list[ProviderSpec] = []
    seen = {CPU_PROVIDER}
    for name in requested:
        if name in seen:
            continue
        seen.add(name)
        if name not in offered:
            log.debug("provider %s not offered by this onnxruntime build: skipped", name)
            continue
        if name == TENSORRT_PROVIDER:
            if not (tensorrt_loadable() if trt_loadable is None else trt_loadable):
                log.info("TensorRT provider skipped: %s does not load", TENSORRT_LIBRARY)
                continue
            out.append((name, tensorrt_options(trt_cache_dir, trt_fp16)))
        else:
            out.append((name, {}))
    out.append((CPU_PROVIDER, {}))
    return out
