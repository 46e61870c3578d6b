"""``prescient view``'s server: a real WebSocket client (foxglove.sdk.v1 in foxglove-sdk 0.30) receives the scene."""

from __future__ import annotations

import base64
import json
import struct
import threading
from pathlib import Path

import pytest

pytest.importorskip("foxglove")
ws_sync = pytest.importorskip("websockets.sync.client")

from prescient.service.app.foxglove import server  # noqa: E402
from tests.bus._log_helpers import write_sample_log  # noqa: E402
from tests.test_foxglove_scene import decode_protobuf  # noqa: E402


def _json_until(ws, op: str) -> dict:
    """The next JSON message with ``op`` (others skipped)."""
    for _ in range(50):
        msg = ws.recv(timeout=5)
        if isinstance(msg, str) and json.loads(msg).get("op") == op:
            return json.loads(msg)
    raise AssertionError(f"no {op}")


def test_view_server_streams_decodable_scene_updates(tmp_path: Path) -> None:
    """serverInfo, advertise of /scene (foxglove.SceneUpdate), subscribe, one binary frame decoded."""
    log = tmp_path / "run.mcap"
    write_sample_log(log, n_rounds=3)
    srv, channels = server.start(0)
    stop = threading.Event()
    player = threading.Thread(
        target=server.play_log,
        args=(log, channels),
        kwargs={"rate": 0, "loop": True, "stop": stop},
        daemon=True,
    )
    try:
        with ws_sync.connect(f"ws://127.0.0.1:{srv.port}", subprotocols=[server.SUBPROTOCOL]) as ws:
            assert _json_until(ws, "serverInfo")["name"] == "prescient"
            player.start()  # the SDK advertises a channel once it has logged on it
            adv = _json_until(ws, "advertise")
            scene_ch = next(c for c in adv["channels"] if c["topic"] == "/scene")
            assert scene_ch["schemaName"] == "foxglove.SceneUpdate" and scene_ch["encoding"] == "protobuf"
            ws.send(
                json.dumps({"op": "subscribe", "subscriptions": [{"id": 7, "channelId": scene_ch["id"]}]})
            )
            for _ in range(2000):
                frame = ws.recv(timeout=5)
                if isinstance(frame, bytes) and frame[0] == 0x01:
                    break
            else:
                raise AssertionError("no message data frame")
            sub_id, log_time = struct.unpack_from("<IQ", frame, 1)
            assert sub_id == 7 and log_time > 1_577_836_800 * 10**9  # after 2020
            schema = base64.b64decode(scene_ch["schema"])
            update = decode_protobuf("foxglove.SceneUpdate", schema, frame[13:])
            assert update.entities and update.entities[0].frame_id == "map"
    finally:
        stop.set()
        if player.is_alive():
            player.join(timeout=5)
        srv.stop()
