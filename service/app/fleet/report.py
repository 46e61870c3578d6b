"""Outputs of ``prescient fleet replay``: ``results.jsonl`` (+ ``results.parquet``), ``report.md``, ``fleet.png``.

Every file is written atomically (:func:`~prescient.service.app.fleet.store.write_atomic`), after
all logs are done, so ``DIR`` never holds a half-written result.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from prescient.service.app.fleet.aggregate import long_rows, longest_horizon, ordered, pooled, scored
from prescient.service.app.fleet.compare import regression, regression_markdown
from prescient.service.app.fleet.store import write_atomic, write_json_atomic, write_jsonl_atomic
from prescient.service.app.fleet.task import STATUS_OK

COLUMNS = (("min_ade", "minADE6"), ("min_fde", "minFDE6"), ("miss", "miss@2m"), ("brier_min_fde", "brier-minFDE"),
           ("ml_ade", "ML ADE"), ("ml_fde", "ML FDE"))  # fmt: skip
PNG_NAME = "fleet.png"


def write_outputs(
    records: list[dict[str, Any]],
    out_dir: Path,
    baseline: list[dict[str, Any]] | None,
    baseline_dir: str = "",
) -> dict[str, Any]:
    """Write every output file of a run; returns ``{"pooled", "regression"}`` for the caller's summary."""
    write_jsonl_atomic(out_dir / "results.jsonl", records)
    _write_parquet(records, out_dir / "results.parquet")
    table = pooled(records)
    reg = regression(records, baseline) if baseline is not None else None
    if reg is not None:
        write_json_atomic(out_dir / "regression.json", reg)
    write_atomic(out_dir / PNG_NAME, _png(records, table))
    md = report_markdown(records, table, reg, baseline_dir)
    write_atomic(out_dir / "report.md", md.encode())
    return {"pooled": table, "regression": reg}


def _write_parquet(records: list[dict[str, Any]], path: Path) -> None:
    """``results.parquet`` (one row per log, class, horizon, method, metric) when pyarrow is installed."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ModuleNotFoundError:
        return
    rows = long_rows(records)
    if not rows:
        return
    buf = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    write_atomic(path, buf.getvalue().to_pybytes())


def _cell(cell: dict[str, Any], key: str) -> str:
    model, cv = cell["model"].get(key), cell["cv"].get(key)
    f = "{:.1%}" if key == "miss" else "{:.2f}"
    return f"{f.format(model) if model is not None else '-'} ({f.format(cv) if cv is not None else '-'})"


def report_markdown(
    records: list[dict[str, Any]], table: dict[str, Any], reg: dict[str, Any] | None, baseline_dir: str
) -> str:
    """The whole ``report.md``: summary, pooled table, per-log table, failures, regression."""
    ok = [r for r in records if r.get("status") == STATUS_OK]
    failed = [r for r in records if r.get("status") != STATUS_OK]
    ticks = sum(int(r.get("ticks", 0)) for r in records)
    degraded = sum(int(r.get("degraded_ticks", 0)) for r in records)
    models = sorted({str(r.get("model")) for r in scored(records)})
    lines = [
        "# Fleet replay",
        "",
        f"{len(records)} logs: {len(ok)} ok, {len(failed)} damaged or failed; model {', '.join(models) or '-'}; "
        f"{ticks} ticks, {degraded} degraded.",
        "",
        "## All logs pooled: model (constant velocity)",
        "",
        "Means over every scored agent; an agent counts at a horizon when its truth is known that far.",
        "",
        "| class | horizon | agents | logs | " + " | ".join(c[1] for c in COLUMNS) + " |",
        "|---|---|---|---|" + "---|" * len(COLUMNS),
    ]
    for cls, h, cell in ordered(table):
        lines.append(
            f"| {cls} | {h} | {cell['agents']} | {cell['logs']} | "
            + " | ".join(_cell(cell, k) for k, _ in COLUMNS)
            + " |"
        )
    lines += ["", "## Per log", "", "| log | status | ticks | degraded | ms/tick p50 / p99 | minFDE6 model (cv) | wall s |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in records:
        longest = longest_horizon(r)
        fde = f"{longest}: {_cell(r['metrics']['all'][longest], 'min_fde')}" if longest else "-"
        tm = r.get("tick_ms", {})
        ms = f"{tm['p50']:.1f} / {tm['p99']:.1f}" if tm else "-"
        lines.append(f"| `{Path(r['log']).name}` | {r['status']} | {r.get('ticks', 0)} | {r.get('degraded_ticks', 0)} "
                     f"| {ms} | {fde} | {r.get('wall_s', 0):.1f} |")  # fmt: skip
    if failed:
        lines += ["", "## Damaged or failed logs", ""] + [
            f"* `{r['log']}`: {r['status']}: {r.get('error', '')}" for r in failed
        ]
    lines.append("")
    if reg is not None:
        lines += regression_markdown(reg, baseline_dir)
    return "\n".join(lines)


def _png(records: list[dict[str, Any]], table: dict[str, Any]) -> bytes:
    """Left: pooled minFDE6 by horizon, model and CV. Right: each log's minFDE6 at its longest horizon."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4))
    rows = [(h, c) for cls, h, c in ordered(table) if cls == "all"]
    xs = [float(h[:-1]) for h, _ in rows]
    for meth, style in (("model", "o-"), ("cv", "s--")):
        ax0.plot(xs, [c[meth].get("min_fde", np.nan) for _, c in rows], style, label=meth)
    ax0.set(xlabel="horizon (s)", ylabel="minFDE6 (m)", title="all logs pooled")
    ax0.legend()
    per_log = [
        (Path(r["log"]).stem, r["metrics"]["all"][h]) for r in scored(records) if (h := longest_horizon(r))
    ]
    y = np.arange(len(per_log))
    ax1.barh(y - 0.2, [c["model"]["min_fde"] for _, c in per_log], 0.4, label="model")
    ax1.barh(y + 0.2, [c["cv"]["min_fde"] for _, c in per_log], 0.4, label="cv")
    ax1.set_yticks(y, [n[:24] for n, _ in per_log], fontsize=7)
    ax1.set(xlabel="minFDE6 at the longest horizon (m)", title="per log")
    ax1.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()
