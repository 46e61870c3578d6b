"""Conditional requests are bounded: caps refuse before any work, and the budget bounds the rest."""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from prescient.bus import messages as m
from prescient.bus.config import BusConfig, RequestLimitExceeded, RequestLimits
from prescient.bus.reqrep import Replier, Requester, ServerError
from prescient.service.node import _answer_conditional
from prescient.service.pipeline import Pipeline, PipelineConfig
from prescient.service.predictor import PredictorOutput
from prescient.service.raster import RasterConfig
from prescient.service.raster.scenes import grid_map, make_tracks

RASTER = RasterConfig(extent_m=16.0, resolution_m=1.0)  # 32 x 32: small and fast
MS = 1_000_000
N_AGENTS, K, T = 3, 2, m.PRED_HORIZON_STEPS


class CountingPredictor:
    """Stands in for the ONNX predictor: counts ``predict`` calls, reports ``infer_ns`` as its cost."""

    model_id = "counting"

    def __init__(self, in_channels: int, sleep_s: float = 0.0) -> None:
        self.cfg = type("Cfg", (), {"in_channels": in_channels, "num_modes": K, "future_steps": T})()
        self.calls = 0
        self._sleep_s = sleep_s

    def predict(self, raster, tracks, ego_velocity_mps, ego_size_lwh_m, plan_xy_m) -> PredictorOutput:
        self.calls += 1
        t0 = time.perf_counter_ns()
        if self._sleep_s:
            time.sleep(self._sleep_s)
        n = len(tracks.track_id)
        return PredictorOutput(
            trajectories_m=np.zeros((n, K, T, 2), np.float32),
            mode_probs=np.full((n, K), 1.0 / K, np.float32),
            scale_m=np.ones((n, K, T, 2), np.float32),
            from_model=np.ones(n, bool),
            infer_ns=max(time.perf_counter_ns() - t0, int(self._sleep_s * 1e9)),
        )


def _pipe(sleep_s: float = 0.0) -> tuple[Pipeline, CountingPredictor]:
    """A pipeline that has run one tick (so conditional requests have a scene)."""
    probe = Pipeline(grid_map(), None, PipelineConfig(), raster_cfg=RASTER, tracks_from_log=True)
    pred = CountingPredictor(probe.rasterizer.num_channels, sleep_s)
    pipe = Pipeline(
        grid_map(), pred, PipelineConfig(deadline_guard=True), raster_cfg=RASTER, tracks_from_log=True
    )
    pos = np.array([[75.0, 80.0], [85.0, 82.0], [90.0, 78.0]])
    tracks = make_tracks(
        pos,
        np.zeros(N_AGENTS),
        np.tile([4.5, 1.9], (N_AGENTS, 1)),
        np.full(N_AGENTS, int(m.AgentClass.CAR)),
        np.tile([5.0, 0.0], (N_AGENTS, 1)),
        ego_pose=(80.0, 80.0, 0.0),
        stamp_ns=0,
    )
    tracks = dataclasses.replace(tracks, header=dataclasses.replace(tracks.header, stamp_ns=0))
    ego = m.empty(
        m.EgoState,
        m.TOPIC_EGO,
        stamp_ns=0,
        pose=np.array([80.0, 80.0, 0.0]),
        velocity_mps=np.array([5.0, 0.0], np.float32),
        size_lwh_m=np.array([4.5, 1.9, 1.5], np.float32),
        plan_xy_m=np.array([[80.0 + d, 80.0] for d in range(0, 40, 4)], np.float32),
    )
    pipe.feed(ego)
    pipe.feed(tracks)
    assert pipe.tick(pipe.due_tick()) is not None
    pred.calls = 0
    return pipe, pred


def _request(b: int, t: int = T) -> m.ConditionalRequest:
    steps = np.arange(1, t + 1, dtype=np.float32) * 0.5
    plans = np.zeros((b, t, 2), np.float32)
    plans[:, :, 0] = 80.0 + steps
    plans[:, :, 1] = 80.0 + 0.1 * np.arange(b, dtype=np.float32)[:, None]
    return m.ConditionalRequest(
        header=m.Header(topic=m.TOPIC_CONDITIONAL_REQUEST), request_id=b, plans_xy_m=plans
    )


@pytest.fixture
def served(ipc_endpoints) -> Iterator[tuple[Requester, Replier, CountingPredictor]]:
    """The service's way of serving: accept, then answer within a deadline, in a thread."""
    cfg = BusConfig(conditional_endpoint=ipc_endpoints("cond"), poll_ms=20)
    pipe, pred = _pipe()
    rep = Replier(cfg, cfg.conditional_endpoint)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            if rep.socket.poll(20):
                rep.accept()
            if rep.pending:
                deadline_ns = time.perf_counter_ns() + 85 * MS
                rep.answer(
                    functools.partial(_answer_conditional, pipe, deadline_ns, cfg.requests), deadline_ns
                )

    th = threading.Thread(target=loop, daemon=True)
    th.start()
    req = Requester(cfg, cfg.conditional_endpoint)
    yield req, rep, pred
    req.close()
    stop.set()
    th.join(2)
    rep.close()


