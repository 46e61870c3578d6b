"""The timeline (service/tracker/timeline.py): exact, arrival-order free, and fresher.

A simulator run delivers frames with each modality's own latency (LWIR 40 ms, camera and radar
50 ms, LiDAR 60 ms), so the frames of one capture time arrive out of order at every tick: the
timeline both appends and re-filters from its checkpoints many times in these runs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from prescient.bus import messages as m
from prescient.service.tracker import Tracker, TrackerConfig
from prescient.service.tracker.admission import TrackerStats
from prescient.service.tracker.table import ARRAY_NAMES, TrackTable

sim_sensors = pytest.importorskip("prescient.sim_sensors")

TICK_NS = 100_000_000


def _steps(seconds: float = 5.0, seed: int = 3) -> list[list[Any]]:
    """The messages of each simulator step (one delivery instant each), ground truth left out."""
    sim = sim_sensors.Simulation(sim_sensors.SimConfig(scenario="intersection", seed=seed, n_agents=30))
    t_end = sim.time_ns + int(seconds * 1e9)
    out = []
    while sim.time_ns < t_end:
        out.append([x for x in sim.step() if not isinstance(x, (m.GroundTruth, m.TrafficLights))])
    return out


def _run(steps: list[list[Any]], cfg: TrackerConfig, sync_every_msg: bool, shuffle_seed: int | None = None):
    """Feed steps like the service does: a tick when a sensor frame reaches the next 100 ms."""
    tracker = Tracker(cfg)
    rng = np.random.default_rng(shuffle_seed) if shuffle_seed is not None else None
    out, next_tick = [], None
    for step in steps:
        step = list(step)
        if rng is not None:
            rng.shuffle(step)
        for msg in step:
            tracker.process(msg)
            if sync_every_msg:
                tracker.sync()
        stamps = [x.header.stamp_ns for x in step if not isinstance(x, m.EgoState)]
        if not stamps or tracker.newest_ego_ns is None:
            continue
        due = max(stamps) // TICK_NS * TICK_NS
        if next_tick is None or due >= next_tick:
            out.append((tracker.snapshot(due), tracker.newest_applied))
            next_tick = due + TICK_NS
    return tracker, out


def _same(a, b) -> None:
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y, err_msg=f.name)


@pytest.fixture(scope="module")
def steps() -> list[list[Any]]:
    return _steps()


def test_output_does_not_depend_on_when_sync_runs(steps) -> None:
    """Synced after every message (mostly appends) or only at ticks (mostly rebuilds): the same
    tracks, bit for bit, and the committed counters are the same."""
    cfg = TrackerConfig()
    t_each, each = _run(steps, cfg, sync_every_msg=True)
    t_tick, at_tick = _run(steps, cfg, sync_every_msg=False)
    assert len(each) == len(at_tick) > 40
    for (a, ha), (b, hb) in zip(each, at_tick):
        _same(a, b)
        assert ha == hb
    assert t_each.stats.counters == t_tick.stats.counters
    work = t_each.lookahead_stats
    assert work["appends"] > 100 and work["rebuilds"] > 40  # both paths really ran


def test_output_does_not_depend_on_arrival_order_within_a_delivery(steps) -> None:
    """Frames delivered at the same instant, shuffled: the same tracks at every tick."""
    cfg = TrackerConfig()
    _, ref = _run(steps, cfg, sync_every_msg=True)
    for seed in (1, 2):
        tracker, got = _run(steps, cfg, sync_every_msg=True, shuffle_seed=seed)
        assert not any(k.endswith(":late") for k in tracker.stats.rejected)
        for (a, _), (b, _) in zip(ref, got):
            _same(a, b)


def _from_scratch(tracker: Tracker) -> TrackTable:
    """The retained events applied in key order to a copy of the oldest checkpoint."""
    timeline = tracker._timeline
    assert timeline is not None
    ref = TrackTable(tracker.table.capacity)
    if not timeline.events:
        ref.copy_live_from(timeline.table)
        return ref
    ref.copy_live_from(timeline.events[0].before)
    for e in sorted(timeline.events, key=lambda e: e.key):
        if e.frames is None:
            tracker._replay_tick(ref, e.key[0], TrackerStats())
        else:
            tracker._apply_event(ref, e.frames, TrackerStats())
    return ref


def _assert_tables_equal(a: TrackTable, b: TrackTable) -> None:
    np.testing.assert_array_equal(a.valid, b.valid)
    live = a.valid
    for name in ARRAY_NAMES:
        np.testing.assert_array_equal(getattr(a, name)[live], getattr(b, name)[live], err_msg=name)
    assert (a.filter_ns, a.next_id, a.hist_k) == (b.filter_ns, b.next_id, b.hist_k)


def test_table_equals_its_events_applied_in_order_from_the_oldest_checkpoint(steps) -> None:
    """After every sync the table is exactly the retained events (batches and ticks) applied in
    key order from the oldest checkpoint, however the frames arrived."""
    tracker = Tracker(TrackerConfig())
    checked, next_tick = 0, None
    for k, step in enumerate(steps):
        for msg in step:
            tracker.process(msg)
            tracker.sync()
        stamps = [x.header.stamp_ns for x in step if not isinstance(x, m.EgoState)]
        if stamps and tracker.newest_ego_ns is not None:
            due = max(stamps) // TICK_NS * TICK_NS
            if next_tick is None or due >= next_tick:
                tracker.snapshot(due)
                next_tick = due + TICK_NS
        if k % 7 or tracker.newest_ego_ns is None:
            continue
        _assert_tables_equal(tracker.table, _from_scratch(tracker))
        checked += 1
    assert checked > 5
    assert tracker.lookahead_stats["rebuilds"] > 40  # out-of-sequence frames really arrived


def test_final_tracks_do_not_depend_on_sensor_latencies(steps) -> None:
    """The same frames delivered in capture order, or with each sensor's latency (out of
    sequence): once every frame is in, the same tracks, bit for bit, and no frame was late."""
    delivered, _ = _run(steps, TrackerConfig(), sync_every_msg=True)
    msgs = sorted(
        (x for step in steps for x in step),
        key=lambda x: (x.header.stamp_ns, not isinstance(x, m.EgoState), x.header.topic),
    )
    in_order, _ = _run([[x] for x in msgs], TrackerConfig(), sync_every_msg=True)
    for tracker in (delivered, in_order):
        assert not any(k.endswith(":late") for k in tracker.stats.rejected)
    assert delivered.table.num_live > 5
    _assert_tables_equal(delivered.table, in_order.table)
    assert delivered.lookahead_stats["rebuilds"] > in_order.lookahead_stats["rebuilds"]


def test_timeline_publishes_newer_data_than_the_committed_tracks(steps) -> None:
    """Without the look-ahead the newest frame in the tracks is at least the window old at the
    tick; with it, it is the tick's own capture time on almost every tick."""
    window_ns = int(TrackerConfig().reorder_window_s * 1e9)
    _, on = _run(steps, TrackerConfig(), sync_every_msg=False)
    _, off = _run(steps, TrackerConfig(lookahead=False), sync_every_msg=False)
    age_on = [s.stamp_ns - h.stamp_ns for s, h in on[5:]]
    age_off = [s.stamp_ns - h.stamp_ns for s, h in off[5:]]
    assert min(age_off) >= window_ns
    assert np.median(age_on) == 0
    # The same tracks are published (ids), only fresher.
    same_ids = [
        np.intersect1d(a.track_id, b.track_id).size / max(b.track_id.size, 1)
        for (a, _), (b, _) in zip(on, off)
    ]
    assert np.mean(same_ids[5:]) > 0.9


