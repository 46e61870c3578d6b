"""Fleet tables: per-log records to one table per class and horizon (agents-weighted means)."""

from __future__ import annotations

from typing import Any

from prescient.service.app.fleet.scoring import METHODS, REPORTED
from prescient.service.app.fleet.task import STATUS_FAILED

CLASS_ORDER = ("all", "vehicle", "pedestrian", "cyclist", "other")
HORIZON_ORDER = ("1s", "3s", "5s", "8s")


def scored(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records that hold metrics (not failed)."""
    return [r for r in records if r.get("status") != STATUS_FAILED and r.get("metrics")]


def pooled(records: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{class: {horizon: {"agents", "logs", "model": {metric: mean}, "cv": {...}}}}`` over all logs.

    Each log's means are weighted by its agents, so the result is the mean over every scored
    agent of every log (what one big replay would give).
    """
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for rec in scored(records):
        for cls, hz in rec["metrics"].items():
            for h, cell in hz.items():
                n = int(cell["agents"])
                acc = out.setdefault(cls, {}).setdefault(
                    h, {"agents": 0, "logs": 0, **{k: {} for k in METHODS}}
                )
                acc["agents"] += n
                acc["logs"] += 1
                for meth in METHODS:
                    for k in REPORTED:
                        v = cell[meth].get(k)
                        if v is not None:
                            acc[meth][k] = acc[meth].get(k, 0.0) + n * float(v)
    for hz in out.values():
        for acc in hz.values():
            for meth in METHODS:
                acc[meth] = {k: s / acc["agents"] for k, s in acc[meth].items()} if acc["agents"] else {}
    return out


def ordered(table: dict[str, dict[str, Any]]) -> list[tuple[str, str, Any]]:
    """``(class, horizon, cell)`` rows in the report's order (all first, horizons ascending)."""
    rows = []
    for cls in sorted(table, key=lambda c: (CLASS_ORDER.index(c) if c in CLASS_ORDER else 99, c)):
        for h in sorted(table[cls], key=lambda h: float(h.rstrip("s"))):
            rows.append((cls, h, table[cls][h]))
    return rows


def longest_horizon(rec: dict[str, Any], cls: str = "all") -> str | None:
    """The longest horizon scored for ``cls`` in one record, or None."""
    hz = rec.get("metrics", {}).get(cls, {})
    return max(hz, key=lambda h: float(h.rstrip("s"))) if hz else None


def long_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A flat table (one row per log, class, horizon, method, metric) for ``results.parquet``."""
    rows = []
    for rec in scored(records):
        for cls, hz in rec["metrics"].items():
            for h, cell in hz.items():
                for meth in METHODS:
                    for k in REPORTED:
                        rows.append({
                            "log": rec["log"], "key": rec["key"], "status": rec["status"], "class": cls,
                            "horizon": h, "agents": int(cell["agents"]), "method": meth, "metric": k,
                            "value": cell[meth].get(k),
                        })  # fmt: skip
    return rows
