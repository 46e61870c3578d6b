"""Ordinary command-line mistakes: one line on stderr, a non-zero exit, never a traceback or a false success.

Each row of ``CASES`` runs ``prescient ARGV`` in-process (``prescient.service.app.cli.main``) and checks
the exit status (2: the parser refused an argument before any work; 1: the command could not do its
job), that stderr is exactly one line starting with ``prescient ``, that nothing says Traceback, that
the input log is untouched and that no output was created. ``up`` interrupted by SIGINT runs as a
real process: it ends normally, with its run directory complete, and exits 130.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from prescient.bus import messages as m
from prescient.bus.config import ENV_BUS, BusConfig
from prescient.bus.logfile import LogWriter
from prescient.bus.transport import Subscriber
from prescient.service.app.cli import main
from prescient.service.raster.scenes import grid_map, make_tracks

REPO = Path(__file__).resolve().parents[1]


def _write_log(path: Path) -> None:
    """A small real log: a map, then 30 ego states and tracks of two cars, 100 ms apart (61 messages)."""
    with LogWriter(path) as w:
        w.write(grid_map())
        for i in range(30):
            t_ns = 1_000_000_000 + i * 100_000_000
            w.write(
                m.empty(
                    m.EgoState, m.TOPIC_EGO, stamp_ns=t_ns, pose=np.array([80.0, 80.0, 0.0]),
                    velocity_mps=np.array([5.0, 0.0], np.float32),
                    size_lwh_m=np.array([4.8, 2.0, 1.6], np.float32),
                )
            )  # fmt: skip
            w.write(
                make_tracks(
                    np.array([[75.0, 80.0], [85.0, 82.0]]), np.zeros(2), np.tile([4.5, 1.9], (2, 1)),
                    np.full(2, int(m.AgentClass.CAR)), np.tile([5.0, 0.0], (2, 1)),
                    ego_pose=(80.0, 80.0, 0.0), stamp_ns=t_ns,
                )
            )  # fmt: skip


# Placeholders in the rows below: {log} a small real log; {missing} a path that does not exist;
# {dir} an existing folder; {file} a regular file; {ro} a folder nobody may write in (for root,
# whom chmod does not stop, a regular file: writing under it fails with NotADirectoryError);
# {avdir} a folder with one (empty) log folder in it; {out} an output that must not appear.
CASES: list[tuple[str, str, int | tuple[int, ...]]] = [
    # log export-foxglove
    ("export_out_is_dir", "log export-foxglove {log} {dir}", 2),
    ("export_out_unwritable", "log export-foxglove {log} {ro}/fox.mcap", 2),
    ("export_out_under_file", "log export-foxglove {log} {file}/fox.mcap", 2),
    ("export_missing_log", "log export-foxglove {missing} {out}", 1),
    ("export_onto_its_log", "log export-foxglove {log} {log}", 1),
    # log info / replay
    ("info_missing_log", "log info {missing}", 1),
    ("info_log_is_dir", "log info {dir}", 1),
    ("log_replay_missing_log", "log replay {missing}", 1),
    ("log_replay_negative_rate", "log replay {log} --rate -1", 2),
    ("log_replay_zero_rate", "log replay {log} --rate 0", 2),
    ("log_replay_nan_rate", "log replay {log} --rate nan", 2),
    ("log_replay_negative_wait", "log replay {log} --wait-s -1", 2),
    ("log_replay_end_before_start", "log replay {log} --offline --start 3 --end 1", 1),
    ("log_replay_start_past_end", "log replay {log} --offline --start 50", 1),
    ("log_replay_unknown_topic", "log replay {log} --offline --topics nothere.", 1),
    # replay (the service offline)
    ("replay_missing_log", "replay {missing} --no-model", 1),
    ("replay_out_is_dir", "replay {log} --out {dir}", 2),
    ("replay_out_unwritable", "replay {log} --out {ro}/p.mcap", 2),
    ("replay_model_typo", "replay {log} --model {dir}/typo.onnx", 1),
    ("replay_model_and_no_model", "replay {log} --model {file} --no-model", 2),
    ("replay_end_before_start", "replay {log} --no-model --start 2 --end 1", 1),
    ("replay_start_past_end", "replay {log} --no-model --start 50", 1),
    ("replay_negative_start", "replay {log} --no-model --start -1", 2),
    # import
    ("import_missing_src", "import eth-ucy {missing} --out {out}", 1),
    ("import_out_is_dir", "import eth-ucy {file} --out {dir}", 2),
    ("import_out_unwritable", "import eth-ucy {file} --out {ro}/i.mcap", 2),
    ("import_negative_scene", "import lyft {dir} --out {out} --scene -1", 2),
    # raster
    ("raster_out_unwritable", "raster --demo --out {ro}/r.png", 2),
    ("raster_out_not_png", "raster --demo --out {dir}/r.jpg", 2),
    ("raster_npy_is_dir", "raster --demo --out {dir}/r.png --npy {dir}", 2),
    ("raster_missing_log", "raster --log {missing} --out {dir}/r.png", 1),
    ("raster_negative_t", "raster --demo --t -1 --out {dir}/r.png", 2),
    # bus keys, record, health
    ("keys_dir_is_file", "bus keys {file}", 2),
    ("keys_dir_unwritable", "bus keys {ro}/keys", 2),
    ("record_out_is_dir", "record --out {dir}", 2),
    ("record_negative_duration", "record --out {out} --duration -1", 2),
    ("health_zero_timeout", "health --timeout-s 0", 2),
    # up / serve / planner / sim
    ("up_negative_duration", "up --duration -1", 2),
    ("up_zero_duration", "up --duration 0", 2),
    ("up_negative_agents", "up --agents -5", 2),
    ("up_unknown_scenario", "up --scenario nowhere", 2),
    ("up_out_is_file", "up --out {file}", 2),
    ("up_model_typo", "up --model {dir}/typo.onnx --out {out}", 1),
    ("serve_model_typo", "serve --model {dir}/typo.onnx", 1),
    ("serve_zero_threads", "serve --threads 0", 2),
    ("planner_stats_is_dir", "planner --stats-json {dir}", 2),
    ("sim_negative_agents", "sim --offline --fast --duration 1 --agents -5", (1, 2)),
    # models and scenarios
    ("eval_av2_missing_data", "eval-av2 --data {missing}", 1),
    ("eval_av2_empty_data", "eval-av2 --data {dir}", 1),
    ("eval_av2_model_typo", "eval-av2 --data {avdir} --model {dir}/typo.onnx", 1),
    ("eval_conditional_model_typo", "eval-conditional --model {dir}/typo.onnx --out {out}", 1),
    ("data_generate_out_is_file", "data generate --out {file}", 2),
    ("export_onnx_out_is_dir", "export --tiny --out {dir}", 2),
    ("train_sim_zero_lr", "train-sim --data {dir} --lr 0", 2),
    ("train_sim_train_only_unknown", "train-sim --data {dir} --train-only head", 2),
    ("eval_floor_empty_data", "eval-floor --data {dir}", 1),
    ("eval_floor_zero_rollouts", "eval-floor --data {dir} --rollouts 0", 2),
    ("eval_floor_model_typo", "eval-floor --data {dir} --model {dir}/typo.onnx", 1),
    ("scenarios_out_is_dir", "scenarios generate --map intersection --out {dir}", 2),
    ("scenarios_out_unwritable", "scenarios generate --map intersection --out {ro}/s.json", 2),
    ("scenarios_zero_n", "scenarios generate --map intersection --n 0 --out {out}", 2),
    ("scenarios_eval_json_is_dir", "scenarios eval --json {dir}", 2),
]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _prescient(argv: list[str]) -> int:
    """``prescient ARGV`` in-process; an argparse refusal is its SystemExit status."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1


