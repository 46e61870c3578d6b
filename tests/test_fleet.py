"""``prescient fleet replay``: byte-identical to ``replay``, failures recorded, resumable, bad input."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

from prescient.bus import messages as m
from prescient.bus.replayer import iter_messages
from prescient.service.app.cli import main
from prescient.service.app.fleet.cli import failed_exit_code
from prescient.service.app.fleet.compare import bootstrap_ci, regression
from prescient.service.app.fleet.logs import expand_logs
from prescient.service.app.fleet.task import predictions_digest_bytes
from tests.fleet_helpers import ray_processes_of, write_sim_log, write_tiny_service_model, write_tracks_log

pytest.importorskip("ray")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    return write_tiny_service_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with two simulator logs, one imported-style log and one truncated log."""
    d = tmp_path_factory.mktemp("logs")
    write_sim_log(d / "sim_a.mcap", seed=1)
    write_sim_log(d / "sim_b.mcap", seed=2)
    write_tracks_log(d / "tracks.mcap")
    (d / "truncated.mcap").write_bytes((d / "sim_a.mcap").read_bytes()[:3000])
    return d


@pytest.fixture(scope="module")
def fleet_run(model: Path, logs: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One fleet replay of ``logs`` on a local Ray instance with 2 workers (in this process)."""
    out = tmp_path_factory.mktemp("fleet") / "out"
    code = main(["fleet", "replay", str(logs), "--model", str(model), "--out", str(out), "--workers", "2"])
    return {"code": code, "out": out, "orphans": ray_processes_of(os.getpid())}


def _records(out: Path) -> dict[str, dict]:
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return {Path(r["log"]).name: r for r in rows}


def test_fleet_replay_predictions_identical_to_single_machine_replay(fleet_run: dict, logs: Path, model: Path,
                                                                     tmp_path: Path) -> None:  # fmt: skip
    """Each log's predictions from its Ray task equal those of ``prescient replay --out``, byte for byte."""
    recs = _records(fleet_run["out"])
    for name in ("sim_a.mcap", "tracks.mcap"):
        preds = tmp_path / f"{name}.preds.mcap"
        assert main(["replay", str(logs / name), "--model", str(model), "--out", str(preds)]) == 0
        sha = hashlib.sha256()
        for lm in iter_messages(preds, topics=[m.TOPIC_PREDICTIONS]):
            sha.update(predictions_digest_bytes(lm.msg))
        assert recs[name]["predictions_sha256"] == sha.hexdigest()
        assert recs[name]["ticks"] == sum(1 for _ in iter_messages(preds, topics=[m.TOPIC_PREDICTIONS]))


def test_fleet_replay_records_failure_and_scores_the_rest(fleet_run: dict) -> None:
    """The truncated log is failed with its reason; the others are scored with CV beside; exit 101."""
    assert fleet_run["code"] == failed_exit_code(1) == 101
    recs = _records(fleet_run["out"])
    assert recs["truncated.mcap"]["status"] == "failed" and recs["truncated.mcap"]["error"]
    for name in ("sim_a.mcap", "sim_b.mcap", "tracks.mcap"):
        r = recs[name]
        assert r["status"] == "ok" and r["ticks"] > 0 and r["tick_ms"]["p50"] > 0
        cell = r["metrics"]["all"]["1s"]
        assert cell["agents"] > 0
        for meth in ("model", "cv"):
            assert set(cell[meth]) >= {"min_ade", "min_fde", "miss", "brier_min_fde", "ml_ade", "ml_fde"}
    assert recs["tracks.mcap"]["truth"] == "perception.tracks of the log"
    assert recs["sim_a.mcap"]["truth"] == "sim.ground_truth"
    # Constant velocity on cars that move at constant velocity is exact.
    assert recs["tracks.mcap"]["metrics"]["all"]["1s"]["cv"]["min_fde"] < 1e-3
    report = (fleet_run["out"] / "report.md").read_text()
    assert "truncated.mcap" in report and "| all | 1s |" in report
    assert (fleet_run["out"] / "fleet.png").read_bytes()[:4] == b"\x89PNG"


def test_fleet_replay_leaves_no_ray_process(fleet_run: dict) -> None:
    """The local Ray instance is shut down: no process of its session is left."""
    assert fleet_run["orphans"] == []


def test_fleet_replay_rerun_resumes_without_ray_and_diffs_baseline(
    fleet_run: dict, logs: Path, model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A re-run of logs already done starts no Ray at all, and writes the regression against a baseline."""
    from prescient.service.app.fleet import run

    def no_ray(*_a: object) -> None:
        raise AssertionError("Ray started although every log was done")

    monkeypatch.setattr(run, "ray_session", no_ray)
    out = tmp_path / "again"
    shutil.copytree(fleet_run["out"], out)
    (logs / "truncated.mcap").rename(logs / "truncated.bak")  # now only done logs are named
    try:
        args = ["fleet", "replay", *(str(logs / n) for n in ("sim_a.mcap", "sim_b.mcap", "tracks.mcap"))]
        code = main([*args, "--model", str(model), "--out", str(out), "--baseline", str(fleet_run["out"])])
    finally:
        (logs / "truncated.bak").rename(logs / "truncated.mcap")
    assert code == 0
    reg = json.loads((out / "regression.json").read_text())
    assert reg["paired_logs"] == 3 and reg["metrics"] and all(r["change"] == 0 for r in reg["metrics"])
    assert "## Regression against" in (out / "report.md").read_text()


def test_fleet_replay_mismatched_model_one_line_nothing_written(logs: Path, tmp_path: Path, capsys) -> None:
    """A model of another raster spec stops the run before any task: exit 1, no --out."""
    pytest.importorskip("torch")
    from prescient.models.export_tiny import write_tiny_onnx

    wrong, _ = write_tiny_onnx(tmp_path)
    out = tmp_path / "out"
    assert main(["fleet", "replay", str(logs / "sim_a.mcap"), "--model", str(wrong), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error" in err[0] and not out.exists()


def test_fleet_replay_unreachable_address_one_line_nothing_written(
    logs: Path, tmp_path: Path, capsys
) -> None:
    """An --address nobody listens on: exit 1 within seconds, one line, no --out."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    out = tmp_path / "out"
    code = main(["fleet", "replay", str(logs / "sim_a.mcap"), "--no-model", "--out", str(out),
                 "--address", f"127.0.0.1:{port}"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "unreachable" in err[0] and not out.exists()


def test_fleet_replay_pattern_matching_nothing_exits_1(tmp_path: Path, capsys) -> None:
    assert (
        main(["fleet", "replay", str(tmp_path / "*.mcap"), "--no-model", "--out", str(tmp_path / "o")]) == 1
    )
    assert "no logs match" in capsys.readouterr().err


def test_expand_logs_files_folders_globs_once_each(logs: Path) -> None:
    got = expand_logs(
        [str(logs), str(logs / "sim_*.mcap"), str(logs / "tracks.mcap"), str(logs / "absent.mcap")]
    )
    assert [p.name for p in got] == [
        "absent.mcap",
        "sim_a.mcap",
        "sim_b.mcap",
        "tracks.mcap",
        "truncated.mcap",
    ]


def test_failed_exit_code_counts_and_caps() -> None:
    assert [failed_exit_code(n) for n in (0, 1, 7, 25, 1000)] == [0, 101, 107, 125, 125]


def test_bootstrap_ci_is_seeded_and_covers_the_mean() -> None:
    d = np.random.default_rng(3).normal(1.0, 0.5, 40)
    lo, hi = bootstrap_ci(d)
    assert (lo, hi) == bootstrap_ci(d) and lo < d.mean() < hi and lo > 0


def test_regression_worse_log_first_and_verdict() -> None:
    """A model worse on every log gets verdict ``worse``; the log that got worst is listed first."""

    def rec(log: str, fde: float) -> dict:
        vals = {k: fde for k in ("min_ade", "min_fde", "miss", "brier_min_fde", "ml_ade", "ml_fde")}
        return {
            "log": log,
            "status": "ok",
            "metrics": {"all": {"3s": {"agents": 4, "model": vals, "cv": vals}}},
        }

    base = [rec(f"l{i}", 1.0) for i in range(6)]
    cur = [rec(f"l{i}", 1.0 + 0.1 * (i + 1)) for i in range(6)]
    reg = regression(cur, base)
    assert reg["paired_logs"] == 6 and reg["worst_logs"][0]["log"] == "l5"
    assert {r["verdict"] for r in reg["metrics"]} == {"worse"}


def test_fleet_generate_same_shards_as_data_generate(tmp_path: Path) -> None:
    """``fleet generate`` (Ray tasks) writes the same shards and index as ``data generate``, byte for byte."""
    args = ["--maps", "intersection", "--seeds", "3", "--duration", "11", "--agents", "3", "--stride", "10",
            "--no-lidar", "--branches", "keep"]  # fmt: skip
    assert main(["data", "generate", "--out", str(tmp_path / "one"), "--workers", "1", *args]) == 0
    assert main(["fleet", "generate", "--out", str(tmp_path / "fleet"), "--workers", "1", *args]) == 0
    one = {p.name: p.read_bytes() for p in (tmp_path / "one").iterdir()}
    fleet = {p.name: p.read_bytes() for p in (tmp_path / "fleet").iterdir()}
    assert sorted(one) == ["index.json", "intersection_s0003.npz"] and one == fleet
