"""Data age: predictions name the newest input *applied* to their tracks; the planner measures it."""

from __future__ import annotations

import dataclasses

from prescient.bus import messages as m
from prescient.service.app.tracking.synthetic import SyntheticScene
from prescient.service.pipeline import Pipeline, PipelineConfig
from prescient.service.planner_node import SensorClock, measure
from prescient.service.raster import RasterConfig
from prescient.service.raster.scenes import grid_map
from prescient.service.source_times import SourceTimes
from prescient.service.tracker import TrackerConfig

RASTER = RasterConfig(extent_m=16.0, resolution_m=1.0)
MS = 1_000_000


def _run(pipe: Pipeline, steps: int, recv_mono_ns=None) -> list:  # noqa: ANN001
    scene = SyntheticScene(seed=1, n_agents=6)
    out = []
    for i in range(steps):
        for x in scene.step()[:-1]:  # ground truth is not an input
            pipe.feed(x, recv_mono_ns(i) if recv_mono_ns else 0)
        tick = pipe.due_tick()
        if tick is not None and (res := pipe.tick(tick)) is not None:
            out.append(res)
    return out


def test_source_is_the_newest_applied_frame_not_the_newest_received() -> None:
    """Publishing the committed tracks (no look-ahead), the source is a frame at least the 50 ms
    reorder window before the tick: what was received later is not in the prediction."""
    tracker_cfg = TrackerConfig(lookahead=False)
    pipe = Pipeline(grid_map(), None, PipelineConfig(deadline_guard=False), tracker_cfg, RASTER)
    window_ns = int(pipe.tracker.config.reorder_window_s * 1e9)
    res = _run(pipe, 20)
    assert len(res) > 10
    for r in res[3:]:
        pred = r.predictions
        assert 0 < pred.source_stamp_ns <= pred.header.stamp_ns - window_ns
        # The newest received frame was at least the window newer than the newest applied one.
        assert pred.timings_ns["reorder_held"] >= window_ns
    assert res[-1].predictions.source_stamp_ns == pipe.tracker.newest_applied.stamp_ns


def test_lookahead_puts_the_tick_s_own_frames_in_the_prediction() -> None:
    """With the look-ahead (default) the frames captured at the tick are in the prediction; the
    source is still the newest frame *applied* (frames captured after the tick are not)."""
    pipe = Pipeline(grid_map(), None, PipelineConfig(deadline_guard=False), raster_cfg=RASTER)
    res = _run(pipe, 20)
    assert len(res) > 10
    for r in res[3:]:
        pred = r.predictions
        assert pred.source_stamp_ns == pred.header.stamp_ns  # the synthetic sensors capture on the tick
        assert pred.timings_ns["reorder_held"] == 0
    assert res[-1].predictions.source_stamp_ns == pipe.tracker.newest_applied.stamp_ns


def test_replayed_publish_times_are_replaced_by_receive_times() -> None:
    """A log replayed on the bus keeps another run's sent_mono_ns: the receive time is used."""
    times = SourceTimes()
    h = m.Header(topic="sensor.lidar.fl", seq=7, stamp_ns=5_000, sent_mono_ns=1_000)
    times.note(h, recv_mono_ns=50_000_000_000)  # 50 s later: another run's clock
    assert times.source(h, 6_000) == (5_000, 50_000_000_000, 1_000)
    fresh = dataclasses.replace(h, seq=8, sent_mono_ns=49_990_000_000)
    times.note(fresh, recv_mono_ns=50_000_000_000)  # 10 ms transit: kept as sent
    assert times.source(fresh, None)[1] == 49_990_000_000
    assert times.source(None, 6_000) == (0, 0, 0)


def test_planner_measures_processing_latency_and_data_age() -> None:
    """Sensor clock mapped from ego states (smallest offset); age = processing + sensor share."""
    clock = SensorClock()
    offset = 7_000_000_000
    for k, transit in enumerate((3 * MS, 1 * MS, 2 * MS)):  # transit delays only add
        stamp = 1_000 * MS + k * 100 * MS
        clock.note_ego(stamp, stamp + offset + transit)
    assert clock.to_mono(0) == offset + 1 * MS
    capture = 1_200 * MS
    pred = m.empty(
        m.Predictions, m.TOPIC_PREDICTIONS, source_stamp_ns=capture,
        source_sent_mono_ns=capture + offset + 1 * MS + 50 * MS,  # published 50 ms after capture
    )  # fmt: skip
    recv = capture + offset + 1 * MS + 80 * MS
    processing, age, sensor = measure(pred, recv, clock)
    assert (processing, age, sensor) == (30 * MS, 80 * MS, 50 * MS)
    assert measure(dataclasses.replace(pred, source_sent_mono_ns=0), recv, clock) == (0, None, None)
    assert measure(pred, recv, SensorClock()) == (30 * MS, None, None)
