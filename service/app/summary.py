"""The run's summary picture: the scene from above with each agent's predicted modes.

Reads a log (recorded by ``prescient up`` or written by ``prescient replay --out``), picks the
last prediction with 8 s of ground truth after it (else the middle one), and draws the map, the
agents, every mode with p >= 0.05 (line width and opacity by probability, the top mode labelled
with its probability) and, where the simulator's ground truth is in the log, each agent's actual
future as a dashed black line. Needs matplotlib (``dev`` or ``train`` extra).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prescient.bus import messages as m
from prescient.bus.replayer import iter_messages

VIEW_HALF_M = 60.0


def _pick(preds: list[m.Predictions], gt_end_ns: int | None) -> m.Predictions:
    horizon_ns = int(m.PRED_HORIZON_STEPS * m.PRED_DT_S * 1e9)
    if gt_end_ns is not None:
        ok = [p for p in preds if p.header.stamp_ns + horizon_ns <= gt_end_ns and len(p.track_id)]
        if ok:
            return ok[-1]
    with_agents = [p for p in preds if len(p.track_id)] or preds
    return with_agents[len(with_agents) // 2]


def _read(log_path: Path) -> tuple[m.VectorMap | None, list, list, list]:
    """The map, tick predictions, ground truth and ego states of a log."""
    vmap, preds, gts, egos = None, [], [], []
    for lm in iter_messages(
        log_path, topics=[m.TOPIC_MAP, m.TOPIC_PREDICTIONS, m.TOPIC_GROUND_TRUTH, m.TOPIC_EGO]
    ):
        msg = lm.msg
        if isinstance(msg, m.VectorMap) and vmap is None:
            vmap = msg
        elif isinstance(msg, m.Predictions) and msg.plan_id < 0:
            preds.append(msg)
        elif isinstance(msg, m.GroundTruth):
            gts.append(msg)
        elif isinstance(msg, m.EgoState):
            egos.append(msg)
    return vmap, preds, gts, egos


def _draw_predictions(
    ax,
    pred: m.Predictions,
    centre: np.ndarray,
    gt_now: m.GroundTruth | None,
    futures: dict[int, list[np.ndarray]],
) -> None:
    """Each agent's modes (width and alpha by probability) and, when matched, its actual future."""
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab10")
    for i in range(len(pred.track_id)):
        color = cmap(i % 10)
        probs = pred.mode_probs[i]
        order = np.argsort(-probs)
        start = pred.trajectories_m[i, 0, 0]
        if np.abs(start - centre).max() > VIEW_HALF_M:
            continue
        for rank, k in enumerate(order):
            if probs[k] < 0.05:
                continue
            traj = pred.trajectories_m[i, k]
            ax.plot(
                traj[:, 0], traj[:, 1], color=color, lw=0.8 + 2.5 * probs[k], alpha=0.35 + 0.65 * probs[k]
            )
            if rank == 0:
                ax.annotate(f"{probs[k]:.2f}", traj[-1], fontsize=7, color=color)
        if gt_now is not None and len(gt_now.agent_id):
            d = np.linalg.norm(gt_now.position_m - start[None], axis=1)
            j = int(np.argmin(d))
            if d[j] < 3.0 and int(gt_now.agent_id[j]) in futures:
                fut = np.asarray(futures[int(gt_now.agent_id[j])])
                ax.plot(fut[:, 0], fut[:, 1], "k--", lw=1.0)


def render_summary(log_path: Path, out_png: Path) -> Path:
    """Draw the summary picture of ``log_path`` into ``out_png``; returns the path.

    Raises:
        ValueError: the log holds no predictions.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vmap, preds, gts, egos = _read(log_path)
    if not preds:
        raise ValueError(f"{log_path}: no predictions to draw")
    pred = _pick(preds, gts[-1].header.stamp_ns if gts else None)
    t0 = pred.header.stamp_ns
    ego = min(egos, key=lambda e: abs(e.header.stamp_ns - t0)) if egos else None
    centre = np.asarray(ego.pose[:2]) if ego is not None else pred.trajectories_m[:, 0, 0].mean(0)

    fig, ax = plt.subplots(figsize=(10, 10), dpi=110)
    if vmap is not None:
        _draw_map(ax, vmap)
    # Ground truth now and its future (matched to predictions by nearest position at t0).
    gt_now = min(gts, key=lambda g: abs(g.header.stamp_ns - t0)) if gts else None
    futures: dict[int, list[np.ndarray]] = {}
    if gt_now is not None:
        horizon = [g for g in gts if t0 < g.header.stamp_ns <= t0 + int(8e9)]
        for g in horizon:
            for aid, xy in zip(g.agent_id, g.position_m):
                futures.setdefault(int(aid), []).append(xy)
        for xy, size, yaw in zip(gt_now.position_m, gt_now.size_lwh_m, gt_now.yaw_rad):
            _box(ax, xy, size[0], size[1], yaw, "#555555")
    _draw_predictions(ax, pred, centre, gt_now, futures)
    if ego is not None:
        _box(ax, ego.pose[:2], ego.size_lwh_m[0], ego.size_lwh_m[1], ego.pose[2], "red")
        if len(ego.plan_xy_m):
            ax.plot(ego.plan_xy_m[:, 0], ego.plan_xy_m[:, 1], "r:", lw=1.0)
    ax.set_xlim(centre[0] - VIEW_HALF_M, centre[0] + VIEW_HALF_M)
    ax.set_ylim(centre[1] - VIEW_HALF_M, centre[1] + VIEW_HALF_M)
    ax.set_aspect("equal")
    ax.set_xlabel("world x (m)")
    ax.set_ylabel("world y (m)")
    kind = "degraded: " + pred.reason if pred.degraded else pred.model_id
    ax.set_title(
        f"t = {(t0 - preds[0].header.stamp_ns) / 1e9:.1f} s into the log, {len(pred.track_id)} agents, {kind}\ncoloured: predicted modes (width ~ probability); black dashed: actual future; red: ego"
    )
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, bbox_inches="tight")
    plt.close(fig)
    return out_png


def _draw_map(ax, vmap: m.VectorMap) -> None:
    for pts, off, style in (
        (vmap.drivable_xy_m, vmap.drivable_offsets, dict(color="#eeeeee", fill=True)),
        (vmap.sidewalk_xy_m, vmap.sidewalk_offsets, dict(color="#d9ead3", fill=True)),
        (vmap.crossing_xy_m, vmap.crossing_offsets, dict(color="#cfe2f3", fill=True)),
    ):
        for a, b in zip(off[:-1], off[1:]):
            if b - a >= 3:
                ax.fill(pts[a:b, 0], pts[a:b, 1], color=style["color"], zorder=0)
    for a, b in zip(vmap.centerline_offsets[:-1], vmap.centerline_offsets[1:]):
        ax.plot(vmap.centerline_xy_m[a:b, 0], vmap.centerline_xy_m[a:b, 1], color="#bbbbbb", lw=0.5, zorder=1)


def _box(ax, xy, length_m: float, width_m: float, yaw_rad: float, color: str) -> None:
    c, s = np.cos(yaw_rad), np.sin(yaw_rad)
    corners = np.array([[1, 1], [1, -1], [-1, -1], [-1, 1], [1, 1]]) * [length_m / 2, width_m / 2]
    pts = corners @ np.array([[c, s], [-s, c]]) + np.asarray(xy)[None]
    ax.plot(pts[:, 0], pts[:, 1], color=color, lw=1.0, zorder=3)
