"""Multi-sensor EKF tracker: sensor frames in, world-frame :class:`~bus.messages.Tracks` out.

A pure processing stage: no sockets, no wall clock. Time comes only from message headers, so a
replay reproduces a live run. State is struct-of-arrays with a fixed capacity ``N_MAX`` and a
``valid`` mask, allocated once (see :class:`~service.tracker.config.TrackerConfig` for the track
management thresholds and the reorder window).

Per batch (the frames of one modality sharing a capture time, i.e. the four corners), in
capture-time order: predict every track to the capture time, convert the detections to world-frame
measurements (ego pose interpolated at the capture time; radar range rate compensated for the
sensor's own motion including the yaw-rate lever arm), gate by Mahalanobis distance, assign with
``scipy.optimize.linear_sum_assignment`` on ``d2 + log det S + class cost`` (one measurement per
track per sensor), EKF-update, fuse class probabilities and attributes, and start tentative tracks
from unassigned LiDAR boxes.

Motion models (see :mod:`service.tracker.kernels`): constant velocity for pedestrians, animals and
unknown; constant turn rate with an acceleration state (CTRA, which reduces to CTRV) for cars,
trucks, buses and cyclists. Measurement models: LiDAR ``[x, y, yaw]`` (size by EMA), radar
``[range, bearing, range rate]``, camera/LWIR bearing of the box centre (plus class, attributes).
"""

from __future__ import annotations

import heapq
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

from bus import messages as m
from service.tracker import kernels as k
from service.tracker.config import TrackerConfig
from service.tracker.ego import EgoBuffer

log = logging.getLogger(__name__)

NS_PER_S = 1_000_000_000
HISTORY_DT_NS = int(round(m.PRED_DT_S * NS_PER_S))
_BIG = 1e6
_CTRV_CLASSES = frozenset({m.AgentClass.CAR, m.AgentClass.TRUCK, m.AgentClass.BUS, m.AgentClass.CYCLIST})
_FRAME_TYPES = {
    m.CameraFrame: m.Modality.CAMERA,
    m.LidarFrame: m.Modality.LIDAR,
    m.RadarFrame: m.Modality.RADAR,
    m.LwirFrame: m.Modality.LWIR,
}
_SENSOR_TOPICS = frozenset(m.SENSOR_TOPICS)
_ATTR_BITS = np.array([int(a) for a in m.Attribute], dtype=np.uint8)


def model_of_class(class_id: int) -> int:
    """Motion model of a class: CTRV for vehicles and cyclists, CV for everything else."""
    return k.MODEL_CTRV if class_id in _CTRV_CLASSES else k.MODEL_CV


@dataclass
class TrackerStats:
    """Counters for the health topic.

    Attributes:
        rejected: ``"<topic>:<reason>"`` -> count of frames rejected before or at processing.
        counters: named event counts (frames_applied, measurements, births, deleted_<reason>, ...).
    """

    rejected: dict[str, int] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)

    def reject(self, topic: str, reason: str) -> None:
        key = f"{topic}:{reason}"
        self.rejected[key] = self.rejected.get(key, 0) + 1

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def total_rejected(self) -> int:
        return sum(self.rejected.values())


@dataclass
class _Meas:
    """World-frame measurements of a batch of frames (M rows)."""

    kind: int
    modality: m.Modality
    sensors: np.ndarray  # (M, 5) [x_m, y_m, yaw_rad, vx_mps, vy_mps] world, per measurement
    z: np.ndarray  # (M, m) float64
    R: np.ndarray  # (M, m) float64 variances
    class_id: np.ndarray | None  # (M,) int
    class_conf: np.ndarray | None  # (M,) float
    attributes: np.ndarray | None  # (M,) uint8
    size_lwh_m: np.ndarray | None  # (M, 3)
    frame_of: np.ndarray  # (M,) index of the source frame within the batch


