"""Simulator speed: simulated seconds per wall second and step-time tail, at 50/100/200 agents.

Each run warms up (JIT, initial spawns) for 1 sim s, then times every ``Simulation.step()`` with
``perf_counter_ns`` over ``--duration`` sim seconds (all 16 sensors on, intersection scenario by
default). Prints a table and writes ``bench_sim.json`` into ``--out DIR`` (default
``$PRESCIENT_HOME/bench`` or the user data folder).

``--check`` exits 1 when the run at ``sim.at_agents`` is slower than ``sim.min_x_real_time``
(``benchmarks/budgets.toml``).

    .venv/bin/python -m prescient.benchmarks.bench_sim [--duration 10] [--agents 50 100 200] [--scenario NAME]
        [--out DIR] [--check]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from prescient.benchmarks.common import add_out_argument, budgets, commit, report_misses, results_dir
from prescient.service.stats import percentiles_ms
from prescient.sim_sensors import SCENARIOS, SimConfig, Simulation


def bench_one(scenario: str, n_agents: int, duration_s: float, seed: int) -> dict:
    """Time one configuration; returns the summary row."""
    sim = Simulation(SimConfig(scenario=scenario, seed=seed, n_agents=n_agents))
    for _ in sim.run(1.0):  # warm-up: JIT and spawning
        pass
    n = int(round(duration_s * 1e9 / sim.dt_ns))
    step_ns = np.empty(n, np.int64)
    n_msgs = 0
    t0 = time.perf_counter_ns()
    for i in range(n):
        a = time.perf_counter_ns()
        n_msgs += len(sim.step())
        step_ns[i] = time.perf_counter_ns() - a
    wall_s = (time.perf_counter_ns() - t0) / 1e9
    p = percentiles_ms(step_ns)
    return {
        "scenario": scenario,
        "agents": n_agents,
        "active_agents_end": sim.n_active,
        "sim_s": duration_s,
        "wall_s": wall_s,
        "x_real_time": duration_s / wall_s,
        "wall_ms_per_sim_s": 1e3 * wall_s / duration_s,
        "messages_per_sim_s": n_msgs / duration_s,
        **{f"step_ms_{k}": p[k] for k in ("p50", "p95", "p99", "max")},
    }


def check(rows: list[dict], budget: dict) -> list[str]:
    """Missed budgets, as readable lines (empty: held or no run at ``sim.at_agents``)."""
    b = budget["sim"]
    return [
        f"simulator {r['x_real_time']:.1f}x real time < {b['min_x_real_time']:g}x at {r['agents']} agents"
        for r in rows
        if r["agents"] == b["at_agents"] and not r["x_real_time"] >= b["min_x_real_time"]
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="prescient bench sim", description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="intersection", choices=SCENARIOS)
    parser.add_argument("--agents", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--duration", type=float, default=10.0, help="timed sim seconds per run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", action="store_true", help="exit 1 when a budget in budgets.toml is missed")
    add_out_argument(parser)
    args = parser.parse_args(argv)
    rows = [bench_one(args.scenario, n, args.duration, args.seed) for n in args.agents]
    print(
        f"{'agents':>6} {'x_rt':>7} {'ms/sim_s':>9} {'msg/s':>7} {'p50_ms':>7} {'p95_ms':>7} {'p99_ms':>7} {'max_ms':>7}"
    )
    for r in rows:
        print(
            f"{r['agents']:>6} {r['x_real_time']:>7.1f} {r['wall_ms_per_sim_s']:>9.1f} {r['messages_per_sim_s']:>7.0f} "
            f"{r['step_ms_p50']:>7.3f} {r['step_ms_p95']:>7.3f} {r['step_ms_p99']:>7.3f} {r['step_ms_max']:>7.3f}"
        )
    out = results_dir(args.out) / "bench_sim.json"
    meta = {
        "commit": commit(),
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    out.write_text(json.dumps({"meta": meta, "runs": rows}, indent=2))
    print(f"wrote {out}")
    return report_misses(check(rows, budgets()), args.check)


if __name__ == "__main__":
    raise SystemExit(main())
