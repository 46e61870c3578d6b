"""``prescient bench [WHAT] [ARGS...]``: run one of the benchmarks (each prints p50/p95/p99/max).

``prescient bench`` alone answers "does it hold 100 ms on my hardware?" (the end-to-end stack
benchmark). The others measure single stages and are forwarded their own arguments; with
``--check`` a benchmark exits 1 when it misses a budget of ``benchmarks/budgets.toml``.

``prescient bench --check all`` runs every benchmark that has a budget, each in its own process
and in a quick mode (:data:`QUICK`; a few minutes, most of it the quick reliability run), and
exits 1 naming every miss. It is not part of ``make test``: it measures this machine, it does not
test the code.

Results go to ``--out DIR`` (given to the hub or to the benchmark), else to
``$PRESCIENT_HOME/bench`` or the user data folder: never next to the code, which may be an
installed, read-only package.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from prescient.benchmarks.common import MISS_PREFIX, default_results_dir
from prescient.service.app.paths import default_model_path

SHIPPED_MODEL = default_model_path()

BENCHES = {
    "e2e": (
        "prescient.benchmarks.bench_e2e",
        "end to end across the multi-process stack, 10..400 agents, day/night",
    ),
    "conditional": (
        "prescient.benchmarks.bench_conditional",
        "conditional-prediction request latency for 1, 3, 8 plans",
    ),
    "bus": ("prescient.benchmarks.bench_bus", "bus round trip, 1 KB..1 MB, ipc and tcp"),
    "sim": ("prescient.benchmarks.bench_sim", "simulator speed (simulated s per wall s)"),
    "tracker": ("prescient.benchmarks.bench_tracker", "tracker quality (motmetrics) and update cost"),
    "reorder": (
        "prescient.benchmarks.bench_reorder",
        "late frames: reorder window vs look-ahead vs none (MOTA, velocity, data age, cost)",
    ),
    "raster": ("prescient.benchmarks.bench_raster", "rasterizer vs numpy reference, cost growth"),
    "model": (
        "prescient.benchmarks.bench_model",
        "onnxruntime vs PyTorch eager inference (separate processes)",
    ),
    "infer": (
        "prescient.benchmarks.bench_infer",
        "inference variants side by side: graph optimisation, threads, IO binding, int8",
    ),
    "recorder": ("prescient.benchmarks.bench_recorder", "recorder keeps up with the full stack"),
    "scenarios": (
        "prescient.benchmarks.bench_scenarios",
        "scenario generation: realism, pin compliance, latency",
    ),
    "fleet": (
        "prescient.benchmarks.bench_fleet",
        "fleet replay on Ray: 1 and 2 workers vs the plain loop, overhead per log, memory",
    ),
    "reliability": (
        "prescient.benchmarks.bench_reliability",
        "the live stack under hostile traffic and kill -9 (--quick, --check)",
    ),
}

# The quick mode of every benchmark with a budget, cheapest first; `--check` is appended. Each
# runs the budgeted case only (the point at e2e.budget_agents, 3 conditional plans, ...) with
# fewer samples than the full run, so a result near its budget can land on either side.
QUICK: dict[str, list[str]] = {
    "raster": ["--frames", "100", "--ref-frames", "2", "--no-sweeps"],
    "model": ["--model", str(SHIPPED_MODEL), "--runtimes", "onnxruntime", "--runs", "60"],
    "sim": ["--agents", "100", "--duration", "5"],
    "tracker": ["--quick", "--repeats", "2"],
    "conditional": ["--plans", "3", "--requests", "30"],
    "recorder": ["--duration", "5"],
    "e2e": ["--agents", "100", "--scenarios", "day", "--ticks", "150", "--warmup-s", "5"],
    "reliability": ["--quick"],
}


@dataclass
class CheckResult:
    """One benchmark's quick check: its exit status and the budgets it reported missed."""

    name: str
    returncode: int
    misses: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failures(self) -> list[str]:
        """What to name in the summary: each miss, or the exit status when it named none."""
        if self.misses:
            return self.misses
        return [] if self.returncode == 0 else [f"exited with {self.returncode} without naming a budget"]


