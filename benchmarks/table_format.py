"""Reading result files and formatting tables for the generated README blocks.

A result file is ``benchmarks/measured/<name>.json`` (keys in :data:`REQUIRED_KEYS`); see
:mod:`prescient.benchmarks.tables` for the generator.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MEASURED_DIR = REPO / "benchmarks" / "measured"
README = REPO / "README.md"
BENCH_README = REPO / "benchmarks" / "README.md"
REQUIRED_KEYS = ("name", "command", "commit", "date", "machine", "source", "figures")


class ResultFileError(ValueError):
    """A result file is missing a key, or names a commit or machine in the wrong form."""


def load(name: str) -> dict[str, Any]:
    """``benchmarks/measured/<name>.json``, checked for the keys every result file carries."""
    path = MEASURED_DIR / f"{name}.json"
    r = json.loads(path.read_text())
    missing = [k for k in REQUIRED_KEYS if k not in r]
    if missing:
        raise ResultFileError(f"{path.name}: missing {missing}")
    if r["name"] != name:
        raise ResultFileError(f"{path.name}: name {r['name']!r} is not the file's name")
    if not (isinstance(r["commit"], str) and re.fullmatch(r"[0-9a-f]{7,40}", r["commit"])):
        raise ResultFileError(f"{path.name}: commit {r['commit']!r} is not an abbreviated git hash")
    if r["date"] is not None and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", r["date"]):
        raise ResultFileError(f"{path.name}: date {r['date']!r} is not YYYY-MM-DD (or null: not recorded)")
    if not {"cpu", "cores"} <= set(r["machine"]):
        raise ResultFileError(f"{path.name}: machine lacks cpu or cores (null: not recorded)")
    return r


def machine_text(r: dict[str, Any]) -> str:
    """``AMD EPYC x2``, or ``machine not recorded``."""
    m = r["machine"]
    if not m.get("cpu"):
        return "machine not recorded"
    return f"{m['cpu']} x{m['cores']}"


def provenance(r: dict[str, Any], link_dir: str) -> str:
    """One line: the command, commit, date and machine, and a link to the result file."""
    date = r["date"] or "date not recorded"
    return (
        f"`{r['command']}` at commit `{r['commit']}`, {date}, {machine_text(r)} "
        f"([{r['name']}.json]({link_dir}{r['name']}.json))"
    )


def md_table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _f(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def _lo_hi(values: list[float], fmt: str) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:{fmt}}-{hi:{fmt}}" if format(lo, fmt) != format(hi, fmt) else format(lo, fmt)


# --- README.md ------------------------------------------------------------------------------------
