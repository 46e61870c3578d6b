"""Prometheus metrics of the prediction service, for operators (``prescient serve --metrics-port``).

The node (the I/O edge, :mod:`prescient.service.node`) updates these; the pipeline stages never see
them. Nothing here does I/O on the tick: a histogram observation is a lock and an add, and the
counters are a snapshot of the node's own counters (the ones the health topic reports), replaced
once per health period and read by the HTTP thread at scrape time.

Families (all names prefixed ``prescient_``):

* ``tick_seconds`` (histogram): compute time of one tick (track + raster + predict), s.
* ``processing_latency_seconds`` (histogram): newest applied input published -> prediction
  published, s (the service's share of the planner's processing latency).
* ``data_age_seconds`` (histogram): newest applied input captured -> prediction published, s
  (capture stamps mapped to this host's clock from ego states, as the planner does).
* ``messages_received_total{topic}``: inputs accepted per topic; topics outside the fixed input
  set count as ``topic="other"``, so a sender cannot grow the label set.
* ``messages_rejected_total{stage,reason}``: ``stage`` is ``input``, ``conditional``, ``tracker``
  or ``publish``; reasons come from fixed sets in the code, capped at :data:`MAX_REASONS`.
* ``degraded_ticks_total{reason}``, ``ticks_total``, ``deadline_misses_total``, ``skipped_ticks_total``.
* ``health_state{state}`` (1 for the current liveness state), ``provider_info{provider,precision,model}``.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final

from prometheus_client import CollectorRegistry, Histogram, Info, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from prescient.bus import messages as m
from prescient.bus.errors import StartupError
from prescient.bus.rxstats import RxStats
from prescient.service.gc_policy import GcPauses
from prescient.service.pipeline_types import PipelineStats
from prescient.service.planner_node import SensorClock

log = logging.getLogger(__name__)

DEFAULT_METRICS_HOST: Final = "127.0.0.1"  # loopback: expose wider only on purpose (--metrics-host)
OTHER: Final = "other"
MAX_REASONS: Final = 32  # distinct reason labels per family; later new ones count as "other"
INPUT_TOPICS: Final = frozenset(
    (*m.SENSOR_TOPICS, m.TOPIC_EGO, m.TOPIC_TRAFFIC_LIGHTS, m.TOPIC_MAP, m.TOPIC_TRACKS)
)
LATENCY_BUCKETS_S: Final = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0)
HEALTH_STATES: Final = ("ok", "degraded", "failed")
_REASON_RE: Final = re.compile(r"[A-Za-z0-9_ .-]{1,48}")


def topic_label(topic: str) -> str:
    """``topic`` if it is one of the service's fixed input topics, else ``"other"``."""
    return topic if topic in INPUT_TOPICS else OTHER


@dataclass(frozen=True)
class CounterSnapshot:
    """Cumulative counts at one moment (replaced whole, never mutated: the HTTP thread reads it)."""

    received: Mapping[str, int] = field(default_factory=dict)  # topic label -> n
    rejected: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (stage, reason) -> n
    degraded: Mapping[str, int] = field(default_factory=dict)  # reason -> ticks
    ticks: int = 0
    deadline_misses: int = 0
    skipped_ticks: int = 0
    state: str = ""
    # Garbage collections while live, per generation 0-2 (prescient.service.gc_policy.GcPauses).
    gc_collections: tuple[int, ...] = ()
    gc_pause_s: tuple[float, ...] = ()
    gc_pause_max_s: tuple[float, ...] = ()