def _stream(cmd: list[str]) -> Iterator[str | int]:
    """Run ``cmd``; yield its output lines as they come, then its status."""
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as proc:
        assert proc.stdout is not None
        yield from proc.stdout
        yield proc.wait()


def check_one(
    name: str, run: Callable[[list[str]], Iterator[str | int]] = _stream, out: Path | None = None
) -> CheckResult:
    """Run benchmark ``name`` in its quick mode with ``--check``; echo its output, collect its misses.

    ``out``: the folder for its results (``--out``); None: the benchmark's default.
    """
    module = BENCHES[name][0]
    t0 = time.monotonic()
    res = CheckResult(name, returncode=-1)
    if out is not None and name == "reliability":  # --out is its run directory: a fresh one each time
        out = out / "reliability" / time.strftime("%Y%m%d-%H%M%S")
    where = [] if out is None else ["--out", str(out)]
    for item in run([sys.executable, "-m", module, *QUICK[name], *where, "--check"]):
        if isinstance(item, int):
            res.returncode = item
            continue
        print(item, end="" if item.endswith("\n") else "\n", flush=True)
        if item.startswith(MISS_PREFIX):
            res.misses.append(item[len(MISS_PREFIX) :].strip())
    res.seconds = time.monotonic() - t0
    return res


def check_all(
    names: list[str] | None = None,
    run: Callable[[list[str]], Iterator[str | int]] = _stream,
    out: Path | None = None,
) -> int:
    """Every budgeted benchmark in its quick mode; prints a summary naming each miss; 1 if any."""
    results = []
    names = list(QUICK) if names is None else names
    for i, name in enumerate(names):
        print(f"\n=== [{i + 1}/{len(names)}] bench {name} {' '.join(QUICK[name])} --check", flush=True)
        results.append(check_one(name, run, out))
    failed = [r for r in results if r.failures]
    print(f"\nprescient bench --check all: {len(results)} benchmarks, {len(failed)} with a miss")
    for r in results:
        verdict = "ok" if not r.failures else "MISSED"
        print(f"  {r.name:<12} {verdict:<7} ({r.seconds:.0f} s)")
        for line in r.failures:
            print(f"      {line}")
    return 1 if failed else 0


def _run(args: argparse.Namespace) -> int:
    if args.check_all:
        if args.what is not None or args.rest:
            raise SystemExit("prescient bench --check all takes no benchmark name or arguments")
        return check_all(out=args.out)
    module, _ = BENCHES[args.what or "e2e"]
    rest = list(args.rest)
    if args.out is not None:  # before the benchmark's own arguments: its own --out wins
        rest = ["--out", str(args.out), *rest]
    return int(importlib.import_module(module).main(rest) or 0)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="run a benchmark (default: end-to-end latency against the 100 ms budget)",
        description="\n".join(f"{k:12s} {v[1]}" for k, v in BENCHES.items())
        + "\n\nprescient bench NAME --check: exit 1 when NAME misses a budget of benchmarks/budgets.toml"
        + f"\nprescient bench --check all: {', '.join(QUICK)} in a quick mode; exit 1 naming each miss"
        + f"\n\nresults: --out DIR, else {default_results_dir()} ($PRESCIENT_HOME/bench or the user data folder)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--check",
        dest="check_all",
        choices=["all"],
        default=None,
        help="'all': every benchmark with a budget, quick, naming each miss",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder for the results (passed to the benchmark as --out DIR)",
    )
    p.add_argument("what", nargs="?", default=None, choices=sorted(BENCHES), help="default: e2e")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for that benchmark (see its --help)")
    p.set_defaults(func=_run)
