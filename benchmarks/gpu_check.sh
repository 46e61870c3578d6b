#!/usr/bin/env bash
# GPU check for the shipped model: which onnxruntime provider really runs it, and how fast.
#
# Run on a machine with an NVIDIA GPU, inside the GPU image or in a venv with onnxruntime-gpu:
#   docker run --rm --gpus all --entrypoint prescient-gpu-check prescient:gpu
#   PYTHON=.venv/bin/python benchmarks/gpu_check.sh [MODEL.onnx]
#
# Prints nvidia-smi, the onnxruntime version, the CUDA it was built for and its providers; then for
# each of $PROVIDERS (default TensorRT, CUDA, CPU) creates a session on the model asking for that
# provider (CPU as the fallback), prints the provider really in use, and times $N (200) inferences
# where it is in use: p50/p95/p99/max in ms. Exit 1 when CUDA was asked for and is not in use
# (TensorRT too with REQUIRE_TENSORRT=1); 2 on a setup error. Bounded by $LIMIT_S (default 280 s)
# so it ends in under 5 minutes even when TensorRT builds its engine (not cached yet).
# Options: the project's provider options (TensorRT engine cache in $PRESCIENT_TRT_CACHE_DIR, fp16
# off) when `prescient` is importable, else onnxruntime's defaults.
#
# VENV=DIR: first create DIR (if absent) and install this checkout with the `gpu` extra into it
# (onnxruntime-gpu only, never beside onnxruntime: they overwrite each other), then use its python.
# After a PASS with `prescient` importable, BENCH=1 (default) also runs `prescient bench model`
# and `prescient bench e2e --agents 100 400` on the provider in use and writes their JSON to $OUT
# (default ./gpu_check_out). On a machine without CUDA it says so and exits 1 before any of that.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
if [[ -n "${VENV:-}" ]]; then
  if [[ ! -x "$VENV/bin/python" ]]; then
    echo "== installing $REPO[gpu] into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "$REPO[gpu]" || { echo "gpu_check: pip install of the gpu extra failed" >&2; exit 2; }
  fi
  PYTHON="$VENV/bin/python"
fi
PYTHON="${PYTHON:-python3}"
BENCH="${BENCH:-1}"
OUT="${OUT:-gpu_check_out}"
N="${N:-200}"
LIMIT_S="${LIMIT_S:-280}"
PROVIDERS="${PROVIDERS:-TensorrtExecutionProvider CUDAExecutionProvider CPUExecutionProvider}"
REQUIRE_TENSORRT="${REQUIRE_TENSORRT:-0}"
MODEL="${1:-}"

if [[ -z "$MODEL" ]]; then
  MODEL="$("$PYTHON" -c 'from prescient.service.app.paths import default_model_path as p; print(p())' 2>/dev/null || true)"
  if [[ -z "$MODEL" ]]; then
    MODEL="$REPO/models/shipped/prescient.onnx"
  fi
fi
[[ -f "$MODEL" ]] || { echo "gpu_check: model not found: $MODEL" >&2; exit 2; }

echo "== nvidia-smi"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi || echo "(nvidia-smi failed: no GPU visible to this container/process?)"
else
  echo "(nvidia-smi not found: no NVIDIA driver visible here; with docker: --gpus all)"
fi
echo
echo "== CUDA / cuDNN / TensorRT libraries the loader finds"
{ ldconfig -p 2>/dev/null || true; } | grep -E 'lib(cudart|cublas|cudnn|nvinfer)\.so\.[0-9]+ ' | sed 's/ (.*=>/ =>/' || echo "(none in the loader cache)"
echo

export GPU_CHECK_MODEL="$MODEL" GPU_CHECK_N="$N" GPU_CHECK_PROVIDERS="$PROVIDERS" GPU_CHECK_REQUIRE_TRT="$REQUIRE_TENSORRT"
rc=0
timeout --signal=INT --kill-after=10 "$LIMIT_S" "$PYTHON" - <<'EOF' || rc=$?
import os
import sys
import time

import numpy as np
import onnxruntime as ort

