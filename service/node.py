"""The process around the pure stages: the prediction service node (the planner stub's is
:mod:`prescient.service.planner_node`).

Only these loops touch sockets and the wall clock. Each loop polls with a timeout, drains every
queued message before deciding what to do (only the newest inputs count: no backlog), and
returns when ``stop`` is set (SIGINT/SIGTERM in the CLI).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import zmq

from prescient.bus import messages as m
from prescient.bus.config import BusConfig, RequestLimits
from prescient.bus.errors import RequestTimeout, StartupError, TransportError
from prescient.bus.reqrep import Replier, Requester, ServerError
from prescient.bus.rxstats import CounterMap
from prescient.bus.transport import Publisher, Subscriber
from prescient.service.gc_policy import GcPauses, frozen_startup_heap
from prescient.service.liveness import Liveness
from prescient.service.map_watch import MapWatch
from prescient.service.pipeline import Pipeline, PipelineConfig

if TYPE_CHECKING:
    from prescient.service.metrics import ServiceMetrics
    from prescient.service.tracker import TrackerConfig

log = logging.getLogger(__name__)

SERVICE_NODE = "predictor"
HEALTH_PERIOD_NS = 1_000_000_000
TICK_PERIOD_NS = 100_000_000
CONDITIONAL_MARGIN_NS = 15_000_000  # left free before the next tick (decode, tracker work)
MAX_DRAIN = 10_000  # messages handled per loop turn before a tick gets its chance
DRAIN_BUDGET_NS = 30_000_000  # and at most this long per socket
_INPUT_GROUPS: dict[type, str] = {
    m.EgoState: "ego",
    m.Tracks: "tracks",
    **{t: "sensors" for t in (m.CameraFrame, m.LidarFrame, m.RadarFrame, m.LwirFrame)},
}


def fetch_map(cfg: BusConfig, timeout_s: float, stop: threading.Event | None = None) -> m.VectorMap:
    """Get the map: ask the map server (simulator or log replayer), or take it off the bus.

    The request is retried until ``timeout_s``; meanwhile a ``map.vector`` message published on
    the bus (the simulator republishes it every few seconds) is accepted too, so one lost
    request/reply exchange cannot stall startup.

    Raises:
        StartupError: no map within ``timeout_s``.
    """
    req = Requester(cfg, cfg.map_endpoint)
    sub = Subscriber(cfg, [m.TOPIC_MAP])
    t0 = time.monotonic()
    deadline = t0 + timeout_s
    attempt = 0
    try:
        while time.monotonic() < deadline and not (stop and stop.is_set()):
            attempt += 1
            try:
                reply = req.request(
                    m.MapRequest(header=m.Header(topic=m.TOPIC_MAP_REQUEST)),
                    timeout_ms=min(250 * attempt, 2000),
                )
            except RequestTimeout:
                published = sub.recv(timeout_ms=0)
                if isinstance(published, m.VectorMap):
                    log.info(
                        "map %s taken from the bus after %.1f s", published.map_id, time.monotonic() - t0
                    )
                    return published
                log.debug("map request %d timed out", attempt)
                continue
            except ServerError as e:
                if e.reason == "busy":  # other services asking at the same moment
                    log.debug("map server busy; asking again")
                    time.sleep(0.05)
                    continue
                raise StartupError(f"map server at {cfg.map_endpoint} answered with an error: {e}") from e
            except TransportError as e:
                raise StartupError(f"map server at {cfg.map_endpoint} answered with an error: {e}") from e
            if isinstance(reply, m.VectorMap):
                log.info(
                    "map %s received from %s after %.1f s",
                    reply.map_id,
                    cfg.map_endpoint,
                    time.monotonic() - t0,
                )
                return reply
            raise StartupError(
                f"map server at {cfg.map_endpoint} sent {type(reply).__name__}, not a VectorMap"
            )
    finally:
        req.close()
        sub.close()
    raise StartupError(
        f"no map server answered at {cfg.map_endpoint} within {timeout_s:.0f} s (is `prescient sim` running?)"
    )


def warm_up_stages() -> None:
    """Compile the tracker, raster and output-transform kernels (numba) before the map arrives."""
    import numpy as np

    from prescient.service.model_io.features import world_from_agent_predictions
    from prescient.service.raster.kernels import warm_up_kernels
    from prescient.service.tracker import Tracker

    Tracker().warm_up()
    warm_up_kernels()
    world_from_agent_predictions(
        np.zeros((1, 1, 1, 2), np.float32), np.ones((1, 1, 1, 2), np.float32), np.zeros((1, 3))
    )


@dataclass
class ServiceOptions:
    model: Path | None
    threads: int = 2
    # TensorRT, CUDA, CPU: each only when present (prescient.service.model_io.providers.select_providers).
    providers: tuple[str, ...] = (
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    )
    budget_ms: float = 100.0
    map_timeout_s: float = 30.0
    use_lidar: bool = True
    tracks_input: bool = False  # take Tracks from the bus (imported logs) instead of running the tracker
    # Per-topic admission before decoding (0: none). Sensors publish at 10-20 Hz; the headroom
    # covers a log replayed at up to 10x.
    max_input_rate_hz: float = 200.0
    # onnxruntime's intra-op threads busy-wait between parallel sections when spinning: on a
    # 2-core host they then take the cores the tracker and the bus need (prescient bench infer).
    ort_spinning: bool = False
    model_passes: int = 1  # PipelineConfig.model_passes
    agents_per_pass: int | None = None  # OnnxPredictor agents_per_pass (None: its default)
    # Prometheus endpoint (prescient.service.metrics): None: none; 0: a free port (logged).
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"  # loopback unless asked otherwise
    tracker: TrackerConfig | None = None  # None: TrackerConfig()


def _drain(
    subs: tuple[Subscriber, ...], pipe: Pipeline, live: Liveness, metrics: ServiceMetrics | None = None
) -> int:
    """Decode and feed what is queued, control topics first; returns the decode time (ns).

    Bounded by ``MAX_DRAIN`` messages and ``DRAIN_BUDGET_NS``: under a flood the loop still
    reaches the tick, the conditional queue and health.
    """
    decode_ns = 0
    t_end = time.perf_counter_ns() + DRAIN_BUDGET_NS
    for sub in subs:
        for _ in range(MAX_DRAIN):
            got = sub.recv_raw(timeout_ms=0)
            if got is None:
                break
            recv_mono_ns = time.monotonic_ns()
            t0 = time.perf_counter_ns()
            msg = sub.accept(*got)
            decode_ns += time.perf_counter_ns() - t0
            if msg is not None and pipe.feed(msg, recv_mono_ns):
                live.note_input(_INPUT_GROUPS.get(type(msg), ""), recv_mono_ns)
                if metrics is not None and isinstance(msg, m.EgoState):
                    metrics.note_ego(msg.header.stamp_ns, recv_mono_ns)  # maps capture stamps
            if t0 > t_end:
                break
    return decode_ns


def _answer_conditional(
    pipe: Pipeline, deadline_ns: int, limits: RequestLimits, req: m.ConditionalRequest
) -> m.ConditionalReply:
    """``pipe.conditional`` with what is left until ``deadline_ns`` (``perf_counter_ns``)."""
    if not isinstance(req, m.ConditionalRequest):
        raise TypeError(f"expected ConditionalRequest, got {type(req).__name__}")
    return pipe.conditional(req, budget_ns=max(deadline_ns - time.perf_counter_ns(), 0), limits=limits)


def _announce_and_fetch_map(
    cfg: BusConfig, pub: Publisher, provider: str, precision: str, opts: ServiceOptions, stop: threading.Event
) -> m.VectorMap:
    """Warm up, say "waiting for map" on the health topic, then get the map."""
    t0 = time.monotonic()
    warm_up_stages()  # JIT before going live (seconds on a cold numba cache)
    log.info("stages warmed up in %.1f s", time.monotonic() - t0)
    # Tell the world we are ready for a map (the launcher starts the sensors on this).
    pub.wait_for_subscribers([m.health_topic(SERVICE_NODE)], 1.0)
    pub.publish(
        m.Health(
            header=m.Header(topic=m.health_topic(SERVICE_NODE)),
            node=SERVICE_NODE,
            provider=provider,
            precision=precision,
            degraded=True,
            state="degraded",
            reason="waiting for map",
            ticks=0,
            deadline_misses=0,
            rejected={},
            seq_gaps={},
        )
    )
    return fetch_map(cfg, opts.map_timeout_s, stop)


class _ServiceLoop:
    """The live service's sockets and its loop turn: drain, tick, answer requests, report health.

    Two input connections: a flood on the sensor topics fills only the sensor socket's queue at
    the proxy, so the ego state (whose loss makes every frame look future-dated) still arrives.

    Raises:
        StartupError: the conditional endpoint cannot be bound.
    """

    def __init__(
        self,
        cfg: BusConfig,
        opts: ServiceOptions,
        pub: Publisher,
        pipe: Pipeline,
        provider: str,
        has_model: bool,
        metrics: ServiceMetrics | None = None,
        gc_pauses: GcPauses | None = None,
    ) -> None:
        self._cfg, self._opts, self._pub, self._pipe = cfg, opts, pub, pipe
        self._metrics, self._gc_pauses = metrics, gc_pauses
        self._provider, self._has_model = provider, has_model
        rate = opts.max_input_rate_hz or None
        topics = [m.TOPIC_TRACKS] if opts.tracks_input else ["sensor."]
        self._sensors = Subscriber(cfg, topics, max_rate_hz=rate, known_topics_only=True)
        self._control = Subscriber(
            cfg, [m.TOPIC_EGO, m.TOPIC_TRAFFIC_LIGHTS], max_rate_hz=rate, known_topics_only=True
        )
        # Maps on the bus are hints that the place changed (the next log replayed); the map
        # server confirms them (service/map_watch.py). One decoded per second at most.
        self._maps = Subscriber(cfg, [m.TOPIC_MAP], max_rate_hz=1.0, known_topics_only=True, check_seq=False)
        self._map_watch = MapWatch(cfg)
        self._subs = (self._control, self._sensors)
        try:
            self._rep = Replier(cfg, cfg.conditional_endpoint)
        except TransportError as e:
            for sub in (*self._subs, self._maps):
                sub.close()
            raise StartupError(str(e)) from e
        self._poller = zmq.Poller()
        for sock in (*(sub.socket for sub in self._subs), self._rep.socket):
            self._poller.register(sock, zmq.POLLIN)
        self._next_health = time.monotonic_ns()
        groups = ("tracks",) if opts.tracks_input else ("ego", "sensors")
        self._live = Liveness(groups, start_ns=self._next_health)
        self._state = ""
        self._decode_ns = 0
        self._last_tick_ns = 0
        self._tick_started_ns = time.perf_counter_ns()

    def turn(self) -> None:
        """One loop turn (at most ~20 ms of waiting)."""
        self._poller.poll(20)
        self._decode_ns += _drain(self._subs, self._pipe, self._live, self._metrics)
        self._watch_maps()
        self._tick()
        self._serve_requests()
        self._report_health()

    def _watch_maps(self) -> None:
        while (msg := self._maps.recv(timeout_ms=0)) is not None:
            self._map_watch.hint(msg, self._pipe.map_id)
        self._map_watch.apply(self._pipe, time.monotonic_ns())

    def _tick(self) -> None:
        tick_ns = self._pipe.due_tick()
        if tick_ns is None:
            self._pipe.prepare()  # use the wait: the tick then has only its newest frames to apply
            return
        self._tick_started_ns = time.perf_counter_ns()
        res = self._pipe.tick(tick_ns, decode_ns=self._decode_ns)
        self._decode_ns = 0
        if res is None:
            return
        # Predictions first: the planner waits for them; the tracks (for the recorder and
        # viewers) follow without delaying them.
        self._pub.publish(res.predictions)
        if not self._opts.tracks_input:  # never echo tracks we were given
            self._pub.publish(res.tracks.to_message(), check=False)  # the one wire Tracks
        self._live.note_tick(time.monotonic_ns(), res.predictions.degraded)
        if self._metrics is not None:
            self._metrics.observe_tick(res.predictions, res.total_ns, time.monotonic_ns())
        self._last_tick_ns = tick_ns
        log.debug("tick %d: %d tracks, %.1f ms", tick_ns, len(res.tracks), res.total_ns / 1e6)

    def _serve_requests(self) -> None:
        rep = self._rep
        if rep.socket.poll(0, zmq.POLLIN):
            rep.accept()  # cheap: over-cap, malformed and "busy" (queue full) are answered here
        if rep.pending:
            # Queued conditional requests come after the tick and get only the slack before the
            # next one: the planner's questions never delay the 10 Hz predictions. Past the
            # deadline a request still gets its answer, cheaply (flagged fallback).
            deadline_ns = self._tick_started_ns + TICK_PERIOD_NS - CONDITIONAL_MARGIN_NS
            handler = functools.partial(_answer_conditional, self._pipe, deadline_ns, self._cfg.requests)
            rep.answer(handler, deadline_ns=deadline_ns)

    def _report_health(self) -> None:
        now = time.monotonic_ns()
        verdict = self._live.verdict(now, model_loaded=self._has_model)
        # Every second, and at once when the state changes: a planner or a container health
        # check learns within one loop turn that predictions stopped.
        if now < self._next_health and verdict.state == self._state:
            return
        self._next_health, self._state = now + HEALTH_PERIOD_NS, verdict.state
        rejected = CounterMap(512)
        for sub in (*self._subs, self._maps):
            for k, v in sub.stats.rejected.items():
                rejected.add(k, v)
        if self._map_watch.unconfirmed:
            rejected.add("map:unconfirmed", self._map_watch.unconfirmed)
        for k, v in self._rep.stats.rejected.items():
            rejected.add(f"conditional:{k}", v)
        pub = self._pub
        for k, v in (("publish:hwm_drops", pub.hwm_drops), ("publish:oversize", pub.oversize)):
            if v:  # what this node failed to send (its own queue full, or too large)
                rejected.add(k, v)
        gaps = {k: v for sub in self._subs for k, v in sub.stats.gaps.items()}
        health = self._pipe.health(SERVICE_NODE, self._last_tick_ns, self._provider, rejected, gaps, verdict)
        pub.publish(health)
        if self._metrics is not None:  # the same counters, once per health period
            self._metrics.update_counts(
                (sub.stats for sub in (*self._subs, self._maps)),
                self._rep.stats,
                self._pipe.tracker.stats.rejected,
                {"hwm_drops": pub.hwm_drops, "oversize": pub.oversize},
                self._pipe.stats,
                verdict.state,
                self._gc_pauses,
            )

    def close(self) -> None:
        for sub in (*self._subs, self._maps):
            sub.close()
        self._map_watch.close()
        self._rep.close()


def run_service(cfg: BusConfig, opts: ServiceOptions, stop: threading.Event) -> int:
    """The onboard prediction service: sensors in, tracks + predictions + health out.

    With ``opts.metrics_port`` the Prometheus endpoint is bound first (a port in use fails at
    once, with one line) and stays up until the service returns.
    """
    metrics = None
    if opts.metrics_port is not None:
        from prescient.service.metrics import ServiceMetrics

        metrics = ServiceMetrics()
        metrics.serve(opts.metrics_host, opts.metrics_port)
    try:
        return _run_service(cfg, opts, stop, metrics)
    finally:
        if metrics is not None:
            metrics.close()


def _run_service(
    cfg: BusConfig, opts: ServiceOptions, stop: threading.Event, metrics: ServiceMetrics | None
) -> int:
    from prescient.service.predictor import load_service_predictor  # loads onnxruntime

    predictor, no_model_reason = load_service_predictor(
        opts.model, opts.threads, opts.providers, allow_spinning=opts.ort_spinning,
        agents_per_pass=opts.agents_per_pass,
    )  # fmt: skip
    provider = getattr(predictor, "provider", "none")
    precision = str(getattr(predictor, "precision", ""))
    log.info("onnxruntime provider in use: %s (%s)", provider, precision or "no model")
    if metrics is not None:
        metrics.set_provider(provider, precision, getattr(predictor, "model_id", "constant_velocity"))
    pub = Publisher(cfg)
    try:
        vmap = _announce_and_fetch_map(cfg, pub, provider, precision, opts, stop)
        pipe = Pipeline(
            vmap,
            predictor,
            PipelineConfig(
                budget_ns=int(opts.budget_ms * 1e6), use_lidar=opts.use_lidar, model_passes=opts.model_passes
            ),
            no_model_reason=no_model_reason,
            tracks_from_log=opts.tracks_input,
            tracker_cfg=opts.tracker,
        )
        pauses = GcPauses()
        loop = _ServiceLoop(
            cfg, opts, pub, pipe, provider, has_model=predictor is not None, metrics=metrics, gc_pauses=pauses
        )
    except BaseException:
        pub.close()
        raise
    try:
        # Going live: freeze the start-up heap (a full collection would walk all of it: tens of
        # ms, mid-tick) and time every collection from here on.
        with frozen_startup_heap() as frozen, pauses.install():
            log.info(
                "service live: map %s, model %s, budget %.0f ms; %d start-up objects frozen",
                vmap.map_id, pipe.model_id, opts.budget_ms, frozen,
            )  # fmt: skip
            while not stop.is_set():
                loop.turn()
    finally:
        loop.close()
        pub.close()
    s = pipe.stats
    log.info(
        "service stopped: %d ticks, %d deadline misses, %d degraded, %d skipped; garbage collections %s",
        s.ticks,
        s.deadline_misses,
        s.degraded_ticks,
        s.skipped_ticks,
        pauses.summary(),
    )
    return 0
