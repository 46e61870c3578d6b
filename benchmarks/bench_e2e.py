"""End-to-end latency across the real multi-process stack, at the real 10 Hz cadence.

For each (scenario, agent count) point it runs ``prescient up`` (bus proxy, simulator with 16
sensors in real time, prediction service, planner stub; no recorder) for ``warmup + ticks/10``
seconds and measures, per prediction after warm-up: processing latency (publish of the newest
sensor frame *applied* to the tracks -> the planner stub has it, same host, monotonic clock),
data age (capture of that frame -> the planner stub has it: adds the simulated sensor latency;
``reorder_held`` is how much older the newest applied capture is than the newest received one),
the service's stages (between ticks: decode, ingest = the tracker's per-frame work; at the tick:
track, raster, infer, and their sum, total), the time from the sensor publish to the
prediction's publish, and the last hop (prediction publish -> planner has decoded it).
A tick is a deadline miss when its end-to-end latency exceeds 100 ms; degraded ticks (physics
fallback) are counted separately.

Usage: python -m prescient.benchmarks.bench_e2e [--agents 10 50 100 200 400] [--scenarios day night]
       [--ticks 600] [--warmup-s 8] [--out DIR] [--check]

Writes ``e2e.json``, the plot ``e2e.png`` (when matplotlib is installed: the ``eval`` extra) and
one run directory per point (``e2e/<scenario>-<agents>/``) into ``--out DIR``, default
``$PRESCIENT_HOME/bench`` or the user data folder.

``--check`` exits 1 when the points at ``e2e.budget_agents`` or ``e2e.max_agents`` miss a budget
of ``benchmarks/budgets.toml`` (processing and data-age p99, ticks over 100 ms, degraded ticks;
per-stage p99 at ``e2e.budget_agents``).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import numpy as np

from prescient.benchmarks.common import (
    add_out_argument,
    budgets,
    machine,
    markdown_table,
    report_misses,
    results_dir,
    write_json,
)
from prescient.service.stats import percentiles_ms

DEADLINE_NS = 100_000_000
STAGES = ("decode", "ingest", "track", "raster", "infer", "total")


def run_point(
    scenario: str, agents: int, ticks: int, warmup_s: float, model: Path | None, idx: int, out_dir: Path
) -> dict:
    """One (scenario, agents) point; the stack's run directory is ``out_dir/e2e/<scenario>-<agents>``."""
    from prescient.service.app.stack import StackOptions, run_stack

    night = scenario == "night"
    out = out_dir / "e2e" / f"{scenario}-{agents}"
    opts = StackOptions(
        scenario="intersection",
        seed=idx,
        agents=agents,
        duration_s=warmup_s + ticks / 10.0 + 1.5,  # margin: a few ticks are lost at startup
        night=night,
        model=model,
        out_dir=out,
        bus=f"ipc:///tmp/prescient-bench-{os.getpid()}-{idx}",
        record=False,
        picture=False,
        live=False,
    )
    res = run_stack(opts)
    mon = res.monitor
    skip = int(warmup_s * 10)
    e2e = np.asarray(mon.e2e_all[skip : skip + ticks], np.int64)
    stages = {k: np.asarray(v[skip : skip + ticks], np.int64) for k, v in mon.stage_all.items()}
    segs = [x for x in mon.segments_all[skip : skip + ticks] if x[0] is not None]
    to_publish = np.asarray([x[0] for x in segs], np.int64)
    last_hop = np.asarray([x[1] for x in segs], np.int64)
    degraded = mon.degraded_all[skip : skip + ticks]
    sources = np.asarray(mon.sources_all[skip : skip + ticks], np.int64).reshape(-1, 2)
    agents_total = int(sources[:, 0].sum())
    return {
        "scenario": scenario,
        "agents": agents,
        "completed": res.ok,
        "ticks": int(len(e2e)),
        "provider": mon.provider,
        "e2e": percentiles_ms(e2e),
        "data_age": percentiles_ms(np.asarray(mon.data_age_all[skip : skip + ticks], np.int64)),
        "stages": {k: percentiles_ms(stages[k]) for k in STAGES if k in stages},
        "sensor_to_prediction_publish": percentiles_ms(to_publish),
        "prediction_to_planner": percentiles_ms(last_hop),
        "deadline_miss_rate": float((e2e > DEADLINE_NS).mean()) if len(e2e) else float("nan"),
        "deadline_misses": int((e2e > DEADLINE_NS).sum()),
        "degraded_ticks": int(sum(degraded)),
        # Provenance (agent_source): predicted agents per tick, and the share the model predicted
        # (the rest: constant velocity beyond the model's slots, or a degraded tick).
        "agents_predicted_p50": float(np.median(sources[:, 0])) if len(sources) else float("nan"),
        "from_model_share": float(sources[:, 1].sum() / agents_total) if agents_total else float("nan"),
    }


