"""ETH/UCY results table: per scene and mean, the model next to CV and the CV fan."""

from __future__ import annotations

import numpy as np

_METHODS = ("model", "cv", "cv_fan")
_MEAN_KEYS = ("min_ade_m", "min_fde_m", "ml_ade_m", "ml_fde_m", "kde_nll")


def _pair(d: dict, prefix: str) -> str:
    """``ADE/FDE`` cell from ``{prefix}_ade_m`` and ``{prefix}_fde_m``; "-" when absent."""
    if f"{prefix}_ade_m" not in d:
        return "-"
    return f"{d[f'{prefix}_ade_m']:.2f}/{d[f'{prefix}_fde_m']:.2f}"


def _nll(d: dict) -> str:
    """KDE NLL cell; "-" when absent (single-path CV, results from before the metric)."""
    return f"{d['kde_nll']:.2f}" if "kde_nll" in d else "-"


def _row(name: str, n: object, r: dict) -> str:
    """One table row from a result dict (``model``, ``cv``, optional ``cv_fan``)."""
    m, c, f = r["model"], r["cv"], r.get("cv_fan", {})
    cells = [name, str(n), _pair(m, "min"), _pair(m, "ml"), _nll(m), _pair(c, "min"), "-"]
    return "| " + " | ".join([*cells, _pair(f, "min"), _nll(f)]) + " |"


def _mean_result(results: list[dict]) -> dict:
    """Per method, the mean over scenes of each metric that every scene reports."""
    out = {}
    for method in _METHODS:
        ds = [r.get(method, {}) for r in results]
        keys = [k for k in _MEAN_KEYS if all(k in d for d in ds)]
        out[method] = {k: float(np.mean([d[k] for d in ds])) for k in keys}
    return out


def format_table(results: list[dict]) -> str:
    """Markdown table: per scene, the model's best-of-20, most-likely ADE/FDE and KDE NLL, next to
    CV and the CV fan (best-of-20 and KDE NLL), plus the mean over scenes.

    Results without ``cv_fan`` or ``kde_nll`` (older JSON) show "-" in those cells.
    """
    lines = [
        "| scene | agent-windows | model minADE20/minFDE20 | model most-likely ADE/FDE | model KDE NLL "
        "| CV ADE/FDE | CV KDE NLL | CV-fan minADE20/minFDE20 | CV-fan KDE NLL |",
        "| --- | ---: | --- | --- | ---: | --- | ---: | --- | ---: |",
    ]
    lines += [_row(r["scene"], r["model"]["n"], r) for r in results]
    if results:
        lines.append(_row("mean", "", _mean_result(results)))
    lines.append(
        "Anchors (4-scene mean, best-of-20): CV 0.52/1.13, Social-GAN 0.46/0.91, AgentFormer 0.23/0.38."
    )
    lines.append(
        "KDE NLL: nats per step, Gaussian KDE on the 20 positions (log-density floored at -20); "
        "lower is better; papers fit it on more samples, so compare rows, not with them."
    )
    return "\n".join(lines)
