"""Evaluation of the shipped ONNX model next to constant velocity (CV) and constant turn rate (CTRV).

Every method is scored on exactly the same agents: an agent counts when its track is matched to
ground truth and its full 8 s future is known. Metrics (metres, nats), per horizon h in
:data:`HORIZONS_S` over steps ``1 .. h / dt``:

* ``min_ade``: min over modes of the mean displacement error; ``min_fde``: min over modes of the
  displacement at h.
* ``miss_rate``: fraction of agents with ``min_fde`` > :data:`MISS_THRESHOLD_M` (2 m).
* ``brier_min_fde``: ``min_fde + (1 - p)^2`` with p the probability of the mode with the min FDE.
* ``nll``: mixture negative log-likelihood of the true path (steps up to h) under the per-step,
  per-axis Laplace mixture, in nats per agent. CV and CTRV use the fallback's growing scale
  (:data:`prescient.service.model_io.baselines.CV_SCALE_BASE_M` + rate * t), one mode with probability 1.
* the planner's view (:mod:`prescient.models.planner_metrics`): most-likely-mode ADE/FDE, how often
  the top mode is the closest and its calibration (``ece``), mode spread, path roughness and jerk
  of the most likely mode beside the truth's.

Everything is computed in each agent's own frame (origin at the agent, x along its heading):
displacements are frame-invariant, and the net's Laplace scales are defined there.

Held-out simulation data (``eval-sim``) must come from seeds never used for training; the model's
manifest records the training runs and :func:`evaluate_sim` refuses an overlap.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import logsumexp

from prescient.bus import messages as m
from prescient.models.planner_metrics import ece, planner_lines, planner_metrics
from prescient.models.sim_data import SimDataError, list_shards, load_shard, targets_in_agent_frame
from prescient.service.model_io.baselines import (
    CV_SCALE_BASE_M,
    CV_SCALE_RATE_MPS,
    constant_turn_rate_predictions,
    constant_velocity_predictions,
)
from prescient.service.model_io.config import OUTPUT_NAMES
from prescient.service.model_io.features import AgentInputs, agent_inputs_from_tracks

log = logging.getLogger(__name__)

HORIZONS_S = (1.0, 3.0, 5.0, 8.0)
MISS_THRESHOLD_M = 2.0
MOVING_MPS = 1.0
METHODS = ("model", "cv", "ctrv")
CLASS_GROUPS: dict[str, tuple[int, ...]] = {
    "vehicle": (int(m.AgentClass.CAR), int(m.AgentClass.TRUCK), int(m.AgentClass.BUS)),
    "pedestrian": (int(m.AgentClass.PEDESTRIAN),),
    "cyclist": (int(m.AgentClass.CYCLIST),),
    "other": (int(m.AgentClass.UNKNOWN), int(m.AgentClass.ANIMAL)),
}


def trajectory_metrics(
    traj_m: np.ndarray,
    probs: np.ndarray,
    scale_m: np.ndarray,
    gt_m: np.ndarray,
    dt_s: float = m.PRED_DT_S,
    horizons_s: Iterable[float] = HORIZONS_S,
) -> dict[str, dict[str, np.ndarray]]:
    """Per-agent metrics at each horizon.

    Args:
        traj_m: (A, K, T, 2) predicted positions. probs: (A, K) mode probabilities.
        scale_m: (A, K, T, 2) Laplace scales (> 0). gt_m: (A, T, 2) true positions (same frame).
        dt_s: step. horizons_s: horizons in seconds (each <= T * dt_s).

    Returns:
        ``{f"{h:g}s": {"min_ade": (A,), "min_fde": (A,), "miss": (A,), "brier_min_fde": (A,),
        "nll": (A,)}}``.
    """
    a, k, t, _ = traj_m.shape
    if gt_m.shape != (a, t, 2) or probs.shape != (a, k) or scale_m.shape != traj_m.shape:
        raise ValueError(
            f"shapes: traj {traj_m.shape}, probs {probs.shape}, scale {scale_m.shape}, gt {gt_m.shape}"
        )
    err = np.linalg.norm(traj_m - gt_m[:, None], axis=-1)  # (A, K, T)
    b = np.maximum(scale_m.astype(np.float64), 1e-6)
    lp_step = (-np.log(2.0 * b) - np.abs(gt_m[:, None] - traj_m) / b).sum(-1)  # (A, K, T)
    log_p = np.log(np.maximum(probs.astype(np.float64), 1e-12))  # (A, K)
    out: dict[str, dict[str, np.ndarray]] = {}
    for h in horizons_s:
        n = int(round(h / dt_s))
        if not 1 <= n <= t:
            raise ValueError(f"horizon {h} s outside 1..{t} steps of {dt_s} s")
        ade = err[..., :n].mean(-1)  # (A, K)
        fde = err[..., n - 1]
        best = fde.argmin(-1)
        min_fde = fde[np.arange(a), best]
        nll = -logsumexp(log_p + lp_step[..., :n].sum(-1), axis=-1)
        out[f"{h:g}s"] = {
            "min_ade": ade.min(-1),
            "min_fde": min_fde,
            "miss": (min_fde > MISS_THRESHOLD_M).astype(np.float64),
            "brier_min_fde": min_fde + (1.0 - probs[np.arange(a), best]) ** 2,
            "nll": nll,
            **planner_metrics(traj_m, probs, gt_m, n, dt_s),
        }
    return out


def baseline_predictions(
    velocity_agent_mps: np.ndarray, yaw_rate_radps: np.ndarray, num_modes: int, future_steps: int, dt_s: float
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """CV and CTRV in each agent's frame (agent at the origin).

    Args:
        velocity_agent_mps: (A, 2) velocity in the agent frame. yaw_rate_radps: (A,).

    Returns:
        ``{"cv": (traj, probs, scale), "ctrv": (...)}`` with traj (A, K', T, 2); CTRV has K' = 1.
    """
    a = velocity_agent_mps.shape[0]
    zeros = np.zeros((a, 2))
    cv = constant_velocity_predictions(
        zeros, velocity_agent_mps.astype(np.float64), num_modes=1, future_steps=future_steps, dt_s=dt_s
    )
    ctrv_path = constant_turn_rate_predictions(
        zeros, velocity_agent_mps.astype(np.float64), yaw_rate_radps.astype(np.float64),
        future_steps=future_steps, dt_s=dt_s,
    )  # fmt: skip
    t_s = dt_s * np.arange(1, future_steps + 1)
    b = (CV_SCALE_BASE_M + CV_SCALE_RATE_MPS * t_s).astype(np.float32)
    scale = np.broadcast_to(b[None, None, :, None], (a, 1, future_steps, 2)).copy()
    return {
        "cv": (cv[0], cv[1], cv[2]),
        "ctrv": (ctrv_path[:, None], np.ones((a, 1), np.float32), scale),
    }


class MetricAccumulator:
    """Collects per-agent metrics per method and class group; summarises means."""

    def __init__(self) -> None:
        self._rows: dict[str, dict[str, dict[str, list[np.ndarray]]]] = {}
        self._cls: list[np.ndarray] = []

    def add(self, per_method: dict[str, dict[str, dict[str, np.ndarray]]], class_id: np.ndarray) -> None:
        """Add one batch: ``per_method[method]`` as returned by :func:`trajectory_metrics`."""
        self._cls.append(np.asarray(class_id, np.int64))
        for meth, hz in per_method.items():
            for h, vals in hz.items():
                for name, v in vals.items():
                    self._rows.setdefault(meth, {}).setdefault(h, {}).setdefault(name, []).append(v)

    def summary(self) -> dict[str, Any]:
        """``{"agents", "overall": {method: {horizon: {metric: mean}}}, "per_class": {...}}``."""
        cls = np.concatenate(self._cls) if self._cls else np.zeros(0, np.int64)

        def means(mask: np.ndarray) -> dict[str, Any]:
            res: dict[str, Any] = {}
            for meth, hz in self._rows.items():
                res[meth] = {
                    h: {
                        name: float(np.concatenate(v)[mask].mean()) if mask.any() else None
                        for name, v in vals.items()
                    }
                    for h, vals in hz.items()
                }
                for h, vals in hz.items():  # calibration is a property of the population
                    if "top_prob" in vals and mask.any():
                        top_prob = np.concatenate(vals["top_prob"])[mask]
                        res[meth][h]["ece"] = ece(top_prob, np.concatenate(vals["top_closest"])[mask])
            return res

        per_class = {}
        for group, ids in CLASS_GROUPS.items():
            mask = np.isin(cls, ids)
            if mask.any():
                per_class[group] = {"agents": int(mask.sum()), **means(mask)}
        return {"agents": int(cls.size), "overall": means(np.ones(cls.size, bool)), "per_class": per_class}


def _score_scene(
    predictor: Any,
    raster: np.ndarray,
    inputs: AgentInputs,
    future_agent_m: np.ndarray,
    keep: np.ndarray,
    velocity_world_mps: np.ndarray,
    yaw_rate_radps: np.ndarray,
    class_id: np.ndarray,
) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """Model + baselines on the ``keep`` slots of one scene, in the agent frame; the model's mode
    probabilities calibrated per class (``class_id`` per slot) as its manifest says."""
    feed = inputs.as_feed()
    feed["raster"] = predictor.check_raster(raster)[None]
    traj, probs, scale = predictor.session.run(list(OUTPUT_NAMES), feed)
    gt = future_agent_m[keep]
    yaw = inputs.agent_pose_world[keep, 2]
    c, s = np.cos(yaw), np.sin(yaw)
    v = velocity_world_mps[keep].astype(np.float64)
    v_agent = np.stack([c * v[:, 0] + s * v[:, 1], -s * v[:, 0] + c * v[:, 1]], -1)
    cfg = predictor.cfg
    base = baseline_predictions(v_agent, yaw_rate_radps[keep], cfg.num_modes, cfg.future_steps, cfg.dt_s)
    probs_keep = predictor.calibrate(probs[0, keep], class_id[keep])  # as the service publishes them
    res = {"model": trajectory_metrics(traj[0, keep], probs_keep, scale[0, keep], gt, cfg.dt_s)}
    for name, (tr, pr, sc) in base.items():
        res[name] = trajectory_metrics(tr, pr, sc, gt, cfg.dt_s)
    return res


def load_eval_predictor(model_path: Path, spec: str | None, channels: int | None, threads: int) -> Any:
    """An :class:`prescient.service.predictor.OnnxPredictor` on CPU that must match ``spec`` / ``channels``."""
    from prescient.service.predictor import OnnxPredictor

    return OnnxPredictor(
        model_path,
        providers=("CPUExecutionProvider",),
        intra_op_threads=threads,
        expected_spec_version=spec,
        expected_num_channels=channels,
    )


def evaluate_sim(
    model_path: Path,
    data_dir: Path,
    threads: int = 2,
    max_samples: int | None = None,
    plans: tuple[str, ...] = ("route", "future"),
) -> dict[str, Any]:
    """Score the model and baselines on held-out simulation shards.

    Args:
        model_path: the ``.onnx`` (manifest next to it).
        data_dir: shards from ``prescient data generate`` (seeds disjoint from training).
        threads: onnxruntime intra-op threads.
        max_samples: cap on scenes (evenly spread over shards), None = all.
        plans: which ego plan the model gets: ``route`` (the simulator's route, what a plain
            onboard tick passes) and/or ``future`` (the ego's actual next 8 s, as a conditional
            request would). Baselines do not depend on it.

    Returns:
        Report dict: ``{"kind", "scenes", "runs", "results": {plan: summary}}``.

    Raises:
        SimDataError: no data, a shard of another raster spec, or a run the model trained on.
    """
    from tqdm import tqdm

    paths = list_shards(data_dir)
    first = load_shard(paths[0])
    spec = str(first.meta["raster_spec"])
    channels = int(first.meta["raster_shape"][0])
    predictor = load_eval_predictor(model_path, spec, channels, threads)
    trained_on = set(predictor.manifest.get("training", {}).get("train_runs", [])) | set(
        predictor.manifest.get("training", {}).get("val_runs", [])
    )
    overlap = sorted(trained_on & {p.stem for p in paths})
    if overlap:
        raise SimDataError(f"evaluation runs {overlap[:5]} were used in training: not held out")
    cfg = predictor.cfg
    counts = []
    for p in paths:
        counts.append(load_shard(p).num_samples if p != paths[0] else first.num_samples)
    total = int(sum(counts))
    stride = 1 if max_samples is None or max_samples >= total else total / max_samples
    chosen = set(np.floor(np.arange(0, total, stride)).astype(int).tolist())
    acc = {p: MetricAccumulator() for p in plans}
    n_scenes = 0
    g = 0
    bar = tqdm(total=len(chosen), desc="eval-sim", unit="scene")
    for p in paths:
        shard = first if p == paths[0] else load_shard(p)
        a = shard.arrays
        fut = targets_in_agent_frame(a["target_xy_m"], a["target_valid"], a["agent_pose_world"])
        for i in range(shard.num_samples):
            g += 1
            if g - 1 not in chosen:
                continue
            n = cfg.n_max
            valid = a["agent_valid"][i, :n] > 0
            keep = np.flatnonzero(valid & a["target_valid"][i, :n].all(-1))
            if keep.size == 0:
                bar.update(1)
                continue
            n_scenes += 1
            for plan in plans:
                suffix = "_route" if plan == "route" else ""
                inputs = AgentInputs(
                    agent_hist=a["agent_hist"][i, :n],
                    agent_state=a["agent_state"][i, :n],
                    agent_valid=a["agent_valid"][i, :n],
                    ego_state=a["ego_state" + suffix][i],
                    ego_plan=a["ego_plan" + suffix][i],
                    agent_index=np.where(valid, np.arange(n), -1),
                    agent_pose_world=a["agent_pose_world"][i, :n],
                    num_dropped=0,
                )
                raster = shard.raster(i, route_plan=plan == "route")
                res = _score_scene(
                    predictor,
                    raster,
                    inputs,
                    fut[i, :n],
                    keep,
                    a["velocity_mps"][i, :n],
                    a["yaw_rate_radps"][i, :n],
                    a["class_id"][i, :n],
                )
                acc[plan].add(res, a["class_id"][i, :n][keep])
            bar.update(1)
    bar.close()
    return {
        "kind": "sim",
        "model": predictor.model_id,
        "data": str(data_dir),
        "runs": [p.stem for p in paths],
        "scenes": n_scenes,
        "results": {f"ego plan: {plan}": acc[plan].summary() for plan in plans},
    }


def evaluate_av2(
    model_path: Path,
    data_root: Path,
    threads: int = 2,
    work_dir: Path | None = None,
    stride_ticks: int = 2,
) -> dict[str, Any]:
    """8 s vehicle forecasts on Argoverse 2 sensor logs (ground-truth tracks, real map).

    Each log is imported to MCAP, replayed through the onboard :class:`prescient.service.pipeline.Pipeline`
    in tracks-from-log mode (rasters with the real map), and every ``stride_ticks``-th tick whose
    next 80 Tracks messages lie 0.1 s apart is scored. Vehicles (car, truck, bus) seen in all of
    them are the agents.
    """
    from prescient.bus.importers.av2_sensor import import_av2_sensor
    from prescient.bus.replayer import iter_messages
    from prescient.service.offline import iter_ticks
    from prescient.service.pipeline import Pipeline, PipelineConfig
    from prescient.service.raster import RasterConfig, build_spec

    spec = build_spec(RasterConfig())
    predictor = load_eval_predictor(model_path, spec.fingerprint(), spec.num_channels, threads)
    cfg = predictor.cfg
    logs = sorted(p for p in data_root.iterdir() if p.is_dir())
    if not logs:
        raise SimDataError(f"no AV2 log folders under {data_root}")
    acc = MetricAccumulator()
    acc_moving = MetricAccumulator()
    per_log: dict[str, dict[str, int]] = {}
    vehicle_ids = CLASS_GROUPS["vehicle"]
    with tempfile.TemporaryDirectory() as tmp:
        wd = Path(work_dir) if work_dir is not None else Path(tmp)
        wd.mkdir(parents=True, exist_ok=True)
        for log_dir in logs:
            mcap = wd / f"{log_dir.name}.mcap"
            if not mcap.is_file():
                import_av2_sensor(log_dir, mcap)
            vmap = next(lm.msg for lm in iter_messages(mcap, topics=[m.TOPIC_MAP]))
            tracks_by_stamp = [lm.msg for lm in iter_messages(mcap, topics=[m.TOPIC_TRACKS])]
            stamps = np.array([t.header.stamp_ns for t in tracks_by_stamp], np.int64)
            pipe = Pipeline(vmap, None, PipelineConfig(deadline_guard=False), tracks_from_log=True)
            n_log = n_ticks = 0
            for k, res in enumerate(iter_ticks(pipe, mcap)):
                if k % stride_ticks:
                    continue
                tracks = res.tracks
                j = int(np.searchsorted(stamps, tracks.stamp_ns))
                if j + cfg.future_steps >= len(stamps):
                    continue
                dts = np.diff(stamps[j : j + cfg.future_steps + 1]) / 1e9
                if np.any(np.abs(dts - cfg.dt_s) > 0.02):
                    continue
                ego = pipe.ego
                if ego is None:  # no ego state yet: nothing to put the agents in the ego frame
                    continue
                inputs = agent_inputs_from_tracks(
                    cfg, tracks, ego.velocity_mps, ego.size_lwh_m, ego.plan_xy_m
                )
                slots = inputs.agent_index
                fut_world = np.zeros((cfg.n_max, cfg.future_steps, 2), np.float32)
                fv = np.zeros((cfg.n_max, cfg.future_steps), bool)
                ids = np.where(slots >= 0, tracks.track_id[np.maximum(slots, 0)], -1)
                for step in range(cfg.future_steps):
                    nxt = tracks_by_stamp[j + 1 + step]
                    lookup = {int(t): q for q, t in enumerate(nxt.track_id)}
                    for s_i, tid in enumerate(ids):
                        q = lookup.get(int(tid)) if tid >= 0 else None
                        if q is not None:
                            fut_world[s_i, step] = nxt.position_m[q]
                            fv[s_i, step] = True
                cls = np.where(slots >= 0, tracks.class_id[np.maximum(slots, 0)], -1)
                keep = np.flatnonzero((slots >= 0) & fv.all(-1) & np.isin(cls, vehicle_ids))
                if keep.size == 0:
                    continue
                fut = targets_in_agent_frame(fut_world, fv, inputs.agent_pose_world)
                vel = np.where(slots[:, None] >= 0, tracks.velocity_mps[np.maximum(slots, 0)], 0.0)
                yr = np.where(slots >= 0, tracks.yaw_rate_radps[np.maximum(slots, 0)], 0.0)
                scored = _score_scene(predictor, res.raster, inputs, fut, keep, vel, yr, cls)
                acc.add(scored, cls[keep])
                moving = np.linalg.norm(vel[keep], axis=1) > MOVING_MPS
                if moving.any():
                    acc_moving.add(_subset(scored, moving), cls[keep][moving])
                n_log += int(keep.size)
                n_ticks += 1
            per_log[log_dir.name] = {"ticks": n_ticks, "agents": n_log}
            log.info("%s: %d ticks, %d vehicle samples", log_dir.name, n_ticks, n_log)
    summary = acc.summary()
    return {
        "kind": "av2",
        "model": predictor.model_id,
        "data": str(data_root),
        "agents_per_log": per_log,
        "results": {"all vehicles": summary, f"moving vehicles (> {MOVING_MPS:g} m/s)": acc_moving.summary()},
    }


def _subset(scored: dict[str, dict[str, dict[str, np.ndarray]]], mask: np.ndarray) -> dict[str, Any]:
    return {
        meth: {h: {k: v[mask] for k, v in vals.items()} for h, vals in hz.items()}
        for meth, hz in scored.items()
    }


def format_report(report: dict[str, Any]) -> str:
    """Markdown tables: per plan, overall per horizon, then per class at 8 s."""
    lines = [f"{report['kind']} evaluation of {report['model']} on {report['data']}"]
    if "scenes" in report:
        lines.append(f"scenes: {report['scenes']}, runs: {len(report['runs'])}")
    if "agents_per_log" in report:
        lines.append(f"vehicle samples per log: {report['agents_per_log']}")
    for plan, summ in report["results"].items():
        lines.append("")
        lines.append(f"### {plan} ({summ['agents']} agent samples)")
        lines.append("")
        lines.append("| horizon | method | minADE_6 m | minFDE_6 m | miss@2m | brier-minFDE | NLL nats |")
        lines.append("|---|---|---|---|---|---|---|")
        for h in (f"{x:g}s" for x in HORIZONS_S):
            for meth in METHODS:
                r = summ["overall"].get(meth, {}).get(h)
                if r is None or r["min_ade"] is None:
                    continue
                lines.append(
                    f"| {h} | {meth} | {r['min_ade']:.2f} | {r['min_fde']:.2f} | {r['miss']:.3f} | "
                    f"{r['brier_min_fde']:.2f} | {r['nll']:.1f} |"
                )
        mo, cv = summ["overall"].get("model", {}).get("8s"), summ["overall"].get("cv", {}).get("8s")
        if mo and cv and mo["min_ade"] is not None and cv["min_ade"]:
            lines.append("")

            def rel(a: float, b: float) -> str:
                r = 100.0 * (1.0 - a / b)
                return f"{r:.0f}% lower" if r >= 0 else f"{-r:.0f}% higher"

            lines.append(
                f"8 s vs CV: minADE {rel(mo['min_ade'], cv['min_ade'])}, minFDE {rel(mo['min_fde'], cv['min_fde'])}"
            )
        lines += planner_lines(summ)
        lines.append("")
        lines.append("| class (8 s) | agents | model minADE/minFDE | CV minADE/minFDE | CTRV minADE/minFDE |")
        lines.append("|---|---|---|---|---|")
        for group, res in summ["per_class"].items():
            cells = []
            for meth in METHODS:
                r = res.get(meth, {}).get("8s")
                cells.append(f"{r['min_ade']:.2f} / {r['min_fde']:.2f}" if r else "-")
            lines.append(f"| {group} | {res['agents']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
