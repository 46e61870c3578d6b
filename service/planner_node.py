"""The planner stub's process: predictions in, ``planner.status`` out, with what they cost.

Only this loop touches sockets and the wall clock (the judging is :mod:`prescient.service.planner_stub`).
Per prediction it measures two figures, on this host's monotonic clock:

* **processing latency**: received - publish time of the newest input applied to the tracks
  the prediction was computed from (``Predictions.source_sent_mono_ns``); it contains the time
  that input waited in the tracker's reorder window, the tick's compute and the transport.
* **data age**: received - capture time of that input (``Predictions.source_stamp_ns``, sensor
  clock, mapped to this host's clock by :class:`SensorClock`); it adds the sensor's own latency.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from prescient.bus import messages as m
from prescient.bus.config import BusConfig
from prescient.bus.errors import RequestTimeout, TransportError
from prescient.bus.reqrep import Requester
from prescient.bus.transport import Publisher, Subscriber
from prescient.service.gc_policy import GcPauses, frozen_startup_heap
from prescient.service.planner_stub import (
    MAX_PREDICTION_AGE_S,
    Verdict,
    candidate_plans,
    judge,
    score_plans,
    stale_verdict,
)

log = logging.getLogger(__name__)

PLANNER_NODE = "planner"


@dataclass
class PlannerStats:
    """What the planner saw. Latency lists hold one entry per prediction whose source is known.

    Attributes:
        e2e_ns: processing latency (see the module docstring), ns.
        data_age_ns: data age, ns (empty before the first ego state maps the sensor clock).
        sensor_ns: the sensor's share of the data age (capture -> publish), ns.
    """

    e2e_ns: list[int] = field(default_factory=list)
    data_age_ns: list[int] = field(default_factory=list)
    sensor_ns: list[int] = field(default_factory=list)
    conditional_ns: list[int] = field(default_factory=list)
    conditional_failures: int = 0
    degraded: int = 0
    received: int = 0
    unknown_source: int = 0  # predictions made before any input was applied (no latency to measure)
    stale: int = 0  # predictions older than MAX_PREDICTION_AGE_S, not acted on
    missing_alarms: int = 0  # statuses saying no prediction arrived for that long


class SensorClock:
    """Sensor-clock stamps on this host's monotonic clock, learned from ego states.

    An ego state is published at its capture time (no sensor pipeline in between), so its
    receive time minus its stamp is the clock offset plus a transport delay that can only add:
    the smallest value over the last ``window`` ego states is the estimate.
    """

    def __init__(self, window: int = 50) -> None:
        self._offsets: deque[int] = deque(maxlen=window)

    def note_ego(self, stamp_ns: int, recv_mono_ns: int) -> None:
        self._offsets.append(recv_mono_ns - stamp_ns)

    def to_mono(self, stamp_ns: int) -> int | None:
        """``stamp_ns`` on this host's monotonic clock, or None before any ego state."""
        return stamp_ns + min(self._offsets) if self._offsets else None


def measure(msg: m.Predictions, recv_mono_ns: int, clock: SensorClock) -> tuple[int, int | None, int | None]:
    """(processing latency, data age, sensor share) of ``msg`` received at ``recv_mono_ns``, ns.

    Processing latency is 0 when the prediction names no source input; the other two are None
    when the source or the clock mapping is unknown.
    """
    if msg.source_sent_mono_ns <= 0 or msg.source_stamp_ns <= 0:
        return 0, None, None
    processing = recv_mono_ns - msg.source_sent_mono_ns
    captured = clock.to_mono(msg.source_stamp_ns)
    if captured is None:
        return processing, None, None
    return processing, recv_mono_ns - captured, msg.source_sent_mono_ns - captured


def _publish_status(
    pub: Publisher,
    verdict: Verdict,
    prediction_seq: int,
    e2e_ns: int,
    src: m.Predictions | m.EgoState,
    data_age_ns: int = 0,
) -> None:
    """One ``planner.status`` for ``verdict``, stamped with the sensor time of ``src``."""
    pub.publish(
        m.PlannerStatus(
            header=m.Header(topic=m.TOPIC_PLANNER_STATUS, stamp_ns=src.header.stamp_ns),
            prediction_seq=int(prediction_seq),
            e2e_latency_ns=int(e2e_ns),
            data_age_ns=int(data_age_ns),
            chosen_plan=verdict.chosen_plan,
            min_distance_m=verdict.min_distance_m,
            min_ttc_s=verdict.min_ttc_s,
            status=verdict.status,
        )
    )


