"""How predictable are the simulated futures? The simulator's own floor beside the model.

At sample ticks of held-out runs the world is rolled on R times from its exact state, each time
with fresh random draws (:mod:`prescient.sim_sensors.resample`), and the recorded future is
scored against the best any predictor could do with those R futures:

* **most likely**: the rollout whose 8 s end is the medoid of the R ends (least mean distance to
  the others): the best single guess, as a real path;
* **miss@2m of 6**: six rollouts chosen greedily to cover the most ends within 2 m; a miss when
  the recorded end is more than 2 m from all six (eval-sim's miss rate).

Variants (what counts as unknown): ``state`` (only the draws still to come: an observer who
knows every agent's exact state, intent and each light's timing), ``+successors`` (also the
turns agents have chosen but do not show yet), ``+signals`` (also how long each light has
shown its colour). Each is a floor: the observer still knows exact positions, speeds and
desired speeds, which sensors and a tracker do not give. The model (route plan, as eval-sim's
headline) and CV are scored on the same agents.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from prescient.models.eval_sim import load_eval_predictor
from prescient.models.quantize import sample_feed
from prescient.models.shards import SimDataError, list_shards, load_shard, targets_in_agent_frame
from prescient.service.model_io.config import OUTPUT_NAMES
from prescient.sim_sensors import SimConfig, Simulation
from prescient.sim_sensors.counterfactual import Plan, rollout
from prescient.sim_sensors.layout import I_ID
from prescient.sim_sensors.resample import Hidden, agent_rows, resample

VARIANTS: dict[str, Hidden] = {
    "state": Hidden(),
    "+successors": Hidden(successors=True),
    "+signals": Hidden(signal_phase=True),
}
MISS_M = 2.0
GROUPS = {1: "vehicle", 2: "vehicle", 3: "vehicle", 4: "pedestrian", 5: "cyclist"}  # else "other"


def medoid_paths(paths: np.ndarray) -> np.ndarray:
    """(N, T, 2): per agent, the one of R paths (R, N, T, 2) whose end is nearest the others' on average."""
    end = paths[:, :, -1]  # (R, N, 2)
    d = np.linalg.norm(end[:, None] - end[None], axis=-1)  # (R, R, N)
    best = d.mean(axis=1).argmin(axis=0)  # (N,)
    return paths[best, np.arange(paths.shape[1])]


def greedy_cover(ends: np.ndarray, k: int, radius_m: float) -> np.ndarray:
    """(k, N) indices of k of the R ends (R, N, 2) per agent, chosen one at a time to cover the
    most not yet covered ends within ``radius_m``."""
    r, n = ends.shape[:2]
    near = np.linalg.norm(ends[:, None] - ends[None], axis=-1) <= radius_m  # (cand, R, N)
    covered = np.zeros((r, n), bool)
    chosen = np.zeros((k, n), np.int64)
    for j in range(k):
        gain = (near & ~covered[None]).sum(axis=1)  # (cand, N)
        chosen[j] = gain.argmax(axis=0)
        covered |= near[chosen[j], :, np.arange(n)].T
    return chosen


