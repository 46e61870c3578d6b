"""``prescient track`` smoke tests: offline on the synthetic scene, and live over the bus."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prescient.bus import messages as m
from prescient.bus.config import BusConfig
from prescient.bus.transport import Publisher, Subscriber
from prescient.service.app.cli import main
from prescient.service.app.tracking.synthetic import SyntheticScene

REPO = Path(__file__).resolve().parents[3]


def test_track_sim_synthetic_offline_scores_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Offline run on the synthetic scene exits 0, prints MOTA and writes the summary."""
    out = tmp_path / "s.json"
    rc = main(
        ["track", "--sim", "synthetic", "--agents", "12", "--duration", "3", "--score", "--json", str(out)]
    )
    assert rc == 0
    assert "MOTA" in capsys.readouterr().out
    summary = json.loads(out.read_text())
    assert summary["ticks"] == 30
    assert summary["score"]["mota"] > 0.5


def test_track_log_offline_matches_in_process_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A synthetic run written to an MCAP log and replayed with --log tracks and scores it."""
    pytest.importorskip("prescient.bus.logfile")
    from prescient.bus.logfile import LogWriter

    path = tmp_path / "run.mcap"
    scene = SyntheticScene(n_agents=10, seed=4)
    with LogWriter(path) as w:
        for _ in range(25):
            for msg in scene.step():
                w.write(msg)
    out = tmp_path / "s.json"
    rc = main(["track", "--log", str(path), "--score", "--json", str(out)])
    assert rc == 0, capsys.readouterr().err
    summary = json.loads(out.read_text())
    assert summary["ticks"] == 25
    assert summary["rejected"] == {}
    assert summary["score"]["mota"] > 0.5


def test_track_missing_log_is_one_line_startup_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A missing log file exits 1 with one clear line."""
    rc = main(["track", "--log", str(tmp_path / "nope.mcap")])
    assert rc == 1
    assert "log not found" in capsys.readouterr().err


@pytest.mark.slow
def test_track_live_publishes_tracks_and_health_then_exits_on_sigint(ipc_endpoints) -> None:  # noqa: ANN001
    """Live mode: sensor frames in, tracks and health out, clean exit 0 on SIGINT."""
    to_tracker, from_tracker = ipc_endpoints("in"), ipc_endpoints("out")
    cfg = BusConfig(pub_endpoint=from_tracker, sub_endpoint=to_tracker)
    pub = Publisher(cfg, endpoint=to_tracker, bind=True)
    sub = Subscriber(
        cfg, prefixes=(m.TOPIC_TRACKS, m.health_topic("tracker")), endpoint=from_tracker, bind=True
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prescient.service",
            "track",
            "--live",
            "--pub-endpoint",
            from_tracker,
            "--sub-endpoint",
            to_tracker,
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert pub.wait_for_subscribers(["sensor.lidar.fl", m.TOPIC_EGO], timeout_s=30.0), (
            "tracker never subscribed"
        )
        time.sleep(0.2)
        scene = SyntheticScene(n_agents=8, seed=2)
        got: dict[str, list] = {"Tracks": [], "Health": []}
        for _ in range(25):
            for msg in scene.step()[:-1]:
                pub.publish(msg)
            deadline = time.monotonic() + 0.05
            while time.monotonic() < deadline:
                r = sub.recv(timeout_ms=10)
                if r is not None:
                    got[type(r).__name__].append(r)
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and not got["Health"]:
            r = sub.recv(timeout_ms=50)
            if r is not None:
                got[type(r).__name__].append(r)
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        pub.close()
        sub.close()
    output = proc.stdout.read().decode() if proc.stdout else ""
    assert rc == 0, output
    assert len(got["Tracks"]) >= 15, output
    assert max(len(t.track_id) for t in got["Tracks"]) >= 5
    assert got["Health"] and got["Health"][0].node == "tracker"