def test_conditional_1000_plans_refused_without_running_the_model(served) -> None:
    """B=1000: an error naming the cap, no model pass at all; the server answers the next request."""
    req, rep, pred = served
    with pytest.raises(ServerError, match="max_plans=8") as e:
        req.request(_request(1000, t=10), timeout_ms=3000)  # 80 kB: under the byte cap
    assert e.value.reason == "over_max_plans" and pred.calls == 0
    with pytest.raises(ServerError, match="max_request_bytes=262144") as e:
        req.request(_request(1000), timeout_ms=3000)  # 640 kB: refused before decoding
    assert e.value.reason == "over_max_request_bytes" and pred.calls == 0
    reply = req.request(_request(2), timeout_ms=3000)
    assert reply.trajectories_m.shape == (2, N_AGENTS, K, T, 2) and pred.calls == 2
    assert rep.stats.rejected == {
        "pred.conditional.request:over_max_plans": 1,
        "?:over_max_request_bytes": 1,
    }


def test_conditional_plan_longer_than_horizon_refused(served) -> None:
    req, rep, pred = served
    with pytest.raises(ServerError, match=f"max_plan_steps={T}") as e:
        req.request(_request(1, t=T + 1), timeout_ms=3000)
    assert e.value.reason == "over_max_plan_steps" and pred.calls == 0
    assert not req.request(_request(1), timeout_ms=3000).degraded


def test_conditional_wrong_message_type_is_an_error_reply(served) -> None:
    req, rep, pred = served
    with pytest.raises(ServerError) as e:
        req.request(m.MapRequest(header=m.Header(topic=m.TOPIC_MAP_REQUEST)), timeout_ms=3000)
    assert e.value.reason == "handler_failed" and "ConditionalRequest" in e.value.detail
    assert req.request(_request(1), timeout_ms=3000).request_id == 1


def test_pipeline_conditional_caps_checked_before_any_work() -> None:
    """Called directly (benchmarks, offline), the caps hold too; limits are configurable."""
    pipe, pred = _pipe()
    with pytest.raises(RequestLimitExceeded, match="max_plans=8"):
        pipe.conditional(_request(1000, t=10))
    with pytest.raises(RequestLimitExceeded, match="max_plans=2"):
        pipe.conditional(_request(3), limits=RequestLimits(max_plans=2))
    assert pred.calls == 0


def test_pipeline_conditional_no_budget_left_answers_every_plan_by_fallback_without_model() -> None:
    pipe, pred = _pipe()
    rep = pipe.conditional(_request(8), budget_ns=0)
    assert pred.calls == 0
    assert rep.degraded and rep.reason == "over budget: 8 of 8 plans answered by constant velocity"
    assert rep.trajectories_m.shape == (8, N_AGENTS, K, T, 2) and np.isfinite(rep.trajectories_m).all()
    # Constant velocity, 5 m/s along x: after 8 s every agent is 40 m further, for every plan.
    np.testing.assert_allclose(rep.trajectories_m[:, :, 0, -1, 0] - [75.0, 85.0, 90.0], 40.0, atol=1e-3)


def test_pipeline_conditional_stops_running_the_model_when_the_budget_is_spent() -> None:
    """Eight 30 ms model passes cannot fit 50 ms: the model runs for the first plans only."""
    pipe, pred = _pipe(sleep_s=0.03)
    pipe.conditional(_request(1))  # one timed pass for the deadline guard's estimate
    pred.calls = 0
    rep = pipe.conditional(_request(8), budget_ns=50 * MS)
    assert 1 <= pred.calls < 8
    assert rep.degraded and "over budget" in rep.reason
    assert np.isfinite(rep.trajectories_m).all()


def test_pipeline_conditional_skips_a_plan_whose_usual_time_does_not_fit() -> None:
    """Plans of ~30 ms each: with 20 ms left no model pass is started (the raster counts too)."""
    pipe, pred = _pipe(sleep_s=0.03)
    pipe.conditional(_request(2))  # two timed plans
    pred.calls = 0
    rep = pipe.conditional(_request(2), budget_ns=20 * MS)
    assert pred.calls == 0
    assert rep.reason == "over budget: 2 of 2 plans answered by constant velocity"


class RasterKeeper(CountingPredictor):
    """Keeps a copy of every raster it is given."""

    def __init__(self, in_channels: int) -> None:
        super().__init__(in_channels)
        self.rasters: list[np.ndarray] = []

    def predict(self, raster, tracks, ego_velocity_mps, ego_size_lwh_m, plan_xy_m) -> PredictorOutput:
        self.rasters.append(raster.copy())
        return super().predict(raster, tracks, ego_velocity_mps, ego_size_lwh_m, plan_xy_m)


def test_pipeline_conditional_answers_for_the_ticks_scene_after_newer_frames() -> None:
    """Frames fed after the tick (a newer ego state here) do not leak into the answer: under
    the tick's own plan the raster is the tick's, while a render of the newest state differs."""
    pipe, _ = _pipe()
    keeper = RasterKeeper(pipe.rasterizer.num_channels)
    pipe.predictor = keeper
    scene = pipe.scene
    assert scene is not None
    tick_raster = pipe.render_scene(scene, scene.ego.plan_xy_m).copy()
    newer = dataclasses.replace(
        scene.ego,
        header=dataclasses.replace(scene.ego.header, stamp_ns=200 * MS),
        pose=np.array([82.0, 80.0, 0.0]),
    )
    assert pipe.feed(newer)
    assert not np.array_equal(pipe.render(scene.tracks, newer, scene.ego.plan_xy_m), tick_raster)
    req = m.ConditionalRequest(
        header=m.Header(topic=m.TOPIC_CONDITIONAL_REQUEST), request_id=1, plans_xy_m=scene.ego.plan_xy_m[None]
    )
    rep = pipe.conditional(req)
    assert not rep.degraded and len(keeper.rasters) == 1
    np.testing.assert_array_equal(keeper.rasters[0], tick_raster)