class Tracker:
    """Fuses camera, LiDAR, radar and LWIR frames into world-frame tracks.

    Args:
        config: thresholds and noise levels; validated once here.

    Use :meth:`process` for every incoming message and :meth:`tracks` once per output tick, or
    :meth:`update` for both at once.
    """

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self.config.validate()
        c = self.config
        n = c.capacity
        H = m.TRACK_HISTORY_STEPS
        self.valid = np.zeros(n, np.bool_)
        self.x = np.zeros((n, k.STATE_DIM))
        self.P = np.tile(np.eye(k.STATE_DIM), (n, 1, 1))
        self.model = np.zeros(n, np.int8)
        self.sigma_a = np.ones(n)
        self.sigma_w = np.ones(n)
        self.sigma_j = np.ones(n)
        self.class_logp = np.full((n, m.NUM_CLASSES), -math.log(m.NUM_CLASSES))
        self.class_id = np.zeros(n, np.int32)
        self.status = np.zeros(n, np.uint8)
        self.track_id = np.full(n, -1, np.int64)
        self.birth_ns = np.zeros(n, np.int64)
        self.last_update_ns = np.zeros(n, np.int64)
        self.last_position_ns = np.zeros(n, np.int64)
        self.hits = np.zeros(n, np.int32)
        self.position_hits = np.zeros(n, np.int32)
        self.size_lwh_m = np.zeros((n, 3))
        self.yaw_aux_rad = np.zeros(n)  # heading of CV tracks (from LiDAR boxes / velocity)
        self.attr_score = np.zeros((n, len(_ATTR_BITS)))
        self.hist_xy_m = np.zeros((n, H, 2), np.float32)
        self.hist_yaw_rad = np.zeros((n, H), np.float32)
        self.hist_vel_mps = np.zeros((n, H, 2), np.float32)
        self.hist_valid = np.zeros((n, H), np.bool_)
        self._hist_k: int | None = None
        self._next_id = 0
        self._filter_ns: int | None = None  # time every valid track is predicted to
        self._newest_ns: int | None = None  # newest capture time seen on any sensor
        self._last_stamp: dict[str, int] = {}
        self._good_extrinsics: dict[str, bytes] = {}  # topic -> last validated mounting pose
        self._pair_buf = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0))
        self._heap: list[tuple[int, str, int, Any]] = []  # (stamp, topic, arrival, frame)
        self._push_count = 0
        self._ego = EgoBuffer(c.ego_buffer, int((c.max_future_s + 1.0) * NS_PER_S))
        self._max_future_ns = int(c.max_future_s * NS_PER_S)
        self._window_ns = int(c.reorder_window_s * NS_PER_S)
        self._sigma_a_cls = np.asarray(c.sigma_accel_mps2, np.float64)
        self._sigma_w_cls = np.asarray(c.sigma_yaw_accel_radps2, np.float64)
        self._sigma_j_cls = np.asarray(c.sigma_jerk_mps3, np.float64)
        self._init_v_cls = np.asarray(c.init_sigma_speed_mps, np.float64)
        self._max_coast_ns_cls = (np.asarray(c.max_coast_s) * NS_PER_S).astype(np.int64)
        self.stats = TrackerStats()

    # ------------------------------------------------------------------------------------------
    # Input.
    # ------------------------------------------------------------------------------------------
    def process(self, msg: Any) -> bool:
        """Take one bus message. Sensor frames are buffered for the reorder window.

        Ego states update the pose buffer. Ground truth, traffic lights and other non-sensor
        messages are ignored. Invalid frames are rejected with a counted reason, never raised.

        Returns:
            True if the message was accepted (buffered or used), False if rejected or ignored.
        """
        if isinstance(msg, m.EgoState):
            return self._process_ego(msg)
        modality = _FRAME_TYPES.get(type(msg))
        header = getattr(msg, "header", None)
        topic = getattr(header, "topic", "?")
        if modality is None:
            if topic.startswith("sensor.") or not isinstance(header, m.Header):
                self.stats.reject(topic, "unknown_sensor")
                return False
            self.stats.count("ignored")
            return False
        reason = self._check_frame(msg, modality)
        if reason:
            self.stats.reject(topic, reason)
            log.debug("rejected %s seq %s: %s", topic, header.seq, reason)
            return False
        stamp = header.stamp_ns
        self._last_stamp[topic] = stamp
        heapq.heappush(self._heap, (stamp, topic, self._push_count, msg))
        self._push_count += 1
        if self._newest_ns is None or stamp > self._newest_ns:
            self._newest_ns = stamp
        self._flush(self._newest_ns - self._window_ns)
        return True

    def update(self, msgs: Iterable[Any], now_ns: int) -> m.Tracks:
        """Process ``msgs`` then return the tracks at ``now_ns`` (see :meth:`tracks`)."""
        for msg in msgs:
            self.process(msg)
        return self.tracks(now_ns)

    def _process_ego(self, msg: m.EgoState) -> bool:
        topic = msg.header.topic
        pose, vel = msg.pose, msg.velocity_mps
        if pose.shape != (3,) or vel.shape != (2,):
            self.stats.reject(topic, "bad_shape")
            return False
        row = np.array([pose[0], pose[1], pose[2], vel[0], vel[1], msg.yaw_rate_radps], np.float64)
        if not np.isfinite(row).all():
            self.stats.reject(topic, "non_finite")
            return False
        newest = self._ego.newest_ns
        if newest is not None and msg.header.stamp_ns == newest:
            self.stats.reject(topic, "duplicate")
            return False
        if not self._ego.add(msg.header.stamp_ns, row):
            self.stats.reject(topic, "out_of_order")
            return False
        return True

    def _check_frame(self, msg: Any, modality: m.Modality) -> str:
        """Return '' if the frame is usable, else the rejection reason."""
        h = msg.header
        if h.topic not in _SENSOR_TOPICS or m.topic_type(h.topic) is not type(msg):
            return "unknown_sensor"
        e = msg.ego_from_sensor
        if e.shape != (4, 4):
            return "bad_extrinsics"
        key = e.tobytes()
        if self._good_extrinsics.get(h.topic) != key:
            rot = e[:3, :3]
            if not np.isfinite(e).all():
                return "bad_extrinsics"
            if np.abs(rot @ rot.T - np.eye(3)).max() > 1e-3 or np.abs(e[3] - (0, 0, 0, 1)).max() > 1e-9:
                return "bad_extrinsics"
            self._good_extrinsics[h.topic] = key
        if modality == m.Modality.LIDAR:
            n = msg.center_m.shape[0]
            per_det = (
                (msg.center_m, (n, 3)),
                (msg.size_lwh_m, (n, 3)),
                (msg.yaw_rad, (n,)),
                (msg.score, (n,)),
            )
        elif modality == m.Modality.RADAR:
            n = msg.range_m.shape[0]
            per_det = (
                (msg.range_m, (n,)),
                (msg.azimuth_rad, (n,)),
                (msg.range_rate_mps, (n,)),
                (msg.rcs_dbsm, (n,)),
            )
        else:
            n = msg.boxes_px.shape[0]
            per_det = ((msg.boxes_px, (n, 4)), (msg.class_conf, (n,)), (msg.intrinsics, (3, 3)))
        for a, shape in per_det:
            if a.shape != shape:
                return "bad_shape"
            # One reduction: the sum is finite iff every element is (finite values large enough
            # to overflow it are rejected too, which is fine for sensor data).
            if not math.isfinite(a.sum()):
                return "non_finite"
        if modality == m.Modality.RADAR and n and msg.range_m.min() < 0:
            return "negative_range"
        if modality in (m.Modality.CAMERA, m.Modality.LWIR):
            kk = msg.intrinsics
            if not (kk[0, 0] > 0 and kk[1, 1] > 0):
                return "bad_intrinsics"
        if modality != m.Modality.RADAR:
            cid = msg.class_id
            if cid.shape != (n,) or (n and (cid.min() < 0 or cid.max() >= m.NUM_CLASSES)):
                return "bad_class"
        last = self._last_stamp.get(h.topic)
        if last is not None and h.stamp_ns <= last:
            return "duplicate" if h.stamp_ns == last else "out_of_order"
        if self._filter_ns is not None and h.stamp_ns < self._filter_ns:
            return "late"
        # Future-dated relative to the newest ego state (the only clock reference there is). Before
        # the first ego state frames are buffered; applied without a pose they are counted as
        # ``no_ego_pose``.
        newest_ego = self._ego.newest_ns
        if newest_ego is not None and h.stamp_ns > newest_ego + self._max_future_ns:
            return "future_dated"
        return ""

    def _flush(self, until_ns: int) -> None:
        """Apply buffered frames captured at or before ``until_ns`` in capture-time order.

        Frames of one modality sharing a capture time (the four corners) form one batch: one
        gating call, then one assignment per sensor, so an object seen by two corners updates its
        track twice instead of spawning a duplicate. Within one capture time frames are ordered by
        topic, so the result does not depend on arrival order.
        """
        while self._heap and self._heap[0][0] <= until_ns:
            stamp = self._heap[0][0]
            frames = []
            while self._heap and self._heap[0][0] == stamp:
                frames.append(heapq.heappop(self._heap)[3])
            for modality in (m.Modality.LIDAR, m.Modality.RADAR, m.Modality.CAMERA, m.Modality.LWIR):
                batch = [f for f in frames if _FRAME_TYPES[type(f)] == modality]
                if batch:
                    self._apply(batch)

    # ------------------------------------------------------------------------------------------
    # One frame.
    # ------------------------------------------------------------------------------------------
    def _predict_to(self, t_ns: int) -> None:
        if self._filter_ns is None:
            self._filter_ns = t_ns
            return
        if t_ns <= self._filter_ns:
            return
        dt = (t_ns - self._filter_ns) / NS_PER_S
        idx = np.flatnonzero(self.valid)
        if idx.size:
            k.predict_kernel(self.x, self.P, self.model, self.sigma_a, self.sigma_w, self.sigma_j, idx, dt)
        self._filter_ns = t_ns

    def _apply(self, frames: list[Any]) -> None:
        """Apply frames of one modality with one capture time."""
        t = frames[0].header.stamp_ns
        if self._filter_ns is not None and t < self._filter_ns:
            for f in frames:
                self.stats.reject(f.header.topic, "late")
            return
        ego = self._ego.at(t)
        if ego is None:
            for f in frames:
                self.stats.reject(f.header.topic, "no_ego_pose")
            return
        self._predict_to(t)
        self.stats.count("frames_applied", len(frames))
        meas = self._measurements(frames, ego)
        n_meas = meas.z.shape[0]
        if n_meas == 0:
            return
        self.stats.count("measurements", n_meas)
        c = self.config
        if meas.kind == k.MEAS_RADAR and not c.use_radar:
            return
        idx = np.flatnonzero(self.valid)
        ti = dj = np.zeros(0, np.int64)
        if idx.size:
            ti, dj = self._associate(idx, meas, len(frames))
        if ti.size:
            if meas.kind != k.MEAS_BEARING or c.use_bearings:
                applied = k.update_kernel(
                    self.x, self.P, self.model, ti, meas.kind, meas.sensors, meas.z, meas.R, dj
                )
                if not applied.all():
                    self.stats.count("update_skipped", int((~applied).sum()))
            self._bookkeep(ti, dj, meas, t)
        if meas.modality == m.Modality.LIDAR:
            unassigned = np.ones(n_meas, np.bool_)
            unassigned[dj] = False
            if unassigned.any():
                self._birth(np.flatnonzero(unassigned), meas, t)

    def _measurements(self, frames: list[Any], ego: np.ndarray) -> _Meas:
        """World-frame measurements of a batch of frames; ``ego`` is the (6,) pose at capture."""
        c = self.config
        nf = len(frames)
        first = frames[0]
        sensors_f = np.empty((nf, 5))
        mounts = np.empty((nf, 4, 4))
        ce, se = math.cos(ego[2]), math.sin(ego[2])
        counts = np.empty(nf, np.int64)
        for i, f in enumerate(frames):
            e = f.ego_from_sensor
            mounts[i] = e
            rx, ry = ce * e[0, 3] - se * e[1, 3], se * e[0, 3] + ce * e[1, 3]
            # Sensor velocity in world: ego velocity plus yaw rate x lever arm.
            sensors_f[i] = (
                ego[0] + rx,
                ego[1] + ry,
                ego[2] + math.atan2(e[1, 0], e[0, 0]),
                ego[3] - ego[5] * ry,
                ego[4] + ego[5] * rx,
            )
        intr = np.zeros((nf, 3, 3))
        width = np.zeros(nf)
        class_id = conf = attrs = size = None
        if isinstance(first, m.LidarFrame):
            kind, modality, md = k.MEAS_POSE, m.Modality.LIDAR, 3
            for i, f in enumerate(frames):
                counts[i] = f.center_m.shape[0]
            raw = np.empty((int(counts.sum()), 4))
            raw[:, :3] = np.concatenate([f.center_m for f in frames]) if nf > 1 else first.center_m
            raw[:, 3] = np.concatenate([f.yaw_rad for f in frames]) if nf > 1 else first.yaw_rad
            params = np.array([c.lidar_pos_std_m, c.lidar_pos_std_per_m, c.lidar_yaw_std_rad])
            class_id = np.concatenate([f.class_id for f in frames])
            conf = np.clip(np.concatenate([f.score for f in frames]).astype(np.float64), 0.35, 0.95)
            size = np.concatenate([f.size_lwh_m for f in frames]).astype(np.float64)
        elif isinstance(first, m.RadarFrame):
            kind, modality, md = k.MEAS_RADAR, m.Modality.RADAR, 3
            for i, f in enumerate(frames):
                counts[i] = f.range_m.shape[0]
            raw = np.zeros((int(counts.sum()), 4))
            raw[:, 0] = np.concatenate([f.range_m for f in frames])
            raw[:, 1] = np.concatenate([f.azimuth_rad for f in frames])
            raw[:, 2] = np.concatenate([f.range_rate_mps for f in frames])
            params = np.array([c.radar_range_std_m, c.radar_bearing_std_rad, c.radar_range_rate_std_mps])
        else:
            kind, md = k.MEAS_BEARING, 1
            is_cam = isinstance(first, m.CameraFrame)
            modality = m.Modality.CAMERA if is_cam else m.Modality.LWIR
            for i, f in enumerate(frames):
                counts[i] = f.boxes_px.shape[0]
                intr[i] = f.intrinsics
                wh = f.image_wh_px
                width[i] = float(wh[0]) if wh.shape == (2,) and wh[0] > 0 else 2.0 * f.intrinsics[0, 2]
            raw = np.concatenate([f.boxes_px for f in frames]).astype(np.float64)
            std = c.camera_bearing_std_rad if is_cam else c.lwir_bearing_std_rad
            params = np.array([std, c.bearing_width_std_frac])
            class_id = np.concatenate([f.class_id for f in frames])
            conf = np.clip(np.concatenate([f.class_conf for f in frames]).astype(np.float64), 0.2, 0.97)
            if is_cam:
                attrs = np.concatenate([f.attributes for f in frames])
        M = raw.shape[0]
        frame_of = np.repeat(np.arange(nf, dtype=np.int64), counts)
        z = np.empty((M, md))
        R = np.empty((M, md))
        sensors = np.empty((M, 5))
        if M:
            k.frames_to_world_kernel(
                kind, raw, frame_of, ego, sensors_f, mounts, intr, width, params, z, R, sensors
            )
        return _Meas(kind, modality, sensors, z, R, class_id, conf, attrs, size, frame_of)

    def _associate(self, idx: np.ndarray, meas: _Meas, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
        """Gate all (track, measurement) pairs, then assign with one track per measurement and at
        most one measurement per track and frame.

        Returns:
            (track slots, measurement rows), ordered by frame.
        """
        c = self.config
        n, M = idx.shape[0], meas.z.shape[0]
        if meas.kind == k.MEAS_POSE:
            m_gate, gate, pre = 2, c.gate_pose_d2, c.max_assoc_dist_m
        elif meas.kind == k.MEAS_RADAR:
            m_gate, gate, pre = 3, c.gate_radar_d2, c.max_assoc_dist_m
        else:
            m_gate, gate, pre = 1, c.gate_bearing_d2, 0.0
        starts = np.searchsorted(meas.frame_of, np.arange(n_frames + 1)).astype(np.int64)
        cap = n * M
        if self._pair_buf[0].size < cap:  # scratch grown on demand, reused across batches
            self._pair_buf = (np.empty(cap, np.int64), np.empty(cap, np.int64), np.empty(cap))
        pa, pj, pcost = self._pair_buf
        npairs = k.gate_kernel(
            self.x,
            self.P,
            self.model,
            idx,
            meas.kind,
            meas.sensors,
            meas.z,
            meas.R,
            starts,
            m_gate,
            gate,
            pre,
            pa,
            pj,
            pcost,
        )
        if npairs == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        pa, pj, pcost = pa[:npairs].copy(), pj[:npairs].copy(), pcost[:npairs].copy()
        # Pairs with one candidate on both sides are assigned directly; the rest go to the
        # Hungarian solver (class-aware cost), one block-diagonal problem for the whole batch.
        easy = k.unambiguous_pairs_kernel(pa, pj, meas.frame_of, n, M, n_frames)
        ti, dj = idx[pa[easy]], pj[easy]
        hard = ~easy
        if hard.any():
            pa, pj, pcost = pa[hard], pj[hard], pcost[hard]
            w = c.class_weight[meas.modality]
            if meas.class_id is not None and c.class_cost_weight > 0 and w > 0:
                L = self._class_likelihood(meas.class_id[pj], meas.class_conf[pj])  # (pairs, C)
                lik = (np.exp(self.class_logp[idx[pa]]) * L).sum(axis=1)
                pcost = pcost - c.class_cost_weight * np.log(np.maximum(lik * m.NUM_CLASSES, 1e-12))
            ri, ci, row_track, col_meas = k.compact_pairs_kernel(pa, pj, meas.frame_of, n, M, n_frames)
            cost = np.full((row_track.size, col_meas.size), _BIG)
            cost[ri, ci] = pcost
            r, cc = linear_sum_assignment(cost)
            ok = cost[r, cc] < _BIG * 0.5
            ti = np.concatenate([ti, idx[row_track[r[ok]]]])
            dj = np.concatenate([dj, col_meas[cc[ok]]])
        # Sequential updates of one track by several corners: keep a stable frame order.
        order = np.argsort(meas.frame_of[dj] * M + dj, kind="stable")
        return ti[order], dj[order]

    def _class_likelihood(self, class_id: np.ndarray, conf: np.ndarray) -> np.ndarray:
        """(M, C) likelihood of each observation under each true class (symmetric confusion)."""
        C = m.NUM_CLASSES
        L = np.repeat(((1.0 - conf) / (C - 1))[:, None], C, axis=1)
        L[np.arange(class_id.shape[0]), class_id] = conf
        return L

    def _bookkeep(self, ti: np.ndarray, dj: np.ndarray, meas: _Meas, t: int) -> None:
        c = self.config
        self.last_update_ns[ti] = t
        np.add.at(self.hits, ti, 1)
        if meas.modality == m.Modality.LIDAR or (meas.modality == m.Modality.RADAR and c.radar_keeps_alive):
            self.last_position_ns[ti] = t
            np.add.at(self.position_hits, ti, 1)
        if meas.size_lwh_m is not None:
            a = c.size_alpha
            self.size_lwh_m[ti] = (1 - a) * self.size_lwh_m[ti] + a * meas.size_lwh_m[dj]
            is_cv = self.model[ti] == k.MODEL_CV
            if is_cv.any():
                cv = ti[is_cv]
                # Circular EMA of the box heading of CV tracks (mod pi: boxes are symmetric).
                zy = meas.z[dj[is_cv], 2]
                d = np.remainder(zy - self.yaw_aux_rad[cv] + 0.5 * math.pi, math.pi) - 0.5 * math.pi
                self.yaw_aux_rad[cv] = self.yaw_aux_rad[cv] + 0.3 * d
        if meas.attributes is not None:
            bits = (meas.attributes[dj][:, None] & _ATTR_BITS[None, :]) > 0
            a = c.attribute_alpha
            self.attr_score[ti] = (1 - a) * self.attr_score[ti] + a * bits
        w = c.class_weight[meas.modality]
        if meas.class_id is not None and w > 0:
            best = np.empty(ti.size, np.int32)
            k.fuse_class_kernel(
                self.class_logp,
                ti,
                meas.class_id[dj],
                meas.class_conf[dj],
                float(w),
                c.class_logp_floor,
                best,
            )
            changed = best != self.class_id[ti]
            if changed.any():
                for slot, cls in zip(ti[changed], best[changed]):
                    if cls != self.class_id[slot]:
                        self._set_class(int(slot), int(cls))

    def _set_class(self, slot: int, cls: int) -> None:
        """Change a track's class; convert its state if the motion model changes."""
        self.class_id[slot] = cls
        self.sigma_a[slot] = self._sigma_a_cls[cls]
        self.sigma_w[slot] = self._sigma_w_cls[cls]
        self.sigma_j[slot] = self._sigma_j_cls[cls]
        new_model = model_of_class(cls)
        if new_model == self.model[slot]:
            return
        x, P = self.x[slot], self.P[slot]
        sd = k.STATE_DIM
        J = np.zeros((sd, sd))
        J[0, 0] = J[1, 1] = 1.0
        if new_model == k.MODEL_CTRV:  # [x, y, vx, vy] -> [x, y, yaw, v, w, a]
            vx, vy = x[2], x[3]
            v = math.hypot(vx, vy)
            yaw = math.atan2(vy, vx) if v > 0.5 else self.yaw_aux_rad[slot]
            vs = max(v, 0.5)
            J[2, 2], J[2, 3] = -vy / (vs * vs), vx / (vs * vs)
            J[3, 2], J[3, 3] = math.cos(yaw), math.sin(yaw)
            newx = np.array([x[0], x[1], yaw, v, 0.0, 0.0])
            newP = J @ P @ J.T
            newP[4, 4] = 0.3**2
            newP[5, 5] = self.config.init_sigma_accel_mps2**2
        else:  # [x, y, yaw, v, w, a] -> [x, y, vx, vy, 0, 0]
            yaw, v = x[2], x[3]
            J[2, 2], J[2, 3] = -v * math.sin(yaw), math.cos(yaw)
            J[3, 2], J[3, 3] = v * math.cos(yaw), math.sin(yaw)
            newx = np.array([x[0], x[1], v * math.cos(yaw), v * math.sin(yaw), 0.0, 0.0])
            newP = J @ P @ J.T
            newP[4:, :] = 0.0
            newP[:, 4:] = 0.0
            newP[4, 4] = newP[5, 5] = 1.0
            self.yaw_aux_rad[slot] = yaw
        newP[2, 2] += 1e-4
        newP[3, 3] += 1e-4
        self.x[slot], self.P[slot] = newx, 0.5 * (newP + newP.T)
        self.model[slot] = new_model
        self.stats.count("model_switches")

    def _birth(self, det_rows: np.ndarray, meas: _Meas, t: int) -> None:
        free = np.flatnonzero(~self.valid)
        if free.size < det_rows.size:
            self.stats.count("capacity_full", int(det_rows.size - free.size))
            det_rows = det_rows[: free.size]
        slots = free[: det_rows.size]
        if slots.size == 0:
            return
        n = slots.size
        cls = meas.class_id[det_rows].astype(np.int32)
        z = meas.z[det_rows]
        R = meas.R[det_rows]
        L = self._class_likelihood(cls, meas.class_conf[det_rows])
        lp = np.log(L)
        lp -= np.logaddexp.reduce(lp, axis=1, keepdims=True)
        self.class_logp[slots] = np.maximum(lp, self.config.class_logp_floor)
        self.class_id[slots] = cls
        models = np.array([model_of_class(int(ci)) for ci in cls], np.int8)
        self.model[slots] = models
        self.sigma_a[slots] = self._sigma_a_cls[cls]
        self.sigma_w[slots] = self._sigma_w_cls[cls]
        self.sigma_j[slots] = self._sigma_j_cls[cls]
        sv2 = self._init_v_cls[cls] ** 2
        x = np.zeros((n, k.STATE_DIM))
        P = np.zeros((n, k.STATE_DIM, k.STATE_DIM))
        x[:, 0:2] = z[:, 0:2]
        P[:, 0, 0] = R[:, 0]
        P[:, 1, 1] = R[:, 1]
        ctrv = models == k.MODEL_CTRV
        x[ctrv, 2] = z[ctrv, 2]
        P[ctrv, 2, 2] = R[ctrv, 2]
        P[ctrv, 3, 3] = sv2[ctrv]
        P[ctrv, 4, 4] = 0.3**2
        P[ctrv, 5, 5] = self.config.init_sigma_accel_mps2**2
        P[~ctrv, 2, 2] = sv2[~ctrv]
        P[~ctrv, 3, 3] = sv2[~ctrv]
        P[~ctrv, 4, 4] = 1.0
        P[~ctrv, 5, 5] = 1.0
        self.x[slots] = x
        self.P[slots] = P
        self.yaw_aux_rad[slots] = z[:, 2]
        self.size_lwh_m[slots] = meas.size_lwh_m[det_rows]
        self.attr_score[slots] = 0.0
        self.status[slots] = m.TrackStatus.TENTATIVE
        self.track_id[slots] = np.arange(self._next_id, self._next_id + n)
        self._next_id += n
        self.birth_ns[slots] = t
        self.last_update_ns[slots] = t
        self.last_position_ns[slots] = t
        self.hits[slots] = 1
        self.position_hits[slots] = 1
        self.hist_valid[slots] = False
        self.valid[slots] = True
        self.stats.count("births", n)

    # ------------------------------------------------------------------------------------------
    # Output.
    # ------------------------------------------------------------------------------------------
    def _delete(self, slots: np.ndarray, reason: str) -> None:
        if slots.size:
            self.valid[slots] = False
            self.hist_valid[slots] = False
            self.stats.count(f"deleted_{reason}", int(slots.size))

    def _manage(self, now_ns: int) -> None:
        c = self.config
        idx = np.flatnonzero(self.valid)
        if idx.size == 0:
            return
        st = self.status[idx]
        since_pos = now_ns - self.last_position_ns[idx]
        since_any = now_ns - self.last_update_ns[idx]
        tent = st == m.TrackStatus.TENTATIVE
        tent_timeout = int(c.tentative_timeout_s * NS_PER_S)
        promote = (
            tent & (self.hits[idx] >= c.confirm_hits) & (self.position_hits[idx] >= c.confirm_position_hits)
        )
        coast_ns = int(c.coast_after_s * NS_PER_S)
        st = np.where(promote, np.uint8(m.TrackStatus.CONFIRMED), st)
        live = st != m.TrackStatus.TENTATIVE
        st = np.where(live & (since_pos > coast_ns), np.uint8(m.TrackStatus.COASTING), st)
        st = np.where(live & (since_pos <= coast_ns), np.uint8(m.TrackStatus.CONFIRMED), st)
        self.status[idx] = st
        self._delete(idx[tent & ~promote & (since_any > tent_timeout)], "tentative_timeout")
        coast_limit = self._max_coast_ns_cls[self.class_id[idx]]
        self._delete(idx[live & (since_pos > coast_limit)], "coast_timeout")
        pos_var = np.maximum(self.P[idx, 0, 0], self.P[idx, 1, 1])
        self._delete(idx[pos_var > c.max_position_std_m**2], "uncertain")
        ego = self._ego.at(now_ns)
        if ego is not None:
            far = np.hypot(self.x[idx, 0] - ego[0], self.x[idx, 1] - ego[1]) > c.max_range_m
            self._delete(idx[far], "out_of_range")
        # CTRV tracks driving backwards faster than 1 m/s are almost always a heading flipped by
        # pi (box ambiguity at birth): flip yaw and the sign of v (negate row/column 3 of P).
        idx = np.flatnonzero(self.valid)
        back = idx[(self.model[idx] == k.MODEL_CTRV) & (self.x[idx, 3] < -1.0)]
        if back.size:
            self.x[back, 2] = np.remainder(self.x[back, 2] + 2 * math.pi, 2 * math.pi) - math.pi
            for d in (3, 5):  # speed and longitudinal acceleration change sign
                self.x[back, d] *= -1.0
                self.P[back, d, :] *= -1.0
                self.P[back, :, d] *= -1.0
            self.stats.count("heading_flips", int(back.size))
        self._merge_duplicates(np.flatnonzero(self.valid))

    def _merge_duplicates(self, idx: np.ndarray) -> None:
        """Delete the younger of two tracks of one motion model closer than the duplicate distance.

        The distance is ``duplicate_width_frac`` of the narrower box width (so two pedestrians
        walking side by side survive, two tracks on one car do not), capped by
        ``duplicate_distance_m`` and at least ``duplicate_min_distance_m``.
        """
        if idx.size < 2:
            return
        c = self.config
        pairs = cKDTree(self.x[idx, :2]).query_pairs(c.duplicate_distance_m, output_type="ndarray")
        if pairs.size == 0:
            return
        i, j = idx[pairs[:, 0]], idx[pairs[:, 1]]
        width = np.minimum(self.size_lwh_m[i, 1], self.size_lwh_m[j, 1])
        limit = np.clip(c.duplicate_width_frac * width, c.duplicate_min_distance_m, c.duplicate_distance_m)
        dist = np.hypot(self.x[i, 0] - self.x[j, 0], self.x[i, 1] - self.x[j, 1])
        dup = (dist < limit) & (self.model[i] == self.model[j])
        if not dup.any():
            return
        # Keep the older (lower id) track, it carries the longer history.
        i, j = i[dup], j[dup]
        drop = np.where(self.track_id[i] < self.track_id[j], j, i)
        self._delete(np.unique(drop), "duplicate")

    def _record_history(
        self, now_ns: int, idx: np.ndarray, pos: np.ndarray, yaw: np.ndarray, vel: np.ndarray
    ) -> None:
        kk = int(round(now_ns / HISTORY_DT_NS))
        H = m.TRACK_HISTORY_STEPS
        if self._hist_k is not None and kk > self._hist_k:
            s = min(kk - self._hist_k, H)
            for arr in (self.hist_xy_m, self.hist_yaw_rad, self.hist_vel_mps, self.hist_valid):
                arr[:, : H - s] = arr[:, s:]
            self.hist_valid[:, H - s :] = False
        if self._hist_k is None or kk >= self._hist_k:
            self._hist_k = kk
            self.hist_xy_m[idx, -1] = pos
            self.hist_yaw_rad[idx, -1] = yaw
            self.hist_vel_mps[idx, -1] = vel
            self.hist_valid[idx, -1] = True

    def tracks(self, now_ns: int, header_topic: str = m.TOPIC_TRACKS) -> m.Tracks:
        """Apply buffered frames older than the reorder window and return the tracks at ``now_ns``.

        Frames captured up to ``now_ns - reorder_window_s`` are applied; the states are then
        extrapolated (on copies) to ``now_ns``. Frames captured before the newest applied frame
        that arrive later are dropped as ``late``.

        Args:
            now_ns: output time (sensor clock), normally a multiple of 100 ms.
            header_topic: topic written in the header.

        Returns:
            Confirmed and coasting tracks (plus tentative ones if ``publish_tentative``) in the world
            frame at ``now_ns``, with history sampled on the 100 ms grid ending at ``now_ns``.
        """
        self._flush(now_ns - self._window_ns)
        self._manage(now_ns)
        idx = np.flatnonzero(self.valid)
        n_all = idx.size
        pos = np.empty((n_all, 2))
        vel = np.empty((n_all, 2))
        yaw = np.empty(n_all)
        cov = np.empty((n_all, 4, 4))
        if n_all:
            # Extrapolate copies to now_ns; the filter itself stays at the newest applied frame so
            # that frames still inside the reorder window can be applied later.
            x, P = self.x[idx], self.P[idx]
            local = np.arange(n_all, dtype=np.int64)
            model = self.model[idx]
            if self._filter_ns is not None and now_ns > self._filter_ns:
                dt = (now_ns - self._filter_ns) / NS_PER_S
                k.predict_kernel(
                    x, P, model, self.sigma_a[idx], self.sigma_w[idx], self.sigma_j[idx], local, dt
                )
            k.output_kernel(x, P, model, local, pos, vel, yaw, cov)
            cv = np.isnan(yaw)
            speed = np.hypot(vel[:, 0], vel[:, 1])
            moving = cv & (speed > 1.0)
            self.yaw_aux_rad[idx[moving]] = np.arctan2(vel[moving, 1], vel[moving, 0])
            yaw[cv] = self.yaw_aux_rad[idx[cv]]
            bad = ~(
                np.isfinite(pos).all(1)
                & np.isfinite(vel).all(1)
                & np.isfinite(yaw)
                & np.isfinite(cov).all((1, 2))
            )
            if bad.any():
                self._delete(idx[bad], "non_finite")
                keep = ~bad
                idx, pos, vel, yaw, cov = idx[keep], pos[keep], vel[keep], yaw[keep], cov[keep]
        self._record_history(now_ns, idx, pos, yaw, vel)
        if not self.config.publish_tentative:
            pub = self.status[idx] != m.TrackStatus.TENTATIVE
            idx, pos, vel, yaw, cov = idx[pub], pos[pub], vel[pub], yaw[pub], cov[pub]
        n = idx.size
        back = 5
        hv = self.hist_valid[idx]
        old_ok = hv[:, -1 - back]
        accel = np.zeros((n, 2), np.float32)
        if n:
            # CV tracks: finite difference of the velocity history over 0.5 s.
            dv = self.hist_vel_mps[idx, -1] - self.hist_vel_mps[idx, -1 - back]
            accel[old_ok] = dv[old_ok] / (back * m.PRED_DT_S)
            # Turning tracks: longitudinal acceleration plus the centripetal term v * yaw_rate.
            tv = self.model[idx] == k.MODEL_CTRV
            if tv.any():
                xs = self.x[idx[tv]]
                c, s_ = np.cos(yaw[tv]), np.sin(yaw[tv])
                accel[tv, 0] = xs[:, 5] * c - xs[:, 3] * xs[:, 4] * s_
                accel[tv, 1] = xs[:, 5] * s_ + xs[:, 3] * xs[:, 4] * c
        probs = np.exp(self.class_logp[idx])
        probs /= probs.sum(axis=1, keepdims=True)
        attrs = (self.attr_score[idx] > 0.5) @ _ATTR_BITS.astype(np.int64) if n else np.zeros(0, np.int64)
        yaw_rate = np.where(self.model[idx] == k.MODEL_CTRV, self.x[idx, 4], 0.0)
        ego = self._ego.at(now_ns)
        ego_pose = ego[:3].copy() if ego is not None else np.zeros(3)
        self.stats.count("ticks")
        return m.Tracks(
            header=m.Header(topic=header_topic, stamp_ns=int(now_ns)),
            ego_pose=ego_pose.astype(np.float64),
            track_id=self.track_id[idx].copy(),
            class_id=self.class_id[idx].copy(),
            class_probs=probs.astype(np.float32),
            status=self.status[idx].copy(),
            position_m=pos.astype(np.float32),
            velocity_mps=vel.astype(np.float32),
            accel_mps2=accel,
            yaw_rad=yaw.astype(np.float32),
            yaw_rate_radps=yaw_rate.astype(np.float32),
            size_lwh_m=self.size_lwh_m[idx].astype(np.float32),
            covariance=cov.astype(np.float32),
            attributes=np.asarray(attrs, np.uint8),
            age_s=((now_ns - self.birth_ns[idx]) / NS_PER_S).astype(np.float32),
            history_xy_m=self.hist_xy_m[idx].copy(),
            history_yaw_rad=self.hist_yaw_rad[idx].copy(),
            history_valid=self.hist_valid[idx].copy(),
        )

    def health(self, now_ns: int, ticks: int = 0, deadline_misses: int = 0) -> m.Health:
        """A :class:`~bus.messages.Health` message carrying the rejection counts."""
        return m.Health(
            header=m.Header(topic=m.health_topic("tracker"), stamp_ns=int(now_ns)),
            node="tracker",
            provider="cpu",
            degraded=False,
            reason="",
            ticks=int(ticks or self.stats.counters.get("ticks", 0)),
            deadline_misses=int(deadline_misses),
            rejected=dict(self.stats.rejected),
            seq_gaps={},
        )

    @property
    def num_tracks(self) -> int:
        """Number of live track slots (any status)."""
        return int(self.valid.sum())

    def warm_up(self) -> None:
        """Compile the numba kernels on dummy inputs (keeps JIT off the first real tick)."""
        x = np.zeros((2, k.STATE_DIM))
        x[1, 3] = 1.0
        P = np.tile(np.eye(k.STATE_DIM), (2, 1, 1))
        model = np.array([0, 1], np.int8)
        ones = np.ones(2)
        idx = np.array([0, 1], np.int64)
        k.predict_kernel(x, P, model, ones, ones, ones, idx, 0.1)
        sensor = np.array([[10.0, 10.0, 0.0, 0.0, 0.0]])
        for kind in (k.MEAS_POSE, k.MEAS_RADAR, k.MEAS_BEARING):
            md = k.MEAS_DIM[kind]
            z = np.zeros((1, md))
            R = np.ones((1, md))
            buf_i = np.empty(2, np.int64)
            starts = np.array([0, 1], np.int64)
            k.gate_kernel(
                x,
                P,
                model,
                idx,
                kind,
                sensor,
                z,
                R,
                starts,
                min(md, 2),
                10.0,
                5.0,
                buf_i,
                buf_i.copy(),
                np.empty(2),
            )
            k.update_kernel(x.copy(), P.copy(), model, idx, kind, sensor, z, R, np.zeros(2, np.int64))
        k.unambiguous_pairs_kernel(idx, idx, idx, 2, 2, 2)
        k.compact_pairs_kernel(idx, idx, idx, 2, 2, 2)
        k.fuse_class_kernel(
            np.zeros((2, m.NUM_CLASSES)),
            idx,
            np.array([1, 2], np.int32),
            np.full(2, 0.9),
            1.0,
            -7.0,
            np.empty(2, np.int32),
        )
        fo = np.zeros(1, np.int64)
        eg = np.zeros(6)
        for kind, md in ((k.MEAS_POSE, 3), (k.MEAS_RADAR, 3), (k.MEAS_BEARING, 1)):
            k.frames_to_world_kernel(
                kind, np.ones((1, 4)), fo, eg, np.zeros((1, 5)), np.eye(4)[None], np.eye(3)[None], np.ones(1),
                np.ones(3), np.empty((1, md)), np.empty((1, md)), np.empty((1, 5)),
            )  # fmt: skip
        out2 = np.empty((2, 2))
        k.output_kernel(x, P, model, idx, out2, out2.copy(), np.empty(2), np.empty((2, 4, 4)))
