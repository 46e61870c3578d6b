"""`prescient bench --check all` and the budgets file, without running a benchmark."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from prescient.benchmarks import cli, tables
from prescient.benchmarks.common import budgets


def _fake(outputs: dict[str, tuple[list[str], int]]):
    def run(cmd: list[str]) -> Iterator[str | int]:
        module = cmd[2]
        lines, rc = outputs[module]
        yield from (line + "\n" for line in lines)
        yield rc

    return run


def test_check_all_names_every_miss(capsys) -> None:
    """Misses are collected from each benchmark's BUDGET MISSED lines; a silent failure is named too."""
    outputs = {cli.BENCHES[name][0]: (["every budget held"], 0) for name in cli.QUICK}
    outputs["prescient.benchmarks.bench_raster"] = (
        ["p50 3.1", "BUDGET MISSED: raster p99 5.30 ms > 5 ms"],
        1,
    )
    outputs["prescient.benchmarks.bench_recorder"] = (["Traceback ..."], 2)
    assert cli.check_all(run=_fake(outputs)) == 1
    out = capsys.readouterr().out
    summary = out[out.index("prescient bench --check all:") :]
    assert "2 with a miss" in summary
    assert "raster p99 5.30 ms > 5 ms" in summary
    assert "exited with 2 without naming a budget" in summary
    assert cli.check_all(["sim"], run=_fake(outputs)) == 0


def test_quick_runs_pass_check_and_cover_every_budget() -> None:
    """Every table of budgets.toml is checked by a benchmark that --check all runs."""
    assert set(cli.QUICK) <= set(cli.BENCHES)
    assert all("--check" not in args for args in cli.QUICK.values())
    for section, values in budgets().items():
        for key in values:
            by = tables.CHECKED_BY.get(f"{section}.{key}", tables.CHECKED_BY.get(section))
            assert by, f"{section}.{key} is checked by no benchmark"
            assert any(name in by for name in cli.QUICK), (section, key, by)


def test_stage_budgets_fit_the_tick() -> None:
    """The per-stage budgets add up to less than the end-to-end budget."""
    b = budgets()
    assert sum(b["stages"].values()) < b["e2e"]["p99_ms"]


@pytest.fixture
def restore_environ() -> Iterator[None]:
    """Importing a benchmark may set thread-count variables (bench_raster): keep them out of other tests."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.mark.parametrize("name", sorted(cli.BENCHES))
def test_every_bench_takes_its_arguments_through_the_hub(
    name: str, capsys: pytest.CaptureFixture[str], restore_environ: None
) -> None:
    """``prescient bench NAME --help`` reaches NAME's own parser and exits 0 (cheap: nothing runs)."""
    from prescient.service.app.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["bench", name, "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: prescient bench {name}"), out[:300]
    assert "--out DIR" in out, f"bench {name} has no --out DIR"


def test_hub_out_goes_before_the_benchmarks_own_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    """``prescient bench --out DIR NAME ARGS`` hands NAME ``--out DIR ARGS`` (its own --out would win)."""
    from prescient.benchmarks import bench_sim
    from prescient.service.app.cli import main

    seen: list[list[str]] = []
    monkeypatch.setattr(bench_sim, "main", lambda argv: seen.append(argv) or 0)
    assert main(["bench", "--out", "/x", "sim", "--agents", "5"]) == 0
    assert main(["bench", "sim", "--duration", "1"]) == 0
    assert seen == [["--out", "/x", "--agents", "5"], ["--duration", "1"]]


