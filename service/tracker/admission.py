"""Admission of bus messages into the tracker: plausibility limits and clock checks.

Every sensor frame and ego state passes :class:`Admission` before it touches tracker state. A
rejected message changes nothing but one counter ``"<topic>:<reason>"`` in :class:`TrackerStats`.
``<topic>`` is a known topic (:data:`STATS_TOPICS`) or ``unknown_topic``, so forged topic names add
one key, not one per name; ``<reason>`` is one of :data:`REASONS`. All limits live in
:class:`AdmissionConfig` (``TrackerConfig.admission``); the defaults and the simulator's measured
maxima they leave headroom over are listed there.

Clocks (all stamps are capture times on the sensor clock, ns):
  * The ego clock is the reference: a frame more than ``max_future_s`` ahead of the newest ego
    state is ``future_dated``, more than ``max_age_s`` behind it ``stale``. Before the first ego
    state a frame may not run more than ``max_stamp_jump_s`` ahead of the newest frame
    (``stamp_jump``); frames then outside the first ego state's window are dropped from the
    buffer. A topic that jumps ahead on its own clock (back from a dropout) is admitted when the
    ego clock vouches for the stamp.
  * An ego state more than ``max_ego_lead_s`` ahead of both the previous ego state and the
    newest admitted frame is ``future_dated`` (the first one: more than ``max_stamp_jump_s`` ahead
    of the frames held for it). One forged ego state therefore cannot become the newest pose and
    make every real one ``out_of_order``; the ego stream alone (no frames) is not checked.
  * A genuine jump (a log with a gap, the ego stream back after the sensors were silent) is
    confirmed by :class:`ClockVote`: when the rejected candidates of ``quorum_topics`` sensor
    topics and the ego state agree on the new clock, the tracker adopts it. The pipeline uses the
    same vote to reset on a clock that jumped *back* (simulator or log restarted).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from prescient.bus import messages as m

NS_PER_S = 1_000_000_000
UNKNOWN_TOPIC = "unknown_topic"
# Topics that may appear in a rejection key; anything else is counted as UNKNOWN_TOPIC.
STATS_TOPICS = frozenset((*m.SENSOR_TOPICS, m.TOPIC_EGO, m.TOPIC_TRACKS))
REASONS = frozenset(
    {
        # shape and value checks
        "unknown_sensor",
        "bad_extrinsics",
        "bad_intrinsics",
        "bad_shape",
        "bad_class",
        "non_finite",
        "negative_range",
        # plausibility limits
        "too_many_objects",
        "too_many_points",
        "out_of_range",
        "implausible_speed",
        "implausible_size",
        # clocks
        "duplicate",
        "out_of_order",
        "late",
        "stale",
        "future_dated",
        "stamp_jump",
        "clock_jump_unconfirmed",  # counted by the pipeline (backward jump not yet confirmed)
        "no_ego_pose",
    }
)
_TOPIC_TYPE = {t: m.topic_type(t) for t in m.SENSOR_TOPICS}  # sensor topic -> frame type


def stats_topic(topic: Any) -> str:
    """The topic part of a rejection key: ``topic`` if known, else :data:`UNKNOWN_TOPIC`."""
    return topic if isinstance(topic, str) and topic in STATS_TOPICS else UNKNOWN_TOPIC


@dataclass
class TrackerStats:
    """Counters for the health topic.

    Attributes:
        rejected: ``"<topic>:<reason>"`` -> count of messages rejected before or at processing;
            at most ``(len(STATS_TOPICS) + 1) * len(REASONS)`` keys whatever the input.
        counters: named event counts (frames_applied, measurements, births, deleted_<reason>, ...).
    """

    rejected: dict[str, int] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)

    def reject(self, topic: Any, reason: str) -> None:
        """Count one rejection; an unknown ``topic`` is counted under :data:`UNKNOWN_TOPIC`."""
        key = f"{stats_topic(topic)}:{reason}"
        self.rejected[key] = self.rejected.get(key, 0) + 1

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def total_rejected(self) -> int:
        return sum(self.rejected.values())

    def add(self, other: TrackerStats) -> None:
        """Add every count of ``other`` (rejections keep their bounded keys)."""
        for name, n in other.counters.items():
            self.count(name, n)
        for key, n in other.rejected.items():
            self.rejected[key] = self.rejected.get(key, 0) + n


def per_class(default: float, **by_name: float) -> tuple[float, ...]:
    """A per-class tuple indexed by AgentClass: ``default`` except the classes named."""
    values = [default] * m.NUM_CLASSES
    for name, v in by_name.items():
        values[m.AgentClass[name.upper()]] = v
    return tuple(values)


@dataclass(frozen=True)
class AdmissionConfig:
    """Plausibility and clock limits of the tracker's input, in one place.

    Simulator maxima measured over 15 s runs of all four scenarios with up to 1,000 agents (day
    and night): LiDAR 69 boxes per frame, centres to 104 m, 2,463 points, box sides to 12.6 m;
    radar 82 returns per frame, ranges to 101 m, |range rate| to 22 m/s; camera 55 and LWIR 47
    boxes per frame, all within 1 % of the image; agents to 15.5 m/s (cars), 1.9 m/s
    (pedestrians); ego 7.2 m/s. The limits leave 3-4x headroom on counts and about 2x on ranges, and
    sit at physical bounds for speeds, so a real sensor in dense traffic stays well inside them.

    Per-modality tuples are indexed by :class:`~prescient.bus.messages.Modality` (camera, LiDAR, radar,
    LWIR); per-class tuples by :class:`~prescient.bus.messages.AgentClass`.
    """

    # --- per frame ---
    max_objects: tuple[int, int, int, int] = (256, 256, 256, 256)  # boxes / returns per frame
    lidar_max_points: int = 16384  # raw points per LiDAR frame (raster input)
    lidar_max_range_m: float = 200.0  # distance of a box centre from the sensor
    radar_max_range_m: float = 200.0
    max_mount_offset_m: float = 10.0  # sensor from the ego origin (sim corners: <= 4 m)
    image_margin_frac: float = 1.0  # box edges may lie this much of the larger image side outside
    max_box_size_m: float = 30.0  # any LiDAR box side (an articulated truck is ~25 m)
    max_range_rate_mps: float = 100.0  # two vehicles at 180 km/h closing head-on
    # --- motion ---
    # A LiDAR box associates with a track only if reaching it from the track's last position
    # implies at most this speed (time floored at one LiDAR period: below it noise dominates).
    max_implied_speed_mps: float = 90.0
    implied_speed_min_dt_s: float = 0.1
    max_speed_mps: tuple[float, ...] = field(  # tracks estimated faster are deleted
        default_factory=lambda: per_class(
            70.0, truck=45.0, bus=40.0, pedestrian=12.0, cyclist=25.0, animal=25.0
        )
    )
    max_ego_speed_mps: float = 90.0  # ego velocity, and the speed implied by its pose steps
    # --- track budget (capacity is TrackerConfig.capacity) ---
    max_births_per_frame: int = 96  # nearest unassigned boxes first
    max_tentative_tracks: int = 256  # births stop here: ghosts cannot crowd out real tracks
    # --- clocks ---
    max_future_s: float = 0.5  # a frame ahead of the newest ego state by more: future_dated
    max_age_s: float = 2.0  # a frame behind the newest ego state by more: stale
    max_ego_lead_s: float = 0.5  # an ego state ahead of the last ego and newest frame by more
    max_stamp_jump_s: float = 2.0  # ahead of the topic's / stream's own clock with no cross-check
    clock_jump_s: float = 2.0  # pipeline: an input this far behind the newest is a clock jump
    quorum_topics: int = 3  # distinct sensor topics that must agree on a new clock ...
    quorum_needs_ego: bool = True  # ... plus the ego state (when an ego stream is live)
    vote_window_s: float = 1.0  # candidates agree within this, and count this long (sensor time)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent field."""
        if len(self.max_objects) != len(m.Modality) or min(self.max_objects) < 0:
            raise ValueError(
                f"AdmissionConfig.max_objects: {len(m.Modality)} counts >= 0, got {self.max_objects}"
            )
        if len(self.max_speed_mps) != m.NUM_CLASSES or min(self.max_speed_mps) <= 0:
            raise ValueError(
                f"AdmissionConfig.max_speed_mps: {m.NUM_CLASSES} values > 0, got {self.max_speed_mps}"
            )
        for name in (
            "lidar_max_range_m",
            "radar_max_range_m",
            "max_mount_offset_m",
            "max_box_size_m",
            "max_range_rate_mps",
            "max_implied_speed_mps",
            "implied_speed_min_dt_s",
            "max_ego_speed_mps",
            "max_age_s",
            "max_ego_lead_s",
            "max_stamp_jump_s",
            "clock_jump_s",
            "vote_window_s",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"AdmissionConfig.{name}: must be > 0, got {getattr(self, name)}")
        for name in ("max_future_s", "image_margin_frac", "lidar_max_points", "max_births_per_frame"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"AdmissionConfig.{name}: must be >= 0, got {getattr(self, name)}")
        if self.quorum_topics < 1 or self.max_tentative_tracks < 1:
            raise ValueError("AdmissionConfig.quorum_topics / max_tentative_tracks: must be >= 1")


