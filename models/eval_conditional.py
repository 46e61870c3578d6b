"""Conditional prediction on a simulated scene: does the ego's plan change the predictions?

``prescient eval-conditional`` runs a held-out simulator scene through the onboard pipeline with
the model, then asks for predictions under two ego plans along the ego's route, "go" (constant
speed) and "yield" (braking to a stop), and reports how far each agent's probability-weighted 8 s
position moves between the two, with a picture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from prescient.bus import messages as m
from prescient.models.eval_sim import load_eval_predictor
from prescient.models.sim_data import SimDataError


def plan_along_route(
    route_xy_m: np.ndarray, speed_mps: float, stop_after_m: float | None, steps: int, dt_s: float
) -> np.ndarray:
    """A timed ego plan along ``route_xy_m``: constant speed ("go"), or braking to stop ("yield").

    Args:
        route_xy_m: (S, 2) world-frame path starting at the ego.
        speed_mps: current speed.
        stop_after_m: None for constant speed; else brake uniformly to stop after this distance.
        steps: T. dt_s: step.

    Returns:
        (T, 2) float32 world positions at ``dt_s, 2 dt_s, ...``.
    """
    seg = np.linalg.norm(np.diff(route_xy_m, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    t_s = dt_s * np.arange(1, steps + 1)
    if stop_after_m is None:
        s = speed_mps * t_s
    else:
        decel = speed_mps**2 / (2.0 * max(stop_after_m, 0.1))
        t_stop = speed_mps / max(decel, 1e-6)
        tt = np.minimum(t_s, t_stop)
        s = speed_mps * tt - 0.5 * decel * tt**2
    if cum[-1] > 0 and s.max() > cum[-1]:
        # Extend the route straight along its last segment.
        d = (route_xy_m[-1] - route_xy_m[-2]) / max(seg[-1], 1e-6)
        extra = s.max() - cum[-1] + 1.0
        route_xy_m = np.vstack([route_xy_m, route_xy_m[-1] + d * extra])
        cum = np.append(cum, cum[-1] + extra)
    x = np.interp(s, cum, route_xy_m[:, 0])
    y = np.interp(s, cum, route_xy_m[:, 1])
    return np.stack([x, y], -1).astype(np.float32)


def conditional_scene(
    model_path: Path, scenario: str = "intersection", seed: int = 100, t_s: float = 12.0, n_agents: int = 40
) -> dict[str, Any]:
    """Run the onboard pipeline with the model on a held-out sim run up to ``t_s``, then ask
    :meth:`prescient.service.pipeline.Pipeline.conditional` for a "go" and a "yield" ego plan.

    Returns:
        ``{"pipe", "tracks", "ego", "plans" (2, T, 2), "reply" (ConditionalReply), "names"}``.
    """
    from prescient.service.pipeline import Pipeline, PipelineConfig
    from prescient.service.raster import RasterConfig, build_spec
    from prescient.sim_sensors import SimConfig, Simulation

    spec = build_spec(RasterConfig())
    predictor = load_eval_predictor(model_path, spec.fingerprint(), spec.num_channels, threads=2)
    sim = Simulation(SimConfig(scenario=scenario, seed=seed, n_agents=n_agents))
    pipe = Pipeline(sim.map, predictor, PipelineConfig(deadline_guard=False))
    last = None
    for msgs in sim.run(t_s):
        for msg in msgs:
            if isinstance(msg, m.GroundTruth):
                continue
            pipe.feed(msg)
            tick = pipe.due_tick()
            if tick is not None:
                res = pipe.tick(tick)
                if res is not None:
                    last = res
    if last is None or pipe.ego is None:
        raise SimDataError(f"{scenario} seed {seed}: no tick within {t_s} s")
    ego = pipe.ego
    route = np.vstack([np.asarray(ego.pose[:2])[None], np.asarray(ego.plan_xy_m, np.float64)])
    speed = max(float(np.linalg.norm(ego.velocity_mps)), 8.0)
    cfg = predictor.cfg
    go = plan_along_route(route, speed, None, cfg.future_steps, cfg.dt_s)
    yld = plan_along_route(route, speed, 12.0, cfg.future_steps, cfg.dt_s)
    plans = np.stack([go, yld])
    req = m.ConditionalRequest(
        header=m.Header(topic=m.TOPIC_CONDITIONAL_REQUEST, stamp_ns=int(last.tracks.stamp_ns)),
        request_id=1,
        plans_xy_m=plans,
    )
    reply = pipe.conditional(req)
    return {
        "pipe": pipe,
        "tracks": last.tracks,
        "ego": ego,
        "plans": plans,
        "reply": reply,
        "names": ("go", "yield"),
    }


def plan_effect_m(reply: m.ConditionalReply) -> np.ndarray:
    """Per track: distance (m) at 8 s between the probability-weighted mean predictions of plan 0 and 1."""
    mean = np.einsum("bnk,bnktc->bntc", reply.mode_probs, reply.trajectories_m)  # (B, N, T, 2)
    return np.linalg.norm(mean[0, :, -1] - mean[1, :, -1], axis=-1)


MOVED_M = 1.0  # an agent whose 8 s mean moves more than this between plans is drawn per plan


def _view_box(
    ego_xy_m: np.ndarray,
    plans_m: np.ndarray,
    moved_paths_m: np.ndarray,
    radius_m: float,
    margin_m: float = 8.0,
) -> tuple[np.ndarray, np.ndarray]:
    """World-frame corners (lo, hi) of the view: the ego, both plans and every path of an agent
    the plan moves (their 8 s ends are the point of the picture), at least 40 m across, at most
    ``2 radius_m`` beyond the ego in any direction (agents are those within ``radius_m``; at
    15 m/s they go 120 m in 8 s).

    Args: ego_xy_m (2,); plans_m (B, T, 2); moved_paths_m (B, M, T, 2).
    """
    pts = np.concatenate([ego_xy_m[None], plans_m.reshape(-1, 2), moved_paths_m.reshape(-1, 2)])
    lo, hi = pts.min(0) - margin_m, pts.max(0) + margin_m
    mid, half = (lo + hi) / 2, np.maximum((hi - lo) / 2, 20.0)
    lo = np.maximum(mid - half, ego_xy_m - 2 * radius_m)
    hi = np.minimum(mid + half, ego_xy_m + 2 * radius_m)
    return lo, hi


def plot_conditional(scene: dict[str, Any], out_png: Path, radius_m: float = 60.0) -> Path:
    """Picture: map, ego plans and the affected agents' predictions under each plan."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pipe, tracks, ego, plans, reply = (
        scene["pipe"],
        scene["tracks"],
        scene["ego"],
        scene["plans"],
        scene["reply"],
    )
    vmap = pipe.rasterizer.vector_map if hasattr(pipe.rasterizer, "vector_map") else None
    ex, ey = float(ego.pose[0]), float(ego.pose[1])
    effect = plan_effect_m(reply)
    mean = np.einsum("bnk,bnktc->bntc", reply.mode_probs, reply.trajectories_m)
    near = np.linalg.norm(tracks.position_m - np.array([ex, ey]), axis=1) < radius_m
    moved = near & (effect > MOVED_M)
    lo, hi = _view_box(np.array([ex, ey]), plans, mean[:, moved], radius_m)
    w_in = 10.0
    h_in = float(np.clip(w_in * (hi[1] - lo[1]) / (hi[0] - lo[0]), 4.0, 10.0))
    fig, ax = plt.subplots(figsize=(w_in, h_in), dpi=100)
    if vmap is not None:
        off = vmap.centerline_offsets
        for i in range(len(off) - 1):
            pts = vmap.centerline_xy_m[off[i] : off[i + 1]]
            ax.plot(pts[:, 0], pts[:, 1], color="0.85", lw=0.8, zorder=0)
    colors = ("tab:green", "tab:red")
    for n in np.flatnonzero(near & ~moved):  # the same under both plans: one neutral line
        ax.plot(mean[0, n, :, 0], mean[0, n, :, 1], color="0.55", lw=0.9, zorder=1)
    for b, name in enumerate(scene["names"]):
        ax.plot(plans[b, :, 0], plans[b, :, 1], color=colors[b], lw=6, alpha=0.25, label=f"ego plan: {name}")
        for n in np.flatnonzero(moved):  # agents the plan moves: their prediction under each plan
            ax.plot(mean[b, n, :, 0], mean[b, n, :, 1], color=colors[b], lw=2.2, zorder=2,
                    ls="-" if b == 0 else "--")  # fmt: skip
            ax.scatter(mean[b, n, -1:, 0], mean[b, n, -1:, 1], s=30, color=colors[b], zorder=3)
    ax.scatter(
        tracks.position_m[near, 0], tracks.position_m[near, 1], s=12, color="k", zorder=3, label="agents"
    )
    ax.scatter([ex], [ey], s=60, marker="s", color="tab:blue", zorder=4, label="ego")
    top = np.argsort(-effect)[:3]
    for n in top:
        if near[n]:
            ax.annotate(f"{effect[n]:.1f} m", tracks.position_m[n], fontsize=8, color="purple")
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(
        f"{reply.model_id}: predictions (prob-weighted mean, 8 s) under two ego plans\n"
        f"coloured: agents whose 8 s prediction moves > {MOVED_M:.0f} m between plans "
        f"(solid: {scene['names'][0]}, dashed: {scene['names'][1]}); largest shift {effect.max():.1f} m",
        fontsize=9,
    )
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, bbox_inches="tight")
    plt.close(fig)
    return out_png