model = os.environ["GPU_CHECK_MODEL"]
n = int(os.environ["GPU_CHECK_N"])
wanted = os.environ["GPU_CHECK_PROVIDERS"].split()
require_trt = os.environ["GPU_CHECK_REQUIRE_TRT"] == "1"
CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"

print("== onnxruntime")
try:
    from onnxruntime.capi import build_and_package_info as info

    built = f"package {info.package_name}, built for CUDA {getattr(info, 'cuda_version', '-')}"
except ImportError:
    built = "no build info"
print(f"onnxruntime {ort.__version__} ({built}); device {ort.get_device()}")
available = ort.get_available_providers()
print(f"available providers: {available}")
try:
    from prescient.service.model_io.providers import select_providers, tensorrt_loadable

    print(f"TensorRT library loads: {tensorrt_loadable()}")
except ImportError:
    select_providers = None
print(f"model: {model}\n")

DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64,
          "tensor(int32)": np.int32, "tensor(bool)": np.bool_}


def feed_for(sess, rng):
    feed = {}
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in i.shape]
        dtype = DTYPES.get(i.type, np.float32)
        feed[i.name] = rng.random(shape).astype(dtype) if dtype != np.bool_ else np.ones(shape, bool)
    return feed


def providers_for(name):
    if select_providers is not None:
        return select_providers([name], available=available, trt_loadable=True)  # ask even if it may fail
    return [name] if name == CPU else [name, CPU]


failures = []
rows = []
rng = np.random.default_rng(0)
for name in wanted:
    print(f"== {name}")
    if name not in available:
        print("  not offered by this onnxruntime build")
        if name == CUDA or (name == TRT and require_trt):
            failures.append(f"{name} not available")
        continue
    so = ort.SessionOptions()
    so.log_severity_level = 3
    t0 = time.perf_counter()
    try:
        sess = ort.InferenceSession(model, so, providers=providers_for(name))
        in_use = sess.get_providers()[0]
        feed = feed_for(sess, rng)
        sess.run(None, feed)  # first run: allocations, TensorRT engine (if not cached)
    except Exception as e:  # any provider failure is a finding, reported
        print(f"  session failed: {str(e).splitlines()[0][:300]}")
        if name == CUDA or (name == TRT and require_trt):
            failures.append(f"{name}: {e}")
        continue
    print(f"  in use: {in_use} (session + first run {time.perf_counter() - t0:.1f} s)")
    if in_use != name:
        print(f"  {name} asked for, {in_use} runs the model: not timed")
        if name == CUDA or (name == TRT and require_trt):
            failures.append(f"{name} asked for, running on {in_use}")
        continue
    for _ in range(20):
        sess.run(None, feed)
    ms = np.empty(n)
    for k in range(n):
        t = time.perf_counter_ns()
        sess.run(None, feed)
        ms[k] = (time.perf_counter_ns() - t) / 1e6
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    rows.append((name, n, p50, p95, p99, ms.max()))
    print(f"  {n} inferences: p50 {p50:.2f} ms  p95 {p95:.2f} ms  p99 {p99:.2f} ms  max {ms.max():.2f} ms")

print("\n== summary (ms)")
print(f"{'provider':<28}{'n':>5}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}")
for name, k, p50, p95, p99, mx in rows:
    print(f"{name:<28}{k:>5}{p50:>9.2f}{p95:>9.2f}{p99:>9.2f}{mx:>9.2f}")
if failures:
    print("\nFAIL: " + "; ".join(failures))
    sys.exit(1)
print("\nPASS")
EOF
if ((rc == 124 || rc == 130)); then
  echo "FAIL: gpu_check did not finish within ${LIMIT_S} s" >&2
  exit 1
fi
if ((rc != 0)); then
  exit "$rc"
fi
if [[ "$BENCH" == "1" ]] && "$PYTHON" -c 'import prescient.service' 2>/dev/null; then
  echo
  echo "== benchmarks on the provider in use (JSON into $OUT)"
  mkdir -p "$OUT"
  "$PYTHON" -m prescient.service.app.cli bench --out "$OUT" model --model "$MODEL" || rc=$?
  "$PYTHON" -m prescient.service.app.cli bench --out "$OUT" e2e --agents 100 400 --scenarios day \
    --ticks 300 --model "$MODEL" || rc=$?
fi
exit "$rc"
