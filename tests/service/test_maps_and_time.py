"""Map changes, map-less logs and the time base of derived logs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from prescient.bus import messages as m
from prescient.bus.logfile import LogWriter
from prescient.bus.logsummary import summarize_log
from prescient.bus.maps import empty_map
from prescient.bus.recorder import CLOCK_METADATA
from prescient.service.offline import replay_log
from prescient.service.pipeline import Pipeline, PipelineConfig
from prescient.service.raster import RasterConfig
from prescient.service.raster.scenes import grid_map, make_tracks

RASTER = RasterConfig(extent_m=16.0, resolution_m=1.0)
MS = 1_000_000


def _scene(t_ns: int) -> tuple[m.EgoState, m.Tracks]:
    pos = np.array([[75.0, 80.0], [85.0, 82.0]])
    tracks = make_tracks(
        pos, np.zeros(2), np.tile([4.5, 1.9], (2, 1)), np.full(2, int(m.AgentClass.CAR)),
        np.tile([5.0, 0.0], (2, 1)), ego_pose=(80.0, 80.0, 0.0), stamp_ns=t_ns,
    )  # fmt: skip
    ego = m.empty(
        m.EgoState, m.TOPIC_EGO, stamp_ns=t_ns, pose=np.array([80.0, 80.0, 0.0]),
        velocity_mps=np.array([5.0, 0.0], np.float32), size_lwh_m=np.array([4.8, 2.0, 1.6], np.float32),
    )  # fmt: skip
    return ego, tracks


def _named(vmap: m.VectorMap, map_id: str) -> m.VectorMap:
    return dataclasses.replace(vmap, map_id=map_id, header=m.Header(topic=m.TOPIC_MAP))


def _ticks(pipe: Pipeline, t0_ns: int, n: int) -> list:
    out = []
    for i in range(n):
        ego, tracks = _scene(t0_ns + i * 100 * MS)
        pipe.feed(ego)
        pipe.feed(tracks)
        tick = pipe.due_tick()
        res = pipe.tick(tick) if tick is not None else None
        if res is not None:
            out.append(res)
    return out


def test_new_map_id_switches_map_and_starts_over() -> None:
    """Another map_id: new static layers, tracker and tick clock reset; the same id changes nothing."""
    pipe = Pipeline(
        grid_map(), None, PipelineConfig(deadline_guard=False), raster_cfg=RASTER, tracks_from_log=True
    )
    assert _ticks(pipe, 0, 5)
    with_lanes = pipe.render(pipe.last_tracks, pipe.ego, np.zeros((0, 2), np.float32)).copy()
    assert not pipe.set_map(_named(grid_map(), pipe.map_id)) and pipe.stats.map_changes == 0
    assert pipe.feed(empty_map("elsewhere"))
    assert pipe.map_id == "elsewhere" and pipe.stats.map_changes == 1 and pipe.stats.clock_resets == 0
    assert pipe.last_tracks is None and pipe.ego is None  # nothing of the old place survives
    res = _ticks(pipe, 0, 5)  # the new log's clock may start anywhere, also earlier
    assert res
    static = [c.index for c in pipe.rasterizer.channels if c.group == "static"]
    assert with_lanes[static].any() and not res[-1].raster[static].any()
    health = pipe.health("predictor", 0, "cpu", {}, {})
    assert health.rejected["map_changes"] == 1


def test_map_too_large_is_refused_and_old_map_kept() -> None:
    pipe = Pipeline(
        grid_map(), None, PipelineConfig(deadline_guard=False), raster_cfg=RASTER, tracks_from_log=True
    )
    huge = _named(grid_map(), "huge")
    huge = dataclasses.replace(huge, centerline_xy_m=huge.centerline_xy_m * 1e4)
    assert not pipe.set_map(huge)
    assert pipe.map_id != "huge" and pipe.stats.maps_refused == 1


def _write_log(path: Path, with_map: bool) -> None:
    with LogWriter(path) as w:
        if with_map:
            w.write(_named(grid_map(), "grid"))
        for i in range(30):
            ego, tracks = _scene(1_000_000_000 + i * 100 * MS)
            w.write(ego)
            w.write(tracks)


def test_mapless_log_replays_with_empty_map_channels(tmp_path: Path) -> None:
    """A log with no map (ETH/UCY) replays; the summary says the map channels were empty."""
    log = tmp_path / "nomap.mcap"
    _write_log(log, with_map=False)
    rasters = []
    summary = replay_log(log, None, on_tick=lambda r: rasters.append(r.raster.copy()))
    assert summary["ticks"] == 30 and summary["map"].startswith("none")
    assert json.dumps(summary)  # the CLI prints it
    assert all(np.isfinite(r).all() for r in rasters)


def test_replay_out_has_one_time_base(tmp_path: Path) -> None:
    """`replay --out` writes predictions and the copied context on capture stamps: 3 s of log is 3 s."""
    log, out = tmp_path / "in.mcap", tmp_path / "out.mcap"
    _write_log(log, with_map=True)
    replay_log(log, None, out=out)
    s = summarize_log(out)
    assert abs((s.end_ns - s.start_ns) / 1e9 - 2.9) < 0.15
    assert s.stats.metadata.get(CLOCK_METADATA, {}).get("log_time") == "capture"
