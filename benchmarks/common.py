"""Shared helpers for benchmarks: budgets, machine description, where results go, JSON results.

Percentiles come from :func:`prescient.service.stats.percentiles_ms`.

Results are never written next to the code (site-packages may be read-only and is not the
user's): a benchmark writes into ``--out DIR`` when given, else into ``user_data_dir()/bench``
(``$PRESCIENT_HOME/bench`` when that is set), in a checkout and in an installed wheel alike.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from prescient.service.app.paths import PACKAGE_ROOT, user_data_dir

MISS_PREFIX = "BUDGET MISSED: "


def budgets() -> dict[str, Any]:
    """Every budget a benchmark checks, from ``benchmarks/budgets.toml`` (the only copy; package data)."""
    return tomllib.loads(resources.files("prescient.benchmarks").joinpath("budgets.toml").read_text())


def default_results_dir() -> Path:
    """``user_data_dir()/bench``: where results go without ``--out`` (not created here)."""
    return user_data_dir() / "bench"


def results_dir(out: Path | str | None = None) -> Path:
    """The folder a benchmark writes into: ``out`` when given, else :func:`default_results_dir`; created."""
    path = Path(out) if out is not None else default_results_dir()
    path.mkdir(parents=True, exist_ok=True)
    return path


def result_path(out: Path | str | None, filename: str) -> Path:
    """Where one result file goes: ``results_dir(out) / filename``; its folder is created.

    An ``out`` ending in ``.json`` names the file itself (the older ``--out FILE`` form).
    """
    if out is not None and Path(out).suffix == ".json":
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path
    return results_dir(out) / filename


def add_out_argument(ap: argparse.ArgumentParser) -> None:
    """``--out DIR``, the same on every benchmark."""
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"folder for the results (default {default_results_dir()}, i.e. $PRESCIENT_HOME/bench "
        "or the user data folder)",
    )


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
    """The checkout's short commit (``-dirty`` with local changes); for an installed wheel, its version."""
    if not (PACKAGE_ROOT / ".git").exists():  # an installed package: no repository around it
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"prescient {version('prescient')} (installed)"
        except PackageNotFoundError:
            return "unknown"
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=PACKAGE_ROOT,
            timeout=5,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"],
            capture_output=True,
            text=True,
            cwd=PACKAGE_ROOT,
            timeout=5,
        )
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def write_json(name: str, payload: dict[str, Any], out: Path | str | None = None) -> Path:
    """``<results_dir(out)>/<name>.json`` with the machine description first; returns the path."""
    path = results_dir(out) / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2))
    return path


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)