def plot(points: list[dict], path: Path) -> Path | None:
    """The latency and per-stage picture; None when matplotlib (the ``eval`` extra) is not installed."""
    try:
        import matplotlib
    except ModuleNotFoundError:
        return None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    for scenario in sorted({p["scenario"] for p in points}):
        pts = [p for p in points if p["scenario"] == scenario and p["ticks"]]
        x = [p["agents"] for p in pts]
        for q, style in (("p50", "-o"), ("p99", "--s"), ("max", ":^")):
            axes[0].plot(x, [p["e2e"][q] for p in pts], style, label=f"{scenario} {q}")
    axes[0].axhline(100, color="red", lw=1, label="100 ms budget")
    axes[0].set_xlabel("agents")
    axes[0].set_ylabel("end-to-end latency (ms)")
    axes[0].set_xscale("log")
    axes[0].legend(fontsize=8)
    axes[0].set_title("end to end: sensor publish -> planner")
    day = [p for p in points if p["scenario"] == points[0]["scenario"] and p["ticks"]]
    bottom = np.zeros(len(day))
    labels = [str(p["agents"]) for p in day]
    xpos = np.arange(len(day))  # positions, not the labels: matplotlib logs each string axis
    for stage in ("track", "raster", "infer"):  # the tick's own path
        vals = np.array([p["stages"].get(stage, {}).get("p50", 0.0) for p in day])
        axes[1].bar(xpos, vals, bottom=bottom, label=stage)
        bottom += vals
    vals = np.array(
        [max(p["sensor_to_prediction_publish"]["p50"] - bottom[i], 0.0) for i, p in enumerate(day)]
    )
    axes[1].bar(xpos, vals, bottom=bottom, label="first hop, decode, queueing, predict, encode")
    bottom += vals
    vals = np.array([p["prediction_to_planner"]["p50"] for p in day])
    axes[1].bar(xpos, vals, bottom=bottom, label="bus hop to planner + decode")
    axes[1].set_xticks(xpos, labels)
    axes[1].set_xlabel("agents")
    axes[1].set_ylabel("p50 per stage (ms)")
    axes[1].set_title(f"where the time goes ({day[0]['scenario'] if day else ''}, p50)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def table(points: list[dict]) -> str:
    rows = []
    for p in points:
        s = p["stages"]
        rows.append(
            [
                p["scenario"],
                p["agents"],
                p["ticks"],
                p["e2e"]["p50"],
                p["e2e"]["p95"],
                p["e2e"]["p99"],
                p["e2e"]["max"],
                p.get("data_age", {}).get("p50", float("nan")),
                p.get("data_age", {}).get("p99", float("nan")),
                f"{100 * p['deadline_miss_rate']:.1f}%",
                p["degraded_ticks"],
                s.get("track", {}).get("p50", float("nan")),
                s.get("raster", {}).get("p50", float("nan")),
                s.get("infer", {}).get("p50", float("nan")),
                p["prediction_to_planner"]["p50"],
                p.get("agents_predicted_p50", float("nan")),
                f"{100 * p.get('from_model_share', float('nan')):.1f}%",
            ]
        )
    headers = [
        "scenario",
        "agents",
        "ticks",
        "processing p50",
        "p95",
        "p99",
        "max",
        "data age p50",
        "p99",
        ">100 ms",
        "degraded",
        "track p50",
        "raster p50",
        "infer p50",
        "pred->planner p50",
        "agents predicted p50",
        "from model",
    ]
    return markdown_table(headers, rows)


def _point_limits(agents: int, b: dict) -> tuple[float, float] | None:
    """(processing p99, data age p99) budgets of an agent count, or None if it has none."""
    if agents == b["budget_agents"]:
        return b["p99_ms"], b["data_age_p99_ms"]
    if agents == b["max_agents"]:
        return b["p99_ms_at_max_agents"], b["data_age_p99_ms_at_max_agents"]
    return None


def check(points: list[dict], budget: dict) -> list[str]:
    """Budget violations, as readable lines (empty: all budgets held).

    ``budget``: the parsed ``budgets.toml``. Its ``e2e`` table is checked at ``e2e.budget_agents``
    and ``e2e.max_agents`` of every scenario (processing and data-age p99, ticks over 100 ms,
    degraded ticks), its ``stages`` table at ``e2e.budget_agents``.
    """
    bad = []
    b = budget["e2e"]
    for p in points:
        limits = _point_limits(p["agents"], b)
        if limits is None:
            continue
        where = f"{p['scenario']} {p['agents']} agents"
        if not p["ticks"]:
            bad.append(f"{where}: no predictions reached the planner")
            continue
        p99, age_p99 = limits
        if p["e2e"]["p99"] > p99:
            bad.append(f"{where}: processing p99 {p['e2e']['p99']:.1f} ms > {p99:g} ms")
        age = p.get("data_age", {}).get("p99")
        if age is None or not age <= age_p99:
            bad.append(f"{where}: data age p99 {age} ms > {age_p99:g} ms")
        if p["deadline_miss_rate"] > b["max_deadline_miss_rate"]:
            bad.append(f"{where}: share of ticks over 100 ms {p['deadline_miss_rate']:.3f}")
        if p["degraded_ticks"] > b["max_degraded_ticks"]:
            bad.append(f"{where}: {p['degraded_ticks']} degraded ticks > {b['max_degraded_ticks']}")
        if p["agents"] != b["budget_agents"]:
            continue
        for stage, limit in budget["stages"].items():
            name = stage.removesuffix("_ms")
            v = p["stages"].get(name, {}).get("p99")
            if v is not None and v > limit:
                bad.append(f"{where}: {name} p99 {v:.1f} ms > {limit} ms")
    return bad


def main(argv: list[str] | None = None) -> int:
    from prescient.service.app.stack_cli import DEFAULT_MODEL

    ap = argparse.ArgumentParser(prog="prescient bench e2e", description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, nargs="+", default=[10, 50, 100, 200, 400])
    ap.add_argument("--scenarios", nargs="+", default=["day", "night"], choices=["day", "night"])
    ap.add_argument("--ticks", type=int, default=600, help="measured ticks per point (after warm-up)")
    ap.add_argument("--warmup-s", type=float, default=8.0)
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--no-model", action="store_true")
    ap.add_argument("--check", action="store_true", help="exit 1 when a budget in budgets.toml is missed")
    add_out_argument(ap)
    args = ap.parse_args(argv)
    out_dir = results_dir(args.out)
    print(f"results: {out_dir}", flush=True)
    logging.basicConfig(level=logging.WARNING, format="%(levelname).1s %(name)s: %(message)s")
    model = None if args.no_model else Path(args.model)
    points = []
    for i, (scenario, agents) in enumerate((s, a) for s in args.scenarios for a in args.agents):
        print(
            f"[{i + 1}/{len(args.scenarios) * len(args.agents)}] {scenario}, {agents} agents, {args.ticks} ticks ...",
            flush=True,
        )
        points.append(run_point(scenario, agents, args.ticks, args.warmup_s, model, i, out_dir))
    print()
    print(
        f"End-to-end latency (ms), provider {points[0]['provider']}, machine: {machine()['cpu']} x{machine()['cores']}, commit {machine()['commit']}"
    )
    print(table(points))
    slowest = max(
        ("track", "raster", "infer"),
        key=lambda k: np.nanmean([p["stages"].get(k, {}).get("p50", np.nan) for p in points]),
    )
    print(f"slowest service stage (mean p50 over points): {slowest}")
    budget = budgets()
    path = write_json(
        "e2e",
        {
            "points": points,
            "threads": {"ort_intra_op": int(os.environ.get("PRESCIENT_ORT_THREADS", "2"))},
            "budgets": budget,
            "model": str(model),
        },
        out_dir,
    )
    picture = plot(points, out_dir / "e2e.png")
    print(f"json: {path}\nplot: {picture or 'none (matplotlib is not installed: the eval extra)'}")
    if not any(p["agents"] == budget["e2e"]["budget_agents"] for p in points):
        print(f"(no point at {budget['e2e']['budget_agents']} agents: the budgets were not checked)")
    return report_misses(check(points, budget), args.check)


if __name__ == "__main__":
    raise SystemExit(main())
