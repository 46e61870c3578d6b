"""``prescient bench [WHAT] [ARGS...]``: run one of the benchmarks (each prints p50/p95/p99/max).

``prescient bench`` alone answers "does it hold 100 ms on my hardware?" (the end-to-end stack
benchmark). The others measure single stages and are forwarded their own arguments.
"""

from __future__ import annotations

import argparse
import importlib

BENCHES = {
    "e2e": ("benchmarks.bench_e2e", "end to end across the multi-process stack, 10..400 agents, day/night"),
    "conditional": (
        "benchmarks.bench_conditional",
        "conditional-prediction request latency for 1, 3, 8 plans",
    ),
    "bus": ("benchmarks.bench_bus", "bus round trip, 1 KB..1 MB, ipc and tcp"),
    "sim": ("benchmarks.bench_sim", "simulator speed (simulated s per wall s)"),
    "tracker": ("benchmarks.bench_tracker", "tracker quality (motmetrics) and update cost"),
    "raster": ("benchmarks.bench_raster", "rasterizer vs numpy reference, cost growth"),
    "model": ("benchmarks.bench_model", "onnxruntime vs PyTorch eager inference (separate processes)"),
    "recorder": ("benchmarks.bench_recorder", "recorder keeps up with the full stack"),
    "reliability": (
        "benchmarks.bench_reliability",
        "the live stack under hostile traffic and kill -9 (--quick, --check)",
    ),
}


def _run(args: argparse.Namespace) -> int:
    module, _ = BENCHES[args.what]
    return int(importlib.import_module(module).main(args.rest) or 0)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="run a benchmark (default: end-to-end latency against the 100 ms budget)",
        description="\n".join(f"{k:12s} {v[1]}" for k, v in BENCHES.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("what", nargs="?", default="e2e", choices=sorted(BENCHES))
    p.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for that benchmark (see its --help)")
    p.set_defaults(func=_run)