class ClockVote:
    """Agreement of several topics on a clock that the current one rejects.

    A restarted simulator or log moves the stamps of every topic together; a forged message moves
    one. Each known topic keeps its latest *candidate*: a stamp inconsistent with the current
    clock, the message, and the current clock's time when it came (``ref_ns``). A candidate is
    confirmed once candidates of ``quorum_topics`` distinct sensor topics (fewer if fewer have
    been live, at least one) and, if required and live, the ego topic agree with it: stamps within
    ``vote_window_s`` of it, offered within ``vote_window_s`` of current-clock time. A restart
    stops the old clock, so its candidates all count; forged messages at one per second are a
    second of current-clock time apart, so at most two ever count together. State: one candidate
    per known topic, so memory is bounded whatever arrives.

    Args:
        sensor_topics: topics whose candidates count towards the sensor quorum.
        ego_topic: the ego topic (``quorum_needs_ego``).
        cfg: limits.
    """

    def __init__(self, sensor_topics: Sequence[str], ego_topic: str, cfg: AdmissionConfig) -> None:
        topics = (*sensor_topics, ego_topic)
        self._index = {t: i for i, t in enumerate(topics)}
        self._ego = len(topics) - 1
        self._quorum = cfg.quorum_topics
        self._need_ego = cfg.quorum_needs_ego
        self._window_ns = int(cfg.vote_window_s * NS_PER_S)
        n = len(topics)
        self._stamp = np.zeros(n, np.int64)
        self._ref = np.zeros(n, np.int64)
        self._has = np.zeros(n, np.bool_)
        self._live = [False] * n  # a list: set on every admitted message, read only by offer()
        self._msg: list[Any] = [None] * n  # one message per known topic: bounded

    def knows(self, topic: Any) -> bool:
        """Whether ``topic`` takes part in the vote."""
        return isinstance(topic, str) and topic in self._index

    def mark_live(self, topic: str) -> None:
        """``topic`` delivered a message on the current clock (sets the quorum it can reach)."""
        i = self._index.get(topic)
        if i is not None:
            self._live[i] = True

    def clear(self, live: bool = False) -> None:
        """Drop every candidate (and with ``live`` the live topics: a new clock starts)."""
        self._has[:] = False
        self._msg = [None] * len(self._msg)
        if live:
            self._live = [False] * len(self._live)

    def offer(self, topic: str, stamp_ns: int, ref_ns: int, msg: Any) -> list[Any] | None:
        """Record ``msg`` as ``topic``'s candidate for a new clock near ``stamp_ns``.

        Args:
            topic: a topic for which :meth:`knows` is true.
            stamp_ns: the candidate's stamp.
            ref_ns: the current clock's newest time now.
            msg: the message, returned for replay once confirmed.

        Returns:
            None while unconfirmed; once confirmed, the agreeing candidates' messages, ego state
            first, then by stamp (the caller adopts the new clock and replays them). The
            candidates are cleared then.
        """
        i = self._index[topic]
        self._stamp[i], self._ref[i], self._has[i], self._msg[i] = stamp_ns, ref_ns, True, msg
        agree = (
            self._has
            & (np.abs(self._stamp - stamp_ns) <= self._window_ns)
            & (ref_ns - self._ref <= self._window_ns)
        )
        live_sensors = sum(self._live[: self._ego])
        need = max(1, min(self._quorum, live_sensors))
        if int(agree[: self._ego].sum()) < need:
            return None
        if self._need_ego and self._live[self._ego] and not agree[self._ego]:
            return None
        idx = np.flatnonzero(agree[: self._ego])
        idx = idx[np.argsort(self._stamp[idx], kind="stable")]
        out = ([self._msg[self._ego]] if agree[self._ego] else []) + [self._msg[j] for j in idx]
        self.clear()
        return out


