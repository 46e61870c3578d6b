"""Input stage of the tracker: admission, the reorder queue, and the clocks.

Every message passes :class:`~prescient.service.tracker.admission.Admission` first; a rejected one changes
no state but a counter (it may vote for a new clock, see
:class:`~prescient.service.tracker.admission.ClockVote`). Admitted ego states go to the pose buffer
(:class:`~prescient.service.tracker.ego.EgoBuffer`) and the ego trail; admitted sensor frames wait in a
heap ordered by capture time until they are older than the newest capture time minus the reorder
window, then leave in batches (one modality, one capture time: the four corners) for the
callback that applies them.

Clocks, all on the sensor clock (ns): ``newest_ns`` is the newest admitted capture time of any
sensor frame; the ego buffer's newest stamp is the reference clock; the filter time (how far the
track states have been predicted) is read through a callback, since applying frames moves it.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable
from typing import Any

from prescient.bus import messages as m
from prescient.service.tracker.admission import Admission, ClockVote, TrackerStats
from prescient.service.tracker.config import TrackerConfig
from prescient.service.tracker.ego import EgoBuffer, EgoTrail
from prescient.service.tracker.table import HISTORY_DT_NS, NS_PER_S

log = logging.getLogger(__name__)

FRESH_MAX = 4096  # frames kept for the look-ahead between two looks (~10 s of all 16 sensors)
PRE_EGO_FRAMES = 256  # frames held before the first ego state (~0.6 s of all 16 sensors)
EGO_TRAIL_MAX_STEPS = 4 * m.TRACK_HISTORY_STEPS
FRAME_TYPES = {
    m.CameraFrame: m.Modality.CAMERA,
    m.LidarFrame: m.Modality.LIDAR,
    m.RadarFrame: m.Modality.RADAR,
    m.LwirFrame: m.Modality.LWIR,
}
# Within one capture time, modalities apply in this order (LiDAR first: only it starts tracks).
APPLY_ORDER = (m.Modality.LIDAR, m.Modality.RADAR, m.Modality.CAMERA, m.Modality.LWIR)
APPLY_RANK = {mod: k for k, mod in enumerate(APPLY_ORDER)}
HeapEntry = tuple[int, str, int, Any]  # (capture stamp ns, topic, push count, frame)


def batch_key(frame: Any) -> tuple[int, int]:
    """(capture stamp ns, modality rank): the order in which batches are applied."""
    return frame.header.stamp_ns, APPLY_RANK[FRAME_TYPES[type(frame)]]


def batches_of(entries: list[HeapEntry]) -> list[list[Any]]:
    """Heap entries, sorted, as the batches that apply them: one modality and one capture time
    per batch (the corners), batches in :func:`batch_key` order, frames by topic within one.

    Both modes (frames applied after the window, or at once on the timeline of
    :mod:`~prescient.service.tracker.timeline`) apply frames through this grouping.
    """
    out: list[list[Any]] = []
    k = 0
    while k < len(entries):
        stamp = entries[k][0]
        j = k
        while j < len(entries) and entries[j][0] == stamp:
            j += 1
        frames = [e[3] for e in entries[k:j]]
        for modality in APPLY_ORDER:
            batch = [f for f in frames if FRAME_TYPES[type(f)] == modality]
            if batch:
                out.append(batch)
        k = j
    return out


class Ingest:
    """Admission, reorder heap and clocks of one tracker.

    Args:
        config: the tracker's configuration (``admission``, ``reorder_window_s``, ``ego_buffer``).
        stats: rejection and event counters (shared with the other stages).
        apply: called with each batch of frames leaving the heap (one modality, one capture time,
            in topic order), in capture-time order.
        filter_ns: returns the time the track states have been predicted to (None before the
            first applied frame); frames older than it are ``late``.
    """

    def __init__(
        self,
        config: TrackerConfig,
        stats: TrackerStats,
        apply: Callable[[list[Any]], None],
        filter_ns: Callable[[], int | None],
    ) -> None:
        a = config.admission
        self.stats = stats
        self._apply = apply
        self._filter_ns = filter_ns
        self._admission = Admission(a)
        self._vote = ClockVote(m.SENSOR_TOPICS, m.TOPIC_EGO, a)
        self.ego = EgoBuffer(config.ego_buffer, int((a.max_future_s + 1.0) * NS_PER_S))
        self.ego_trail = EgoTrail(config.ego_buffer, EGO_TRAIL_MAX_STEPS, periods_ns=(HISTORY_DT_NS,))
        self.window_ns = int(config.reorder_window_s * NS_PER_S)
        self.newest_ns: int | None = None  # newest capture time seen on any sensor
        self._heap: list[HeapEntry] = []
        self._push_count = 0
        # For the look-ahead: frames pushed since it last looked, and a counter that moves when
        # the heap loses frames other than by a flush (the look-ahead must then start over).
        self.fresh: list[HeapEntry] = []
        self.generation = 0

    def process(self, msg: Any) -> bool:
        """Take one bus message: admit it, then buffer (frame) or record (ego state) it.

        Ground truth, traffic lights and other non-sensor messages are ignored. Nothing is raised.

        Returns:
            True if the message was accepted (buffered or used), False if rejected or ignored.
        """
        if isinstance(msg, m.EgoState):
            if msg.header.topic != m.TOPIC_EGO:  # a look-alike topic (ego.state.forged) is not the ego
                self.stats.reject(msg.header.topic, "unknown_topic")
                return False
            return self._process_ego(msg)
        modality = FRAME_TYPES.get(type(msg))
        header = getattr(msg, "header", None)
        topic = getattr(header, "topic", None)
        if modality is None:
            if not isinstance(header, m.Header) or str(topic).startswith("sensor."):
                self.stats.reject(topic, "unknown_sensor")
                return False
            self.stats.count("ignored")
            return False
        reason = self._admission.check_frame(
            msg, modality, self.ego.newest_ns, self.newest_ns, self._filter_ns()
        )
        if reason:
            h = msg.header  # a known frame type: it has a header
            self.stats.reject(h.topic, reason)
            log.debug("rejected %s seq %s: %s", h.topic, h.seq, reason)
            if reason == "future_dated":
                self._offer_clock(h.topic, h.stamp_ns, msg)
            return False
        self._push(msg)
        return True

    def _push(self, msg: Any) -> None:
        """Buffer an admitted frame; apply what the reorder window releases."""
        header = msg.header
        stamp, topic = header.stamp_ns, header.topic
        self._admission.last_stamp[topic] = stamp
        self._vote.mark_live(topic)
        entry = (stamp, topic, self._push_count, msg)
        heapq.heappush(self._heap, entry)
        self.fresh.append(entry)
        if len(self.fresh) > FRESH_MAX:  # nobody looked for a long time: start over instead
            self.fresh.clear()
            self.generation += 1
        self._push_count += 1
        if self.newest_ns is None or stamp > self.newest_ns:
            self.newest_ns = stamp
        if self.ego.newest_ns is not None:
            self.flush(self.newest_ns - self.window_ns)
        else:
            # Nothing applies without an ego pose: hold the frames (bounded) until the first ego
            # state vouches for their stamps (one forged ahead must not flush the real ones).
            while len(self._heap) > PRE_EGO_FRAMES:
                self.stats.reject(heapq.heappop(self._heap)[1], "no_ego_pose")
                self.generation += 1

    def _process_ego(self, msg: m.EgoState) -> bool:
        reason, row = self._admission.check_ego(msg, self.ego.newest, self.newest_ns)
        if reason or row is None:  # row is None exactly when there is a reason
            self.stats.reject(msg.header.topic, reason)
            if reason == "future_dated":
                self._offer_clock(m.TOPIC_EGO, msg.header.stamp_ns, msg)
            return False
        first = self.ego.newest_ns is None
        self.ego.add(msg.header.stamp_ns, row)
        self.ego_trail.add(msg.header.stamp_ns, row)
        self._vote.mark_live(m.TOPIC_EGO)
        if first:
            self._drop_unvouched(msg.header.stamp_ns)
        return True

    def _offer_clock(self, topic: str, stamp_ns: int, msg: Any) -> None:
        """Vote for a clock ahead of the current one; adopt it once sensors and ego agree.

        The adopted ego state goes to the pose buffer only, not the ego trail (the message that
        confirmed it was itself rejected, so a caller drawing the trail never saw it accepted).
        """
        ref_ns = max(t for t in (self.ego.newest_ns, self.newest_ns) if t is not None)
        agreed = self._vote.offer(topic, stamp_ns, ref_ns, msg)
        if not agreed or not isinstance(agreed[0], m.EgoState):
            return
        ego = agreed[0]
        log.warning(
            "sensor clock jumped ahead %.1f s: confirmed by %d topics",
            (ego.header.stamp_ns - ref_ns) / 1e9,
            len(agreed),
        )
        self.stats.count("clock_jumps")
        _, row = self._admission.check_ego(ego, None, None)
        if row is not None:  # the vote only holds ego states that passed this check
            self.ego.add(ego.header.stamp_ns, row)
        for frame in agreed[1:]:
            self.process(frame)

    def _drop_unvouched(self, ego_ns: int) -> None:
        """At the first ego state, drop buffered frames outside its window (e.g. one forged ahead
        before there was a clock to check it against) and let their topics continue."""
        keep = [e for e in self._heap if self._admission.in_ego_window(e[0], ego_ns)]
        if len(keep) == len(self._heap):
            return
        for stamp, topic, _, _ in self._heap:
            if not self._admission.in_ego_window(stamp, ego_ns):
                self.stats.reject(topic, "future_dated" if stamp > ego_ns else "stale")
                self._admission.last_stamp.pop(topic, None)
        heapq.heapify(keep)
        self._heap = keep
        self.generation += 1
        self.newest_ns = max((e[0] for e in keep), default=None)

    def flush(self, until_ns: int) -> None:
        """Apply buffered frames captured at or before ``until_ns`` in capture-time order.

        Frames of one modality sharing a capture time (the four corners) form one batch: one
        gating call, then one assignment per sensor, so an object seen by two corners updates its
        track twice instead of spawning a duplicate. Within one capture time frames are ordered by
        topic, so the result does not depend on arrival order.
        """
        while self._heap and self._heap[0][0] <= until_ns:
            stamp = self._heap[0][0]
            entries = []
            while self._heap and self._heap[0][0] == stamp:
                entries.append(heapq.heappop(self._heap))
            for batch in batches_of(entries):
                self._apply(batch)

    def pending(self, until_ns: int | None = None) -> list[HeapEntry]:
        """The buffered frames (captured at or before ``until_ns`` if given), sorted."""
        entries = sorted(self._heap)
        if until_ns is not None:
            entries = [e for e in entries if e[0] <= until_ns]
        return entries