def hold_last(paths: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Paths (R, N, T, 2) where an agent left the world held at its last position (valid (R, N, T))."""
    out = paths.copy()
    for t in range(1, out.shape[2]):
        gone = ~valid[:, :, t]
        out[:, :, t][gone] = out[:, :, t - 1][gone]
    return out


def floor_scores(paths: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """Per agent: the medoid rollout's ADE / FDE and the 6-cover miss against ``truth`` (N, T, 2)."""
    ml = medoid_paths(paths)
    err = np.linalg.norm(ml - truth, axis=-1)
    ends = paths[:, :, -1]
    six = greedy_cover(ends, 6, MISS_M)
    d6 = np.linalg.norm(ends[six, np.arange(ends.shape[1])] - truth[None, :, -1], axis=-1).min(axis=0)
    return {"ml_ade": err.mean(-1), "ml_fde": err[:, -1], "miss": (d6 > MISS_M).astype(np.float64)}


def _sample_rollouts(sim: Simulation, rows: np.ndarray, ids: np.ndarray, where: np.ndarray, steps: int,
                     rollouts: int, hidden: Hidden | None) -> np.ndarray:  # fmt: skip
    """(R, n, T, 2) world futures of the agents at ``where`` (indices into rows) under R redraws;
    ``hidden`` None: one rollout with the world's own draws (the recorded future)."""
    state = sim.save_state()
    out = np.zeros((rollouts, len(where), steps, 2))
    try:
        for k in range(rollouts):
            sim.restore_state(state)
            if hidden is not None:
                resample(sim, 1_000_003 * (k + 1), hidden)
            b = rollout(sim, Plan("keep"), rows, ids, steps)
            out[k] = hold_last(np.nan_to_num(b.xy[where][None]), b.valid[where][None])[0]
    finally:
        sim.restore_state(state)
    return out


def evaluate_floor(
    data_dir: Path, model_path: Path | None, rollouts: int = 32, every: int = 4, max_runs: int | None = None
) -> dict[str, Any]:
    """Score the floor variants, the model (when given) and CV on every ``every``-th sample of
    each held-out run in ``data_dir``.

    Raises:
        SimDataError: no shards, or the unmodified world does not reproduce a recorded future
            (the shard is not from this simulator version).
    """
    paths = list_shards(data_dir)[:max_runs]
    pred = None if model_path is None else load_eval_predictor(model_path, None, None, 2)
    n_max = 128 if pred is None else pred.cfg.n_max
    if pred is not None:
        training = pred.manifest.get("training", {})
        trained = set(training.get("train_runs", [])) | set(training.get("val_runs", []))
        seen = sorted(trained & {p.stem for p in paths})
        if seen:
            raise SimDataError(f"evaluation runs {seen[:5]} were used in training: not held out")
    rows_out: dict[str, list[np.ndarray]] = {}

    def add(key: str, v: np.ndarray) -> None:
        rows_out.setdefault(key, []).append(np.asarray(v, np.float64))

    for p in paths:
        sh = load_shard(p)
        a, meta = sh.arrays, sh.meta
        sim = Simulation(SimConfig(scenario=meta["scenario"], seed=int(meta["seed"]),
                                   n_agents=int(meta["n_agents"]), night=bool(meta["night"])))  # fmt: skip
        fut = targets_in_agent_frame(a["target_xy_m"], a["target_valid"], a["agent_pose_world"])
        steps = a["target_xy_m"].shape[2]
        for i in range(0, sh.num_samples, every):
            while sim.time_ns < int(a["tick_ns"][i]):
                sim.step_physics()
            gid = a["gt_id"][i, :n_max]
            keep = np.flatnonzero(
                (a["agent_valid"][i, :n_max] > 0) & a["target_valid"][i, :n_max].all(-1) & (gid >= 0)
            )
            rows = agent_rows(sim)
            ids = sim.I[rows, I_ID]
            where = np.minimum(np.searchsorted(ids, gid[keep]), max(len(ids) - 1, 0))
            match = ids[where] == gid[keep] if len(ids) else np.zeros(len(keep), bool)
            keep, where = keep[match], where[match]
            if keep.size == 0:
                continue
            truth = a["target_xy_m"][i, keep].astype(np.float64)
            if np.abs(_sample_rollouts(sim, rows, ids, where, steps, 1, None)[0] - truth).max() > 1e-3:
                raise SimDataError(
                    f"{p.name} sample {i}: the simulator does not reproduce the recorded future"
                )
            pose = a["agent_pose_world"][i, keep]
            c, s = np.cos(pose[:, 2]), np.sin(pose[:, 2])
            for name, hidden in VARIANTS.items():
                world = _sample_rollouts(sim, rows, ids, where, steps, rollouts, hidden)
                d = world - pose[None, :, None, :2]
                agent = np.stack([c[None, :, None] * d[..., 0] + s[None, :, None] * d[..., 1],
                                  -s[None, :, None] * d[..., 0] + c[None, :, None] * d[..., 1]], -1)  # fmt: skip
                for key, v in floor_scores(agent, fut[i, keep]).items():
                    add(f"{name}:{key}", v)
            v = a["velocity_mps"][i, keep].astype(np.float64)
            v_agent = np.stack([c * v[:, 0] + s * v[:, 1], -s * v[:, 0] + c * v[:, 1]], -1)
            t_s = np.arange(1, steps + 1) * 0.1
            cv_err = np.linalg.norm(v_agent[:, None] * t_s[None, :, None] - fut[i, keep], axis=-1)
            add("cv:ml_ade", cv_err.mean(-1))
            add("cv:ml_fde", cv_err[:, -1])
            add("cv:miss", cv_err[:, -1] > MISS_M)
            add("class_id", a["class_id"][i, keep])
            if pred is not None:
                for key, val in _model_scores(pred, sh, i, keep, fut[i, keep]).items():
                    add(f"model:{key}", val)
    return {k: np.concatenate(v) for k, v in rows_out.items()}


def _model_scores(pred: Any, sh: Any, i: int, keep: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """The model's most likely ADE / FDE and miss@2m of its 6 modes (route plan) on ``keep``."""
    a = sh.arrays
    feed = sample_feed(pred.cfg, sh, i)
    traj, probs, _ = pred.session.run(list(OUTPUT_NAMES), feed)
    probs = pred.calibrate(probs[0, keep], a["class_id"][i, keep])
    err = np.linalg.norm(traj[0, keep] - truth[:, None], axis=-1)  # (n, K, T)
    top = probs.argmax(-1)
    ml = err[np.arange(len(keep)), top]
    return {"ml_ade": ml.mean(-1), "ml_fde": ml[:, -1], "miss": err[..., -1].min(-1) > MISS_M}


def summarize(scores: dict[str, np.ndarray]) -> dict[str, dict[str, dict[str, float]]]:
    """``{group: {method: {"n", "ml_ade", "ml_fde", "miss"}}}`` means; groups per class and ``all``."""
    groups = np.array([GROUPS.get(int(c), "other") for c in scores["class_id"]])
    present = {k.split(":")[0] for k in scores if ":" in k}
    methods = [m for m in ("cv", "model", *VARIANTS) if m in present]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for g in ("vehicle", "pedestrian", "cyclist", "other", "all"):
        mask = np.ones(len(groups), bool) if g == "all" else groups == g
        if not mask.any():
            continue
        out[g] = {
            m: {
                "n": float(mask.sum()),
                **{k: float(scores[f"{m}:{k}"][mask].mean()) for k in ("ml_ade", "ml_fde", "miss")},
            }
            for m in methods
        }
    return out


def format_floor(summary: dict[str, dict[str, dict[str, float]]], rollouts: int) -> str:
    """Markdown: per class, CV, the model and each floor variant (8 s most likely ADE / FDE, its
    FDE below CV, miss@2m of 6 paths)."""
    lines = [
        f"8 s, held-out agents; floor = best of {rollouts} resampled simulator futures (most likely: the medoid "
        "rollout; miss: 6 rollouts covering the most ends within 2 m). CV has one path: its miss is its FDE > 2 m.",
        "",
        "| class | agents | method | most likely ADE / FDE m | FDE below CV | miss@2m |",
        "|---|---|---|---|---|---|",
    ]
    for g, per in summary.items():
        cv_fde = per["cv"]["ml_fde"]
        for m, r in per.items():
            below = "" if m == "cv" else f"{1 - r['ml_fde'] / cv_fde:.0%}"
            name = m if m in ("cv", "model") else f"floor {m}"
            lines.append(
                f"| {g} | {int(r['n'])} | {name} | {r['ml_ade']:.2f} / {r['ml_fde']:.2f} | {below} | {r['miss']:.3f} |"
            )
    return "\n".join(lines)