class Admission:
    """Per-topic admission state (last stamps, validated mounts) and the checks of one message.

    Args:
        cfg: limits.
    """

    def __init__(self, cfg: AdmissionConfig) -> None:
        self.cfg = cfg
        self.last_stamp: dict[str, int] = {}  # known sensor topics only
        self._good_extrinsics: dict[str, bytes] = {}  # topic -> last validated mounting pose
        self._max_objects = tuple(int(v) for v in cfg.max_objects)
        self._future_ns = int(cfg.max_future_s * NS_PER_S)
        self._age_ns = int(cfg.max_age_s * NS_PER_S)
        self._lead_ns = int(cfg.max_ego_lead_s * NS_PER_S)
        self._jump_ns = int(cfg.max_stamp_jump_s * NS_PER_S)

    # ------------------------------------------------------------------------------------------
    def check_frame(
        self,
        msg: Any,
        modality: m.Modality,
        newest_ego_ns: int | None,
        newest_frame_ns: int | None,
        filter_ns: int | None,
    ) -> str:
        """Return '' if the frame is usable, else the rejection reason (one of :data:`REASONS`).

        Args:
            msg: a camera, LiDAR, radar or LWIR frame of ``modality``.
            newest_ego_ns: stamp of the newest admitted ego state, None before the first.
            newest_frame_ns: stamp of the newest admitted frame, None before the first.
            filter_ns: time the tracker's filter has reached (older frames are ``late``).
        """
        h = msg.header
        if _TOPIC_TYPE.get(h.topic) is not type(msg):
            return "unknown_sensor"
        reason = self._check_content(msg, modality)
        if reason:
            return reason
        return self._check_stamp(h.topic, h.stamp_ns, newest_ego_ns, newest_frame_ns, filter_ns)

    def _check_content(self, msg: Any, modality: m.Modality) -> str:
        """Counts, shapes, finiteness and value ranges of the frame's arrays.

        At ~400 frames/s every numpy reduction counts, so an array with limits is checked by its
        min/max alone (a NaN fails the comparison) and only a failing frame pays to tell a
        non-finite value from one out of its range.
        """
        lidar, radar = modality == m.Modality.LIDAR, modality == m.Modality.RADAR
        n = (msg.center_m if lidar else msg.range_m if radar else msg.boxes_px).shape[0]
        n_pts = (msg.points_m.shape[0] if msg.points_m.ndim else 0) if lidar else 0
        # Counts first: an oversized frame is rejected before any O(n) pass over it.
        if n > self._max_objects[modality]:
            return "too_many_objects"
        if n_pts > self.cfg.lidar_max_points:
            return "too_many_points"
        reason = self._check_mount(msg) or self._check_arrays(msg, modality, n, n_pts)
        if reason or n == 0:
            return reason
        return self._check_bounds(msg, modality)

    @staticmethod
    def _check_arrays(msg: Any, modality: m.Modality, n: int, n_pts: int) -> str:
        """Shapes (n objects, n_pts points), finiteness, class ids and intrinsics of a frame."""
        lidar, radar = modality == m.Modality.LIDAR, modality == m.Modality.RADAR
        finite: tuple[np.ndarray, ...]
        if lidar:
            shapes = [(msg.center_m, (n, 3)), (msg.size_lwh_m, (n, 3)), (msg.yaw_rad, (n,))]
            shapes += [(msg.score, (n,)), (msg.class_id, (n,)), (msg.points_m, (n_pts, 3))]
            finite = (msg.yaw_rad, msg.score, msg.points_m)
        elif radar:
            shapes = [(msg.range_m, (n,)), (msg.azimuth_rad, (n,)), (msg.range_rate_mps, (n,))]
            shapes += [(msg.rcs_dbsm, (n,))]
            finite = (msg.azimuth_rad, msg.rcs_dbsm)
        else:
            shapes = [(msg.boxes_px, (n, 4)), (msg.class_conf, (n,)), (msg.intrinsics, (3, 3))]
            shapes += [(msg.class_id, (n,))]
            if modality == m.Modality.CAMERA:
                shapes += [(msg.attributes, (n,))]
            finite = (msg.class_conf, msg.intrinsics)
        for a, shape in shapes:
            if a.shape != shape:
                return "bad_shape"
        for a in finite:
            # One reduction: the sum is finite iff every element is (finite values large enough
            # to overflow it are rejected too, which is fine for sensor data).
            if not math.isfinite(a.sum()):
                return "non_finite"
        if not radar and n and (msg.class_id.min() < 0 or msg.class_id.max() >= m.NUM_CLASSES):
            return "bad_class"
        if not (lidar or radar) and not (msg.intrinsics[0, 0] > 0 and msg.intrinsics[1, 1] > 0):
            return "bad_intrinsics"
        return ""

    def _check_bounds(self, msg: Any, modality: m.Modality) -> str:
        """Value ranges of a frame with at least one object (min/max first, see above)."""
        c = self.cfg
        lidar, radar = modality == m.Modality.LIDAR, modality == m.Modality.RADAR
        # (array, low, high, reason below, reason above); low None: no lower limit.
        bounded: list[tuple[np.ndarray, float | None, float, str, str]]
        if lidar:
            r2 = np.einsum("ij,ij->i", msg.center_m, msg.center_m)  # (n,) squared ranges, m^2
            bounded = [
                (r2, None, c.lidar_max_range_m**2, "", "out_of_range"),
                (msg.size_lwh_m, 0.0, c.max_box_size_m, "implausible_size", "implausible_size"),
            ]
        elif radar:
            v = c.max_range_rate_mps
            bounded = [
                (msg.range_m, 0.0, c.radar_max_range_m, "negative_range", "out_of_range"),
                (msg.range_rate_mps, -v, v, "implausible_speed", "implausible_speed"),
            ]
        else:
            # Only the horizontal box position is used (bearing): one bound from the larger image
            # side (the header field, else twice the principal point) serves both axes.
            kk, wh = msg.intrinsics, msg.image_wh_px
            side = float(wh.max()) if wh.shape == (2,) and wh.min() > 0 else 2.0 * max(kk[0, 2], kk[1, 2])
            f = c.image_margin_frac
            bounded = [(msg.boxes_px, -f * side, (1 + f) * side, "out_of_range", "out_of_range")]
        for a, lo, hi, below, above in bounded:
            if (lo is None or a.min() >= lo) and a.max() <= hi:
                continue
            if not np.isfinite(a).all():
                return "non_finite"
            return below if lo is not None and a.min() < lo else above
        return ""

    def _check_mount(self, msg: Any) -> str:
        """'' if the frame's ``ego_from_sensor`` is a rigid transform within ``max_mount_offset_m``
        of the ego origin (checked once per distinct pose and topic)."""
        e = msg.ego_from_sensor
        if e.shape != (4, 4):
            return "bad_extrinsics"
        key = e.tobytes()
        topic = msg.header.topic
        if self._good_extrinsics.get(topic) != key:
            rot = e[:3, :3]
            if not np.isfinite(e).all():
                return "bad_extrinsics"
            if np.abs(rot @ rot.T - np.eye(3)).max() > 1e-3 or np.abs(e[3] - (0, 0, 0, 1)).max() > 1e-9:
                return "bad_extrinsics"
            if float(e[:3, 3] @ e[:3, 3]) > self.cfg.max_mount_offset_m**2:
                return "bad_extrinsics"
            self._good_extrinsics[topic] = key
        return ""

    def _check_stamp(
        self,
        topic: str,
        stamp: int,
        newest_ego_ns: int | None,
        newest_frame_ns: int | None,
        filter_ns: int | None,
    ) -> str:
        last = self.last_stamp.get(topic)
        if last is not None and stamp <= last:
            return "duplicate" if stamp == last else "out_of_order"
        if filter_ns is not None and stamp < filter_ns:
            return "late"
        if newest_ego_ns is None:
            # No reference clock yet: the stream's own clock is the only check.
            if newest_frame_ns is not None and stamp > newest_frame_ns + self._jump_ns:
                return "stamp_jump"
            return ""
        # The ego clock vouches for stamps in its window, even after a long gap on this topic.
        if stamp > newest_ego_ns + self._future_ns:
            return "future_dated"
        if stamp < newest_ego_ns - self._age_ns:
            return "stale"
        return ""

    def in_ego_window(self, stamp_ns: int, ego_ns: int) -> bool:
        """Whether a frame stamped ``stamp_ns`` lies in the window of an ego state at ``ego_ns``."""
        return ego_ns - self._age_ns <= stamp_ns <= ego_ns + self._future_ns

    # ------------------------------------------------------------------------------------------
    def check_ego(
        self,
        msg: m.EgoState,
        newest_ego: tuple[int, np.ndarray] | None,
        newest_frame_ns: int | None,
    ) -> tuple[str, np.ndarray | None]:
        """Check an ego state.

        Args:
            msg: the ego state.
            newest_ego: (stamp_ns, (6,) row) of the newest admitted ego state, or None.
            newest_frame_ns: stamp of the newest admitted frame, or None.

        Returns:
            (reason or '', row ``[x_m, y_m, yaw_rad, vx_mps, vy_mps, yaw_rate_radps]`` world frame
            or None when the content is unusable).
        """
        pose, vel = msg.pose, msg.velocity_mps
        if pose.shape != (3,) or vel.shape != (2,):
            return "bad_shape", None
        row = np.array([pose[0], pose[1], pose[2], vel[0], vel[1], msg.yaw_rate_radps], np.float64)
        if not np.isfinite(row).all():
            return "non_finite", None
        c = self.cfg
        if math.hypot(row[3], row[4]) > c.max_ego_speed_mps:
            return "implausible_speed", row
        stamp = msg.header.stamp_ns
        if newest_ego is not None:
            last_ns, last_row = newest_ego
            if stamp == last_ns:
                return "duplicate", row
            if stamp < last_ns:
                return "out_of_order", row
        # Ahead of both its own stream and the frames: one forged state must not become the
        # newest pose (every real one would then be out_of_order). Without frames there is no
        # second clock to ask; the first ego state only has the frames held for it.
        if newest_frame_ns is not None:
            if newest_ego is None:
                ahead = stamp > newest_frame_ns + self._jump_ns
            else:
                ahead = stamp > newest_ego[0] + self._lead_ns and stamp > newest_frame_ns + self._lead_ns
            if ahead:
                return "future_dated", row
        if newest_ego is not None:
            dt_s = max((stamp - last_ns) / NS_PER_S, c.implied_speed_min_dt_s)
            if math.hypot(row[0] - last_row[0], row[1] - last_row[1]) > c.max_ego_speed_mps * dt_s:
                return "implausible_speed", row
        return "", row
