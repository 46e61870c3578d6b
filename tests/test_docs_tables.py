"""README tables agree with the committed result files under benchmarks/measured/ (no benchmark runs)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from prescient.benchmarks import table_format, tables


def test_generated_tables_match_their_result_files() -> None:
    """Every generated block equals its rendering (regenerate: python -m prescient.benchmarks.tables)."""
    assert tables.stale_blocks() == []


def test_every_result_file_is_valid_and_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each file in benchmarks/measured/ has commit, date, machine, command and figures, and a table uses it."""
    used: set[str] = set()
    real_load = tables.load

    def spy(name: str) -> dict:
        used.add(name)
        return real_load(name)

    monkeypatch.setattr(tables, "load", spy)
    monkeypatch.setattr(table_format, "load", spy)
    for render in tables.BLOCKS.values():
        render()
    files = {p.stem for p in tables.MEASURED_DIR.glob("*.json")}
    assert files == used, f"result files no table shows: {files - used}; missing files: {used - files}"
    for name in files:
        r = real_load(name)
        assert r["command"] and r["figures"], name


def test_a_changed_figure_names_its_stale_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Editing one figure of a result file makes exactly the blocks that show it stale."""
    measured = tmp_path / "measured"
    shutil.copytree(tables.MEASURED_DIR, measured)
    path = measured / "conditional.json"
    r = json.loads(path.read_text())
    r["figures"]["results"][1]["p99"] = 123.456
    path.write_text(json.dumps(r))
    monkeypatch.setattr(table_format, "MEASURED_DIR", measured)
    assert tables.stale_blocks() == ["README.md: measured", "benchmarks/README.md: conditional"]


def test_a_result_file_without_a_commit_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A figure with no commit that printed it cannot enter a table."""
    r = json.loads((tables.MEASURED_DIR / "demo.json").read_text())
    r["commit"] = None
    (tmp_path / "demo.json").write_text(json.dumps(r))
    monkeypatch.setattr(table_format, "MEASURED_DIR", tmp_path)
    with pytest.raises(tables.ResultFileError, match="commit"):
        tables.load("demo")


def test_render_needs_its_markers() -> None:
    """A README that lost a block's markers is an error, not a silent skip."""
    with pytest.raises(tables.ResultFileError, match="generated: measured"):
        tables.render("# no markers here\n", tables.README)
