"""Multi-sensor EKF tracker: sensor frames in, world-frame :class:`~bus.messages.Tracks` out.

A pure processing stage: no sockets, no wall clock. Time comes only from message headers, so a
replay reproduces a live run. State is struct-of-arrays with a fixed capacity ``N_MAX`` and a
``valid`` mask, allocated once (see :class:`~service.tracker.config.TrackerConfig` for the track
management thresholds and the reorder window). Every message passes
:mod:`service.tracker.admission` first (plausibility limits, clock windows, the vote that confirms
a clock jump); a rejected one changes no state.

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
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

from bus import messages as m
from service.tracker import kernels as k
from service.tracker.admission import Admission, ClockVote, TrackerStats
from service.tracker.config import TrackerConfig
from service.tracker.ego import EgoBuffer
from service.tracker.measurements import Meas, measurements

log = logging.getLogger(__name__)

NS_PER_S = 1_000_000_000
HISTORY_DT_NS = int(round(m.PRED_DT_S * NS_PER_S))
_BIG = 1e6
# Gating scratch kept between batches: (track, measurement) pairs, 24 B each (1.5 MB). A busy
# scene needs ~200 tracks x ~250 boxes = 50k; a larger batch gets a temporary buffer.
_PAIR_BUF_KEEP = 1 << 16
_PRE_EGO_FRAMES = 256  # frames held before the first ego state (~0.6 s of all 16 sensors)
_CTRV_CLASSES = frozenset({m.AgentClass.CAR, m.AgentClass.TRUCK, m.AgentClass.BUS, m.AgentClass.CYCLIST})
_FRAME_TYPES = {
    m.CameraFrame: m.Modality.CAMERA,
    m.LidarFrame: m.Modality.LIDAR,
    m.RadarFrame: m.Modality.RADAR,
    m.LwirFrame: m.Modality.LWIR,
}
_ATTR_BITS = np.array([int(a) for a in m.Attribute], dtype=np.uint8)


def model_of_class(class_id: int) -> int:
    """Motion model of a class: CTRV for vehicles and cyclists, CV for everything else."""
    return k.MODEL_CTRV if class_id in _CTRV_CLASSES else k.MODEL_CV


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
        self.last_pos_xy_m = np.zeros((n, 2))  # position after the last position update
        self._pair_buf = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0))
        self._heap: list[tuple[int, str, int, Any]] = []  # (stamp, topic, arrival, frame)
        self._push_count = 0
        a = c.admission
        self._admission = Admission(a)
        self._vote = ClockVote(m.SENSOR_TOPICS, m.TOPIC_EGO, a)
        self._ego = EgoBuffer(c.ego_buffer, int((a.max_future_s + 1.0) * NS_PER_S))
        self._window_ns = int(c.reorder_window_s * NS_PER_S)
        self._sigma_a_cls = np.asarray(c.sigma_accel_mps2, np.float64)
        self._sigma_w_cls = np.asarray(c.sigma_yaw_accel_radps2, np.float64)
        self._sigma_j_cls = np.asarray(c.sigma_jerk_mps3, np.float64)
        self._init_v_cls = np.asarray(c.init_sigma_speed_mps, np.float64)
        self._max_coast_ns_cls = (np.asarray(c.max_coast_s) * NS_PER_S).astype(np.int64)
        self._max_speed_cls = np.asarray(a.max_speed_mps, np.float64)
        self.stats = TrackerStats()

    # ------------------------------------------------------------------------------------------
    # Input.
    # ------------------------------------------------------------------------------------------
    def process(self, msg: Any) -> bool:
        """Take one bus message. Sensor frames are buffered for the reorder window.

        Ego states update the pose buffer. Ground truth, traffic lights and other non-sensor
        messages are ignored. Every message passes :class:`~service.tracker.admission.Admission`
        first; a rejected one is counted by reason and changes no state (it may vote for a new
        clock, see :class:`~service.tracker.admission.ClockVote`). Nothing is raised.

        Returns:
            True if the message was accepted (buffered or used), False if rejected or ignored.
        """
        if isinstance(msg, m.EgoState):
            if msg.header.topic != m.TOPIC_EGO:  # a look-alike topic (ego.state.forged) is not the ego
                self.stats.reject(msg.header.topic, "unknown_topic")
                return False
            return self._process_ego(msg)
        modality = _FRAME_TYPES.get(type(msg))
        header = getattr(msg, "header", None)
        topic = getattr(header, "topic", None)
        if modality is None:
            if not isinstance(header, m.Header) or str(topic).startswith("sensor."):
                self.stats.reject(topic, "unknown_sensor")
                return False
            self.stats.count("ignored")
            return False
        reason = self._admission.check_frame(
            msg, modality, self._ego.newest_ns, self._newest_ns, self._filter_ns
        )
        if reason:
            self.stats.reject(topic, reason)
            log.debug("rejected %s seq %s: %s", topic, header.seq, reason)
            if reason == "future_dated":
                self._offer_clock(topic, header.stamp_ns, msg)
            return False
        stamp = header.stamp_ns
        self._admission.last_stamp[topic] = stamp
        self._vote.mark_live(topic)
        heapq.heappush(self._heap, (stamp, topic, self._push_count, msg))
        self._push_count += 1
        if self._newest_ns is None or stamp > self._newest_ns:
            self._newest_ns = stamp
        if self._ego.newest_ns is not None:
            self._flush(self._newest_ns - self._window_ns)
        else:
            # Nothing applies without an ego pose: hold the frames (bounded) until the first ego
            # state vouches for their stamps (one forged ahead must not flush the real ones).
            while len(self._heap) > _PRE_EGO_FRAMES:
                self.stats.reject(heapq.heappop(self._heap)[1], "no_ego_pose")
        return True

    def update(self, msgs: Iterable[Any], now_ns: int) -> m.Tracks:
        """Process ``msgs`` then return the tracks at ``now_ns`` (see :meth:`tracks`)."""
        for msg in msgs:
            self.process(msg)
        return self.tracks(now_ns)

    @property
    def newest_ego_ns(self) -> int | None:
        """Stamp of the newest admitted ego state (the tracker's reference clock), or None."""
        return self._ego.newest_ns

    def _process_ego(self, msg: m.EgoState) -> bool:
        reason, row = self._admission.check_ego(msg, self._ego.newest, self._newest_ns)
        if reason:
            self.stats.reject(msg.header.topic, reason)
            if reason == "future_dated":
                self._offer_clock(m.TOPIC_EGO, msg.header.stamp_ns, msg)
            return False
        first = self._ego.newest_ns is None
        self._ego.add(msg.header.stamp_ns, row)
        self._vote.mark_live(m.TOPIC_EGO)
        if first:
            self._drop_unvouched(msg.header.stamp_ns)
        return True

    def _offer_clock(self, topic: str, stamp_ns: int, msg: Any) -> None:
        """Vote for a clock ahead of the current one; adopt it once sensors and ego agree."""
        ref_ns = max(t for t in (self._ego.newest_ns, self._newest_ns) if t is not None)
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
        self._ego.add(ego.header.stamp_ns, row)
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
        self._newest_ns = max((e[0] for e in keep), default=None)

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
        c = self.config
        meas = measurements(frames, ego, c)
        n_meas = meas.z.shape[0]
        if n_meas == 0:
            return
        self.stats.count("measurements", n_meas)
        if meas.kind == k.MEAS_RADAR and not c.use_radar:
            return
        idx = np.flatnonzero(self.valid)
        ti = dj = np.zeros(0, np.int64)
        if idx.size:
            ti, dj = self._associate(idx, meas, len(frames))
            if meas.kind == k.MEAS_POSE and ti.size:
                ti, dj = self._plausible_pairs(ti, dj, meas, t)
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
                self._birth(self._birth_rows(np.flatnonzero(unassigned), meas), meas, t)

    def _plausible_pairs(
        self, ti: np.ndarray, dj: np.ndarray, meas: Meas, t: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Drop (track, LiDAR box) pairs whose box lies farther from the track's last position than
        ``max_implied_speed_mps`` could take it since then: a detection reached only by teleporting
        starts its own (tentative) track instead of dragging a real one away."""
        a = self.config.admission
        dt_s = np.maximum((t - self.last_position_ns[ti]) / NS_PER_S, a.implied_speed_min_dt_s)
        d = meas.z[dj, :2] - self.last_pos_xy_m[ti]
        ok = np.hypot(d[:, 0], d[:, 1]) <= a.max_implied_speed_mps * dt_s
        if ok.all():
            return ti, dj
        self.stats.count("implausible_pairs", int((~ok).sum()))
        return ti[ok], dj[ok]

    def _birth_rows(self, rows: np.ndarray, meas: Meas) -> np.ndarray:
        """The unassigned LiDAR rows that may start tracks: per frame the ``max_births_per_frame``
        nearest the sensor, and no more than leaves ``max_tentative_tracks`` tentative tracks. One
        forged frame can then neither fill the track capacity nor crowd out real tracks."""
        a = self.config.admission
        tentative = int(np.count_nonzero(self.valid & (self.status == m.TrackStatus.TENTATIVE)))
        if rows.size <= a.max_births_per_frame and tentative + rows.size <= a.max_tentative_tracks:
            return rows  # the usual case: no frame can be over its cap
        d = meas.z[rows, :2] - meas.sensors[rows, :2]
        frame = meas.frame_of[rows]
        order = np.lexsort((np.hypot(d[:, 0], d[:, 1]), frame))
        rows, frame = rows[order], frame[order]
        rank = np.arange(rows.size) - np.searchsorted(frame, frame)  # position within its frame
        rows = rows[rank < a.max_births_per_frame]
        rows = rows[: max(a.max_tentative_tracks - tentative, 0)]
        capped = int(order.size - rows.size)
        if capped:
            self.stats.count("births_capped", capped)
        return np.sort(rows)  # ascending rows: track ids in detection order, as without a cap

    def _associate(self, idx: np.ndarray, meas: Meas, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
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
        if cap > _PAIR_BUF_KEEP:  # rare (a crowd, a flood): scratch freed after this batch
            pa, pj, pcost = np.empty(cap, np.int64), np.empty(cap, np.int64), np.empty(cap)
        else:
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

    def _bookkeep(self, ti: np.ndarray, dj: np.ndarray, meas: Meas, t: int) -> None:
        c = self.config
        self.last_update_ns[ti] = t
        np.add.at(self.hits, ti, 1)
        if meas.modality == m.Modality.LIDAR or (meas.modality == m.Modality.RADAR and c.radar_keeps_alive):
            self.last_position_ns[ti] = t
            self.last_pos_xy_m[ti] = self.x[ti, :2]
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

    def _birth(self, det_rows: np.ndarray, meas: Meas, t: int) -> None:
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
        self.last_pos_xy_m[slots] = z[:, :2]
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
        self._delete(idx[self.valid[idx] & self._too_fast(idx)], "implausible_speed")
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

    def _too_fast(self, idx: np.ndarray) -> np.ndarray:
        """(n,) bool: tracks surely faster than their class can move (a ghost fed by forged boxes,
        or a diverged filter). Sure: 3 sigma below the estimate is still above the fastest class
        with probability >= 0.1, so a young track whose velocity is not yet observed, or a cyclist
        still half-believed a pedestrian, is not deleted."""
        ctrv = self.model[idx] == k.MODEL_CTRV
        x = self.x[idx]
        speed = np.where(ctrv, np.abs(x[:, 3]), np.hypot(x[:, 2], x[:, 3]))
        # Cheap pre-filter: the bound below is at least the own class's (its probability >= 1/7).
        out = speed > self._max_speed_cls[self.class_id[idx]]
        sel = np.flatnonzero(out)
        if sel.size == 0:
            return out
        s, x, P, ctrv = idx[sel], x[sel], self.P[idx[sel]], ctrv[sel]
        u = x[:, 2:4] / np.maximum(speed[sel], 1e-9)[:, None]  # direction of motion (CV)
        var = np.where(ctrv, P[:, 3, 3], np.einsum("ni,nij,nj->n", u, P[:, 2:4, 2:4], u))
        probs = np.exp(self.class_logp[s])
        probs /= probs.sum(axis=1, keepdims=True)
        bound = np.where(probs >= 0.1, self._max_speed_cls[None, :], 0.0).max(axis=1)
        out[sel] = speed[sel] - 3.0 * np.sqrt(np.maximum(var, 0.0)) > bound
        return out

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
        k.warm_up()
