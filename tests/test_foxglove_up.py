"""`prescient up --foxglove 0`: a `view --live` child serves the running stack's scene; a real
WebSocket client decodes a SceneUpdate from it. Real processes on a private ipc:// bus (~20 s)."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("foxglove")
ws_sync = pytest.importorskip("websockets.sync.client")

from prescient.bus.config import ENV_BUS  # noqa: E402
from prescient.service.app.foxglove import server  # noqa: E402
from tests.test_foxglove_scene import decode_protobuf  # noqa: E402
from tests.test_foxglove_server import _json_until  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _port(log: Path, up: subprocess.Popen, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and up.poll() is None:
        found = re.search(r"ws://127\.0\.0\.1:(\d+)", log.read_text() if log.exists() else "")
        if found:
            return int(found.group(1))
        time.sleep(0.2)
    raise AssertionError(f"no server line in {log}")


def _scene_frame(ws, channel: dict) -> bytes:
    ws.send(json.dumps({"op": "subscribe", "subscriptions": [{"id": 3, "channelId": channel["id"]}]}))
    for _ in range(2000):
        frame = ws.recv(timeout=10)
        if isinstance(frame, bytes) and frame[0] == 0x01:
            return frame
    raise AssertionError("no /scene data frame")


def test_up_foxglove_streams_the_live_scene(tmp_path: Path) -> None:
    out, bus = tmp_path / "run", f"ipc://{tmp_path}/bus"
    env = dict(os.environ, **{ENV_BUS: bus})
    env.setdefault("NUMBA_CACHE_DIR", str(REPO / ".numba_cache"))
    cmd = [sys.executable, "-m", "prescient.service", "up", "--duration", "12", "--agents", "5", "--no-model"]
    cmd += ["--no-live", "--no-picture", "--foxglove", "0", "--out", str(out)]
    up = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = _port(out / "foxglove.log", up, 60)
        with ws_sync.connect(f"ws://127.0.0.1:{port}", subprotocols=[server.SUBPROTOCOL]) as ws:
            assert _json_until(ws, "serverInfo")["name"] == "prescient"
            adv = _json_until(ws, "advertise")
            while not any(c["topic"] == "/scene" for c in adv["channels"]):
                adv = _json_until(ws, "advertise")
            channel = next(c for c in adv["channels"] if c["topic"] == "/scene")
            frame = _scene_frame(ws, channel)
        update = decode_protobuf("foxglove.SceneUpdate", base64.b64decode(channel["schema"]), frame[13:])
        assert update.entities and {e.frame_id for e in update.entities} == {"map"}
        up.communicate(timeout=60)
    finally:
        if up.poll() is None:
            up.kill()
    assert up.returncode == 0
