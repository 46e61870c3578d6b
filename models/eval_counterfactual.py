"""Does the prediction change when, and only when, the ego's plan changes an agent's future?

On held-out branched shards (``prescient data generate --branches ...``, seeds >= 100) every scene
exists under several ego plans with each agent's true future under each. For each pair of plans
of one scene (``keep`` against ``slow``, ``stop``, ``route``), the model runs once per plan and
the probability-weighted mean path's 8 s point is compared (agent frame):

* reacting agents (true 8 s points more than ``react_m`` apart): **reaction capture**, the ratio of
  the predicted shift's length to the true shift's, and the cosine between the two shifts;
* unaffected agents (true points within ``still_m``): the predicted shift, which should be ~0,
  and the share of them whose predicted shift exceeds ``react_m`` (**phantom reactions**: a planner
  would read the agent as reacting to its plan, e.g. the car in the next lane instead of the one
  behind the ego); the median alone hides them;
* the share of reacting agents whose predicted shift is under half the true one (**missed**);
* minADE_6 at 8 s under the plan that happened, and under the *other* plan of the pair (a model
  that ignores the plan scores the same on both).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from prescient.models.shards import list_shards, load_shard
from prescient.models.sim_data import STORE_N_MAX
from prescient.models.sim_samples import SimSamples
from prescient.service.model_io.config import INPUT_NAMES, OUTPUT_NAMES, STATE_BASE_FEATURES

log = logging.getLogger(__name__)

PAIRS = (("keep", "slow"), ("keep", "stop"), ("keep", "route"))


def _run(predictor: Any, bt: dict[str, Any], suffix: str) -> tuple[np.ndarray, np.ndarray]:
    """(traj (N, K, T, 2), probs (N, K)) of the model on one side of a pair batch; the
    probabilities calibrated per class as the service publishes them."""
    feed = {k: bt[k + suffix if k + suffix in bt else k].numpy() for k in INPUT_NAMES}
    traj, probs, _ = predictor.session.run(list(OUTPUT_NAMES), feed)
    class_id = feed["agent_state"][0, :, STATE_BASE_FEATURES:].argmax(-1)  # the class one-hot
    return traj[0], predictor.calibrate(probs[0], class_id)


def _pair_rows(predictor: Any, data: SimSamples, item: int, a: int, b: int) -> dict[str, np.ndarray]:
    """Per agent of one scene and one plan pair: true and predicted 8 s shifts, minADE each way."""
    bt = data.batch([item], branch=[a], pair_branch=[b])
    traj_a, probs_a = _run(predictor, bt, "")
    traj_b, probs_b = _run(predictor, bt, "_b")
    fut_a, fut_b = bt["fut"][0].numpy(), bt["fut_b"][0].numpy()
    ok = (bt["fv"][0].numpy().min(-1) > 0) & (bt["fv_b"][0].numpy().min(-1) > 0)
    mean_a = (probs_a[..., None, None] * traj_a).sum(1)  # (N, T, 2)
    mean_b = (probs_b[..., None, None] * traj_b).sum(1)

    def min_ade(traj: np.ndarray, fut: np.ndarray) -> np.ndarray:
        return np.linalg.norm(traj - fut[:, None], axis=-1).mean(-1).min(-1)

    return {
        "true": (fut_b[:, -1] - fut_a[:, -1])[ok],
        "pred": (mean_b[:, -1] - mean_a[:, -1])[ok],
        "ade_own": min_ade(traj_b, fut_b)[ok],
        "ade_other": min_ade(traj_a, fut_b)[ok],
    }


def evaluate_counterfactual(
    predictor: Any, data_dir: Path, react_m: float = 1.0, still_m: float = 0.1, max_samples: int | None = None
) -> dict[str, Any]:
    """Reaction capture per plan pair on the branched shards of ``data_dir`` (see module docstring)."""
    data = SimSamples([load_shard(p) for p in list_shards(data_dir)], STORE_N_MAX, allow_held_out=True)
    names = data.branch_names
    items = (
        range(len(data)) if max_samples is None else np.linspace(0, len(data) - 1, max_samples).astype(int)
    )
    out: dict[str, Any] = {"data": str(data_dir), "react_m": react_m, "still_m": still_m, "pairs": {}}
    for kind_a, kind_b in PAIRS:
        if kind_a not in names or kind_b not in names:
            continue
        a, b = names.index(kind_a), names.index(kind_b)
        rows: dict[str, list[np.ndarray]] = {"true": [], "pred": [], "ade_own": [], "ade_other": []}
        for it in items:
            have = data.available([int(it)])[0]
            if have[a] and have[b]:
                for k, v in _pair_rows(predictor, data, int(it), a, b).items():
                    rows[k].append(v)
        out["pairs"][f"{kind_a}-{kind_b}"] = _summary(
            {k: np.concatenate(v) if v else np.zeros((0, 2)) for k, v in rows.items()}, react_m, still_m
        )
    return out


def _summary(r: dict[str, np.ndarray], react_m: float, still_m: float) -> dict[str, Any]:
    true_len = np.linalg.norm(r["true"], axis=-1)
    pred_len = np.linalg.norm(r["pred"], axis=-1)
    react, still = true_len > react_m, true_len < still_m
    cos = (r["true"][react] * r["pred"][react]).sum(-1) / np.maximum(true_len[react] * pred_len[react], 1e-9)

    def med(x: np.ndarray) -> float | None:
        return float(np.median(x)) if x.size else None

    return {
        "agents": int(true_len.size),
        "reacting": int(react.sum()),
        "unaffected": int(still.sum()),
        "capture_ratio_median": med(pred_len[react] / np.maximum(true_len[react], 1e-9)),
        "cosine_median": med(cos),
        "true_shift_median_m": med(true_len[react]),
        "unaffected_pred_shift_median_m": med(pred_len[still]),
        "unaffected_pred_shift_p95_m": float(np.percentile(pred_len[still], 95)) if still.any() else None,
        "phantom_share": float((pred_len[still] > react_m).mean()) if still.any() else None,
        "missed_share": float((pred_len[react] < 0.5 * true_len[react]).mean()) if react.any() else None,
        "min_ade_own_plan_m": med(r["ade_own"][react]),
        "min_ade_other_plan_m": med(r["ade_other"][react]),
    }


def format_report(rep: dict[str, Any]) -> str:
    lines = [
        f"counterfactual evaluation on {rep['data']} (reacting: true 8 s points > {rep['react_m']:g} m apart; "
        f"unaffected: < {rep['still_m']:g} m)",
        "",
        "| plans | agents | reacting | capture ratio (median) | cosine (median) | true shift m | "
        "unaffected: predicted shift m (median / p95) | phantom share | missed share | "
        "reacting minADE_6 own plan / other plan m |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    for pair, s in rep["pairs"].items():
        lines.append(
            f"| {pair} | {s['agents']} | {s['reacting']} | {f(s['capture_ratio_median'])} | {f(s['cosine_median'])} | "
            f"{f(s['true_shift_median_m'])} | {f(s['unaffected_pred_shift_median_m'])} / "
            f"{f(s.get('unaffected_pred_shift_p95_m'))} | {f(s.get('phantom_share'))} | {f(s.get('missed_share'))} | "
            f"{f(s['min_ade_own_plan_m'])} / {f(s['min_ade_other_plan_m'])} |"
        )
    return "\n".join(lines)
