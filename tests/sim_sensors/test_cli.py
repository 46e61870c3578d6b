"""``prescient sim`` smoke tests and the map server."""

from __future__ import annotations

import argparse

import pytest

from prescient.bus.config import BusConfig
from prescient.bus.errors import StartupError
from prescient.bus.map_server import MapServer
from prescient.bus.messages import TOPIC_MAP_REQUEST, Header, MapRequest
from prescient.bus.reqrep import Requester
from prescient.service.app.cli import main
from prescient.sim_sensors import build_map
from prescient.sim_sensors.cli import register


def test_sim_offline_prints_all_topics_and_writes_snapshot(tmp_path, capsys) -> None:
    """An offline fast run counts all 16 sensor topics and draws a PNG."""
    out = tmp_path / "snap.png"
    rc = main(
        [
            "sim",
            "--scenario",
            "arterial",
            "--agents",
            "20",
            "--duration",
            "1",
            "--fast",
            "--offline",
            "--snapshot",
            str(out),
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    for tag in ("camera", "lidar", "radar", "lwir"):
        for corner in ("fl", "fr", "rl", "rr"):
            assert f"sensor.{tag}.{corner}" in text
    assert out.stat().st_size > 10_000


def test_sim_bad_argument_is_one_line_startup_error() -> None:
    """A bad modality is reported as a StartupError naming the field."""
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["sim", "--disable", "sonar", "--offline"])
    with pytest.raises(StartupError, match="disabled_modalities"):
        args.func(args)


def test_map_server_answers_map_request(ipc_endpoints) -> None:
    """The map thread replies to MapRequest with the scenario's VectorMap."""
    cfg = BusConfig(map_endpoint=ipc_endpoints("map"))
    vm = build_map("t_junction")
    server = MapServer(cfg, vm).start()
    try:
        req = Requester(cfg, cfg.map_endpoint)
        got = req.request(MapRequest(header=Header(topic=TOPIC_MAP_REQUEST)), timeout_ms=3000)
        req.close()
        assert got.map_id == vm.map_id and len(got.lane_id) == len(vm.lane_id)
        assert server.served == 1
    finally:
        server.stop()