def test_results_go_to_out_else_the_user_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never next to the code: ``--out DIR``, else ``$PRESCIENT_HOME/bench``, created on demand."""
    from prescient.benchmarks import common

    monkeypatch.setenv("PRESCIENT_HOME", str(tmp_path / "home"))
    assert common.results_dir() == tmp_path / "home" / "bench" and (tmp_path / "home" / "bench").is_dir()
    assert common.results_dir(tmp_path / "o") == tmp_path / "o"
    assert common.result_path(tmp_path / "o", "x.json") == tmp_path / "o" / "x.json"
    assert common.result_path(tmp_path / "f" / "mine.json", "x.json") == tmp_path / "f" / "mine.json"
    assert common.write_json("t", {"a": 1}).parent == tmp_path / "home" / "bench"
    package = Path(common.__file__).resolve().parent
    bad = [p.name for p in package.rglob("*.py") if re.search(r'/\s*"results"', p.read_text())]
    assert not bad, f"results next to the code in {bad}"


def test_model_bench_inputs_need_no_torch() -> None:
    """The onnxruntime worker builds its inputs without torch (an install with only ``cpu``)."""
    code = (
        "import sys; from prescient.benchmarks.bench_model import _feed; "
        "from prescient.service.model_io.config import ModelConfig; "
        "f = _feed(ModelConfig(), 100, seed=3); assert f['agent_valid'].sum() == 100; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


def test_quick_sim_bench_through_the_console_writes_to_prescient_home(tmp_path: Path) -> None:
    """One real run, the cheapest (a few seconds): exit 0, no traceback, JSON under $PRESCIENT_HOME/bench."""
    env = dict(os.environ, PRESCIENT_HOME=str(tmp_path / "home"))
    proc = subprocess.run(
        [sys.executable, "-m", "prescient.service", "bench", "sim", "--agents", "10", "--duration", "0.5"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Traceback" not in out, out[-3000:]
    path = tmp_path / "home" / "bench" / "bench_sim.json"
    assert f"wrote {path}" in proc.stdout, out[-3000:]
    assert json.loads(path.read_text())["runs"][0]["agents"] == 10


def test_check_all_passes_out_on(tmp_path: Path) -> None:
    """``prescient bench --out DIR --check all``: every quick run writes into DIR (reliability: a fresh run dir)."""
    cmds: list[list[str]] = []

    def run(cmd: list[str]) -> Iterator[str | int]:
        cmds.append(cmd)
        yield 0

    assert cli.check_all(["sim", "reliability"], run=run, out=tmp_path) == 0
    assert cmds[0][-3:] == ["--out", str(tmp_path), "--check"]
    assert Path(cmds[1][-2]).parent == tmp_path / "reliability"


def test_every_budget_is_read_by_a_benchmark_that_checks_it() -> None:
    """Each key of budgets.toml is named in the source of a benchmark CHECKED_BY lists for it
    (or that benchmark iterates the key's table): no budget sits in the file unread."""
    import importlib
    import inspect

    for section, values in budgets().items():
        by = tables.CHECKED_BY.get(section, "")
        for key in values:
            names = tables.CHECKED_BY.get(f"{section}.{key}", by)
            benches = [part.strip().split()[0] for part in re.sub(r"\([^)]*\)", "", names).split(",")]
            sources = [inspect.getsource(importlib.import_module(cli.BENCHES[n][0])) for n in benches]
            read = [
                src
                for src in sources
                if f'"{key}"' in src or f"'{key}'" in src or f'budget["{section}"].items()' in src
            ]
            assert read, f"{section}.{key}: not read by {benches}"


def test_e2e_check_holds_both_points_to_processing_and_data_age() -> None:
    """At budget_agents and max_agents, day or night: processing p99, data age p99, degraded."""
    from prescient.benchmarks.bench_e2e import check

    b = budgets()
    e = b["e2e"]

    def point(agents: int, p99: float, age: float, degraded: int = 0) -> dict:
        return {
            "scenario": "night", "agents": agents, "ticks": 600, "e2e": {"p99": p99},
            "data_age": {"p99": age}, "deadline_miss_rate": 0.0, "degraded_ticks": degraded,
            "stages": {},
        }  # fmt: skip

    ok = [point(e["budget_agents"], e["p99_ms"], e["data_age_p99_ms"]),
          point(e["max_agents"], e["p99_ms_at_max_agents"], e["data_age_p99_ms_at_max_agents"])]  # fmt: skip
    assert check(ok, b) == []
    bad = [point(e["budget_agents"], e["p99_ms"] + 1, e["data_age_p99_ms"]),
           point(e["max_agents"], e["p99_ms_at_max_agents"], e["data_age_p99_ms_at_max_agents"] + 1, degraded=2),
           point(e["budget_agents"] + 1, 1e9, 1e9)]  # fmt: skip  # no budget at this count
    misses = check(bad, b)
    assert len(misses) == 3, misses
    assert "processing p99" in misses[0] and "data age p99" in misses[1] and "degraded" in misses[2]
