"""Model inference latency: onnxruntime vs PyTorch eager, each runtime in its own process.

Same weights, same seeded inputs (default 60 x 256 x 256 raster, N_MAX 128 with 100 valid agents),
``--threads`` intra-op threads (default 2). Prints p50/p95/p99/max per runtime and writes
``bench_model.json`` into ``--out DIR`` (default ``$PRESCIENT_HOME/bench`` or the user data folder;
an ``--out`` ending in ``.json`` names the file itself). Torch and onnxruntime are never timed in the same process:
they would fight over the same cores. Without ``--model`` / ``--model-dir`` a seeded random-weight
model of the default architecture is built; ``--model path.onnx`` (with its ``.manifest.json``)
times that model, onnxruntime only.

``--check`` exits 1 when the onnxruntime p99 exceeds ``stages.infer_ms`` of ``benchmarks/budgets.toml``.

    .venv/bin/python -m prescient.benchmarks.bench_model [--runs 100] [--model path.onnx] [--out DIR] [--check]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from prescient.benchmarks.common import add_out_argument, budgets, commit, report_misses, result_path
from prescient.bus.errors import MissingExtraError
from prescient.service.model_io.sample_inputs import random_inputs
from prescient.service.stats import percentiles_ms


def _stats(samples_ns: list[int]) -> dict[str, float]:
    """:func:`prescient.service.stats.percentiles_ms` with this benchmark's ``*_ms`` JSON keys."""
    p = percentiles_ms(samples_ns)
    return {"n": p["n"], **{f"{k}_ms": p[k] for k in ("p50", "p95", "p99", "max", "mean")}}


def _feed(cfg, n_valid: int, seed: int) -> dict[str, np.ndarray]:
    """Seeded net inputs, batch 1 (numpy only: the onnxruntime worker needs no torch)."""
    return random_inputs(cfg, 1, seed=seed, n_valid=n_valid)


def worker(runtime: str, model_path: Path, runs: int, warmup: int, threads: int, n_valid: int) -> dict:
    """Time one runtime in this process; returns stats (ms) and the provider / thread counts.

    ``model_path``: the ``.onnx`` file; its manifest is ``<stem>.manifest.json`` beside it and the
    torch checkpoint (torch only) ``<stem>.pt``.
    """
    from prescient.service.model_io.config import INPUT_NAMES, OUTPUT_NAMES, ModelConfig
    from prescient.service.model_io.manifest import manifest_path_for

    manifest = json.loads(manifest_path_for(model_path).read_text())

    cfg = ModelConfig.from_dict(manifest["model_config"])
    samples: list[int] = []
    if runtime == "onnxruntime":
        from prescient.service.predictor import OnnxPredictor

        pred = OnnxPredictor(model_path, providers=("CPUExecutionProvider",), intra_op_threads=threads)
        sess = pred.session
        info = {"provider": pred.provider}
        feeds = [_feed(cfg, n_valid, seed) for seed in range(4)]
        for i in range(warmup):
            sess.run(list(OUTPUT_NAMES), feeds[i % 4])
        for i in range(runs):
            t0 = time.perf_counter_ns()
            sess.run(list(OUTPUT_NAMES), feeds[i % 4])
            samples.append(time.perf_counter_ns() - t0)
    else:
        import torch

        from prescient.models.export import load_checkpoint

        torch.set_num_threads(threads)
        model, _ = load_checkpoint(model_path.with_suffix(".pt"))
        info = {"provider": "torch-eager-cpu", "torch": torch.__version__}
        feeds = [
            [torch.from_numpy(f[n]) for n in INPUT_NAMES]
            for f in (_feed(cfg, n_valid, seed) for seed in range(4))
        ]
        with torch.inference_mode():
            for i in range(warmup):
                model(*feeds[i % 4])
            for i in range(runs):
                t0 = time.perf_counter_ns()
                model(*feeds[i % 4])
                samples.append(time.perf_counter_ns() - t0)
    return {"runtime": runtime, "threads": threads, **info, **_stats(samples)}


