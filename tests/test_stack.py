"""The real multi-process stack: `prescient up`, faults (kill -9 and restart), injected garbage.

These start real processes on a private ipc:// bus and take ~10-30 s each.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from prescient.bus import codec
from prescient.bus import messages as m
from prescient.bus.config import ENV_BUS, BusConfig
from prescient.bus.proxy import Proxy
from prescient.bus.transport import Publisher, Subscriber

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _env(bus: str) -> dict[str, str]:
    env = dict(os.environ)
    env[ENV_BUS] = bus
    env.setdefault("NUMBA_CACHE_DIR", str(REPO / ".numba_cache"))
    return env


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    fh = open(log, "ab")  # noqa: SIM115 - the child owns it
    return subprocess.Popen(
        [sys.executable, "-m", "prescient.service", *args], env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO
    )


def _stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def _count(sub: Subscriber, seconds: float) -> tuple[int, list[m.Health]]:
    """Predictions received, and health messages, during ``seconds``."""
    n, health, end = 0, [], time.monotonic() + seconds
    while time.monotonic() < end:
        msg = sub.recv(timeout_ms=100)
        if isinstance(msg, m.Predictions):
            n += 1
            assert np.isfinite(msg.trajectories_m).all()
        elif isinstance(msg, m.Health):
            health.append(msg)
    return n, health


def test_up_runs_and_leaves_log_summary_and_picture(tmp_path: Path) -> None:
    out = tmp_path / "run"
    bus = f"ipc://{tmp_path}/bus"
    cmd = [
        sys.executable,
        "-m",
        "prescient.service",
        "up",
        "--no-model",
        "--duration",
        "6",
        "--agents",
        "15",
        "--bus",
        bus,
        "--out",
        str(out),
        "--no-live",
    ]
    res = subprocess.run(cmd, cwd=REPO, env=_env(bus), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "processing latency" in res.stdout and "data age" in res.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["completed"] and summary["predictions"] >= 30
    assert summary["predictions"] == summary["degraded"]  # --no-model: every one flagged
    assert summary["e2e_ms"]["n"] > 0 and summary["e2e_ms"]["p50"] > 0
    # Data age adds the sensor latency (40-60 ms simulated) to the processing latency.
    age, proc = summary["data_age_ms"], summary["e2e_ms"]
    assert age["n"] > 0 and age["p50"] > proc["p50"] + 20
    assert (out / "log.mcap").stat().st_size > 0 and (out / "summary.png").stat().st_size > 0


def _children_of(pid: int, word: str) -> list[int]:
    """PIDs of processes whose parent is ``pid`` and whose command line holds ``word``."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv = (d / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and word.encode() in argv:
            found.append(int(d.name))
    return found


