"""The processes around the pure stages: the prediction service node and the planner stub node.

Only these loops touch sockets and the wall clock. Each loop polls with a timeout, drains every
queued message before deciding what to do (only the newest inputs count: no backlog), and
returns when ``stop`` is set (SIGINT/SIGTERM in the CLI).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zmq

from bus import messages as m
from bus.config import BusConfig
from bus.errors import RequestTimeout, StartupError, TransportError
from bus.reqrep import Replier, Requester
from bus.transport import Publisher, Subscriber
from service.pipeline import Pipeline, PipelineConfig
from service.planner_stub import candidate_plans, judge, score_plans

log = logging.getLogger(__name__)

SERVICE_NODE = "predictor"
PLANNER_NODE = "planner"
HEALTH_PERIOD_NS = 1_000_000_000
TICK_PERIOD_NS = 100_000_000
CONDITIONAL_MARGIN_NS = 15_000_000  # left free before the next tick (decode, tracker work)
MAX_DRAIN = 10_000  # messages handled per loop turn before a tick gets its chance


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
    """Compile the tracker and raster kernels (numba) before the map arrives."""
    from service.raster.kernels import warm_up_kernels
    from service.tracker import Tracker

    Tracker().warm_up()
    warm_up_kernels()


def load_predictor(model: Path | None, threads: int, providers: tuple[str, ...]) -> tuple[object | None, str]:
    """Load the ONNX model, or return (None, reason) when the file is absent.

    A model that exists but disagrees with its manifest or the raster spec is a startup error
    (raised by the predictor as :class:`~bus.errors.StartupError`): running a wrong model is
    worse than running none.
    """
    from service.predictor import OnnxPredictor
    from service.raster import RasterConfig, build_spec

    if model is None:
        return None, "no model configured"
    if not Path(model).is_file():
        log.warning("model %s not found: publishing constant-velocity predictions flagged degraded", model)
        return None, f"model file missing: {model}"
    spec = build_spec(RasterConfig())  # the raster the service renders; the model must match it exactly
    predictor = OnnxPredictor(
        model,
        providers=providers,
        intra_op_threads=threads,
        expected_spec_version=spec.fingerprint(),
        expected_num_channels=spec.num_channels,
    )
    return predictor, ""


@dataclass
class ServiceOptions:
    model: Path | None
    threads: int = 2
    providers: tuple[str, ...] = ("CUDAExecutionProvider", "CPUExecutionProvider")
    budget_ms: float = 100.0
    map_timeout_s: float = 30.0
    use_lidar: bool = True
    tracks_input: bool = False  # take Tracks from the bus (imported logs) instead of running the tracker


def run_service(cfg: BusConfig, opts: ServiceOptions, stop: threading.Event) -> int:
    """The onboard prediction service: sensors in, tracks + predictions + health out."""
    predictor, no_model_reason = load_predictor(opts.model, opts.threads, opts.providers)
    provider = getattr(predictor, "provider", "none")
    log.info("onnxruntime provider in use: %s", provider)
    pub = Publisher(cfg)
    try:
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
                degraded=True,
                reason="waiting for map",
                ticks=0,
                deadline_misses=0,
                rejected={},
                seq_gaps={},
            )
        )
        vmap = fetch_map(cfg, opts.map_timeout_s, stop)
    except BaseException:
        pub.close()
        raise
    pipe = Pipeline(
        vmap,
        predictor,
        PipelineConfig(budget_ns=int(opts.budget_ms * 1e6), use_lidar=opts.use_lidar),
        no_model_reason=no_model_reason,
        tracks_from_log=opts.tracks_input,
    )
    inputs = [m.TOPIC_TRACKS] if opts.tracks_input else ["sensor."]
    sub = Subscriber(cfg, [*inputs, m.TOPIC_EGO, m.TOPIC_TRAFFIC_LIGHTS])
    try:
        rep = Replier(cfg, cfg.conditional_endpoint)
    except TransportError as e:
        sub.close()
        pub.close()
        raise StartupError(str(e)) from e
    poller = zmq.Poller()
    poller.register(sub.socket, zmq.POLLIN)
    poller.register(rep.socket, zmq.POLLIN)
    log.info("service live: map %s, model %s, budget %.0f ms", vmap.map_id, pipe.model_id, opts.budget_ms)
    next_health = time.monotonic_ns()
    decode_ns = 0
    last_tick_ns = 0
    tick_started_ns = time.perf_counter_ns()
    try:
        while not stop.is_set():
            poller.poll(20)
            for _ in range(MAX_DRAIN):
                got = sub.recv_raw(timeout_ms=0)
                if got is None:
                    break
                recv_mono_ns = time.monotonic_ns()
                t0 = time.perf_counter_ns()
                msg = sub.accept(*got)
                decode_ns += time.perf_counter_ns() - t0
                if msg is not None:
                    pipe.feed(msg, recv_mono_ns)
            tick_ns = pipe.due_tick()
            if tick_ns is not None:
                tick_started_ns = time.perf_counter_ns()
                res = pipe.tick(tick_ns, decode_ns=decode_ns)
                decode_ns = 0
                if res is not None:
                    t0 = time.perf_counter_ns()
                    if not opts.tracks_input:  # never echo tracks we were given
                        pub.publish(res.tracks, check=False)
                    pub.publish(res.predictions)
                    last_tick_ns = tick_ns
                    log.debug(
                        "tick %d: %d tracks, %.1f ms (publish %.2f ms)",
                        tick_ns,
                        len(res.tracks.track_id),
                        res.total_ns / 1e6,
                        (time.perf_counter_ns() - t0) / 1e6,
                    )
            if rep.socket.poll(0, zmq.POLLIN):
                # Conditional requests come after the tick and get only the slack before the
                # next one: the planner's questions never delay the 10 Hz predictions.
                slack_ns = TICK_PERIOD_NS - CONDITIONAL_MARGIN_NS - (time.perf_counter_ns() - tick_started_ns)
                rep.serve_once(functools.partial(pipe.conditional, budget_ns=max(slack_ns, 0)), timeout_ms=0)
            now = time.monotonic_ns()
            if now >= next_health:
                next_health = now + HEALTH_PERIOD_NS
                rejected = {
                    **sub.stats.rejected,
                    **{f"conditional:{k}": v for k, v in rep.stats.rejected.items()},
                }
                pub.publish(pipe.health(SERVICE_NODE, last_tick_ns, provider, rejected, sub.stats.gaps))
    finally:
        sub.close()
        pub.close()
        rep.close()
    s = pipe.stats
    log.info(
        "service stopped: %d ticks, %d deadline misses, %d degraded, %d skipped",
        s.ticks,
        s.deadline_misses,
        s.degraded_ticks,
        s.skipped_ticks,
    )
    return 0


@dataclass
class PlannerStats:
    e2e_ns: list[int] = field(default_factory=list)
    conditional_ns: list[int] = field(default_factory=list)
    conditional_failures: int = 0
    degraded: int = 0
    received: int = 0


def run_planner(
    cfg: BusConfig, stop: threading.Event, conditional_every: int = 10, conditional_timeout_ms: int = 300
) -> PlannerStats:
    """The planner stub node. Returns its latency statistics when stopped."""
    sub = Subscriber(cfg, [m.TOPIC_PREDICTIONS, m.TOPIC_EGO])
    pub = Publisher(cfg)
    req = Requester(cfg, cfg.conditional_endpoint)
    stats = PlannerStats()
    ego: m.EgoState | None = None
    request_id = 0
    try:
        while not stop.is_set():
            msg = sub.recv(timeout_ms=50)
            if msg is None:
                continue
            if isinstance(msg, m.EgoState):
                ego = msg
                continue
            if not isinstance(msg, m.Predictions) or ego is None:
                continue
            now = time.monotonic_ns()
            e2e = now - msg.source_sent_mono_ns if msg.source_sent_mono_ns > 0 else 0
            stats.received += 1
            stats.e2e_ns.append(e2e)
            stats.degraded += int(msg.degraded)
            plans = candidate_plans(ego)
            verdict = judge(plans, msg.trajectories_m, msg.mode_probs, msg.degraded)
            status = verdict.status
            if conditional_every > 0 and stats.received % conditional_every == 0:
                request_id += 1
                t0 = time.perf_counter_ns()
                try:
                    reply = req.request(
                        m.ConditionalRequest(
                            header=m.Header(topic=m.TOPIC_CONDITIONAL_REQUEST, stamp_ns=msg.header.stamp_ns),
                            request_id=request_id,
                            plans_xy_m=plans,
                        ),
                        timeout_ms=conditional_timeout_ms,
                    )
                    stats.conditional_ns.append(time.perf_counter_ns() - t0)
                    dist = np.array(
                        [
                            score_plans(plans[b : b + 1], reply.trajectories_m[b], reply.mode_probs[b])[0][0]
                            for b in range(len(plans))
                        ]
                    )
                    status += (
                        f"; conditional min distance per plan {np.round(np.minimum(dist, 1e6), 1).tolist()}"
                    )
                except (RequestTimeout, TransportError) as e:
                    stats.conditional_failures += 1
                    status += f"; conditional request failed: {e}"
            pub.publish(
                m.PlannerStatus(
                    header=m.Header(topic=m.TOPIC_PLANNER_STATUS, stamp_ns=msg.header.stamp_ns),
                    prediction_seq=msg.header.seq,
                    e2e_latency_ns=int(e2e),
                    chosen_plan=verdict.chosen_plan,
                    min_distance_m=verdict.min_distance_m,
                    min_ttc_s=verdict.min_ttc_s,
                    status=status,
                )
            )
    finally:
        sub.close()
        pub.close()
        req.close()
    return stats
