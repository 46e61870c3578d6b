"""README tables of the latency work: end to end before/after, late frames, inference variants.

Each reads one or two result files under ``benchmarks/measured/`` (see
:mod:`prescient.benchmarks.tables` for the file format and the generator that calls these).
``e2e.json`` / ``e2e_before.json`` (``prescient bench e2e``): per point ``processing_ms`` and
``data_age_ms`` (p50, p95, p99, max), ``stages_p50_ms`` / ``stages_p99_ms``, ticks, ticks over
100 ms and degraded ticks; optionally ``agents_predicted_p50`` and ``from_model_share`` (the share
of predicted agents the model predicted, from each prediction's ``agent_source``).
"""

from __future__ import annotations

from typing import Any

from prescient.benchmarks import table_format as t
from prescient.benchmarks.common import budgets


def _points(r: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    return {(p["scenario"], p["agents"]): p for p in r["figures"]["points"]}


def e2e_rows(r: dict[str, Any]) -> list[list[str]]:
    """One row per point: processing and data age percentiles, misses, stage p50s."""
    rows = []
    for p in r["figures"]["points"]:
        e, a, s = p["processing_ms"], p["data_age_ms"], p["stages_p50_ms"]
        rows.append(
            [
                p["scenario"], p["agents"], p["ticks"],
                *(f"{e[k]:.1f}" for k in ("p50", "p95", "p99", "max")),
                *(f"{a[k]:.1f}" for k in ("p50", "p99")),
                p["deadline_misses"], p["degraded_ticks"],
                *(f"{s[k]:.1f}" if k in s else "-" for k in ("ingest", "track", "raster", "infer")),
                f"{p['agents_predicted_p50']:.0f}" if "agents_predicted_p50" in p else "-",
                f"{100 * p['from_model_share']:.1f} %" if "from_model_share" in p else "-",
            ]
        )  # fmt: skip
    return rows


E2E_HEAD = [
    "scenario", "agents", "ticks", "processing p50", "p95", "p99", "max", "data age p50", "p99",
    ">100 ms", "degraded", "ingest p50", "track p50", "raster p50", "infer p50",
    "agents predicted p50", "from the model",
]  # fmt: skip


def e2e_table() -> str:
    """benchmarks/README.md: every point of the latest run, then the stage p99s held to budgets."""
    r, b = t.load("e2e"), budgets()
    text = (
        t.provenance(r, "measured/")
        + f"; provider {r['provider']}, model {r['model']}, all times in ms:\n\n"
        + t.md_table(E2E_HEAD, e2e_rows(r))
    )
    checked = []
    for p in r["figures"]["points"]:
        if p["agents"] != b["e2e"]["budget_agents"]:
            continue
        for stage, v in p["stages_p99_ms"].items():
            limit = b["stages"].get(f"{stage}_ms")
            if limit is not None:
                verdict = "over" if v > limit else "within"
                checked.append(f"{p['scenario']} {stage} p99 {v:.1f} ms ({verdict} {limit:g} ms)")
    if checked:
        text += f"\n\nStage p99 at {b['e2e']['budget_agents']} agents: " + "; ".join(checked) + "."
    return text


def e2e_before_after_table() -> str:
    """README.md and benchmarks/README.md: the same points before and after, one machine."""
    before, after = t.load("e2e_before"), t.load("e2e")
    pb, pa = _points(before), _points(after)
    rows = []
    for key in sorted(set(pb) & set(pa), key=lambda k: (k[1], k[0])):
        x, y = pb[key], pa[key]
        rows.append(
            [
                key[0], key[1],
                f"{x['processing_ms']['p50']:.1f} -> **{y['processing_ms']['p50']:.1f}**",
                f"{x['processing_ms']['p99']:.1f} -> **{y['processing_ms']['p99']:.1f}**",
                f"{x['data_age_ms']['p50']:.1f} -> **{y['data_age_ms']['p50']:.1f}**",
                f"{x['data_age_ms']['p99']:.1f} -> **{y['data_age_ms']['p99']:.1f}**",
                f"{x['deadline_misses']} -> {y['deadline_misses']}",
                f"{x['degraded_ticks']} -> {y['degraded_ticks']}",
                f"{x['stages_p50_ms']['infer']:.1f} -> {y['stages_p50_ms']['infer']:.1f}",
            ]
        )  # fmt: skip
    head = [
        "scenario", "agents", "processing p50 ms", "processing p99 ms", "data age p50 ms",
        "data age p99 ms", ">100 ms", "degraded", "infer p50 ms",
    ]  # fmt: skip
    return (
        f"Before: {t.provenance(before, 'benchmarks/measured/')}.\n"
        f"After: {t.provenance(after, 'benchmarks/measured/')}.\n\n" + t.md_table(head, rows)
    )


def reorder_table() -> str:
    """benchmarks/README.md: `prescient bench reorder`."""
    r = t.load("reorder")
    rows = []
    for scenario, by_design in r["figures"]["results"].items():
        for design, x in by_design.items():
            rows.append(
                [
                    scenario, design, f"{x['mota']:.3f}", f"{x['idf1']:.3f}", x["id_switches"],
                    f"{x['vehicle_vel_rmse_mps']:.3f}", x["late_frames"],
                    f"{x['data_age_ms']['p50']:.0f}", f"{x['data_age_ms']['p99']:.0f}",
                    f"{x['tick_cpu_ms']['p50']:.1f}", f"{x['tick_cpu_ms']['p99']:.1f}",
                    f"{x['rebuilds_per_tick']:.1f}",
                ]
            )  # fmt: skip
    head = [
        "scenario", "design", "MOTA", "IDF1", "ID sw", "vehicle vel RMSE m/s", "late frames",
        "data age p50 ms", "p99", "tracker CPU/tick p50 ms", "p99", "rebuilds/tick",
    ]  # fmt: skip
    return t.provenance(r, "measured/") + ":\n\n" + t.md_table(head, rows)


def infer_table() -> str:
    """benchmarks/README.md: `prescient bench infer`, variants side by side."""
    r = t.load("infer")
    rows = [
        [
            v["variant"],
            v.get("precision", "-"),
            *(f"{v[k]:.1f}" for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")),
        ]
        for v in r["figures"]["variants"]
    ]
    f = r["figures"]
    return (
        t.provenance(r, "measured/")
        + f"; {f['agents']} agents, {f['inputs']}, ms:\n\n"
        + t.md_table(["variant", "precision", "p50", "p95", "p99", "max"], rows)
    )
