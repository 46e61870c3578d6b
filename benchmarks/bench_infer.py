"""Inference variants side by side: graph optimisation levels, threads, spinning, IO binding, int8.

Each variant is an :class:`prescient.service.predictor.OnnxPredictor` in its own process, loaded
and warmed up one after the other. The timing is interleaved: rounds of ``--block`` passes per
variant, the variants' order rotating from round to round, so load on a shared machine hits
every variant alike; an idle worker blocks on its pipe (its threads do not spin).
Every variant gets the same seeded inputs: :func:`prescient.service.model_io.sample_inputs.random_inputs`
with ``--agents`` valid agents and, with ``--data DIR``, real rasters from simulator shards in
place of the random ones; a model with a symbolic agent axis gets only the valid agents, as in the
service. One pass is ``OnnxPredictor._run`` (``session.run``, what a tick runs),
or for the IO-binding variants :func:`bound_runner` (binding included). Prints p50/p95/p99/max per variant and writes ``bench_infer.json`` into ``--out DIR``.

    prescient bench infer [--model M.onnx] [--int8 M_int8.onnx] [--baseline B.onnx] [--data DIR] [--runs 200] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from prescient.benchmarks.common import add_out_argument, commit, machine, result_path
from prescient.service.app.paths import shipped_model_path
from prescient.service.stats import percentiles_ms

# Named, not default_model_path(): the fp32 rows stay float whichever file the service loads.
SHIPPED_FP32 = shipped_model_path("fp32")
SHIPPED_INT8 = shipped_model_path("int8")
N_FEEDS = 4


@dataclass(frozen=True)
class Variant:
    """One way to run the model: which file and which session settings."""

    name: str
    precision: str  # "fp32" (--model), "int8" (--int8) or "baseline" (--baseline): which file
    level: str = "all"
    io_binding: bool = False
    threads: int = 2
    spinning: bool = True


VARIANTS = (
    Variant("fp32-all", "fp32"),  # the service today
    Variant("fp32-extended", "fp32", level="extended"),
    Variant("fp32-basic", "fp32", level="basic"),
    Variant("fp32-disable", "fp32", level="disable"),
    Variant("fp32-all-iobind", "fp32", io_binding=True),
    Variant("fp32-all-nospin", "fp32", spinning=False),
    Variant("fp32-all-1thread", "fp32", threads=1),
    Variant("int8-all", "int8"),
    Variant("int8-all-iobind", "int8", io_binding=True),
    Variant("int8-all-nospin", "int8", spinning=False),
    Variant("int8-all-1thread", "int8", threads=1),
)
# --baseline FILE: another export (e.g. the previous shipped model), with the service's settings.
BASELINE = Variant("baseline-all-nospin", "baseline", spinning=False)


def feeds(cfg: Any, n_valid: int, data: Path | None, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """:data:`N_FEEDS` seeded input sets; rasters from ``data`` shards when given (seeded choice)."""
    out = [random_inputs_for(cfg, n_valid, seed + i) for i in range(N_FEEDS)]
    if data is not None:
        from prescient.models.quantize import calibration_samples
        from prescient.models.sim_data import load_shard

        for f, (path, i) in zip(out, calibration_samples(data, N_FEEDS, seed, allow_held_out=True)):
            f["raster"] = load_shard(path).raster(i, route_plan=True)[None]
    return out


def random_inputs_for(cfg: Any, n_valid: int, seed: int) -> dict[str, np.ndarray]:
    """Seeded net inputs, batch 1."""
    from prescient.service.model_io.sample_inputs import random_inputs

    return random_inputs(cfg, 1, seed=seed, n_valid=n_valid)


def bound_runner(session: Any, cfg: Any) -> Callable[[dict[str, np.ndarray]], list[np.ndarray]]:
    """A pass through an onnxruntime IO binding: inputs bound from the caller's arrays, outputs
    written into (batch 1) buffers allocated once; returns those buffers (overwritten by the next pass).
    """
    from prescient.service.model_io.config import INPUT_NAMES

    binding = session.io_binding()
    outputs = []
    for name, shape in cfg.output_shapes(1).items():
        buf = np.empty(shape, np.float32)
        outputs.append(buf)
        binding.bind_output(name, "cpu", 0, np.float32, list(shape), buf.ctypes.data)

    def run(feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        for name in INPUT_NAMES:
            binding.bind_cpu_input(name, feed[name])
        session.run_with_iobinding(binding)
        return outputs

    return run


def worker(variant: Variant, model: Path, n_valid: int, data: Path | None, warmup: int) -> int:
    """Load ``variant``; then answer each line ``N`` on stdin with N pass times (ns, JSON)."""
    from prescient.service.predictor import OnnxPredictor

    pred = OnnxPredictor(
        model,
        providers=("CPUExecutionProvider",),
        intra_op_threads=variant.threads,
        optimization_level=variant.level,
        allow_spinning=variant.spinning,
    )
    run = bound_runner(pred.session, pred.cfg) if variant.io_binding else pred._run
    inputs = feeds(pred.cfg, n_valid, data)
    if pred.agents_symbolic and not variant.io_binding:
        # As a tick feeds it (OnnxPredictor._predict_checked): only the valid agents.
        inputs = [{k: v[:, :n_valid] if k.startswith("agent_") else v for k, v in f.items()} for f in inputs]
    for i in range(warmup):
        run(inputs[i % N_FEEDS])
    print(json.dumps({"ready": True, "precision": pred.precision, "provider": pred.provider}), flush=True)
    k = 0
    for line in sys.stdin:
        n = int(line)
        times = []
        for _ in range(n):
            t0 = time.perf_counter_ns()
            run(inputs[k % N_FEEDS])
            times.append(time.perf_counter_ns() - t0)
            k += 1
        print(json.dumps(times), flush=True)
    return 0


def _ask(proc: subprocess.Popen[str], line: str | None) -> Any:
    stdin, stdout = proc.stdin, proc.stdout
    if stdin is None or stdout is None:  # Popen was given PIPEs: never, but say so if it happens
        raise RuntimeError("worker process has no stdin/stdout pipe")
    if line is not None:
        stdin.write(line + "\n")
        stdin.flush()
    reply = stdout.readline()
    if not reply:
        raise RuntimeError(f"worker {proc.args} exited with {proc.wait()} (--verbose shows its log)")
    return json.loads(reply)


def run_variants(
    variants: list[Variant], models: dict[str, Path], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Start one worker per variant, then time them interleaved; returns one result per variant."""
    procs: list[subprocess.Popen[str]] = []
    info: list[dict[str, Any]] = []
    samples: list[list[int]] = [[] for _ in variants]
    try:
        for v in variants:
            cmd = [
                sys.executable,
                "-m",
                "prescient.benchmarks.bench_infer",
                "--worker",
                json.dumps(asdict(v)),
            ]
            cmd += ["--model", str(models[v.precision]), "--agents", str(args.agents)]
            cmd += ["--warmup", str(args.warmup)] + (["--data", str(args.data)] if args.data else [])
            env = dict(os.environ, OMP_NUM_THREADS=str(v.threads))
            stderr: IO[str] | None = None if args.verbose else subprocess.DEVNULL  # type: ignore[assignment]
            p = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env
            )
            procs.append(p)
            info.append(_ask(p, None))  # loaded and warmed up before the next one starts
        rounds = max(1, -(-args.runs // args.block))
        for r in range(rounds):
            for j in range(len(variants)):
                k = (j + r) % len(variants)
                samples[k].extend(_ask(procs[k], str(args.block)))
    finally:
        for p in procs:
            if p.stdin is not None:
                p.stdin.close()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
    out = []
    for v, i, s in zip(variants, info, samples):
        st = percentiles_ms(s)
        out.append(
            {
                **asdict(v),
                "provider": i["provider"],
                "manifest_precision": i["precision"],
                "n": st["n"],
                **{f"{k}_ms": st[k] for k in ("p50", "p95", "p99", "max", "mean")},
            }
        )
    return out


def format_table(results: list[dict[str, Any]]) -> str:
    """Markdown table: variant, settings, p50/p95/p99/max."""
    lines = [
        "| variant | precision | graph opt | threads | spinning | IO binding | n | p50 ms | p95 ms | p99 ms | max ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['name']} | {r['manifest_precision']} | {r['level']} | {r['threads']} | "
            f"{'on' if r['spinning'] else 'off'} | {'on' if r['io_binding'] else 'off'} | {r['n']} | "
            f"{r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="prescient bench infer",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", type=Path, default=SHIPPED_FP32, help="float .onnx (manifest beside it)")
    parser.add_argument(
        "--int8", type=Path, default=SHIPPED_INT8, help="int8 .onnx; its variants are skipped if absent"
    )
    parser.add_argument(
        "--baseline", type=Path, default=None, help="also time this .onnx (service settings) in the same run"
    )
    parser.add_argument("--data", type=Path, default=None, help="simulator shards for real rasters")
    parser.add_argument("--variants", default="", help="comma-separated names (default: all); see VARIANTS")
    parser.add_argument("--runs", type=int, default=200, help="timed passes per variant")
    parser.add_argument("--block", type=int, default=10, help="passes per variant per round")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--agents", type=int, default=100, help="valid agents (<= N_MAX)")
    parser.add_argument("--verbose", action="store_true", help="show the workers' logs")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    add_out_argument(parser)
    args = parser.parse_args(argv)

    if args.worker:
        return worker(Variant(**json.loads(args.worker)), args.model, args.agents, args.data, args.warmup)
    by_name = {v.name: v for v in VARIANTS}
    names = [n.strip() for n in args.variants.split(",") if n.strip()] or list(by_name)
    unknown = sorted(set(names) - set(by_name))
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(by_name)}")
    models = {"fp32": args.model.resolve(), "int8": args.int8.resolve()}
    if not models["fp32"].is_file():
        parser.error(f"model not found: {args.model}")
    variants = [by_name[n] for n in names if models[by_name[n].precision].is_file()]
    if args.baseline is not None:
        if not args.baseline.is_file():
            parser.error(f"baseline model not found: {args.baseline}")
        models["baseline"] = args.baseline.resolve()
        variants.append(BASELINE)
    skipped = [n for n in names if by_name[n] not in variants]
    if skipped:
        print(f"skipped (no int8 model at {args.int8}): {', '.join(skipped)}")
    results = run_variants(variants, models, args)
    print(
        f"inference variants, {args.agents} agents, {args.runs} passes each, interleaved in blocks of {args.block}"
    )
    print(format_table(results))
    report = {
        "bench": "infer",
        "config": {k: str(v) for k, v in vars(args).items() if k not in ("out", "worker")},
        "models": {k: str(v) for k, v in models.items()},
        "machine": machine(),
        "loadavg": os.getloadavg(),
        "commit": commit(),
        "results": results,
    }
    out_path = result_path(args.out, "bench_infer.json")
    out_path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
