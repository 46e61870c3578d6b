"""Fit per-class temperatures of the mode probabilities (``prescient calibrate``).

What is calibrated is what ``eval-sim`` scores as ECE: the most likely mode's probability should be
the chance that it is the mode ending closest to the truth at 8 s. One temperature per class group
(vehicle, pedestrian, cyclist, other; :data:`prescient.models.eval_sim.CLASS_GROUPS`) is fitted by
minimising the negative log-likelihood of the closest mode's index under the tempered
probabilities (temperature scaling, Guo et al. 2017), on the **validation runs the manifest
records** (``training.val_runs``), never on the held-out evaluation seeds. The result goes into the
model's manifest (:mod:`prescient.service.model_io.calibration`), written atomically; the ``.onnx``
and its sha256 are untouched, and every best-of-K or most-likely figure is unchanged.

Each group may also get a top-label map, a nondecreasing map of the tempered top probability to
the share of "the top mode was the closest": an isotonic fit on binned shares (:func:`fit_top_map`)
or a logistic fit on the logit of the top probability (Platt scaling, :func:`fit_logistic_map`,
two parameters, for groups with few agents). Which one, or none, is chosen per group by repeated
half splits of the validation **runs** (:func:`choose_top_map`): fit on one half, score ECE on the
other, keep the choice with the lowest mean. Why choose: on ``prescient-dc658175c825`` the isotonic
map lowered the held-out-half ECE of vehicles and pedestrians (about 30,000 agents each) and
raised the cyclists' (6,000) from 0.04 to 0.056 on one split; a fixed rule by agent count is a
guess, the split measures it. Both maps are stored the same way (values at
:data:`TOP_MAP_KNOTS`), so the runtime only interpolates.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from prescient.bus.messages import NUM_CLASSES
from prescient.models.eval_sim import CLASS_GROUPS, load_eval_predictor
from prescient.models.planner_metrics import ece
from prescient.models.quantize import sample_feed
from prescient.models.shards import targets_in_agent_frame
from prescient.models.sim_data import SimDataError, list_shards, load_shard
from prescient.service.model_io.calibration import MANIFEST_KEY, MAX_T, MIN_T, map_top, temper
from prescient.service.model_io.config import OUTPUT_NAMES
from prescient.service.model_io.manifest import manifest_path_for

HORIZON_S = 8.0
SPLIT_REPEATS = 10  # half splits of the validation runs per group when choosing a top-label map
MIN_SPLIT_AGENTS = 200  # fewer agents in a group: temperature only
TOP_MAP_KNOTS = np.linspace(0.0, 1.0, 21)
TOP_MAP_PRIOR = 100.0  # pseudo-agents per bin at the bin's own probability


def collect(predictor: Any, paths: list[Path], max_scenes: int | None = None) -> dict[str, np.ndarray]:
    """Raw probabilities, closest mode at :data:`HORIZON_S` and class of every agent with a full future.

    Args:
        predictor: an :class:`~prescient.service.predictor.OnnxPredictor`.
        paths: shards (one per run). max_scenes: cap, spread evenly over all scenes (None: all).

    Returns:
        ``{"probs": (A, K), "closest": (A,), "class_id": (A,), "run": (A,)}``; ``run`` indexes ``paths``.
    """
    cfg = predictor.cfg
    step = int(round(HORIZON_S / cfg.dt_s)) - 1
    shards = [load_shard(p) for p in paths]
    total = sum(s.num_samples for s in shards)
    stride = 1.0 if max_scenes is None or max_scenes >= total else total / max_scenes
    chosen = set(np.floor(np.arange(0, total, stride)).astype(int).tolist())
    out: dict[str, list[np.ndarray]] = {"probs": [], "closest": [], "class_id": [], "run": []}
    g = 0
    n = cfg.n_max
    for run, shard in enumerate(shards):
        a = shard.arrays
        fut = targets_in_agent_frame(a["target_xy_m"], a["target_valid"], a["agent_pose_world"])
        for i in range(shard.num_samples):
            g += 1
            valid = a["agent_valid"][i, :n] > 0
            keep = np.flatnonzero(valid & a["target_valid"][i, :n].all(-1))
            if g - 1 not in chosen or keep.size == 0:
                continue
            feed = sample_feed(cfg, shard, i)  # the route as ego plan: what a plain tick passes
            traj, probs, _ = predictor.session.run(list(OUTPUT_NAMES), feed)
            end = traj[0, keep, :, step]  # (A, K, 2) agent frame
            err = np.linalg.norm(end - fut[i, keep, None, step], axis=-1)
            out["probs"].append(probs[0, keep])
            out["closest"].append(err.argmin(-1))
            out["class_id"].append(a["class_id"][i, keep])
            out["run"].append(np.full(keep.size, run, np.int64))
    if not out["probs"]:
        raise SimDataError(f"no agent with a full {HORIZON_S:g} s future in {len(paths)} runs")
    return {k: np.concatenate(v) for k, v in out.items()}


def nll(probs: np.ndarray, closest: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of the closest mode under the tempered probabilities."""
    p = temper(probs, temperature)
    return float(-np.mean(np.log(np.maximum(p[np.arange(len(closest)), closest], 1e-30))))


