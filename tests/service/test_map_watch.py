"""A map on the bus switches the live service only when the map server serves that map."""

from __future__ import annotations

import dataclasses

from prescient.bus import messages as m
from prescient.bus.config import BusConfig
from prescient.bus.map_server import MapServer
from prescient.service.map_watch import MapWatch
from prescient.service.pipeline import Pipeline, PipelineConfig
from prescient.service.raster import RasterConfig
from prescient.service.raster.scenes import grid_map

RASTER = RasterConfig(extent_m=16.0, resolution_m=1.0)
S = 1_000_000_000


def _named(map_id: str) -> m.VectorMap:
    return dataclasses.replace(grid_map(), map_id=map_id, header=m.Header(topic=m.TOPIC_MAP))


def test_confirmed_hint_switches_and_forged_hint_is_refused(ipc_endpoints) -> None:
    cfg = BusConfig(map_endpoint=ipc_endpoints("map"), poll_ms=20)
    pipe = Pipeline(_named("here"), None, PipelineConfig(deadline_guard=False), raster_cfg=RASTER)
    server = MapServer(cfg, _named("next-log")).start()
    watch = MapWatch(cfg, min_interval_s=5.0, timeout_ms=2000)
    try:
        # A forged map on the bus: the server serves another map_id, nothing changes.
        watch.hint(_named("forged"), pipe.map_id)
        assert not watch.apply(pipe, 10 * S)
        assert pipe.map_id == "here" and watch.unconfirmed == 1 and pipe.stats.map_changes == 0
        # The map the server serves: switched, but not before the interval has passed.
        watch.hint(_named("next-log"), pipe.map_id)
        assert not watch.apply(pipe, 12 * S) and pipe.map_id == "here"
        assert watch.apply(pipe, 15 * S)
        assert pipe.map_id == "next-log" and pipe.stats.map_changes == 1
        # The current map again on the bus: no request, no change.
        watch.hint(_named("next-log"), pipe.map_id)
        assert not watch.apply(pipe, 30 * S) and server.served == 1
    finally:
        watch.close()
        server.stop()


def test_hint_without_a_map_server_is_counted_not_applied(ipc_endpoints) -> None:
    cfg = BusConfig(map_endpoint=ipc_endpoints("none"), poll_ms=20)
    pipe = Pipeline(_named("here"), None, PipelineConfig(deadline_guard=False), raster_cfg=RASTER)
    watch = MapWatch(cfg, timeout_ms=50)
    try:
        watch.hint(_named("elsewhere"), pipe.map_id)
        assert not watch.apply(pipe, S)
        assert pipe.map_id == "here" and watch.unconfirmed == 1
    finally:
        watch.close()
