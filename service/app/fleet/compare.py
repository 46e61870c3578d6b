"""``--baseline DIR``: each metric's change against an earlier fleet run, with a bootstrap CI over logs.

Logs are paired by path. For every class, horizon and metric the change is the mean over the
paired logs of (this run - baseline) of the model's per-log mean; its 95 % interval comes from
resampling the logs with replacement (seeded, so a report is reproducible). Every reported
metric is an error (lower is better): an interval wholly above 0 is ``worse``, wholly below 0
``better``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from prescient.service.app.fleet.aggregate import CLASS_ORDER, longest_horizon, scored
from prescient.service.app.fleet.scoring import REPORTED

BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 0
CI_LEVEL = 0.95


def bootstrap_ci(
    diffs: np.ndarray, samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float]:
    """Percentile interval (:data:`CI_LEVEL`) of the mean of ``diffs`` (L,) under resampling of logs."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, diffs.size, size=(samples, diffs.size))
    means = diffs[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - CI_LEVEL) / 2, 1 - (1 - CI_LEVEL) / 2])
    return float(lo), float(hi)


def _value(rec: dict[str, Any], cls: str, h: str, metric: str) -> float | None:
    cell = rec.get("metrics", {}).get(cls, {}).get(h)
    v = cell["model"].get(metric) if cell else None
    return None if v is None else float(v)


def regression(records: list[dict[str, Any]], baseline: list[dict[str, Any]]) -> dict[str, Any]:
    """The diff of ``records`` against ``baseline`` rows (same record format).

    Returns:
        ``{"paired_logs", "metrics": [{class, horizon, metric, logs, baseline, current, change,
        ci_low, ci_high, verdict}], "worst_logs": [{log, horizon, baseline, current, change}]}``,
        worst logs first (largest increase of minFDE at each log's longest common horizon).
    """
    base = {r["log"]: r for r in scored(baseline)}
    pairs = [(r, base[r["log"]]) for r in scored(records) if r["log"] in base]
    rows: list[dict[str, Any]] = []
    classes = sorted({c for r, _ in pairs for c in r["metrics"]}, key=lambda c: (c not in CLASS_ORDER, c))
    for cls in classes:
        horizons = sorted(
            {h for r, _ in pairs for h in r["metrics"].get(cls, {})}, key=lambda h: float(h[:-1])
        )
        for h in horizons:
            for metric in REPORTED:
                vals = [(_value(b, cls, h, metric), _value(r, cls, h, metric)) for r, b in pairs]
                both = np.array([(b, c) for b, c in vals if b is not None and c is not None]).reshape(-1, 2)
                if not both.size:
                    continue
                d = both[:, 1] - both[:, 0]
                lo, hi = bootstrap_ci(d)
                verdict = "worse" if lo > 0 else "better" if hi < 0 else "no clear change"
                rows.append({
                    "class": cls, "horizon": h, "metric": metric, "logs": int(d.size),
                    "baseline": float(both[:, 0].mean()), "current": float(both[:, 1].mean()),
                    "change": float(d.mean()), "ci_low": lo, "ci_high": hi, "verdict": verdict,
                })  # fmt: skip
    return {"paired_logs": len(pairs), "metrics": rows, "worst_logs": _worst_logs(pairs)}


def _worst_logs(pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[dict[str, Any]]:
    out = []
    for r, b in pairs:
        h = longest_horizon(r)
        if h is None or h not in b.get("metrics", {}).get("all", {}):
            continue
        cur, old = _value(r, "all", h, "min_fde"), _value(b, "all", h, "min_fde")
        if cur is None or old is None:
            continue
        out.append({"log": r["log"], "horizon": h, "baseline": old, "current": cur, "change": cur - old})
    return sorted(out, key=lambda x: -x["change"])


def regression_markdown(reg: dict[str, Any], baseline_dir: str) -> list[str]:
    """The regression section of ``report.md``."""
    lines = [
        f"## Regression against `{baseline_dir}`",
        "",
        f"{reg['paired_logs']} logs in both runs. Change = this run - baseline (model's per-log mean, m; miss: "
        f"fraction); {CI_LEVEL:.0%} bootstrap interval over logs ({BOOTSTRAP_SAMPLES} resamples, seed {BOOTSTRAP_SEED}).",
        "",
        "| class | horizon | metric | logs | baseline | this run | change | CI | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for x in reg["metrics"]:
        lines.append(
            f"| {x['class']} | {x['horizon']} | {x['metric']} | {x['logs']} | {x['baseline']:.3f} | {x['current']:.3f} "
            f"| {x['change']:+.3f} | [{x['ci_low']:+.3f}, {x['ci_high']:+.3f}] | {x['verdict']} |"
        )
    lines += ["", "Worst logs first (minFDE6 at the longest horizon scored):", "",
              "| log | horizon | baseline | this run | change |", "|---|---|---|---|---|"]  # fmt: skip
    for w in reg["worst_logs"]:
        lines.append(
            f"| `{w['log']}` | {w['horizon']} | {w['baseline']:.3f} | {w['current']:.3f} | {w['change']:+.3f} |"
        )
    return lines + [""]
