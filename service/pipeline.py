"""The service's processing pipeline: bus messages in, tracks and predictions out.

A pure stage: no sockets and no wall clock in the logic. Time comes from message headers, so the
same log fed twice gives the same tracks, rasters and predictions (the live node and the offline
replayer both drive this class). Wall-clock durations are *measured* (``perf_counter_ns``) for
the per-stage timings that travel with each prediction; they influence behaviour only when the
deadline guard is on (live mode), and that guard is off for offline replay.

Per tick at ``now_ns`` (a multiple of ``tick_period_ns`` on the sensor clock):
  tracker.snapshot(now) -> rasterizer.render(...) -> predictor.predict(...) -> Predictions.
The stages pass a :class:`~prescient.service.tracks.TrackSnapshot`; the node builds the wire ``Tracks`` from it.
The model path falls back to constant velocity, flagged ``degraded`` with a reason, when the model
is missing, fails, returns non-finite values, or (deadline guard) is not expected to finish
within what is left of the budget.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import numpy as np

from prescient.bus import messages as m
from prescient.bus.config import RequestLimits
from prescient.bus.maps import map_is_empty
from prescient.service import conditional, pipeline_types
from prescient.service.liveness import Verdict, health_message
from prescient.service.model_io.baselines import constant_velocity_predictions
from prescient.service.pipeline_types import NS_PER_MS, PipelineConfig, PipelineStats, TickResult, TickScene
from prescient.service.raster import MapTooLargeError, RasterConfig, Rasterizer
from prescient.service.source_times import SourceTimes
from prescient.service.tracker import Tracker, TrackerConfig
from prescient.service.tracker.admission import ClockVote
from prescient.service.tracks import TrackSnapshot

if TYPE_CHECKING:  # the protocol only: importing the predictor module loads onnxruntime
    from prescient.service.predictor import Predictor

log = logging.getLogger(__name__)

__all__ = ["NS_PER_MS", "Pipeline", "PipelineConfig", "PipelineStats", "TickResult"]

GUARD_PROBE_EVERY = 5  # with the deadline guard skipping the model, still run it every 5th time


class Pipeline:
    """Tracker -> rasterizer -> predictor, driven by sensor time.

    Args:
        vector_map: the map (world frame).
        predictor: an :class:`prescient.service.predictor.OnnxPredictor`, or None to run on the physics
            fallback only (every prediction then says ``degraded: no model``).
        cfg: pipeline settings. tracker_cfg / raster_cfg: stage settings.
    """

    def __init__(
        self,
        vector_map: m.VectorMap,
        predictor: Predictor | None,
        cfg: PipelineConfig | None = None,
        tracker_cfg: TrackerConfig | None = None,
        raster_cfg: RasterConfig | None = None,
        no_model_reason: str = "no model loaded",
        tracks_from_log: bool = False,
    ) -> None:
        self.cfg = cfg or PipelineConfig()
        # Imported logs (Argoverse 2, ETH/UCY) carry ground truth as Tracks and no sensor frames:
        # then the Tracks messages are the tracker's output and drive the ticks.
        self.tracks_from_log = tracks_from_log
        self._given_tracks: TrackSnapshot | None = None
        self._tracker_cfg = tracker_cfg or TrackerConfig()
        self.tracker = Tracker(self._tracker_cfg)
        self.tracker.warm_up()
        self.rasterizer = Rasterizer(raster_cfg or RasterConfig(), vector_map)
        self.map_id = vector_map.map_id
        if map_is_empty(vector_map):
            log.warning("map %r is empty: the raster's map channels stay empty", vector_map.map_id)
        self.predictor = predictor
        self._no_model_reason = no_model_reason
        if predictor is not None:
            if predictor.cfg.in_channels != self.rasterizer.num_channels:
                raise ValueError(
                    f"model takes {predictor.cfg.in_channels} channels, rasterizer renders {self.rasterizer.num_channels}"
                )
        self.model_id = predictor.model_id if predictor is not None else "constant_velocity"
        self.num_modes = predictor.cfg.num_modes if predictor is not None else self.cfg.num_modes
        self.future_steps = predictor.cfg.future_steps if predictor is not None else self.cfg.future_steps
        self.stats = PipelineStats()
        self._ego: m.EgoState | None = None
        self._lights: m.TrafficLights | None = None
        self._lidar: dict[str, m.LidarFrame] = {}
        self._newest_stamp_ns: int | None = None
        self._source_times = SourceTimes()
        self._given_header: m.Header | None = None
        self._next_tick_ns: int | None = None
        self._infer_ns: deque[int] = deque(maxlen=10)
        self._from_model: np.ndarray | None = None  # of the last model pass: (N,) bool
        self._skipped_in_row = 0
        self._feed_ns = 0
        self._scene: TickScene | None = None  # the last tick's (what conditional requests answer for)
        self._plan_ns: deque[int] = deque(maxlen=conditional.PLAN_TIMES_KEPT)
        self._clock_vote = ClockVote(
            (*m.SENSOR_TOPICS, m.TOPIC_TRACKS) if tracks_from_log else m.SENSOR_TOPICS,
            m.TOPIC_EGO,
            self._tracker_cfg.admission,
        )

    # ------------------------------------------------------------------------------------------
    def feed(self, msg: Any, recv_mono_ns: int = 0) -> bool:
        """Take one decoded bus message. Returns True if some stage used it.

        ``recv_mono_ns`` (live only) is when the node received it; it stands in for the sender's
        publish time when that one is from another run (a replayed log keeps its recorded stamps).

        An input on a sensor, ego (or, from a log, tracks) topic stamped more than
        ``admission.clock_jump_s`` behind the newest time is a clock that jumped back (simulator or
        log restarted) or a forged stamp. It is rejected as ``clock_jump_unconfirmed`` until
        :class:`~prescient.service.tracker.admission.ClockVote` confirms the new clock (``quorum_topics``
        sensor topics plus the ego state agree); then the tracker and tick clock start over and
        the agreeing inputs are fed again.
        """
        used = False
        t0 = time.perf_counter_ns()
        header = getattr(msg, "header", None)
        topic = getattr(header, "topic", None)
        batch = [msg]
        stamp = getattr(header, "stamp_ns", None)
        if isinstance(topic, str) and self._clock_vote.knows(topic) and isinstance(stamp, int):
            newest = [t for t in (self._newest_stamp_ns, self.tracker.newest_ego_ns) if t is not None]
            ref_ns = max(newest) if newest else None
            jump_ns = int(self._tracker_cfg.admission.clock_jump_s * 1e9)
            if ref_ns is not None and stamp < ref_ns - jump_ns:
                agreed = self._clock_vote.offer(topic, stamp, ref_ns, msg)
                if agreed is None:
                    self.tracker.stats.reject(topic, "clock_jump_unconfirmed")
                    self._feed_ns += time.perf_counter_ns() - t0
                    return False
                log.warning(
                    "sensor clock jumped back %.1f s (%d topics agree): resetting tracker and tick clock",
                    (ref_ns - stamp) / 1e9,
                    len(agreed),
                )
                self.stats.clock_resets += 1
                self._reset()
                batch = agreed
        for item in batch:
            item_used = False
            if isinstance(item, m.EgoState):
                item_used = self.tracker.process(item)
                if item_used:
                    self._ego = item
            elif isinstance(item, m.TrafficLights):
                self._lights, item_used = item, True
            elif isinstance(item, m.VectorMap):
                item_used = self.set_map(item)
            elif isinstance(item, m.Tracks) and self.tracks_from_log:
                item_used = self._take_log_tracks(item, recv_mono_ns)
            elif isinstance(item, (m.CameraFrame, m.LidarFrame, m.RadarFrame, m.LwirFrame)):
                item_used = self.tracker.process(item)
                if item_used:
                    self._source_times.note(item.header, recv_mono_ns)
                    if isinstance(item, m.LidarFrame):
                        self._lidar[item.header.topic] = item
                    # Before the first ego state nothing vouches for a frame's stamp: it must not
                    # move the tick clock (the tracker re-checks it against the first ego state).
                    if self.tracker.newest_ego_ns is not None:
                        self._note_input(item.header, recv_mono_ns)
            if item_used and self._clock_vote.knows(item.header.topic):
                self._clock_vote.mark_live(item.header.topic)
            used = used or (item_used and item is msg)
        # The tracker does its per-frame work as frames arrive: "ingest", off the tick's path.
        self._feed_ns += time.perf_counter_ns() - t0
        return used

    def prepare(self) -> None:
        """Between ticks: apply what arrived to the tracker's look-ahead (see
        :meth:`~prescient.service.tracker.Tracker.sync`), so that the next tick has only its newest
        frames left to apply. Results do not depend on whether or when it is called."""
        if not self.tracks_from_log:
            t0 = time.perf_counter_ns()
            self.tracker.sync()
            self._feed_ns += time.perf_counter_ns() - t0

    def set_map(self, vector_map: m.VectorMap) -> bool:
        """Switch to ``vector_map`` when its ``map_id`` differs from the current one.

        A new map means another place (the next log, another city): the tracker and the tick
        clock start over (``map_changes``), since no track or pose of the old map means anything
        on the new one. A map the rasterizer cannot hold is refused (``maps_refused``) and the
        current map stays. Returns True when the map was switched.
        """
        if vector_map.map_id == self.map_id:
            return False
        try:
            rasterizer = Rasterizer(self.rasterizer.cfg, vector_map, warm_up=False)
        except MapTooLargeError as e:
            self.stats.maps_refused += 1
            log.warning("map %r refused, keeping %r: %s", vector_map.map_id, self.map_id, e)
            return False
        log.warning(
            "map changed %r -> %r%s: resetting tracker and tick clock",
            self.map_id,
            vector_map.map_id,
            " (empty: map channels stay empty)" if map_is_empty(vector_map) else "",
        )
        rasterizer.stats = self.rasterizer.stats  # counters only grow
        self.rasterizer, self.map_id = rasterizer, vector_map.map_id
        self.stats.map_changes += 1
        self._reset()
        return True

    def _take_log_tracks(self, msg: m.Tracks, recv_mono_ns: int) -> bool:
        """Tracks from a log drive the ticks; their rows are checked once, here."""
        try:
            snap = TrackSnapshot.from_message(msg)
        except ValueError:
            self.tracker.stats.reject(msg.header.topic, "non_finite")
            return False
        for reason in snap.dropped_rows or {}:
            self.tracker.stats.reject(msg.header.topic, reason)
        self._given_tracks, self._given_header = snap, msg.header
        self._source_times.note(msg.header, recv_mono_ns)
        self._note_input(msg.header, recv_mono_ns)
        return True

    def _reset(self) -> None:
        """Start over (new sensor clock or new map). Rejection counters carry over (they only grow)."""
        stats = self.tracker.stats
        self.tracker = Tracker(self._tracker_cfg)
        self.tracker.stats = stats
        self._ego, self._lights, self._given_tracks, self._scene = None, None, None, None
        self._given_header = None
        self._source_times.clear()
        self._lidar.clear()
        self._newest_stamp_ns = self._next_tick_ns = None
        self._clock_vote.clear(live=True)

    def _note_input(self, header: m.Header, recv_mono_ns: int) -> None:
        """Advance the tick clock to an admitted input's stamp (never back)."""
        if self._newest_stamp_ns is None or header.stamp_ns > self._newest_stamp_ns:
            self._newest_stamp_ns = header.stamp_ns

    def due_tick(self) -> int | None:
        """The tick time to run now, or None. Only the newest due tick counts (no backlog)."""
        if self._newest_stamp_ns is None:
            return None
        period = self.cfg.tick_period_ns
        latest = (self._newest_stamp_ns // period) * period
        if self._next_tick_ns is None:
            self._next_tick_ns = latest
        if latest < self._next_tick_ns:
            return None
        skipped = (latest - self._next_tick_ns) // period
        self.stats.skipped_ticks += int(skipped)
        self._next_tick_ns = latest + period
        return int(latest)

    # ------------------------------------------------------------------------------------------
    def tick(self, now_ns: int, decode_ns: int = 0) -> TickResult | None:
        """Run one tick at ``now_ns`` (sensor clock). None until an ego state has arrived."""
        t_start = time.perf_counter_ns()
        if self.tracks_from_log:
            if self._given_tracks is None:
                return None
            tracks = self._given_tracks
        else:
            tracks = self.tracker.snapshot(now_ns)
        t_track = time.perf_counter_ns()
        ego = self._ego
        if ego is None:
            self.stats.no_ego_ticks += 1
            return None
        scene = self._scene_now(tracks, ego, int(now_ns))
        raster = self.render_scene(scene, ego.plan_xy_m)
        t_raster = time.perf_counter_ns()
        traj, probs, scale, degraded, reason, infer_ns = self._predict(
            raster, tracks, ego, ego.plan_xy_m, t_start + self.cfg.budget_ns
        )
        source = pipeline_types.agent_source(len(tracks.track_id), None if degraded else self._from_model)
        self.stats.agents_over_capacity += int((source == m.AgentSource.FALLBACK_CAPACITY).sum())
        t_end = time.perf_counter_ns()
        feed_ns, self._feed_ns = self._feed_ns, 0
        applied = self._given_header if self.tracks_from_log else self.tracker.newest_applied
        source_ns, source_sent_ns, held_ns = self._source_times.source(applied, self._newest_stamp_ns)
        # Between ticks (not on the tick's path): decoding and the tracker's per-frame work.
        # At the tick: the rest of tracking (look-ahead catch-up, tick steps), raster, model.
        timings = {
            "decode": int(decode_ns),
            "ingest": feed_ns,
            "track": t_track - t_start,
            "raster": t_raster - t_track,
            "infer": int(infer_ns),
            "predict": t_end - t_raster,
            "total": t_end - t_start,
            "reorder_held": held_ns,  # sensor clock, not a stage: newest received - newest applied
        }
        self.stats.ticks += 1
        if timings["total"] > self.cfg.budget_ns:
            self.stats.deadline_misses += 1
        if degraded:
            self.stats.degraded(reason)
        pred = m.Predictions(
            header=m.Header(topic=m.TOPIC_PREDICTIONS, stamp_ns=int(now_ns)),
            model_id=self.model_id,
            dt_s=m.PRED_DT_S,
            plan_id=-1,
            source_stamp_ns=int(source_ns),
            source_sent_mono_ns=int(source_sent_ns),
            degraded=degraded,
            reason=reason,
            timings_ns=timings,
            track_id=np.asarray(tracks.track_id, np.int64),
            class_id=np.asarray(tracks.class_id, np.int32),
            mode_probs=probs,
            trajectories_m=traj,
            scale_m=scale,
            agent_source=source,
        )
        self._scene = scene
        return TickResult(tracks, pred, raster, timings["total"])

    def conditional(
        self,
        request: m.ConditionalRequest,
        budget_ns: int | None = None,
        limits: RequestLimits | None = None,
    ) -> m.ConditionalReply:
        """Predictions for the last tick's scene, once per candidate ego plan in ``request``.

        ``budget_ns`` (live: the slack before the next tick) bounds the time spent: plans that
        do not fit get the constant-velocity fallback and the reply is flagged degraded, so a
        planner's question never delays the 10 Hz loop (:mod:`prescient.service.conditional`).
        None: no bound (offline, benchmarks). Every plan is drawn on the last tick's scene.

        Raises:
            RequestLimitExceeded: more plans or longer plans than ``limits`` allow (default
                :class:`~prescient.bus.config.RequestLimits`), checked before any work.
        """
        return conditional.answer(self, request, budget_ns, limits, self._plan_ns)

    @property
    def ego(self) -> m.EgoState | None:
        """The newest ego state fed (the one the next tick renders with)."""
        return self._ego

    @property
    def scene(self) -> TickScene | None:
        """The last tick's scene (what conditional requests are answered for), None before one."""
        return self._scene

    @property
    def last_tracks(self) -> TrackSnapshot | None:
        """The tracks of the last tick (what conditional requests are answered for)."""
        return self._scene.tracks if self._scene is not None else None

    def render(self, tracks: TrackSnapshot, ego: m.EgoState, plan_xy_m: np.ndarray) -> np.ndarray:
        """The raster of ``tracks`` around ``ego`` with ``plan_xy_m`` in the plan channel, with
        the lights, LiDAR and ego history fed so far.

        Returns the rasterizer's buffer (overwritten by the next render).
        """
        return self.render_scene(self._scene_now(tracks, ego, 0), plan_xy_m)

    def render_scene(self, scene: TickScene, plan_xy_m: np.ndarray) -> np.ndarray:
        """The raster of ``scene`` with ``plan_xy_m`` (world frame) in the plan channel (the
        rasterizer's buffer, overwritten by the next render)."""
        return self.rasterizer.render(
            scene.tracks, scene.ego.pose, scene.lights, plan_xy_m, scene.lidar, scene.ego_history_xy_m
        )

    def predict_scene(
        self, raster: np.ndarray, scene: TickScene, plan_xy_m: np.ndarray, deadline_ns: int | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool, str, int]:
        """The model (or the flagged fallback) on ``raster`` of ``scene`` under ``plan_xy_m``:
        traj, probs, scale, degraded, reason, infer_ns (see :meth:`_predict`)."""
        return self._predict(raster, scene.tracks, scene.ego, plan_xy_m, deadline_ns)

    # ------------------------------------------------------------------------------------------
    def _scene_now(self, tracks: TrackSnapshot, ego: m.EgoState, stamp_ns: int) -> TickScene:
        """``tracks`` and ``ego`` with the lights, LiDAR and ego history fed so far."""
        hist = self.tracker.ego_history_xy(m.TRACK_HISTORY_STEPS, self.cfg.tick_period_ns)
        lidar = list(self._lidar.values()) if self.cfg.use_lidar else None
        return TickScene(tracks, ego, stamp_ns, self._lights, lidar, hist)

    def _predict(
        self,
        raster: np.ndarray,
        tracks: TrackSnapshot,
        ego: m.EgoState,
        plan_xy_m: np.ndarray,
        deadline_ns: int | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool, str, int]:
        """Model output, or the constant-velocity fallback with the reason it was needed.

        ``deadline_ns`` (``perf_counter_ns`` clock) is when the answer is due; with the deadline
        guard on, the model is skipped when its recent worst time would not fit.
        """
        reason = self._no_model_reason if self.predictor is None else ""
        self._from_model = None
        if not reason and deadline_ns is not None and self.cfg.deadline_guard and self._infer_ns:
            left_ns = deadline_ns - time.perf_counter_ns()
            # The median of recent passes: one slow pass (a load spike) must not switch the
            # model off for many ticks.
            expected_ns = int(np.median(self._infer_ns))
            if expected_ns > left_ns and self._skipped_in_row < GUARD_PROBE_EVERY - 1:
                self._skipped_in_row += 1
                reason = f"model over budget: expected {expected_ns / 1e6:.0f} ms, {max(left_ns, 0) / 1e6:.0f} ms left"
            else:
                # Runs, or probes after GUARD_PROBE_EVERY skips so the estimate follows the load.
                self._skipped_in_row = 0
        predictor = self.predictor
        if not reason and predictor is not None:
            try:
                passes = {"passes": self.cfg.model_passes} if self.cfg.model_passes > 1 else {}
                out = predictor.predict(raster, tracks, ego.velocity_mps, ego.size_lwh_m, plan_xy_m, **passes)
            except Exception as e:  # the service must publish something whatever the model does
                reason = f"model failed: {type(e).__name__}: {e}"
                log.warning(reason)
            else:
                self._infer_ns.append(out.infer_ns)
                self._from_model = out.from_model
                if all(np.isfinite(a).all() for a in (out.trajectories_m, out.mode_probs, out.scale_m)):
                    return out.trajectories_m, out.mode_probs, out.scale_m, False, "", out.infer_ns
                reason = "model output not finite"
        traj, probs, scale = constant_velocity_predictions(
            np.asarray(tracks.position_m, np.float64),
            np.asarray(tracks.velocity_mps, np.float64),
            num_modes=self.num_modes,
            future_steps=self.future_steps,
            dt_s=m.PRED_DT_S,
        )
        return traj, probs, scale, True, reason, 0

    def health(
        self,
        node: str,
        now_ns: int,
        provider: str,
        rx_rejected: dict[str, int],
        seq_gaps: dict[str, int],
        verdict: Verdict | None = None,
    ) -> m.Health:
        """Health message: provider, liveness ``verdict`` and every rejection/gap counter.

        Without a ``verdict`` (offline) the state is ``degraded`` only when no model is loaded.
        """
        rejected = dict(rx_rejected)
        for key, n in self.tracker.stats.rejected.items():
            rejected[f"tracker:{key}"] = rejected.get(f"tracker:{key}", 0) + int(n)
        for key, n in self.stats.degraded_reasons.items():
            rejected[f"degraded:{key}"] = int(n)
        rejected["skipped_ticks"] = self.stats.skipped_ticks
        rejected["clock_resets"] = self.stats.clock_resets
        rejected["map_changes"] = self.stats.map_changes
        if self.stats.maps_refused:
            rejected["maps_refused"] = self.stats.maps_refused
        if self.stats.agents_over_capacity:  # agent-predictions answered by the fallback
            rejected["predictor:agents_over_capacity"] = self.stats.agents_over_capacity
        if verdict is None:
            no_model = self.predictor is None
            verdict = Verdict("degraded" if no_model else "ok", self._no_model_reason if no_model else "")
        return health_message(
            node,
            now_ns,
            provider,
            verdict,
            ticks=self.stats.ticks,
            deadline_misses=self.stats.deadline_misses,
            rejected=rejected,
            seq_gaps=seq_gaps,
            precision=str(getattr(self.predictor, "precision", "")),
        )
