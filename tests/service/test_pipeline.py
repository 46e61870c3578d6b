"""Service pipeline: determinism, fallbacks, no backlog, conditional predictions, replay."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from prescient.bus import messages as m
from prescient.bus.logfile import LogWriter
from prescient.service.pipeline import Pipeline, PipelineConfig
from prescient.service.raster import RasterConfig, build_spec
from prescient.service.raster.scenes import grid_map, make_tracks

RASTER = RasterConfig(extent_m=16.0, resolution_m=1.0)  # 32 x 32: small and fast for tests
MS = 1_000_000


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    from prescient.models.export_tiny import write_tiny_onnx

    spec = build_spec(RASTER)
    path, _ = write_tiny_onnx(
        tmp_path_factory.mktemp("tiny"),
        in_channels=spec.num_channels,
        raster_hw=(32, 32),
        resolution_m_per_px=1.0,
        future_steps=m.PRED_HORIZON_STEPS,
        raster_spec_version=spec.fingerprint(),
    )
    return path


def _predictor(path: Path):
    from prescient.service.predictor import OnnxPredictor

    return OnnxPredictor(
        path,
        providers=("CPUExecutionProvider",),
        intra_op_threads=1,
        expected_spec_version=build_spec(RASTER).fingerprint(),
    )


def _scene(t_ns: int, n: int = 5) -> tuple[m.EgoState, m.Tracks]:
    """Agents driving along x around an ego at (80, 80), at sensor time ``t_ns``."""
    t = t_ns / 1e9
    rng = np.random.default_rng(0)
    pos = np.array([80.0, 80.0]) + rng.uniform(-12, 12, (n, 2)) + np.array([5.0 * t, 0.0])
    vel = np.tile([5.0, 0.0], (n, 1))
    tracks = make_tracks(
        pos,
        np.zeros(n),
        np.tile([4.5, 1.9], (n, 1)),
        np.full(n, int(m.AgentClass.CAR)),
        vel,
        ego_pose=(80.0 + 5 * t, 80.0, 0.0),
        stamp_ns=t_ns,
    )
    tracks = dataclasses.replace(tracks, header=dataclasses.replace(tracks.header, stamp_ns=t_ns))
    ego = m.empty(
        m.EgoState,
        m.TOPIC_EGO,
        stamp_ns=t_ns,
        pose=np.array([80.0 + 5 * t, 80.0, 0.0]),
        velocity_mps=np.array([5.0, 0.0], np.float32),
        size_lwh_m=np.array([4.5, 1.9, 1.5], np.float32),
        plan_xy_m=np.array([[80.0 + 5 * t + d, 80.0] for d in range(0, 40, 4)], np.float32),
    )
    return ego, tracks


def _run(pipe: Pipeline, n_ticks: int = 6) -> list:
    out = []
    for i in range(n_ticks):
        ego, tracks = _scene(i * 100 * MS)
        pipe.feed(ego)
        pipe.feed(tracks)
        tick = pipe.due_tick()
        if tick is not None:
            res = pipe.tick(tick)
            if res is not None:
                out.append(res)
    return out


def _pipe(predictor=None, **cfg) -> Pipeline:
    return Pipeline(
        grid_map(),
        predictor,
        PipelineConfig(deadline_guard=False, **cfg),
        raster_cfg=RASTER,
        tracks_from_log=True,
    )


def test_pipeline_without_model_publishes_degraded_constant_velocity() -> None:
    res = _run(_pipe())
    assert len(res) == 6
    p = res[-1].predictions
    assert p.degraded and "no model" in p.reason
    assert p.trajectories_m.shape == (5, 6, m.PRED_HORIZON_STEPS, 2)
    # Constant velocity 5 m/s along x: 8 s later, 40 m further.
    np.testing.assert_allclose(
        p.trajectories_m[:, 0, -1, 0] - res[-1].tracks.position_m[:, 0], 40.0, atol=1e-3
    )
    assert set(p.timings_ns) >= {"track", "raster", "infer", "total"}


def test_pipeline_with_model_is_deterministic(tiny_model: Path) -> None:
    """Two pipelines fed the same inputs give identical rasters and predictions."""
    a, b = _run(_pipe(_predictor(tiny_model))), _run(_pipe(_predictor(tiny_model)))
    assert len(a) == len(b) == 6
    for x, y in zip(a, b):
        assert not x.predictions.degraded
        np.testing.assert_array_equal(x.predictions.trajectories_m, y.predictions.trajectories_m)
        np.testing.assert_array_equal(x.predictions.mode_probs, y.predictions.mode_probs)
        np.testing.assert_allclose(x.predictions.mode_probs.sum(1), 1.0, atol=1e-5)


class _Failing:
    def __init__(self, inner, mode: str) -> None:
        self.cfg, self.model_id, self.provider, self._inner, self._mode = (
            inner.cfg,
            inner.model_id,
            inner.provider,
            inner,
            mode,
        )

    def predict(self, *args, **kw):
        if self._mode == "raise":
            raise RuntimeError("boom")
        out = self._inner.predict(*args, **kw)
        traj = out.trajectories_m.copy()
        traj[0, 0, 0, 0] = np.nan
        return dataclasses.replace(out, trajectories_m=traj)


@pytest.mark.parametrize("mode, words", [("raise", "model failed"), ("nan", "not finite")])
def test_pipeline_model_failure_falls_back_flagged_and_finite(
    tiny_model: Path, mode: str, words: str
) -> None:
    pipe = _pipe(_Failing(_predictor(tiny_model), mode))
    res = _run(pipe)
    p = res[-1].predictions
    assert p.degraded and words in p.reason
    assert np.isfinite(p.trajectories_m).all()
    assert pipe.stats.degraded_ticks == len(res)
    health = pipe.health("predictor", 0, "CPUExecutionProvider", {}, {})
    assert health.rejected.get("degraded:" + p.reason.split(":")[0]) == len(res)


def test_pipeline_deadline_guard_uses_fallback_when_model_too_slow(tiny_model: Path) -> None:
    pipe = Pipeline(
        grid_map(),
        _predictor(tiny_model),
        PipelineConfig(deadline_guard=True, budget_ns=1),
        raster_cfg=RASTER,
        tracks_from_log=True,
    )
    res = _run(pipe)
    # The first tick has no timing history and runs the model; later ones expect to miss.
    assert not res[0].predictions.degraded
    assert res[1].predictions.degraded and "over budget" in res[1].predictions.reason
    assert [r.predictions.degraded for r in res] == [False, True, True, True, True, False]  # 5th: probe
    assert pipe.stats.deadline_misses == len(res)


def test_pipeline_due_tick_skips_backlog() -> None:
    pipe = _pipe()
    ego, tracks = _scene(0)
    pipe.feed(ego)
    pipe.feed(tracks)
    assert pipe.due_tick() == 0
    assert pipe.due_tick() is None
    ego, tracks = _scene(550 * MS)  # five tick boundaries passed at once
    pipe.feed(ego)
    pipe.feed(tracks)
    assert pipe.due_tick() == 500 * MS  # only the newest counts
    assert pipe.stats.skipped_ticks == 4


def test_pipeline_conditional_one_reply_per_plan(tiny_model: Path) -> None:
    pipe = _pipe(_predictor(tiny_model))
    _run(pipe, 3)
    ego, _ = _scene(200 * MS)
    x0 = float(ego.pose[0])
    t = np.arange(1, m.PRED_HORIZON_STEPS + 1)[:, None] * 0.1
    go = np.column_stack([x0 + 8.0 * t[:, 0], np.full(len(t), 80.0)])
    stop = np.column_stack([np.full(len(t), x0 + 2.0), np.full(len(t), 80.0)])
    req = m.ConditionalRequest(
        header=m.Header(topic=m.TOPIC_CONDITIONAL_REQUEST),
        request_id=7,
        plans_xy_m=np.stack([go, stop]).astype(np.float32),
    )
    rep = pipe.conditional(req)
    assert rep.request_id == 7 and not rep.degraded
    assert rep.trajectories_m.shape == (2, 5, pipe.num_modes, m.PRED_HORIZON_STEPS, 2)
    # The plan enters the raster and the ego node: the two answers differ.
    assert np.abs(rep.trajectories_m[0] - rep.trajectories_m[1]).max() > 1e-4


def test_replay_log_twice_is_identical(tiny_model: Path, tmp_path: Path) -> None:
    """A log replayed twice through ``replay_log`` gives byte-identical predictions."""
    from prescient.bus import codec
    from prescient.bus.replayer import iter_messages
    from prescient.service.offline import iter_ticks

    log_path = tmp_path / "scene.mcap"
    with LogWriter(log_path) as w:
        w.write(dataclasses.replace(grid_map(), header=m.Header(topic=m.TOPIC_MAP)))
        for i in range(8):
            ego, tracks = _scene(i * 100 * MS)
            w.write(ego)
            w.write(tracks)
    assert sum(1 for _ in iter_messages(log_path)) == 17

    def once() -> list[bytes]:
        pipe = _pipe(_predictor(tiny_model))
        out = []
        for res in iter_ticks(pipe, log_path):
            pred = dataclasses.replace(res.predictions, timings_ns={})  # wall-clock timings differ
            out.append(codec.encode(pred) + res.raster.tobytes())
        return out

    a, b = once(), once()
    assert len(a) == 8 and a == b


def test_pipeline_clock_jump_back_resets_and_ticks_again() -> None:
    """A restarted simulator (sensor clock back to 0) is followed, not waited for."""
    pipe = _pipe()
    for i in range(40, 50):
        ego, tracks = _scene(i * 100 * MS)
        pipe.feed(ego)
        pipe.feed(tracks)
        pipe.due_tick()
    ego, tracks = _scene(0)
    pipe.feed(ego)
    pipe.feed(tracks)
    assert pipe.stats.clock_resets == 1
    assert pipe.due_tick() == 0
    assert pipe.tick(0) is not None


def test_pipeline_conditional_budget_falls_back_flagged(tiny_model: Path) -> None:
    """With no time left, conditional plans get the flagged fallback instead of the model."""
    pipe = Pipeline(
        grid_map(),
        _predictor(tiny_model),
        PipelineConfig(deadline_guard=True),
        raster_cfg=RASTER,
        tracks_from_log=True,
    )
    _run(pipe, 3)
    plans = np.zeros((2, m.PRED_HORIZON_STEPS, 2), np.float32) + 80.0
    req = m.ConditionalRequest(
        header=m.Header(topic=m.TOPIC_CONDITIONAL_REQUEST), request_id=1, plans_xy_m=plans
    )
    assert not pipe.conditional(req).degraded  # unbounded: the model answers
    rep = pipe.conditional(req, budget_ns=0)
    assert rep.degraded and "over budget" in rep.reason
    assert np.isfinite(rep.trajectories_m).all()


# ----------------------------------------------------------------------------------------------
# Clock jumps and forged stamps (sensor frames through the tracker, synthetic scene).
# ----------------------------------------------------------------------------------------------
S = 1_000_000_000


def _sensor_pipe() -> Pipeline:
    return Pipeline(grid_map(), None, PipelineConfig(deadline_guard=False), raster_cfg=RASTER)


def _restamp(msg, stamp_ns: int, topic: str | None = None):  # noqa: ANN001, ANN202
    header = dataclasses.replace(msg.header, stamp_ns=int(stamp_ns), topic=topic or msg.header.topic)
    return dataclasses.replace(msg, header=header)


def _drive(pipe: Pipeline, scene, steps: int, inject=None) -> list:  # noqa: ANN001
    """Feed ``steps`` ticks of a SyntheticScene (``inject(i, msgs)`` may change the messages) and
    run every due tick; returns the tick results."""
    out = []
    for i in range(steps):
        msgs = scene.step()[:-1]  # ground truth is not an input
        if inject is not None:
            msgs = inject(i, msgs)
        for x in msgs:
            pipe.feed(x)
        tick = pipe.due_tick()
        if tick is not None:
            res = pipe.tick(tick)
            if res is not None:
                out.append(res)
    return out


def test_pipeline_forged_old_frame_every_second_never_resets_and_tracks_survive() -> None:
    """One frame per second stamped at the start of time (each on another topic, ego state
    included) for 20 s: never a reset, and every tick's tracks equal those of a clean run."""
    from prescient.service.app.tracking.synthetic import SyntheticScene

    def forge(i: int, msgs: list) -> list:
        if i % 10 == 5:
            src = msgs[(i // 10) % len(msgs)]
            msgs.insert(3, _restamp(src, 1_000))
        return msgs

    clean = _drive(_sensor_pipe(), SyntheticScene(n_agents=20, seed=2, ego_speed_mps=2.0), 200)
    pipe = _sensor_pipe()
    forged = _drive(pipe, SyntheticScene(n_agents=20, seed=2, ego_speed_mps=2.0), 200, forge)
    assert pipe.stats.clock_resets == 0
    assert len(forged) == len(clean) == 200
    for a, b in zip(clean, forged):
        np.testing.assert_array_equal(a.tracks.track_id, b.tracks.track_id)
        np.testing.assert_array_equal(a.tracks.position_m, b.tracks.position_m)
    # Tracks born in the first 2 s are still there at 20 s.
    assert len(set(forged[20].tracks.track_id) & set(forged[-1].tracks.track_id)) >= 5
    rejected = pipe.health("predictor", 0, "cpu", {}, {}).rejected
    unconfirmed = {k: v for k, v in rejected.items() if k.endswith(":clock_jump_unconfirmed")}
    assert sum(unconfirmed.values()) >= 18  # the first ones are under 2 s old: out of order


def test_pipeline_genuine_multi_sensor_restart_resets_within_a_second() -> None:
    """Simulator restart: every sensor and the ego state jump back 5 s together. The pipeline
    resets on the first messages of the new clock and tracks again within a second."""
    from prescient.service.app.tracking.synthetic import SyntheticScene

    pipe = _sensor_pipe()
    _drive(pipe, SyntheticScene(n_agents=12, seed=5), 60)
    restarted = SyntheticScene(n_agents=12, seed=5)
    res = _drive(pipe, restarted, 1)
    assert pipe.stats.clock_resets == 1
    assert res and res[0].tracks.stamp_ns == restarted.time_ns
    res = _drive(pipe, restarted, 10)
    assert pipe.stats.clock_resets == 1
    assert len(res[-1].tracks.track_id) >= 8
    assert res[-1].tracks.stamp_ns == restarted.time_ns


def test_pipeline_single_future_ego_state_does_not_block_real_ones() -> None:
    """An ego state 60 s ahead is rejected; the real ego states keep being used for rendering."""
    from prescient.service.app.tracking.synthetic import SyntheticScene

    def forge(i: int, msgs: list) -> list:
        if i == 10:
            msgs.insert(1, _restamp(msgs[0], msgs[0].header.stamp_ns + 60 * S))
        return msgs

    pipe = _sensor_pipe()
    scene = SyntheticScene(n_agents=12, seed=5)
    res = _drive(pipe, scene, 20, forge)
    assert pipe.ego is not None and pipe.ego.header.stamp_ns == scene.time_ns
    assert len(res) == 20 and res[-1].tracks.stamp_ns == scene.time_ns
    assert pipe.tracker.stats.rejected == {f"{m.TOPIC_EGO}:future_dated": 1}


def test_pipeline_forged_random_topics_keep_health_keys_bounded() -> None:
    """100 frames with random topics and stamps add a bounded number of health keys."""
    from prescient.service.app.tracking.synthetic import SyntheticScene

    rng = np.random.default_rng(1)
    pipe = _sensor_pipe()
    scene = SyntheticScene(n_agents=5, seed=1)

    def forge(i: int, msgs: list) -> list:
        for j in range(10):
            src = msgs[1 + (i + j) % 16]
            topic = rng.choice(["sensor.", "ego.", ""]) + "".join(rng.choice(list("abcxyz.!"), 10))
            msgs.append(_restamp(src, src.header.stamp_ns + int(rng.integers(-30, 30)) * S, topic))
        return msgs

    _drive(pipe, scene, 10, forge)
    before = set(pipe.health("predictor", 0, "cpu", {}, {}).rejected)
    _drive(pipe, scene, 10, forge)
    after = pipe.health("predictor", 0, "cpu", {}, {}).rejected
    assert pipe.stats.clock_resets == 0
    assert len(after) <= 8
    assert set(after) == before  # the second 100 forged frames added no key


def test_pipeline_single_old_message_from_a_log_does_not_reset() -> None:
    """From a log (ego + tracks only), one old tracks message or one old ego state is rejected;
    the two together, as a restarted log sends them, reset (see the test above)."""
    pipe = _pipe()
    for i in range(40, 50):
        ego, tracks = _scene(i * 100 * MS)
        pipe.feed(ego)
        pipe.feed(tracks)
        pipe.due_tick()
    old_ego, old_tracks = _scene(0)
    assert pipe.feed(old_tracks) is False
    for i in range(50, 61):  # more than the vote window of real input between the two
        ego, tracks = _scene(i * 100 * MS)
        pipe.feed(ego)
        pipe.feed(tracks)
    assert pipe.feed(old_ego) is False
    assert pipe.stats.clock_resets == 0
    assert pipe.due_tick() == 6000 * MS


# ----------------------------------------------------------------------------------------------
# Ego history: the tracker's ego trail gives the rows the pipeline used to keep itself.
# ----------------------------------------------------------------------------------------------
def _ego_stream(seed: int) -> list:
    """A synthetic scene whose ego states come at irregular stamps (three extra per 100 ms,
    jittered), with duplicates, out-of-order and implausible ones, a clock jump ahead (+20 s,
    confirmed by the tracker's vote) and a restart (-30 s, the pipeline resets)."""
    from prescient.service.app.tracking.synthetic import SyntheticScene

    rng = np.random.default_rng(seed)
    scene = SyntheticScene(n_agents=8, seed=seed)
    out: list = []
    shift = 0
    for i in range(60):
        msgs = scene.step()[:-1]
        shift += 20 * S if i == 25 else (-30 * S if i == 45 else 0)
        ego = msgs[0]
        t = ego.header.stamp_ns
        extra = []
        for back_ms in sorted(rng.uniform(5, 95, 3), reverse=True):
            st = t - int(back_ms * MS)
            moved = dataclasses.replace(ego, pose=ego.pose - np.array([8.0 * back_ms / 1000, 0.0, 0.0]))
            extra.append(_restamp(moved, st))
        if rng.uniform() < 0.2:
            extra.append(extra[0])  # duplicate
        if rng.uniform() < 0.2:
            extra.insert(1, extra[-1])  # out of order
        if rng.uniform() < 0.1:
            extra.append(dataclasses.replace(_restamp(ego, t - MS), pose=ego.pose + 500.0))  # teleport
        out.extend(_restamp(x, x.header.stamp_ns + shift) for x in (*extra, *msgs))
    return out


def test_tracker_ego_history_matches_pipeline_ego_hist_rows() -> None:
    """Fed the same stream, the tracker's ego history equals, after every message, the rows the
    pipeline kept before it used the tracker's (every tick period, last TRACK_HISTORY_STEPS)."""
    from collections import deque

    pipe = _sensor_pipe()
    period = pipe.cfg.tick_period_ns
    ref: deque = deque(maxlen=m.TRACK_HISTORY_STEPS)  # the pipeline's former _ego_hist
    resets, prev_ego, checked = 0, None, 0
    for msg in _ego_stream(3):
        pipe.feed(msg)
        if pipe.stats.clock_resets != resets:
            resets = pipe.stats.clock_resets
            ref.clear()
        if pipe.ego is not None and pipe.ego is not prev_ego:
            stamp = pipe.ego.header.stamp_ns
            if not ref or stamp - ref[-1][0] >= period:
                ref.append((stamp, np.asarray(pipe.ego.pose[:2], np.float64)))
        prev_ego = pipe.ego
        expected = np.array([xy for _, xy in ref], np.float64).reshape(-1, 2)
        got = pipe.tracker.ego_history_xy(m.TRACK_HISTORY_STEPS, period)
        assert got.dtype == np.float64 and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)
        checked += len(got)
        tick = pipe.due_tick()
        if tick is not None:
            pipe.tick(tick)
    assert resets == 1 and checked > 1000
    rejected = pipe.tracker.stats.rejected
    assert rejected.get(f"{m.TOPIC_EGO}:duplicate") and rejected.get(f"{m.TOPIC_EGO}:out_of_order")
    assert pipe.tracker.stats.counters.get("clock_jumps") == 1


def _dense(pipe: Pipeline, n: int = 12, ticks: int = 4) -> list:
    """The tick results of ``ticks`` ticks of a scene with ``n`` agents (more than the 8 slots)."""
    out = []
    for i in range(ticks):
        ego, tracks = _scene(i * 100 * MS, n=n)
        pipe.feed(ego)
        pipe.feed(tracks)
        if (tick := pipe.due_tick()) is not None and (res := pipe.tick(tick)) is not None:
            out.append(res)
    return out


def test_agents_beyond_the_model_slots_are_named_on_the_wire(tiny_model: Path) -> None:
    """12 agents, 8 model slots: the 4 farthest get constant velocity, agent_source says which,
    health counts them; a degraded tick marks every agent."""
    pipe = _pipe(_predictor(tiny_model))
    out = _dense(pipe)
    p, tracks = out[-1].predictions, out[-1].tracks
    assert not p.degraded
    src = p.agent_source
    assert (src == m.AgentSource.MODEL).sum() == 8 and (src == m.AgentSource.FALLBACK_CAPACITY).sum() == 4
    dist = np.linalg.norm(tracks.position_m - np.asarray(tracks.ego_pose[:2]), axis=1)
    assert dist[src == m.AgentSource.FALLBACK_CAPACITY].min() >= dist[src == m.AgentSource.MODEL].max()
    health = pipe.health("predictor", 0, "cpu", {}, {})
    assert health.rejected["predictor:agents_over_capacity"] == 4 * len(out)
    degraded = _run(_pipe())[-1].predictions
    assert degraded.degraded and (degraded.agent_source == m.AgentSource.FALLBACK_DEGRADED).all()


def test_a_second_model_pass_predicts_the_agents_beyond_the_slots(tiny_model: Path) -> None:
    """12 agents, 8 slots, 2 passes: every agent from the model; the 8 nearest get exactly what
    one pass gives them, the other 4 no longer get constant velocity."""

    def run(passes: int) -> tuple[m.Predictions, Pipeline]:
        pipe = _pipe(_predictor(tiny_model), model_passes=passes)
        return _dense(pipe)[-1].predictions, pipe

    one, _ = run(1)
    two, pipe = run(2)
    assert not two.degraded and (two.agent_source == m.AgentSource.MODEL).all()
    assert pipe.stats.agents_over_capacity == 0
    first = one.agent_source == m.AgentSource.MODEL
    np.testing.assert_array_equal(two.trajectories_m[first], one.trajectories_m[first])
    assert not np.array_equal(two.trajectories_m[~first], one.trajectories_m[~first])