@pytest.fixture
def paths(tmp_path: Path) -> dict[str, Path]:
    """The places the rows name (see the comment above ``CASES``)."""
    log = tmp_path / "in.mcap"
    _write_log(log)
    folder = tmp_path / "folder"
    folder.mkdir()
    regular = tmp_path / "regular.txt"
    regular.write_text("not a log\n")
    if os.geteuid() == 0:  # root writes through chmod 0o500: use a path under a regular file
        ro = regular
    else:
        ro = tmp_path / "readonly"
        ro.mkdir()
        ro.chmod(0o500)
    avdir = tmp_path / "av2"
    (avdir / "log0").mkdir(parents=True)
    return {
        "log": log,
        "missing": tmp_path / "missing.mcap",
        "dir": folder,
        "file": regular,
        "ro": ro,
        "avdir": avdir,
        "out": tmp_path / "out.mcap",
    }


@pytest.mark.parametrize(("argv", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_cli_mistake_is_one_line_and_nonzero(
    argv: str, code: int | tuple[int, ...], paths: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """The row's exit status, one stderr line starting with ``prescient ``, no traceback, nothing written."""
    before = _digest(paths["log"])
    listed = {p.name for p in paths["dir"].iterdir()}
    rc = _prescient(argv.format(**{k: str(v) for k, v in paths.items()}).split())
    out, err = capsys.readouterr()
    assert rc in (code if isinstance(code, tuple) else (code,)), (rc, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("prescient ") and lines[0].strip(), err
    assert "Traceback" not in out + err
    assert _digest(paths["log"]) == before  # the input is never touched
    assert not paths["out"].exists() and not paths["missing"].exists()
    assert {p.name for p in paths["dir"].iterdir()} == listed  # no output appeared in the folder


def test_ctrl_c_while_starting_is_one_line_and_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C during the imports of a cold start (a second or more) is not a traceback."""
    from prescient.service.app import cli

    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert main(["record", "--out", "x.mcap"]) == 130
    assert capsys.readouterr().err == "prescient: interrupted while starting\n"


def test_cli_errors_table_is_large_enough() -> None:
    """The table covers every command family named in the issue, with at least 20 rows."""
    assert len(CASES) >= 20 and len({c[0] for c in CASES}) == len(CASES)
    commands = {c[1].split()[0] for c in CASES}
    assert {"log", "replay", "import", "raster", "bus", "up", "serve", "eval-av2", "scenarios"} <= commands


def test_model_typo_says_model_not_found(paths: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """An explicit model that does not exist is named; the run never starts on the fallback."""
    typo = paths["dir"] / "typo.onnx"
    assert _prescient(["replay", str(paths["log"]), "--model", str(typo)]) == 1
    out, err = capsys.readouterr()
    assert f"model not found: {typo}" in err and out == ""


def test_default_model_missing_falls_back(
    paths: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the shipped default may be absent: then replay runs on the flagged fallback (documented)."""
    import prescient.service.app.stack_cli as stack_cli

    monkeypatch.setattr(stack_cli, "DEFAULT_MODEL", paths["dir"] / "not_shipped.onnx")
    assert _prescient(["replay", str(paths["log"])]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["ticks"] > 0 and summary["degraded_ticks"] == summary["ticks"]


def test_up_default_model_is_left_to_the_service(tmp_path: Path) -> None:
    """`up` without --model gives the service no --model (its own default and fallback); with one, that one."""
    from prescient.service.app.stack import StackOptions, build_children
    from prescient.service.app.stack_cli import DEFAULT_MODEL

    def serve_argv(opts: StackOptions) -> list[str]:
        (serve,) = [c for c in build_children(opts, tmp_path / "log.mcap") if c.name == "service"]
        return serve.argv

    assert serve_argv(StackOptions(model=DEFAULT_MODEL, model_is_default=True)) == ["serve"]
    assert serve_argv(StackOptions(model=tmp_path / "m.onnx")) == [
        "serve",
        "--model",
        str(tmp_path / "m.onnx"),
    ]
    assert serve_argv(StackOptions(model=None)) == ["serve", "--no-model"]


def test_raster_out_folder_writes_into_it_and_says_where(
    paths: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """`raster --out DIR` writes DIR/<name>.png and prints exactly that path; a bare name gets .png."""
    folder = paths["dir"]
    assert _prescient(["raster", "--demo", "--seed", "1", "--out", str(folder)]) == 0
    written = folder / "demo_seed1.png"
    assert capsys.readouterr().out.startswith(f"wrote {written} ")
    assert written.read_bytes()[:4] == b"\x89PNG" and not folder.with_name(folder.name + ".png").exists()
    bare = folder / "scene"
    assert _prescient(["raster", "--demo", "--out", str(bare), "--npy", str(folder / "r")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"wrote {bare}.png ") and f"and {folder / 'r.npy'}" in out
    assert (folder / "scene.png").is_file() and (folder / "r.npy").is_file() and not bare.exists()


def test_progress_bar_writes_nothing_without_a_terminal(
    paths: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Long jobs draw a bar only on a terminal: captured stderr of a good run stays empty."""
    out_path = paths["dir"] / "fox.mcap"
    assert _prescient(["log", "export-foxglove", str(paths["log"]), str(out_path)]) == 0
    out, err = capsys.readouterr()
    assert err == "" and out.startswith("wrote ") and "foxglove messages" in out
    assert sum(int(n) for n in re.findall(r"/prescient/[\w.]+: (\d+)", out)) == 61  # every message of the log
    assert _prescient(["log", "replay", str(paths["log"]), "--offline", "--topics", "ego."]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "30 messages decoded" in out


def test_log_totals_of_unfinished_or_garbage_log_is_none(tmp_path: Path) -> None:
    """The progress total comes from the MCAP summary; a log without one gives None, never an error."""
    from prescient.bus.cli import log_totals

    log = tmp_path / "in.mcap"
    _write_log(log)
    totals = log_totals(log)
    assert totals is not None and totals[0] == {"map.vector": 1, "ego.state": 30, "perception.tracks": 30}
    for i, junk in enumerate([b"", b"\x89MCAP0\r", b"garbage" * 50, log.read_bytes()[:-200]]):
        (tmp_path / f"j{i}.mcap").write_bytes(junk)
        assert log_totals(tmp_path / f"j{i}.mcap") is None


@pytest.mark.slow
def test_up_ctrl_c_ends_normally_with_complete_run_directory(tmp_path: Path) -> None:
    """SIGINT to `prescient up` after the first predictions: exit 130, one line saying so, and the run
    directory complete (summary.json with ``interrupted``, a finished log)."""
    out, bus = tmp_path / "run", f"ipc://{tmp_path}/bus"
    env = dict(os.environ, **{ENV_BUS: bus})
    env.setdefault("NUMBA_CACHE_DIR", str(REPO / ".numba_cache"))
    cmd = [sys.executable, "-m", "prescient.service", "up", "--duration", "60", "--agents", "5", "--no-model"]
    cmd += ["--no-live", "--no-picture", "--bus", bus, "--out", str(out)]
    up = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    os.environ[ENV_BUS] = bus
    try:
        sub = Subscriber(BusConfig(), [m.TOPIC_PREDICTIONS])
    finally:
        del os.environ[ENV_BUS]
    try:
        deadline, seen = time.monotonic() + 45, 0
        while seen < 2 and time.monotonic() < deadline and up.poll() is None:
            seen += sub.recv(timeout_ms=200) is not None
        assert seen == 2, "no predictions from the stack"
        up.send_signal(signal.SIGINT)
        stdout, stderr = up.communicate(timeout=40)
    finally:
        sub.close()
        if up.poll() is None:
            up.kill()
    assert up.returncode == 130, stdout + stderr
    assert "Traceback" not in stdout + stderr
    assert [ln for ln in stderr.splitlines() if "interrupted by SIGINT" in ln], stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] == "SIGINT" and not summary["completed"] and summary["predictions"] >= 2
    from prescient.bus.logsummary import summarize_log

    assert summarize_log(out / "log.mcap").stats.complete  # the recorder finished its file