def fit_temperature(probs: np.ndarray, closest: np.ndarray) -> float:
    """The temperature in [MIN_T, MAX_T] minimising :func:`nll` (bounded search on log T)."""
    from scipy.optimize import minimize_scalar

    res = minimize_scalar(
        lambda log_t: nll(probs, closest, math.exp(log_t)),
        bounds=(math.log(MIN_T), math.log(MAX_T)),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(math.exp(res.x))


def _top(probs: np.ndarray, closest: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(top probability, 1.0 where the top mode was the closest) per agent."""
    top = probs.argmax(-1)
    return probs[np.arange(len(top)), top].astype(np.float64), (top == closest).astype(np.float64)


def fit_top_map(probs: np.ndarray, closest: np.ndarray) -> np.ndarray:
    """Values at :data:`TOP_MAP_KNOTS` of the top-label map of ``probs`` (A, K), already tempered.

    Each agent's top probability falls in the bin of its nearest knot; a bin's value is its
    share of "the top mode was the closest", shrunk towards the knot itself by
    :data:`TOP_MAP_PRIOR` pseudo-agents (so sparse bins, such as the few agents above 0.8, stay
    near the tempered probability instead of jumping to 0 or 1), then made nondecreasing by a
    weighted isotonic fit. Values lie in [0, 1].
    """
    from scipy.optimize import isotonic_regression

    p, hit = _top(probs, closest)
    step = TOP_MAP_KNOTS[1] - TOP_MAP_KNOTS[0]
    bins = np.clip(np.rint(p / step).astype(np.int64), 0, len(TOP_MAP_KNOTS) - 1)
    n = np.bincount(bins, minlength=len(TOP_MAP_KNOTS)).astype(np.float64)
    hits = np.bincount(bins, weights=hit, minlength=len(TOP_MAP_KNOTS))
    target = (hits + TOP_MAP_PRIOR * TOP_MAP_KNOTS) / (n + TOP_MAP_PRIOR)
    values = isotonic_regression(target, weights=n + TOP_MAP_PRIOR).x
    return np.clip(values, 0.0, 1.0)


def fit_logistic_map(probs: np.ndarray, closest: np.ndarray) -> np.ndarray:
    """Values at :data:`TOP_MAP_KNOTS` of a logistic top-label map of ``probs`` (A, K), tempered.

    share = sigmoid(a * logit(p) + b), fitted by maximum likelihood of "the top mode was the
    closest" (Platt 1999); ``a`` is kept >= 0 so the map is nondecreasing. Two parameters, so it
    holds up where a binned map is noisy. Values lie in [0, 1].
    """
    from scipy.optimize import minimize

    p, hit = _top(probs, closest)
    eps = 1e-4
    q = np.clip(p, eps, 1 - eps)
    x = np.log(q / (1 - q))

    def loss(ab: np.ndarray) -> float:
        z = max(ab[0], 0.0) * x + ab[1]
        return float(np.mean(np.logaddexp(0.0, z) - hit * z))

    a, b = minimize(loss, np.array([1.0, 0.0]), method="Nelder-Mead").x
    k = np.clip(TOP_MAP_KNOTS, eps, 1 - eps)
    return np.asarray(1.0 / (1.0 + np.exp(-(max(a, 0.0) * np.log(k / (1 - k)) + b))))


TOP_MAP_FITS = {"isotonic": fit_top_map, "logistic": fit_logistic_map}


def _ece_mapped(probs: np.ndarray, closest: np.ndarray, values: np.ndarray | None) -> float:
    if values is not None:
        probs = map_top(probs, np.zeros(len(closest), np.int64), {0: (TOP_MAP_KNOTS, values)})
    return ece(*_top(probs, closest))


def choose_top_map(
    probs: np.ndarray, closest: np.ndarray, runs: np.ndarray, seed: int = 0
) -> tuple[str, dict[str, float]]:
    """Pick "none" or a name of :data:`TOP_MAP_FITS` for one class group by half splits of its runs.

    Each of :data:`SPLIT_REPEATS` splits puts a random half of the runs (seeded) in a fit half:
    the temperature and the map are fitted there, and the ECE is scored on the other half. Returns
    the choice with the lowest mean ECE and every choice's mean. Too few runs or agents: "none".
    """
    names = ["none", *TOP_MAP_FITS]
    unique = np.unique(runs)
    if len(unique) < 4 or len(closest) < MIN_SPLIT_AGENTS:
        return "none", {}
    rng = np.random.default_rng(seed)
    scores: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(SPLIT_REPEATS):
        fit = np.isin(runs, rng.permutation(unique)[: len(unique) // 2])  # 2+ runs each side
        t = fit_temperature(probs[fit], closest[fit])
        fit_p, score_p = temper(probs[fit], t), temper(probs[~fit], t)
        for name in names:
            values = None if name == "none" else TOP_MAP_FITS[name](fit_p, closest[fit])
            scores[name].append(_ece_mapped(score_p, closest[~fit], values))
    means = {n: round(float(np.mean(v)), 4) for n, v in scores.items()}
    return min(means, key=lambda n: means[n]), means


def _group_report(
    probs: np.ndarray,
    closest: np.ndarray,
    t: float,
    values: np.ndarray | None,
    choice: str,
    split_ece: dict[str, float],
) -> dict[str, Any]:
    tempered = temper(probs, t)
    out: dict[str, Any] = {
        "temperature": round(t, 4),
        "agents": int(len(closest)),
        "nll_before": round(nll(probs, closest, 1.0), 4),
        "nll_after": round(nll(probs, closest, t), 4),
        "ece_before": round(_ece_mapped(temper(probs, 1.0), closest, None), 4),
        "ece_after": round(_ece_mapped(tempered, closest, None), 4),
        "top_map": choice,
        "split_ece": split_ece,
    }
    if values is not None:
        out["ece_after_top_map"] = round(_ece_mapped(tempered, closest, values), 4)
    return out


def calibrate_model(
    model_path: Path, data_dir: Path, max_scenes: int | None = None, threads: int = 2
) -> dict[str, Any]:
    """Fit the temperatures on the model's validation runs in ``data_dir``; write them into its manifest.

    Returns:
        The ``prob_calibration`` entry written.

    Raises:
        SimDataError: the manifest names no validation runs, or none of them is in ``data_dir``.
    """
    paths_all = list_shards(data_dir)
    first = load_shard(paths_all[0])
    predictor = load_eval_predictor(
        model_path, str(first.meta["raster_spec"]), int(first.meta["raster_shape"][0]), threads
    )
    val_runs = set(predictor.manifest.get("training", {}).get("val_runs", []))
    if not val_runs:
        raise SimDataError(f"{model_path}: the manifest records no validation runs (training.val_runs)")
    paths = [p for p in paths_all if p.stem in val_runs]
    if not paths:
        raise SimDataError(f"none of the model's {len(val_runs)} validation runs is in {data_dir}")
    data = collect(predictor, paths, max_scenes)
    temps = np.ones(NUM_CLASSES)
    groups: dict[str, Any] = {}
    top_maps: dict[str, Any] = {}
    for name, ids in CLASS_GROUPS.items():
        sel = np.isin(data["class_id"], ids)
        probs, closest = data["probs"][sel], data["closest"][sel]
        t = fit_temperature(probs, closest) if sel.sum() >= 20 else 1.0
        temps[list(ids)] = t
        choice, split_ece = choose_top_map(probs, closest, data["run"][sel])
        values = None if choice == "none" else TOP_MAP_FITS[choice](temper(probs, t), closest)
        if values is not None:
            for cid in ids:
                top_maps[str(cid)] = {"knots": [round(float(k), 4) for k in TOP_MAP_KNOTS],
                                      "values": [round(float(v), 4) for v in values]}  # fmt: skip
        groups[name] = _group_report(probs, closest, t, values, choice, split_ece) if sel.any() else {}
    entry = {
        "method": "temperature",
        "by_class_id": [round(float(t), 4) for t in temps],
        "top_isotonic": top_maps,
        "horizon_s": HORIZON_S,
        "target": "most likely mode is the one closest to the truth at the horizon",
        "data": str(data_dir),
        "runs": sorted(p.stem for p in paths),
        "groups": groups,
    }
    _write_manifest_key(manifest_path_for(Path(model_path)), entry)
    return entry


def _write_manifest_key(path: Path, entry: dict[str, Any]) -> None:
    """Set ``MANIFEST_KEY`` in the manifest at ``path`` (temporary file, then rename)."""
    manifest = json.loads(path.read_text())
    manifest[MANIFEST_KEY] = entry
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