class _Planner:
    """The stub's state between messages: the ego, the clock mapping, counters, the requester."""

    def __init__(self, pub: Publisher, req: Requester, conditional_every: int, timeout_ms: int) -> None:
        self.pub, self.req = pub, req
        self.conditional_every, self.timeout_ms = conditional_every, timeout_ms
        self.stats = PlannerStats()
        self.clock = SensorClock()
        self.ego: m.EgoState | None = None
        self.request_id = 0
        self.max_age_ns = int(MAX_PREDICTION_AGE_S * 1e9)
        self.last_pred_ns = self.next_alarm_ns = 0

    def check_silence(self, now: int) -> None:
        """Silence is not safety: say on planner.status that there is nothing to act on."""
        if self.ego is None or now - self.last_pred_ns <= self.max_age_ns or now < self.next_alarm_ns:
            return
        self.next_alarm_ns = now + self.max_age_ns // 5
        self.stats.missing_alarms += 1
        age_s = (now - self.last_pred_ns) / 1e9
        verdict = stale_verdict(age_s, len(candidate_plans(self.ego)), missing=True)
        _publish_status(self.pub, verdict, -1, 0, self.ego)

    def on_ego(self, msg: m.EgoState, now: int) -> None:
        self.last_pred_ns = self.last_pred_ns or now  # the alarm counts from the first ego state
        self.ego = msg
        self.clock.note_ego(msg.header.stamp_ns, now)

    def on_prediction(self, msg: m.Predictions, now: int) -> None:
        ego, stats = self.ego, self.stats
        if ego is None:
            return
        e2e, age, sensor = measure(msg, now, self.clock)
        self.last_pred_ns = now
        stats.received += 1
        stats.degraded += int(msg.degraded)
        if e2e:
            stats.e2e_ns.append(e2e)
        else:
            stats.unknown_source += 1
        if age is not None and sensor is not None:
            stats.data_age_ns.append(age)
            stats.sensor_ns.append(sensor)
        plans = candidate_plans(ego)
        oldest = age if age is not None else e2e  # what the planner would act on
        if oldest > self.max_age_ns:
            stats.stale += 1
            verdict = stale_verdict(oldest / 1e9, len(plans))
            _publish_status(self.pub, verdict, msg.header.seq, e2e, msg, age or 0)
            return
        verdict = judge(plans, msg.trajectories_m, msg.mode_probs, msg.degraded)
        if self.conditional_every > 0 and stats.received % self.conditional_every == 0:
            verdict.status += self._ask_conditional(msg, plans)
        _publish_status(self.pub, verdict, msg.header.seq, e2e, msg, age or 0)

    def _ask_conditional(self, msg: m.Predictions, plans: np.ndarray) -> str:
        """Ask "if I drive each plan, how do the others react?"; the status text it adds."""
        self.request_id += 1
        t0 = time.perf_counter_ns()
        try:
            reply = self.req.request(
                m.ConditionalRequest(
                    header=m.Header(topic=m.TOPIC_CONDITIONAL_REQUEST, stamp_ns=msg.header.stamp_ns),
                    request_id=self.request_id,
                    plans_xy_m=plans,
                ),
                timeout_ms=self.timeout_ms,
            )
        except (RequestTimeout, TransportError) as e:
            self.stats.conditional_failures += 1
            return f"; conditional request failed: {e}"
        self.stats.conditional_ns.append(time.perf_counter_ns() - t0)
        dist = np.array(
            [
                score_plans(plans[b : b + 1], reply.trajectories_m[b], reply.mode_probs[b])[0][0]
                for b in range(len(plans))
            ]
        )
        return f"; conditional min distance per plan {np.round(np.minimum(dist, 1e6), 1).tolist()}"


def run_planner(
    cfg: BusConfig, stop: threading.Event, conditional_every: int = 10, conditional_timeout_ms: int = 300
) -> PlannerStats:
    """The planner stub node. Returns its latency statistics when stopped."""
    sub = Subscriber(cfg, [m.TOPIC_PREDICTIONS, m.TOPIC_EGO], known_topics_only=True)
    pub = Publisher(cfg)
    req = Requester(cfg, cfg.conditional_endpoint)
    planner = _Planner(pub, req, conditional_every, conditional_timeout_ms)
    pauses = GcPauses()
    try:
        # Its receive times are the latency figures' end point: a full collection of its start-up
        # heap would count as processing latency (see prescient.service.gc_policy).
        with frozen_startup_heap(), pauses.install():
            while not stop.is_set():
                msg = sub.recv(timeout_ms=50)
                now = time.monotonic_ns()
                planner.check_silence(now)
                if isinstance(msg, m.EgoState):
                    planner.on_ego(msg, now)
                elif isinstance(msg, m.Predictions):
                    planner.on_prediction(msg, now)
    finally:
        sub.close()
        pub.close()
        req.close()
    log.info("planner stub stopped; garbage collections %s", pauses.summary())
    return planner.stats
