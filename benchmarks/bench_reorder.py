"""Late frames: what the reorder window costs, and what the look-ahead buys back.

The simulator's sensors deliver with their own latencies (LWIR 40 ms, camera and radar 50 ms,
LiDAR 60 ms), so frames of one capture time arrive out of order. Each design below runs the same
messages, delivered step by step (10 ms) and ticked the way the service ticks (when a frame
captured at or after the next 100 ms mark arrives; the tracker's look-ahead is synced after
every delivery, as the node does between ticks):

  * ``committed-50ms``: publish the committed tracks (frames applied in capture order once 50 ms
    older than the newest capture);
  * ``lookahead-50ms`` (the default): frames applied at once, in capture order; a frame that
    arrives out of sequence re-filters the events after it from a state history
    (:mod:`prescient.service.tracker.timeline`);
  * ``no-window``: apply frames at once, drop every frame older than the tracks (``late``);
  * ``lookahead-100ms``: the same with a 100 ms window (more tolerance, no latency).

Scenarios: day, night, and day with every sensor frame delayed by a further seeded U(0,
``--jitter-ms``) (default 40 ms: a loaded host or network), which makes frames of different capture
times overtake each other. Reported per scenario and design: MOTA, IDF1 and ID switches on agents LiDAR could see
(motmetrics), position and vehicle velocity RMSE, frames dropped as late, data age at the tick on
the sensor clock (delivery of the frame that triggered the tick minus the capture time of the
newest frame in the published tracks; the live stack adds its processing time to it), and the
tracker's CPU time per tick (all per-frame work plus the tick) with the look-ahead's rebuilds.

    prescient bench reorder [--duration 20] [--agents 50] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

from prescient.benchmarks.bench_tracker import truth_and_visibility
from prescient.benchmarks.common import add_out_argument, commit, machine, markdown_table, result_path
from prescient.bus import messages as m
from prescient.service.app.tracking.evaluate import LidarVisibility, TrackingScorer
from prescient.service.stats import percentiles_ms
from prescient.service.tracker import Tracker, TrackerConfig

TICK_NS = 100_000_000
DESIGNS = {
    "committed-50ms": TrackerConfig(lookahead=False),
    "lookahead-50ms": TrackerConfig(),
    "no-window": TrackerConfig(reorder_window_s=0.0, lookahead=False),
    "lookahead-100ms": TrackerConfig(reorder_window_s=0.1),
}


def deliveries(
    scenario: str, seed: int, agents: int, night: bool, duration_s: float
) -> list[tuple[int, list[Any]]]:
    """(delivery time ns, messages) of every simulator step."""
    from prescient.sim_sensors import SimConfig, Simulation

    sim = Simulation(SimConfig(scenario=scenario, seed=seed, n_agents=agents, night=night))
    t_end = sim.time_ns + int(duration_s * 1e9)
    out = []
    while sim.time_ns < t_end:
        msgs = sim.step()
        out.append((sim.time_ns, msgs))
    return out


def with_jitter(
    steps: list[tuple[int, list[Any]]], jitter_ms: float, seed: int
) -> list[tuple[int, list[Any]]]:
    """The same messages with each sensor frame delivered later by a seeded U(0, jitter) delay
    (a loaded network or host), so frames of different capture times also arrive out of order."""
    if jitter_ms <= 0:
        return steps
    rng = np.random.default_rng(seed)
    step_ns = steps[1][0] - steps[0][0] if len(steps) > 1 else 10_000_000
    late: dict[int, list[Any]] = {}
    out = []
    for k, (t_ns, msgs) in enumerate(steps):
        now = list(late.pop(k, []))
        for x in msgs:
            if isinstance(x, (m.CameraFrame, m.LidarFrame, m.RadarFrame, m.LwirFrame)):
                d = int(rng.uniform(0.0, jitter_ms) * 1e6 // step_ns)
                if d:
                    late.setdefault(k + d, []).append(x)
                    continue
            now.append(x)
        out.append((t_ns, now))
    return out


def run_design(
    cfg: TrackerConfig,
    steps: list[tuple[int, list[Any]]],
    vis: LidarVisibility,
    gt: dict,
    score_after_s: float,
) -> dict[str, Any]:
    """Track ``steps`` with ``cfg``, ticking like the service; scores, data age and CPU cost."""
    tracker = Tracker(cfg)
    tracker.warm_up()
    scorer = TrackingScorer(eval_range_m=50.0)
    ages, cpu, next_tick, pending_cpu = [], [], None, 0
    t_first = steps[0][0]
    for delivered_ns, msgs in steps:
        c0 = time.thread_time_ns()
        stamps = []
        for x in msgs:
            if isinstance(x, (m.GroundTruth, m.TrafficLights)):
                continue
            tracker.process(x)
            if not isinstance(x, m.EgoState):
                stamps.append(x.header.stamp_ns)
        tracker.sync()
        pending_cpu += time.thread_time_ns() - c0
        if not stamps or tracker.newest_ego_ns is None:
            continue
        due = max(stamps) // TICK_NS * TICK_NS
        if next_tick is not None and due < next_tick:
            continue
        c0 = time.thread_time_ns()
        tracks = tracker.tracks(due)
        cpu.append(pending_cpu + time.thread_time_ns() - c0)
        pending_cpu, next_tick = 0, due + TICK_NS
        newest = tracker.newest_applied
        if newest is not None:
            ages.append(delivered_ns - newest.stamp_ns)
        if due in gt and (due - t_first) / 1e9 >= score_after_s:
            scorer.add(tracks, gt[due], vis.visible(due))
    s = scorer.summary()
    late = sum(v for k, v in tracker.stats.rejected.items() if k.endswith(":late"))
    work = tracker.lookahead_stats
    n_ticks = max(len(cpu), 1)
    return {
        "mota": s["mota"],
        "idf1": s["idf1"],
        "id_switches": s["num_switches"],
        "pos_rmse_m": _pos_rmse(s),
        "vehicle_vel_rmse_mps": s["vehicle_vel_rmse_mps"],
        "late_frames": int(late),
        "frames_applied": int(tracker.stats.counters.get("frames_applied", 0)),
        "data_age_ms": percentiles_ms(ages[10:]),
        "tick_cpu_ms": percentiles_ms(cpu[20:]),
        "rebuilds_per_tick": work.get("rebuilds", 0) / n_ticks,
    }


def _pos_rmse(summary: dict[str, Any]) -> float:
    pc = summary.get("per_class", {})
    n = sum(c["n"] for c in pc.values())
    if not n:
        return float("nan")
    return float(np.sqrt(sum(c["n"] * c["pos_rmse_m"] ** 2 for c in pc.values()) / n))


def table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    rows = []
    for scenario, by_design in results.items():
        for design, r in by_design.items():
            rows.append(
                [
                    scenario, design, f"{r['mota']:.3f}", f"{r['idf1']:.3f}", r["id_switches"],
                    f"{r['pos_rmse_m']:.3f}", f"{r['vehicle_vel_rmse_mps']:.3f}", r["late_frames"],
                    f"{r['data_age_ms']['p50']:.0f}", f"{r['data_age_ms']['p99']:.0f}",
                    f"{r['tick_cpu_ms']['p50']:.2f}", f"{r['tick_cpu_ms']['p99']:.2f}",
                    f"{r['rebuilds_per_tick']:.1f}",
                ]
            )  # fmt: skip
    headers = [
        "scenario", "design", "MOTA", "IDF1", "IDsw", "pos RMSE m", "veh vel RMSE m/s", "late",
        "data age p50 ms", "p99", "tracker CPU/tick p50 ms", "p99", "rebuilds/tick",
    ]  # fmt: skip
    return markdown_table(headers, rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="prescient bench reorder", description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=20.0, help="simulated seconds per scenario")
    ap.add_argument("--agents", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--score-after", type=float, default=1.0)
    ap.add_argument("--jitter-ms", type=float, default=40.0, help="delivery jitter of the third scenario")
    add_out_argument(ap)
    args = ap.parse_args(argv)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    jitter = f"day, +0-{args.jitter_ms:g} ms jitter"
    for scenario, night, jitter_ms in (
        ("day", False, 0.0),
        ("night", True, 0.0),
        (jitter, False, args.jitter_ms),
    ):
        steps = deliveries("intersection", args.seed, args.agents, night, args.duration)
        vis, gt = truth_and_visibility(x for _, msgs in steps for x in msgs)
        steps = with_jitter(steps, jitter_ms, args.seed)
        results[scenario] = {}
        for design, cfg in DESIGNS.items():
            results[scenario][design] = run_design(cfg, steps, vis, gt, args.score_after)
            print(f"  {scenario} {design}: done", flush=True)
    mach = machine()
    print(
        f"\nLate frames, intersection, {args.agents} agents, {args.duration:g} s; commit {mach['commit']}, {mach['cpu']} x{mach['cores']}"
    )
    print(table(results))
    out = result_path(args.out, "bench_reorder.json")
    out.write_text(
        json.dumps(
            {"commit": commit(), "machine": mach, "args": vars(args), "results": results},
            indent=2,
            default=str,
        )
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
