"""The launcher's view of the bus: per-topic rates, latencies and health for the live table.

The monitor subscribes to every topic; it counts frames per topic without decoding the heavy
sensor payloads and decodes only predictions, planner status and health. It also keeps the last
seconds of raw frames (:class:`~prescient.service.app.gapfill.FrameRing`) so a recorder restart loses nothing.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from prescient.bus import codec
from prescient.bus import messages as m
from prescient.bus.config import BusConfig
from prescient.bus.errors import DecodeError
from prescient.bus.rxstats import topic_key
from prescient.bus.transport import Subscriber
from prescient.service.app.gapfill import FrameRing
from prescient.service.stats import percentiles_ms

LIGHT_TOPICS = (m.TOPIC_PREDICTIONS, m.TOPIC_PLANNER_STATUS, m.TOPIC_HEALTH_PREFIX)
MAX_TOPICS = 256
DRAIN_S = 2.0  # longest the monitor keeps reading after its stop


@dataclass
class Monitor:
    """Live statistics from the bus (runs in a thread)."""

    counts: dict[str, deque] = field(default_factory=dict)  # topic -> receive times (last 2 s)
    totals: dict[str, int] = field(default_factory=dict)
    stage_ns: dict[str, deque] = field(default_factory=dict)
    e2e_ns: deque = field(default_factory=lambda: deque(maxlen=600))
    e2e_all: list = field(default_factory=list)
    # Data age (capture of the newest input applied -> planner), per planner status that has it.
    data_age_ns: deque = field(default_factory=lambda: deque(maxlen=600))
    data_age_all: list = field(default_factory=list)
    degraded_all: list = field(default_factory=list)  # per prediction, in arrival order
    # Per prediction, in arrival order: (agents predicted, of them by the model) from agent_source.
    sources_all: list = field(default_factory=list)
    service_segment: dict = field(
        default_factory=dict
    )  # prediction seq -> sensor publish to prediction publish
    segments_all: list = field(
        default_factory=list
    )  # per planner status: (to prediction publish, last hop) ns
    stage_all: dict[str, list] = field(default_factory=dict)
    degraded: int = 0
    predictions: int = 0
    provider: str = "?"
    deadline_misses: int = 0
    health_reason: str = ""
    rejected: int = 0
    planner_status: str = ""
    health_seen: bool = False
    health_state: str = "?"
    ring: FrameRing | None = None  # raw frames for a recorder restart (when recording)

    def run(self, cfg: BusConfig, stop: threading.Event) -> None:
        """Count and keep what arrives until ``stop``, then drain what is already queued (the
        last predictions before a Ctrl-C count in the summary)."""
        sub = Subscriber(cfg, [""])
        drain_until = None
        try:
            while True:
                if drain_until is None and stop.is_set():
                    drain_until = time.monotonic() + DRAIN_S  # bounded: a flood cannot hold the exit
                if drain_until is not None and time.monotonic() > drain_until:
                    break
                got = sub.recv_raw(timeout_ms=100 if drain_until is None else 50)
                if got is None:
                    if drain_until is not None:
                        break
                    continue
                topic, payload = got
                if self.ring is not None:
                    self.ring.add(topic, payload, time.monotonic_ns())
                now = time.monotonic()
                # Bounded whatever topics arrive: a flood of made-up topics shares one row.
                topic = topic_key(topic)
                if topic not in self.counts and len(self.counts) >= MAX_TOPICS:
                    topic = "?"
                q = self.counts.setdefault(topic, deque())
                q.append(now)
                while q and q[0] < now - 2.0:
                    q.popleft()
                self.totals[topic] = self.totals.get(topic, 0) + 1
                if topic.startswith(LIGHT_TOPICS):
                    try:
                        self._take(codec.decode(topic, payload))
                    except DecodeError:
                        self.rejected += 1
        finally:
            sub.close()

    def _take(self, msg: object) -> None:
        if isinstance(msg, m.Predictions):
            if msg.source_sent_mono_ns > 0:
                # sensor publish -> prediction publish: first hop, queueing, compute, encode
                self.service_segment[msg.header.seq] = msg.header.sent_mono_ns - msg.source_sent_mono_ns
                if len(self.service_segment) > 1000:  # the planner is not answering: drop the oldest
                    del self.service_segment[next(iter(self.service_segment))]
            self.predictions += 1
            self.degraded += int(msg.degraded)
            self.degraded_all.append(bool(msg.degraded))
            src = msg.agent_source
            self.sources_all.append((int(src.size), int((src == m.AgentSource.MODEL).sum())))
            for k, v in msg.timings_ns.items():
                if k not in self.stage_ns and len(self.stage_ns) >= MAX_TOPICS // 8:
                    continue
                self.stage_ns.setdefault(k, deque(maxlen=600)).append(v)
                self.stage_all.setdefault(k, []).append(v)
        elif isinstance(msg, m.PlannerStatus):
            if msg.e2e_latency_ns > 0:
                self.e2e_ns.append(msg.e2e_latency_ns)
                self.e2e_all.append(msg.e2e_latency_ns)
                seg = self.service_segment.pop(msg.prediction_seq, None)
                self.segments_all.append((seg, msg.e2e_latency_ns - seg) if seg is not None else (None, None))
            if msg.data_age_ns > 0:
                self.data_age_ns.append(msg.data_age_ns)
                self.data_age_all.append(msg.data_age_ns)
            self.planner_status = msg.status
        elif isinstance(msg, m.Health) and msg.node == "predictor":
            self.health_seen = True
            self.provider, self.deadline_misses, self.health_reason = (
                msg.provider,
                msg.deadline_misses,
                msg.reason,
            )
            self.health_state = msg.state

    def rates(self) -> dict[str, float]:
        now = time.monotonic()
        return {t: sum(1 for x in q if x >= now - 2.0) / 2.0 for t, q in sorted(self.counts.items())}


def pct_ms(values_ns: Iterable[int]) -> tuple[float, float]:
    """(p50, p99) in ms of durations in ns, from :func:`prescient.service.stats.percentiles_ms` (NaN if empty)."""
    p = percentiles_ms(values_ns)
    return p["p50"], p["p99"]


def render_table(mon: Monitor, children: list, elapsed_s: float):
    """A rich renderable: rates per topic, latency per stage and end to end, health.

    ``children``: the launcher's :class:`prescient.service.app.stack.Child` list (name, alive, restarts).
    """
    from rich.console import Group
    from rich.table import Table

    rates = Table(title="topics (Hz, last 2 s)", show_lines=False)
    rates.add_column("topic")
    rates.add_column("Hz", justify="right")
    rates.add_column("total", justify="right")
    groups: dict[str, list[tuple[float, int]]] = {}
    for t, hz in mon.rates().items():
        # The four corners of one modality share a row: "sensor.lidar.* (4)".
        key = f"{t.rsplit('.', 1)[0]}.* ({{n}})" if t.startswith("sensor.") else t
        groups.setdefault(key, []).append((hz, mon.totals.get(t, 0)))
    for key, vals in groups.items():
        hz = min(v[0] for v in vals)
        rates.add_row(
            key.format(n=len(vals)),
            f"{hz:.1f}" + (" each" if len(vals) > 1 else ""),
            str(sum(v[1] for v in vals)),
        )
    lat = Table(title="latency (ms, last 600)")
    lat.add_column("stage")
    lat.add_column("p50", justify="right")
    lat.add_column("p99", justify="right")
    for k, q in mon.stage_ns.items():
        p50, p99 = pct_ms(q)
        lat.add_row(k, f"{p50:.2f}", f"{p99:.2f}")
    p50, p99 = pct_ms(mon.e2e_ns)
    lat.add_row(
        "[bold]processing[/bold] (newest applied input published -> planner)", f"{p50:.2f}", f"{p99:.2f}"
    )
    p50, p99 = pct_ms(mon.data_age_ns)
    lat.add_row(
        "[bold]data age[/bold] (newest applied input captured -> planner)", f"{p50:.2f}", f"{p99:.2f}"
    )
    state = Table(title=f"stack ({elapsed_s:.0f} s)")
    state.add_column("item")
    state.add_column("value")
    state.add_row("provider", mon.provider)
    state.add_row("predictions / degraded", f"{mon.predictions} / {mon.degraded}")
    state.add_row("deadline misses (>100 ms)", str(mon.deadline_misses))
    state.add_row(
        "health", f"{mon.health_state}: {mon.health_reason}" if mon.health_reason else mon.health_state
    )
    state.add_row("planner", mon.planner_status[:70])
    for c in children:
        state.add_row(
            c.name,
            ("running" if c.alive() else f"exited {c.proc.returncode if c.proc else '-'}")
            + (f", {c.restarts} restarts" if c.restarts else ""),
        )
    return Group(rates, lat, state)
