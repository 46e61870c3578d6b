"""Shared helpers for benchmarks: budgets, machine description, JSON results.

Percentiles come from :func:`prescient.service.stats.percentiles_ms`.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tomllib
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
BUDGETS_PATH = Path(__file__).resolve().parent / "budgets.toml"
MISS_PREFIX = "BUDGET MISSED: "


def budgets() -> dict[str, Any]:
    """Every budget a benchmark checks, from ``benchmarks/budgets.toml`` (the only copy)."""
    return tomllib.loads(BUDGETS_PATH.read_text())


def report_misses(misses: list[str], check: bool) -> int:
    """Print each missed budget as ``BUDGET MISSED: ...``; exit status 1 if ``check`` and any missed.

    ``prescient bench --check all`` collects these lines from every benchmark it runs.
    """
    for line in misses:
        print(f"{MISS_PREFIX}{line}", flush=True)
    if not misses:
        print("every budget held", flush=True)
    return 1 if (check and misses) else 0


def machine() -> dict[str, Any]:
    """What the numbers were measured on (compare same-machine runs only)."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": commit(),
    }


def commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=5,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=5,
        )
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def write_json(name: str, payload: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2))
    return path


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)
