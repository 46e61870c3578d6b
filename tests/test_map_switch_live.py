"""Two logs of two places replayed one after the other into one running service: it changes maps.

Real processes on a private ipc:// bus (bus proxy, `prescient serve`, `prescient log replay`);
~30-60 s.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prescient.bus import messages as m
from prescient.bus.config import ENV_BUS
from prescient.bus.logfile import LogWriter
from prescient.sim_sensors import SimConfig, Simulation

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _write_log(path: Path, scenario: str, seconds: float) -> str:
    """A log of ``seconds`` of the simulator on ``scenario`` (map first); returns the map_id."""
    sim = Simulation(SimConfig(scenario=scenario, seed=0, n_agents=8))
    with LogWriter(path) as w:
        w.write(dataclasses.replace(sim.map, header=m.Header(topic=m.TOPIC_MAP, stamp_ns=0)), log_time_ns=0)
        for msgs in sim.run(seconds):
            for msg in msgs:
                if msg.header.topic != m.TOPIC_GROUND_TRUTH:
                    w.write(msg)
    return sim.map.map_id


def _prescient(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    fh = open(log, "ab")  # noqa: SIM115 - the child owns it
    return subprocess.Popen(
        [sys.executable, "-m", "prescient.service", *args],
        env=env,
        stdout=fh,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )


def test_service_switches_map_between_two_replayed_logs(tmp_path: Path) -> None:
    a_id = _write_log(tmp_path / "a.mcap", "intersection", 4.0)
    b_id = _write_log(tmp_path / "b.mcap", "t_junction", 4.0)
    assert a_id != b_id
    env = dict(os.environ)
    env[ENV_BUS] = f"ipc://{tmp_path}/bus"
    env.setdefault("NUMBA_CACHE_DIR", str(REPO / ".numba_cache"))
    bus = _prescient(["bus"], env, tmp_path / "bus.log")
    serve = _prescient(["serve", "--no-model"], env, tmp_path / "serve.log")
    try:
        for name in ("a", "b"):
            replay = [sys.executable, "-m", "prescient.service", "log", "replay", str(tmp_path / f"{name}.mcap"),
                      "--wait-for", "sensor.lidar.fl", "--wait-s", "60"]  # fmt: skip
            res = subprocess.run(replay, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
            assert res.returncode == 0, res.stdout + res.stderr
        time.sleep(1.0)
    finally:
        for p in (serve, bus):
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
    log = (tmp_path / "serve.log").read_text()
    assert f"map {a_id} received" in log, log
    assert f"map changed {a_id!r} -> {b_id!r}" in log, log