def test_frames_held_before_the_first_ego_state_are_not_lost() -> None:
    """Sensor frames for 26 s before any ego state, never synced (more than the pre-ego buffer
    holds, and more than the list of fresh frames keeps: both start over), then the ego stream
    starts: every frame still queued is applied or waiting, none is silently forgotten."""
    from prescient.service.app.tracking.synthetic import SyntheticScene
    from prescient.service.tracker.ingest import FRESH_MAX, PRE_EGO_FRAMES

    scene = SyntheticScene(n_agents=10, seed=2)
    tracker = Tracker(TrackerConfig())
    pushed = 0
    while pushed <= FRESH_MAX:
        for x in scene.step()[:-1]:
            if not isinstance(x, m.EgoState):
                pushed += int(tracker.process(x))
    assert len(tracker._ingest.pending()) == PRE_EGO_FRAMES
    timeline = tracker._timeline
    assert timeline is not None and not timeline.events

    def nothing_lost() -> None:
        queued = {id(e[3]) for e in tracker._ingest.pending()}
        applied = {id(f) for e in timeline.events if e.frames is not None for f in e.frames}
        waiting = {id(e[3]) for e in timeline._held} | {id(e[3]) for e in tracker._ingest.fresh}
        assert queued - applied - waiting == set()

    first = scene.step()[:-1]
    ego = next(x for x in first if isinstance(x, m.EgoState))
    tracker.process(ego)  # the first ego state: frames in its window stay queued
    assert tracker._ingest.pending()
    tracker.sync()
    nothing_lost()
    out = tracker.update([x for x in first if x is not ego], scene.time_ns)
    for _ in range(10):
        out = tracker.update(scene.step()[:-1], scene.time_ns)
        nothing_lost()
    assert tracker.stats.rejected  # the oldest pre-ego frames were dropped, and counted
    assert out.header.stamp_ns == scene.time_ns
