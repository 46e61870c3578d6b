"""`prescient bench --check all` and the budgets file, without running a benchmark."""

from __future__ import annotations

from collections.abc import Iterator

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
    outputs["prescient.benchmarks.bench_raster"] = (["p50 3.1", "BUDGET MISSED: raster p99 5.30 ms > 5 ms"], 1)
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
