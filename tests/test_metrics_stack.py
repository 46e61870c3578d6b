"""`prescient up --config F` with metrics on: the service child is scraped live, counts move, and the
run directory keeps the effective config. Real processes on a private ipc:// bus (~20 s)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prescient.bus import messages as m
from prescient.bus.config import ENV_BUS, BusConfig
from prescient.bus.transport import Publisher
from prescient.service.app.stack_config import build_config
from tests.test_metrics import scrape, value

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

STACK_TOML = """
[stack]
duration_s = 10.0
picture = false
live = false

[sim]
agents = 5

[service]
no_model = true
metrics_port = 0
"""


def _wait_for_port(log: Path, up: subprocess.Popen, timeout_s: float) -> int:
    """The port the service child logged ("metrics on http://127.0.0.1:PORT/metrics")."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and up.poll() is None:
        found = re.search(
            r"metrics on http://127\.0\.0\.1:(\d+)/metrics", log.read_text() if log.exists() else ""
        )
        if found:
            return int(found.group(1))
        time.sleep(0.2)
    raise AssertionError(f"no metrics line in {log}")


def _scrape_when(port: int, ready: str, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = scrape(port)
        if value(got, ready) > 0:
            return got
        time.sleep(0.5)
    raise AssertionError(f"{ready} stayed 0")


def _inject_garbage(bus: str, n: int) -> str:
    os.environ[ENV_BUS] = bus
    try:
        pub = Publisher(BusConfig())
    finally:
        del os.environ[ENV_BUS]
    topic = m.sensor_topic(m.Modality.LIDAR, m.Corner.FRONT_LEFT)
    try:
        assert pub.wait_for_subscribers([topic], 5.0)
        for _ in range(n):
            pub.publish_raw(topic, b"\x92garbage")
    finally:
        pub.close()
    return topic


def test_up_config_metrics_scraped_live_and_config_copy(tmp_path: Path) -> None:
    """Families present, counts move between scrapes, garbage counted by reason, config.toml kept."""
    conf, out, bus = tmp_path / "stack.toml", tmp_path / "run", f"ipc://{tmp_path}/bus"
    conf.write_text(STACK_TOML)
    env = dict(os.environ, **{ENV_BUS: bus})
    env.setdefault("NUMBA_CACHE_DIR", str(REPO / ".numba_cache"))
    cmd = [sys.executable, "-m", "prescient.service", "up", "--config", str(conf), "--seed", "3"]
    cmd += ["--bus", bus, "--out", str(out)]
    up = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        port = _wait_for_port(out / "service.log", up, 90.0)
        first = _scrape_when(port, "prescient_ticks_total", 60.0)
        _inject_garbage(bus, 3)
        time.sleep(2.5)  # counters follow the 1 s health period
        second = scrape(port)
        output, _ = up.communicate(timeout=90)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait(10)
    assert up.returncode == 0, output
    for name in ("prescient_tick_seconds_count", "prescient_data_age_seconds_count", "prescient_ticks_total"):
        assert value(second, name) > value(first, name) > 0, name
    assert value(second, "prescient_messages_received_total", topic=m.TOPIC_EGO) > value(
        first, "prescient_messages_received_total", topic=m.TOPIC_EGO
    )
    assert value(second, "prescient_messages_rejected_total", stage="input", reason="not_msgpack") >= 3
    assert sum(second["prescient_degraded_ticks_total"].values()) > 0  # --no-model: every tick
    assert value(
        second, "prescient_provider_info", provider="none", precision="none", model="constant_velocity"
    )

    copy = build_config(out / "config.toml", {})
    assert copy == build_config(conf, {("sim", "seed"): 3, ("stack", "bus"): bus})
    assert copy.sim.seed == 3 and copy.sim.agents == 5 and copy.service.metrics_port == 0
