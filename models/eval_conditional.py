"""Conditional prediction on a simulated scene, against the simulator's own answer.

``prescient eval-conditional`` runs a held-out simulator scene through the onboard pipeline with
the model, branches the simulated world at that moment into two ego plans (``keep``: the ego's
driver as it is; ``stop``: brake to a standstill; :mod:`prescient.sim_sensors.counterfactual`),
asks the service for predictions under the two ego paths the simulator produced, and compares,
per tracked agent, how far its probability-weighted 8 s position moves between the plans with
how far its simulated future really moves. The picture shows both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from prescient.bus import messages as m
from prescient.models.eval_sim import load_eval_predictor
from prescient.models.sim_data import SimDataError, match_tracks_to_truth

PLANS = ("keep", "stop")
MATCH_RADIUS_M = 2.0  # a track is the simulated agent within this distance (one-to-one)


def conditional_scene(
    model_path: Path, scenario: str = "intersection", seed: int = 100, t_s: float = 12.0, n_agents: int = 40
) -> dict[str, Any]:
    """Run the onboard pipeline with the model on a held-out sim run up to ``t_s``, branch the
    world into :data:`PLANS` and ask :meth:`prescient.service.pipeline.Pipeline.conditional` for
    predictions under the two simulated ego paths.

    The branch starts at the simulator's time after ``t_s``; the request is stamped with the last
    tick's tracks, at most one 100 ms tick earlier.

    Returns:
        ``{"pipe", "tracks", "ego", "plans" (2, T, 2) world, "reply" (ConditionalReply), "names",
        "true_paths_m" (2, N, T, 2) world, NaN for tracks without a simulated agent, "true_effect_m"
        (N,) distance between the two true 8 s positions, NaN likewise}``; N = tracks.
    """
    from prescient.service.pipeline import Pipeline, PipelineConfig
    from prescient.service.raster import RasterConfig, build_spec
    from prescient.sim_sensors import SimConfig, Simulation
    from prescient.sim_sensors.counterfactual import branch

    spec = build_spec(RasterConfig())
    predictor = load_eval_predictor(model_path, spec.fingerprint(), spec.num_channels, threads=2)
    sim = Simulation(SimConfig(scenario=scenario, seed=seed, n_agents=n_agents))
    pipe = Pipeline(sim.map, predictor, PipelineConfig(deadline_guard=False))
    last = None
    truth: list[m.GroundTruth] = []
    for msgs in sim.run(t_s):
        for msg in msgs:
            if isinstance(msg, m.GroundTruth):
                truth.append(msg)
                continue
            pipe.feed(msg)
            tick = pipe.due_tick()
            if tick is not None:
                res = pipe.tick(tick)
                if res is not None:
                    last = res
    if last is None or pipe.scene is None or not truth:
        raise SimDataError(f"{scenario} seed {seed}: no tick within {t_s} s")
    cfg = predictor.cfg
    branches = branch(sim, PLANS, horizon_s=cfg.future_steps * cfg.dt_s)
    plans = np.stack([b.ego_xy[: cfg.future_steps] for b in branches]).astype(np.float32)
    req = m.ConditionalRequest(
        header=m.Header(topic=m.TOPIC_CONDITIONAL_REQUEST, stamp_ns=int(last.tracks.stamp_ns)),
        request_id=1,
        plans_xy_m=plans,
    )
    reply = pipe.conditional(req)
    true_paths = _true_paths(last.tracks, truth, branches, cfg.future_steps)
    true_effect = np.linalg.norm(true_paths[0, :, -1] - true_paths[1, :, -1], axis=-1)
    return {
        "pipe": pipe,
        "tracks": last.tracks,
        "ego": pipe.scene.ego,  # the tick's (the conditional answers for the tick's scene)
        "plans": plans,
        "reply": reply,
        "names": PLANS,
        "true_paths_m": true_paths,
        "true_effect_m": true_effect,
    }


def _true_paths(tracks: m.Tracks, truth: list[m.GroundTruth], branches: list[Any], steps: int) -> np.ndarray:
    """(B, N, T, 2) each track's simulated future in each branch (world; NaN: no matched agent, or
    it leaves the world within the horizon). Tracks are matched to the ground truth nearest in time."""
    gt = min(truth, key=lambda g: abs(int(g.header.stamp_ns) - int(tracks.stamp_ns)))
    idx = match_tracks_to_truth(tracks.position_m, gt.position_m, MATCH_RADIUS_M)
    out = np.full((len(branches), len(tracks.track_id), steps, 2), np.nan)
    rows = {int(a): r for r, a in enumerate(branches[0].agent_ids)}
    for n, g in enumerate(idx):
        r = rows.get(int(gt.agent_id[g])) if g >= 0 else None
        if r is None or not all(b.valid[r, :steps].all() for b in branches):
            continue
        for k, b in enumerate(branches):
            out[k, n] = b.xy[r, :steps]
    return out


def plan_effect_m(reply: m.ConditionalReply) -> np.ndarray:
    """Per track: distance (m) at 8 s between the probability-weighted mean predictions of plan 0 and 1."""
    mean = np.einsum("bnk,bnktc->bntc", reply.mode_probs, reply.trajectories_m)  # (B, N, T, 2)
    return np.linalg.norm(mean[0, :, -1] - mean[1, :, -1], axis=-1)


def scene_report(scene: dict[str, Any], react_m: float = 1.0, still_m: float = 0.1) -> str:
    """One line per track the plan moves (predicted or true 8 s shift > ``react_m``), then the
    phantom reactions: tracks whose true shift is under ``still_m`` but predicted over ``react_m``
    (the definitions of :mod:`prescient.models.eval_counterfactual`)."""
    pred, true = plan_effect_m(scene["reply"]), scene["true_effect_m"]
    ids = scene["tracks"].track_id
    lines = [
        f"{len(pred)} tracks, {int(np.isfinite(true).sum())} matched to a simulated agent present "
        f"throughout; 8 s shift {scene['names'][0]} vs {scene['names'][1]}, predicted / true (m):"
    ]
    for n in np.argsort(-np.maximum(pred, np.nan_to_num(true))):
        if pred[n] > react_m or np.nan_to_num(true[n]) > react_m:
            lines.append(f"  track {int(ids[n])}: {pred[n]:.1f} / {true[n]:.1f}")
    phantom = int(((np.nan_to_num(true, nan=np.inf) < still_m) & (pred > react_m)).sum())
    lines.append(f"phantom reactions (true < {still_m:g} m, predicted > {react_m:g} m): {phantom}")
    return "\n".join(lines)


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
    pts = pts[np.isfinite(pts).all(axis=1)]  # true paths are NaN for tracks without an agent
    lo, hi = pts.min(0) - margin_m, pts.max(0) + margin_m
    mid, half = (lo + hi) / 2, np.maximum((hi - lo) / 2, 20.0)
    lo = np.maximum(mid - half, ego_xy_m - 2 * radius_m)
    hi = np.minimum(mid + half, ego_xy_m + 2 * radius_m)
    return lo, hi


def plot_conditional(scene: dict[str, Any], out_png: Path, radius_m: float = 60.0) -> Path:
    """Picture: map, both simulated ego plans, and for every agent whose predicted or true 8 s
    position moves more than :data:`MOVED_M` between them, its prediction (thick) and its
    simulated future (thin, dotted) under each plan."""
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
    effect, true_effect, true_paths = plan_effect_m(reply), scene["true_effect_m"], scene["true_paths_m"]
    mean = np.einsum("bnk,bnktc->bntc", reply.mode_probs, reply.trajectories_m)
    near = np.linalg.norm(tracks.position_m - np.array([ex, ey]), axis=1) < radius_m
    moved = near & ((effect > MOVED_M) | (np.nan_to_num(true_effect) > MOVED_M))
    paths = np.concatenate([mean[:, moved], true_paths[:, moved]], axis=1)
    lo, hi = _view_box(np.array([ex, ey]), plans, paths, radius_m)
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
            ax.plot(true_paths[b, n, :, 0], true_paths[b, n, :, 1], color=colors[b], lw=1.4, ls=":", zorder=2)
            ax.scatter(true_paths[b, n, -1:, 0], true_paths[b, n, -1:, 1], s=18, marker="x", color=colors[b])
    ax.scatter(
        tracks.position_m[near, 0], tracks.position_m[near, 1], s=12, color="k", zorder=3, label="agents"
    )
    ax.scatter([ex], [ey], s=60, marker="s", color="tab:blue", zorder=4, label="ego")
    for n in np.flatnonzero(moved):
        true_txt = "?" if np.isnan(true_effect[n]) else f"{true_effect[n]:.1f}"
        ax.annotate(f"{effect[n]:.1f} / {true_txt}", tracks.position_m[n], fontsize=8, color="purple")
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(
        f"{reply.model_id}: predictions (prob-weighted mean, 8 s) under two simulated ego plans\n"
        f"coloured: agents whose predicted or true 8 s position moves > {MOVED_M:.0f} m between plans\n"
        f"solid: {scene['names'][0]}, dashed: {scene['names'][1]}, dotted and x: simulated truth; "
        f"labels: predicted / true shift (m)",
        fontsize=9,
    )
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, bbox_inches="tight")
    plt.close(fig)
    return out_png
