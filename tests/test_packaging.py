"""Packaging: the five top-level folders install as prescient.* and nothing imports them by their folder name."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOTS = ("bus", "sim_sensors", "service", "models", "benchmarks")


def test_every_package_folder_is_in_the_wheel() -> None:
    """pyproject lists every folder with an __init__.py (a missing one would be absent from the wheel
    while the editable install still imports it)."""
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert cfg["package-dir"] == {f"prescient.{r}": r for r in ROOTS}
    on_disk = {
        "prescient." + ".".join(p.parent.relative_to(REPO).parts) for r in ROOTS for p in (REPO / r).rglob("__init__.py")
    }
    assert sorted(cfg["packages"]) == sorted(on_disk)


def test_mypy_links_point_at_the_folders() -> None:
    for r in ROOTS:
        link = REPO / ".typeroot" / "prescient" / r
        assert link.is_symlink() and link.resolve() == (REPO / r).resolve(), link


def test_no_import_by_folder_name() -> None:
    """``import bus`` would still work from the repository root (cwd on sys.path) and load a second copy."""
    bad = []
    for r in (*ROOTS, "tests"):
        for path in (REPO / r).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                bad += [f"{path.relative_to(REPO)}:{node.lineno}: {n}" for n in names if n.split(".")[0] in ROOTS]
    assert not bad, bad