def build_model(model_dir: Path, channels: int, size: int, n_max: int, seed: int) -> None:
    """Export a seeded random-weight full-size model plus its checkpoint into ``model_dir``."""
    import torch

    from prescient.models.export import export_onnx, save_checkpoint
    from prescient.models.net import TrajectoryNet
    from prescient.service.model_io.config import ModelConfig

    torch.manual_seed(seed)
    model = TrajectoryNet(ModelConfig(in_channels=channels, raster_hw=(size, size), n_max=n_max)).eval()
    export_onnx(model, model_dir / "model.onnx", training_meta={"note": "random weights, benchmark only"})
    save_checkpoint(model_dir / "model.pt", model)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="prescient bench model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--agents", type=int, default=100, help="valid agents (<= N_MAX)")
    parser.add_argument("--channels", type=int, default=60)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--n-max", type=int, default=128)
    parser.add_argument("--runtimes", default="onnxruntime,torch")
    parser.add_argument("--model-dir", type=Path, default=None, help="dir with model.onnx/.pt (else built)")
    parser.add_argument(
        "--model", type=Path, default=None, help="an exported .onnx (manifest beside it); onnxruntime only"
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if onnxruntime p99 > stages.infer_ms of budgets.toml"
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    add_out_argument(parser)
    args = parser.parse_args(argv)

    if args.worker:
        res = worker(args.worker, args.model, args.runs, args.warmup, args.threads, args.agents)
        print(json.dumps(res))
        return 0
    if args.model is not None:
        if "torch" in args.runtimes.split(","):
            args.runtimes = "onnxruntime"  # an exported model has no checkpoint to run eagerly
    builds = args.model is None and args.model_dir is None  # a random-weight model, with torch
    if (builds or "torch" in args.runtimes.split(",")) and importlib.util.find_spec("torch") is None:
        raise MissingExtraError("torch")  # `--model M --runtimes onnxruntime` needs no torch

    limit_ms = float(budgets()["stages"]["infer_ms"])
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir or Path(tmp)
        model_path = args.model.resolve() if args.model is not None else model_dir / "model.onnx"
        if args.model_dir is None and args.model is None:
            # Built in a child too, so this process never holds torch threads during timing.
            code = (
                "import sys; from pathlib import Path; from prescient.benchmarks.bench_model import build_model; "
                f"build_model(Path({str(model_dir)!r}), {args.channels}, {args.size}, {args.n_max}, 0)"
            )
            subprocess.run([sys.executable, "-c", code], check=True)
        results = []
        for runtime in args.runtimes.split(","):
            cmd = [
                sys.executable,
                "-m",
                "prescient.benchmarks.bench_model",
                "--worker",
                runtime,
                "--model",
                str(model_path),
            ]
            cmd += ["--runs", str(args.runs), "--warmup", str(args.warmup), "--threads", str(args.threads)]
            cmd += ["--agents", str(args.agents)]
            env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))

    what = args.model.name if args.model is not None else f"raster {args.channels}x{args.size}x{args.size}"
    print(f"model inference, {what}, {args.agents} agents, {args.threads} threads")
    print(f"{'runtime':<12} {'provider':<22} {'n':>4} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}  (ms)")
    for r in results:
        print(
            f"{r['runtime']:<12} {r['provider']:<22} {r['n']:>4} {r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} "
            f"{r['p99_ms']:>8.1f} {r['max_ms']:>8.1f}"
        )
    report = {
        "bench": "model",
        "config": {k: v for k, v in vars(args).items() if k not in ("out", "model_dir", "model", "worker")},
        "model": str(args.model) if args.model is not None else "random weights",
        "budget_p99_ms": limit_ms,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "commit": commit(),
        "results": results,
    }
    out_path = result_path(args.out, "bench_model.json")
    out_path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out_path}")
    misses = [
        f"model inference p99 {r['p99_ms']:.1f} ms > {limit_ms:g} ms (onnxruntime, {r['threads']} threads)"
        for r in results
        if r["runtime"] == "onnxruntime" and not r["p99_ms"] <= limit_ms
    ]
    return report_misses(misses, args.check)


if __name__ == "__main__":
    sys.exit(main())
