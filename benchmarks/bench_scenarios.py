"""Scenario-diffusion benchmark: realism and token compliance against held-out simulated scenes.

Rows: a second held-out draw (the floor), the simulator's own spawner (baseline), the diffusion
model without tokens and with the density token (see :mod:`prescient.models.scenario_diffusion.evaluate`).
Then generation latency: one scene at a time (batch 1, DDIM ``--steps``), p50/p95/p99/max wall
and thread CPU time per scene, warm-up excluded; and the amortised time per scene in batches.
Torch runs on one thread. Writes ``bench_scenarios.json`` into ``--out DIR`` (default
``$PRESCIENT_HOME/bench`` or the user data folder; an ``--out`` ending in ``.json`` names the file).

    prescient bench scenarios [--runs-per-map 8] [--steps 25] [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from prescient.benchmarks.common import add_out_argument, result_path
from prescient.models.scenario_diffusion.evaluate import evaluate, format_report
from prescient.models.scenario_diffusion.generate import WEIGHTS_PATH, ScenarioGenerator
from prescient.models.scenario_diffusion.tokens import load_spec
from prescient.service.app.paths import PACKAGE_ROOT
from prescient.service.stats import percentiles_ms


def _pct(x_s: list[float]) -> dict[str, float]:
    """:func:`prescient.service.stats.percentiles_ms` of durations in seconds, with ``*_ms`` keys."""
    p = percentiles_ms([v * 1e9 for v in x_s])
    return {**{f"{k}_ms": p[k] for k in ("p50", "p95", "p99", "max")}, "n": p["n"]}


def latency(gen: ScenarioGenerator, steps: int, n: int, guidance: float) -> dict:
    """Per-scene latency of generating the example bus scenario one scene at a time."""
    spec = load_spec(PACKAGE_ROOT / "models" / "scenario_diffusion" / "examples" / "bus_right_turn.yaml")
    spec.guidance = guidance
    gen.generate("intersection", spec, n=2, seed=0, n_steps=steps, batch=1)  # warm-up
    wall, cpu = [], []
    for i in range(n):
        t0, c0 = time.perf_counter(), time.thread_time()
        gen.generate("intersection", spec, n=1, seed=i + 1, n_steps=steps, batch=1)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
    return {"wall": _pct(wall), "thread_cpu": _pct(cpu)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="prescient bench scenarios", description=__doc__.splitlines()[0])
    ap.add_argument("--runs-per-map", type=int, default=8, help="held-out runs per map (2 scenes each)")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--guidance", type=float, default=1.0, help="guidance for the realism / compliance rows")
    ap.add_argument("--latency-n", type=int, default=30)
    ap.add_argument("--weights", default=str(WEIGHTS_PATH))
    ap.add_argument("--quick", action="store_true", help="2 runs per map, 10 latency samples")
    add_out_argument(ap)
    a = ap.parse_args(argv)
    if a.quick:
        a.runs_per_map, a.latency_n = 2, 10
    torch.set_num_threads(1)
    gen = ScenarioGenerator.load(a.weights)
    r = evaluate(gen, runs_per_map=a.runs_per_map, n_steps=a.steps, guidance=a.guidance)
    print(format_report(r))
    lat = {g: latency(gen, a.steps, a.latency_n, g) for g in (1.0, 2.0)}
    for g, v in lat.items():
        w, c = v["wall"], v["thread_cpu"]
        print(f"latency per scene, batch 1, {a.steps} DDIM steps, guidance {g}: wall p50 {w['p50_ms']:.1f} "
              f"p95 {w['p95_ms']:.1f} p99 {w['p99_ms']:.1f} max {w['max_ms']:.1f} ms; thread CPU p50 "
              f"{c['p50_ms']:.1f} p95 {c['p95_ms']:.1f} p99 {c['p99_ms']:.1f} max {c['max_ms']:.1f} ms")  # fmt: skip
    r["latency_batch1"] = lat
    r["weights_info"] = gen.info
    r["host"] = {"python": platform.python_version(), "torch": torch.__version__, "threads": 1,
                 "machine": platform.machine()}  # fmt: skip
    out = result_path(a.out, "bench_scenarios.json")
    out.write_text(json.dumps(r, indent=1))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
