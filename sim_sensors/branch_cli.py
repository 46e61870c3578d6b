"""``prescient sim branch``: branch a simulated scene into ego plans and write futures and a picture.

Writes ``branches.npz`` (per branch ``<plan>_ego_xy`` (T, 2), ``<plan>_xy`` (N, T, 2),
``<plan>_valid`` (N, T), plus ``agent_ids`` (N,) and ``times_s`` (T,)), ``branches.json`` (plans,
routes, agents whose futures differ by > 1 m between branches, cost) and ``branches.png``
(matplotlib, if installed).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from prescient.bus.errors import StartupError

_COLOURS = ("tab:blue", "tab:orange", "tab:red", "tab:green", "tab:purple")


def add_branch_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``branch`` under ``prescient sim``."""
    from prescient.sim_sensors.maps import SCENARIOS

    p = sub.add_parser("branch", help="counterfactual: the scene at --at under several ego plans")
    p.add_argument("--scenario", default="intersection", choices=SCENARIOS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--agents", type=int, default=50, help="target number of agents (ego excluded)")
    p.add_argument("--at", type=float, default=12.0, help="sim time of the branch (s)")
    p.add_argument("--plans", default="keep,slow,stop,route", help="comma-separated: keep,slow,stop,route")
    p.add_argument("--horizon", type=float, default=8.0, help="seconds to roll each branch")
    p.add_argument("--out", default="branches", help="output folder")
    p.set_defaults(func=run_branch)


def run_branch(args: argparse.Namespace) -> int:
    """Handler of ``prescient sim branch``; returns the exit code."""
    from prescient.bus.messages import Modality
    from prescient.sim_sensors.config import SimConfig
    from prescient.sim_sensors.counterfactual import Plan, branch, future_spread
    from prescient.sim_sensors.simulation import NS_PER_S, Simulation

    try:
        plans = [Plan.of(k.strip()) for k in args.plans.split(",") if k.strip()]
    except ValueError as e:
        raise StartupError(f"--plans: {e}") from e
    if args.at < 0 or args.horizon < 0.1 or not plans:
        raise StartupError("--at must be >= 0, --horizon >= 0.1 and --plans non-empty")
    cfg = SimConfig(
        scenario=args.scenario, seed=args.seed, n_agents=args.agents, disabled_modalities=tuple(Modality)
    )
    sim = Simulation(cfg)
    while sim.time_ns < round(args.at * NS_PER_S):
        sim.step_physics()
    t0 = time.perf_counter()
    bs = branch(sim, plans, horizon_s=args.horizon)
    ms = 1e3 * (time.perf_counter() - t0) / len(bs)
    spread = future_spread(bs) if len(bs) > 1 else np.zeros(len(bs[0].agent_ids))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = {"agent_ids": bs[0].agent_ids, "times_s": bs[0].times_s, "spread_m": spread}
    for k, b in enumerate(bs):
        tag = f"{k}_{b.plan.kind}"
        arrays |= {f"{tag}_ego_xy": b.ego_xy, f"{tag}_ego_yaw": b.ego_yaw, f"{tag}_ego_vel": b.ego_vel}
        arrays |= {f"{tag}_xy": b.xy, f"{tag}_yaw": b.yaw, f"{tag}_vel": b.vel, f"{tag}_valid": b.valid}
    np.savez_compressed(out / "branches.npz", **arrays)
    summary = {
        "scenario": args.scenario,
        "seed": args.seed,
        "at_s": bs[0].t0_s,
        "horizon_s": args.horizon,
        "n_agents": len(bs[0].agent_ids),
        "ms_per_branch": round(ms, 2),
        "branches": [{"plan": b.plan.kind, "route": b.route, "applied": b.applied} for b in bs],
        "reacting_ids": [int(i) for i in bs[0].agent_ids[spread > 1.0]],
    }
    (out / "branches.json").write_text(json.dumps(summary, indent=2))
    print(
        f"{len(bs)} branches of {args.horizon:.1f} s, {summary['n_agents']} agents, {ms:.1f} ms per branch; "
        f"{len(summary['reacting_ids'])} agents differ by > 1 m: {summary['reacting_ids']}"
    )
    png = _draw(sim, bs, spread, out / "branches.png")
    print(f"written to {out}" + ("" if png else " (no picture: matplotlib not installed)"))
    return 0


def _draw(sim, bs, spread: np.ndarray, path: Path) -> bool:
    """One panel per branch: lanes, agents now, futures (reacting agents bold); False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    md = sim.map_data
    ex, ey = bs[0].ego_xy[0]
    fig, axes = plt.subplots(1, len(bs), figsize=(5 * len(bs), 5), squeeze=False)
    for ax, b, colour in zip(axes[0], bs, _COLOURS * 4, strict=False):
        for lane in range(md.n_lanes):
            p = md.pts[md.off[lane] : md.off[lane + 1]]
            ax.plot(p[:, 0], p[:, 1], color="0.85", lw=0.6)
        for n in range(len(b.agent_ids)):
            react = spread[n] > 1.0
            ax.plot(b.xy[n, :, 0], b.xy[n, :, 1], color=colour if react else "0.5", lw=1.8 if react else 0.6)
            ax.plot(*b.xy[n, 0], "o", ms=3, color="k" if react else "0.5")
        ax.plot(b.ego_xy[:, 0], b.ego_xy[:, 1], color="k", lw=2.5)
        ax.plot(ex, ey, "s", color="k", ms=6)
        title = b.plan.kind + (f" {b.route}" if b.route else "") + ("" if b.applied else " (no junction)")
        ax.set_title(title)
        ax.set_xlim(ex - 70, ex + 70)
        ax.set_ylim(ey - 70, ey + 70)
        ax.set_aspect("equal")
    fig.suptitle(f"t = {bs[0].t0_s:.1f} s: black = ego, bold = agents whose futures differ > 1 m")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True