class _SnapshotCollector(Collector):
    """Yields the counter families from the latest :class:`CounterSnapshot` (scrape thread)."""

    def __init__(self) -> None:
        self.snapshot = CounterSnapshot()

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot  # one attribute read: a consistent snapshot
        received = CounterMetricFamily(
            "prescient_messages_received", "Inputs accepted, per topic", labels=["topic"]
        )
        for topic, n in sorted(snap.received.items()):
            received.add_metric([topic], n)
        rejected = CounterMetricFamily(
            "prescient_messages_rejected",
            "Messages rejected, by stage and reason",
            labels=["stage", "reason"],
        )
        for (stage, reason), n in sorted(snap.rejected.items()):
            rejected.add_metric([stage, reason], n)
        degraded = CounterMetricFamily(
            "prescient_degraded_ticks", "Ticks answered by the fallback, by reason", labels=["reason"]
        )
        for reason, n in sorted(snap.degraded.items()):
            degraded.add_metric([reason], n)
        yield from (received, rejected, degraded)
        yield CounterMetricFamily("prescient_ticks", "Prediction ticks run", value=snap.ticks)
        yield CounterMetricFamily(
            "prescient_deadline_misses", "Ticks over the compute budget", value=snap.deadline_misses
        )
        yield CounterMetricFamily(
            "prescient_skipped_ticks", "Ticks skipped (the loop fell behind)", value=snap.skipped_ticks
        )
        state = GaugeMetricFamily(
            "prescient_health_state", "1 for the current health state", labels=["state"]
        )
        for name in HEALTH_STATES:
            state.add_metric([name], 1.0 if snap.state == name else 0.0)
        yield state
        yield from _gc_families(snap)


def _gc_families(snap: CounterSnapshot) -> Iterator[Metric]:
    """Collections, time spent in them and the longest, per generation (empty before going live)."""
    count = CounterMetricFamily(
        "prescient_gc_collections", "Garbage collections while live", labels=["generation"]
    )
    total = CounterMetricFamily(
        "prescient_gc_pause_seconds", "Time in garbage collections while live, s", labels=["generation"]
    )
    longest = GaugeMetricFamily(
        "prescient_gc_pause_max_seconds", "Longest garbage collection while live, s", labels=["generation"]
    )
    for g, (n, s_total, s_max) in enumerate(zip(snap.gc_collections, snap.gc_pause_s, snap.gc_pause_max_s)):
        count.add_metric([str(g)], n)
        total.add_metric([str(g)], s_total)
        longest.add_metric([str(g)], s_max)
    yield from (count, total, longest)


class _Labels:
    """First-come label admission: at most ``cap`` distinct values, later new ones become ``other``.

    A value keeps its label for the life of the process, so every exported counter only grows.
    """

    def __init__(self, cap: int = MAX_REASONS) -> None:
        self._seen: set[str] = set()
        self._cap = cap

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if not _REASON_RE.fullmatch(value) or len(self._seen) >= self._cap:
            return OTHER
        self._seen.add(value)
        return value


def _add(into: dict, key: object, n: int) -> None:
    into[key] = into.get(key, 0) + int(n)


