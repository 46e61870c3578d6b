"""Service pipeline: determinism, fallbacks, no backlog, conditional predictions, replay."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from bus import messages as m
from bus.logfile import LogWriter
from service.pipeline import Pipeline, PipelineConfig
from service.raster import RasterConfig, build_spec
from service.raster.scenes import grid_map, make_tracks

RASTER = RasterConfig(extent_m=16.0, resolution_m=1.0)  # 32 x 32: small and fast for tests
MS = 1_000_000


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    from models.export_tiny import write_tiny_onnx

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
    from service.predictor import OnnxPredictor

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
    from bus import codec
    from bus.replayer import iter_messages
    from service.replay import iter_ticks

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