def test_up_recorder_killed_loses_nothing(tmp_path: Path) -> None:
    """kill -9 of the recorder under `up`: the old part stays, a new part follows, and the frames
    of the restart gap are recovered from the launcher's ring: every ego state and prediction
    published is in some part of the log."""
    from prescient.bus.logfile import peek_header
    from prescient.bus.logreader import iter_log

    out, bus = tmp_path / "run", f"ipc://{tmp_path}/bus"
    cmd = [sys.executable, "-m", "prescient.service", "up", "--no-model", "--duration", "10", "--agents", "10"]
    cmd += ["--bus", bus, "--out", str(out), "--no-live", "--no-picture"]
    up = subprocess.Popen(cmd, cwd=REPO, env=_env(bus), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not (out / "sim.log").exists():
            time.sleep(0.2)
        time.sleep(4.0)  # the simulator has been publishing for a while
        (rec,) = _children_of(up.pid, "record")
        os.kill(rec, signal.SIGKILL)
        output = up.communicate(timeout=120)[0].decode(errors="replace")
    finally:
        if up.poll() is None:
            up.kill()
    assert up.returncode == 0, output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["restarts"] == {"recorder": 1}, output
    parts = [Path(p) for p in summary["log_parts"]]
    assert len(parts) >= 2 and parts[0] == out / "log.mcap"
    seqs: dict[str, set[int]] = {m.TOPIC_EGO: set(), m.TOPIC_PREDICTIONS: set()}
    for part in parts:
        for rec in iter_log(part, topics=list(seqs)):
            seqs[rec.topic].add(peek_header(rec.payload)[0])
    for topic, got in seqs.items():
        assert len(got) > 50 and got == set(range(min(got), max(got) + 1)), (
            topic,
            sorted(set(range(max(got))) - got),
        )
        assert min(got) == 0, topic


def test_up_from_generated_scenario_runs_the_prediction_stack(tmp_path: Path) -> None:
    """A pinned scene from the shipped scenario generator goes through simulator, tracker and model."""
    from prescient.models.scenario_diffusion.generate import ScenarioGenerator
    from prescient.models.scenario_diffusion.tokens import load_spec
    from prescient.sim_sensors.scenario_file import save_scenes

    spec = load_spec(REPO / "models" / "scenario_diffusion" / "examples" / "bus_right_turn.yaml")
    scenes = ScenarioGenerator.load().generate("intersection", spec, n=1, seed=0)
    scene_file = save_scenes(tmp_path / "scenes.json", scenes)
    out = tmp_path / "run"
    bus = f"ipc://{tmp_path}/bus"
    cmd = [sys.executable, "-m", "prescient.service", "up", "--from-scenario", f"{scene_file}#0", "--duration", "6",
           "--bus", bus, "--out", str(out), "--no-live", "--no-picture"]  # fmt: skip
    res = subprocess.run(cmd, cwd=REPO, env=_env(bus), capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["completed"] and summary["from_scenario"] == f"{scene_file}#0"
    assert summary["scenario"] == "intersection" and summary["agents"] == scenes[0].n_agents
    assert summary["predictions"] >= 30 and summary["degraded"] < summary["predictions"] / 2
    assert "agents placed" in (out / "sim.log").read_text()
    # A bad scene file stops the launcher before any child starts, with one line.
    bad = subprocess.run([sys.executable, "-m", "prescient.service", "up", "--from-scenario", f"{scene_file}#7", "--no-live"],
                         cwd=REPO, env=_env(bus), capture_output=True, text=True, timeout=60)  # fmt: skip
    assert bad.returncode == 1 and "scene index 7 out of range" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_stack_survives_kills_restarts_and_garbage(tmp_path: Path) -> None:
    """kill -9 of the service and of the simulator: the rest keeps running and recovers.
    Malformed messages on a sensor topic are rejected, counted on the health topic, and the
    run continues."""
    bus = f"ipc://{tmp_path}/bus"
    env = _env(bus)
    os.environ[ENV_BUS] = bus
    try:
        cfg = BusConfig()
    finally:
        del os.environ[ENV_BUS]
    sim_args = ["sim", "--agents", "15", "--duration", "120", "--realtime"]
    with Proxy(cfg):
        sub = Subscriber(cfg, [m.TOPIC_PREDICTIONS, m.health_topic("predictor")])
        sim = _spawn(sim_args, env, tmp_path / "sim.log")
        svc = _spawn(["serve", "--no-model"], env, tmp_path / "svc.log")
        try:
            n, _ = _count(sub, 8.0)
            assert n > 10, (tmp_path / "svc.log").read_text()

            svc.kill()  # kill -9 the service
            svc.wait(5)
            _count(sub, 1.0)  # drain what was in flight
            n, _ = _count(sub, 1.5)
            assert n == 0
            svc = _spawn(["serve", "--no-model"], env, tmp_path / "svc2.log")
            n, _ = _count(sub, 8.0)
            assert n > 10, (tmp_path / "svc2.log").read_text()

            sim.kill()  # kill -9 the sensors; the service waits, then follows the new clock
            sim.wait(5)
            t_kill = time.monotonic()
            _, health = _count(sub, 3.0)
            # Health does not wait for its 1 s period to say that nothing is being produced.
            failed = [h for h in health if h.state == "failed"]
            assert failed and "no input" in failed[0].reason, [(h.state, h.reason) for h in health]
            # Failed says why: no prediction for over 2 s, or an input group silent for over 2 s;
            # either way every input is far past the 0.5 s staleness bound.
            live = failed[0].live
            ages = [v for k, v in live.items() if k.startswith("input_age_ms:")]
            assert max([*ages, live["prediction_age_ms"]]) > 2000 and min(ages) > 500, live
            assert time.monotonic() - t_kill < 6.0, live
            sim = _spawn(sim_args, env, tmp_path / "sim2.log")
            n, _ = _count(sub, 8.0)
            assert svc.poll() is None and n > 10

            pub = Publisher(cfg)
            assert pub.wait_for_subscribers([m.sensor_topic(m.Modality.LIDAR, m.Corner.FRONT_LEFT)], 5.0)
            topic = m.sensor_topic(m.Modality.LIDAR, m.Corner.FRONT_LEFT)
            for _ in range(3):
                pub.publish_raw(topic, b"\x92garbage")
            lidar = m.empty(
                m.LidarFrame, topic, points_m=np.full((2, 3), np.nan, np.float32), ego_from_sensor=np.eye(4)
            )
            pub.publish_raw(
                topic,
                codec.encode(
                    dataclasses.replace(lidar, header=dataclasses.replace(lidar.header, seq=10**6)),
                    check=False,
                ),
            )
            pub.publish_raw(
                topic,
                codec.encode(
                    dataclasses.replace(
                        m.empty(m.EgoState, topic), header=m.Header(topic=topic, seq=10**6 + 1)
                    )
                ),
            )
            n, health = _count(sub, 4.0)
            pub.close()
            assert n > 10 and svc.poll() is None and sim.poll() is None
            rejected = health[-1].rejected
            assert rejected.get(f"{topic}:not_msgpack", 0) >= 3, rejected
            assert rejected.get(f"{topic}:non_finite", 0) >= 1, rejected
            assert rejected.get(f"{topic}:wrong_type_for_topic", 0) >= 1, rejected
        finally:
            for p in (svc, sim):
                _stop(p)
            sub.close()