class ServiceMetrics:
    """The service's metrics in a private registry, and the HTTP endpoint that serves them.

    Call the ``note_*``/``observe_*``/``update_*`` methods from the node's thread only.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self._tick = Histogram(
            "prescient_tick_seconds", "Compute time of one tick, s", buckets=LATENCY_BUCKETS_S, registry=reg
        )
        self._processing = Histogram(
            "prescient_processing_latency_seconds",
            "Newest applied input published -> prediction published, s",
            buckets=LATENCY_BUCKETS_S,
            registry=reg,
        )
        self._age = Histogram(
            "prescient_data_age_seconds",
            "Newest applied input captured -> prediction published, s",
            buckets=LATENCY_BUCKETS_S,
            registry=reg,
        )
        self._provider = Info("prescient_provider", "onnxruntime provider in use", registry=reg)
        self._counts = _SnapshotCollector()
        reg.register(self._counts)
        self._clock = SensorClock()
        self._rejected_labels = _Labels()
        self._degraded_labels = _Labels()
        self._server: object | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    def serve(self, host: str, port: int) -> int:
        """Start the HTTP endpoint (``/metrics``) in a daemon thread; returns the bound port.

        Args:
            host: address to bind (``127.0.0.1`` by default in the CLI).
            port: TCP port; 0 picks a free one.

        Raises:
            StartupError: the address cannot be bound (in use, not local, no permission).
        """
        try:
            server, thread = start_http_server(port, addr=host, registry=self.registry)
        except (OSError, ValueError) as e:
            why = getattr(e, "strerror", None) or str(e)
            raise StartupError(f"metrics endpoint {host}:{port} cannot be bound: {why}") from e
        self._server, self._thread = server, thread
        self.port = int(server.server_port)
        log.info("metrics on http://%s:%d/metrics", host, self.port)
        return self.port

    def close(self) -> None:
        """Stop the HTTP endpoint (no-op when it was never started)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()  # type: ignore[attr-defined]
            server.server_close()  # type: ignore[attr-defined]
        if self._thread is not None:
            self._thread.join(2.0)

    def set_provider(self, provider: str, precision: str, model_id: str) -> None:
        """The onnxruntime provider (``none`` without a model), weight precision and model id."""
        self._provider.info({"provider": provider, "precision": precision or "none", "model": model_id})

    def note_ego(self, stamp_ns: int, recv_mono_ns: int) -> None:
        """An ego state's capture stamp (sensor clock, ns) and receive time (monotonic, ns)."""
        self._clock.note_ego(stamp_ns, recv_mono_ns)

    def observe_tick(self, pred: m.Predictions, total_ns: int, published_mono_ns: int) -> None:
        """One published tick: its compute time and its source input's latency and age (ns in)."""
        self._tick.observe(total_ns / 1e9)
        if pred.source_sent_mono_ns <= 0 or pred.source_stamp_ns <= 0:
            return  # no input applied yet: nothing to measure
        self._processing.observe(max(published_mono_ns - pred.source_sent_mono_ns, 0) / 1e9)
        captured = self._clock.to_mono(pred.source_stamp_ns)
        if captured is not None:
            self._age.observe(max(published_mono_ns - captured, 0) / 1e9)

    def update_counts(
        self,
        inputs: Iterable[RxStats],
        conditional: RxStats | None,
        tracker_rejected: Mapping[str, int],
        publish_drops: Mapping[str, int],
        pipeline: PipelineStats | None,
        state: str,
        gc_pauses: GcPauses | None = None,
    ) -> None:
        """Replace the counter snapshot from the node's own cumulative counters.

        Args:
            inputs: the receive statistics of each input subscriber.
            conditional: the conditional endpoint's, or None.
            tracker_rejected: ``"topic:reason"`` -> count (the tracker's admission).
            publish_drops: reason -> messages this node failed to send.
            pipeline: the pipeline's counters, or None before the map arrived.
            state: the liveness state (``ok``, ``degraded``, ``failed``).
            gc_pauses: the garbage collections timed since going live, or None.
        """
        received: dict[str, int] = {}
        rejected: dict[tuple[str, str], int] = {}
        for stats in inputs:
            for topic, n in stats.received.items():
                _add(received, topic_label(topic), n)
            self._add_rejected(rejected, "input", stats.rejected)
        if conditional is not None:
            self._add_rejected(rejected, "conditional", conditional.rejected)
        self._add_rejected(rejected, "tracker", tracker_rejected)
        self._add_rejected(rejected, "publish", {k: v for k, v in publish_drops.items() if v})
        p = pipeline or PipelineStats()
        degraded: dict[str, int] = {}
        for reason, n in p.degraded_reasons.items():
            _add(degraded, self._degraded_labels(reason), n)
        gc_counts: tuple[tuple[int, ...], tuple[float, ...], tuple[float, ...]] = ((), (), ())
        if gc_pauses is not None:  # plain ints the collector callback bumps: copy them once
            gc_counts = (
                tuple(gc_pauses.count),
                tuple(t / 1e9 for t in gc_pauses.total_ns),
                tuple(t / 1e9 for t in gc_pauses.max_ns),
            )
        self._counts.snapshot = CounterSnapshot(
            received, rejected, degraded, p.ticks, p.deadline_misses, p.skipped_ticks, state, *gc_counts
        )

    def _add_rejected(self, into: dict, stage: str, counts: Mapping[str, int]) -> None:
        for key, n in counts.items():
            _add(into, (stage, self._rejected_labels(key.rsplit(":", 1)[-1])), n)
