"""Track lifecycle on the track table: birth, confirmation, coasting, deletion, merging.

The rules and thresholds are documented in :mod:`prescient.service.tracker.config`. Births come from
LiDAR boxes left unassigned (capped per frame and in total); status changes and deletions are
checked once per output tick (:meth:`Lifecycle.manage`); every deletion is counted as
``deleted_<reason>``.
"""

from __future__ import annotations

import numpy as np

from prescient.bus import messages as m
from prescient.service.tracker import association_kernels as ak
from prescient.service.tracker import fusion_kernels as fk
from prescient.service.tracker.admission import TrackerStats
from prescient.service.tracker.config import TrackerConfig
from prescient.service.tracker.fusion import class_likelihood
from prescient.service.tracker.measurements import Meas
from prescient.service.tracker.motion import Motion, model_of_class, speed_of, speed_var_of
from prescient.service.tracker.table import NS_PER_S, TrackTable

_TENTATIVE = np.uint8(m.TrackStatus.TENTATIVE)  # a numpy scalar: comparing arrays with the IntEnum is slow


class Lifecycle:
    """Birth, status and deletion of tracks.

    Args:
        config: management thresholds and admission caps.
        motion: initial states and noise of new tracks, heading flips.
        stats: event counters (shared with the other stages).
    """

    def __init__(self, config: TrackerConfig, motion: Motion, stats: TrackerStats) -> None:
        self.config = config
        self.stats = stats
        self._motion = motion
        self._max_coast_ns_cls = (np.asarray(config.max_coast_s) * NS_PER_S).astype(np.int64)
        self._max_speed_cls = np.asarray(config.admission.max_speed_mps, np.float64)
        c = config
        self._status_limits = (
            c.confirm_hits, c.confirm_position_hits, int(c.tentative_timeout_s * NS_PER_S),
            int(c.coast_after_s * NS_PER_S), self._max_coast_ns_cls,
        )  # fmt: skip

    # ------------------------------------------------------------------------------------------
    # Birth.
    # ------------------------------------------------------------------------------------------
    def birth_rows(self, table: TrackTable, rows: np.ndarray, meas: Meas) -> np.ndarray:
        """The unassigned LiDAR rows that may start tracks: per frame the ``max_births_per_frame``
        nearest the sensor, and no more than leaves ``max_tentative_tracks`` tentative tracks. One
        forged frame can then neither fill the track capacity nor crowd out real tracks."""
        a = self.config.admission
        tentative = int(np.count_nonzero(table.valid & (table.status == _TENTATIVE)))
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

    def birth(self, table: TrackTable, det_rows: np.ndarray, meas: Meas, t: int) -> None:
        """Start TENTATIVE tracks at time ``t`` from LiDAR rows ``det_rows`` (as many as fit)."""
        class_id, class_conf, size_lwh_m = meas.class_id, meas.class_conf, meas.size_lwh_m
        if class_id is None or class_conf is None or size_lwh_m is None:
            return  # not LiDAR: only LiDAR boxes (which carry all three) start tracks
        n_free = table.capacity - table.num_live
        if n_free < det_rows.size:
            self.stats.count("capacity_full", int(det_rows.size - n_free))
            det_rows = det_rows[:n_free]
        slots = table.allocate(det_rows.size)
        if slots.size == 0:
            return
        cls = class_id[det_rows].astype(np.int32)
        z = meas.z[det_rows]
        R = meas.R[det_rows]
        L = class_likelihood(cls, class_conf[det_rows])
        lp = np.log(L)
        lp -= np.logaddexp.reduce(lp, axis=1, keepdims=True)
        table.class_logp[slots] = np.maximum(lp, self.config.class_logp_floor)
        table.class_id[slots] = cls
        models = np.array([model_of_class(int(ci)) for ci in cls], np.int8)
        table.model[slots] = models
        self._motion.set_noise(table, slots, cls)
        table.x[slots], table.P[slots] = self._motion.initial_states(models, cls, z, R)
        table.yaw_aux_rad[slots] = z[:, 2]
        table.size_lwh_m[slots] = size_lwh_m[det_rows]
        table.attr_score[slots] = 0.0
        table.status[slots] = _TENTATIVE
        table.birth_ns[slots] = t
        table.last_update_ns[slots] = t
        table.last_position_ns[slots] = t
        table.last_pos_xy_m[slots] = z[:, :2]
        table.hits[slots] = 1
        table.position_hits[slots] = 1
        self.stats.count("births", int(slots.size))

    # ------------------------------------------------------------------------------------------
    # Status and deletion.
    # ------------------------------------------------------------------------------------------
    def delete(self, table: TrackTable, slots: np.ndarray, reason: str) -> None:
        """Free ``slots`` and count them as ``deleted_<reason>`` (already freed ones count too)."""
        if slots.size:
            table.release(slots)
            self.stats.count(f"deleted_{reason}", int(slots.size))

    def manage(self, table: TrackTable, now_ns: int, ego: np.ndarray | None) -> None:
        """Status changes and deletions at output time ``now_ns``, heading flips, then merging.

        Args:
            ego: (6,) ego state at ``now_ns`` (world), or None (no range check).
        """
        idx = table.live()
        if idx.size == 0:
            return
        self._update_status(table, idx, now_ns)
        c = self.config
        pos_var = np.maximum(table.P[idx, 0, 0], table.P[idx, 1, 1])
        self.delete(table, idx[pos_var > c.max_position_std_m**2], "uncertain")
        self.delete(table, idx[table.valid[idx] & self._too_fast(table, idx)], "implausible_speed")
        if ego is not None:
            far = np.hypot(table.x[idx, 0] - ego[0], table.x[idx, 1] - ego[1]) > c.max_range_m
            self.delete(table, idx[far], "out_of_range")
        flips = self._motion.flip_reversed(table)
        if flips:
            self.stats.count("heading_flips", flips)
        self._merge_duplicates(table, table.live())

    def _update_status(self, table: TrackTable, idx: np.ndarray, now_ns: int) -> None:
        """Promote, coast and un-coast slots ``idx``; delete timed-out tentative and coasting ones."""
        drop_tentative, drop_coast = fk.update_status_kernel(
            table.status, table.hits, table.position_hits, table.last_position_ns, table.last_update_ns,
            table.class_id, idx, now_ns, self._status_limits,
        )  # fmt: skip
        self.delete(table, idx[drop_tentative], "tentative_timeout")
        self.delete(table, idx[drop_coast], "coast_timeout")

    def _too_fast(self, table: TrackTable, idx: np.ndarray) -> np.ndarray:
        """(n,) bool: tracks surely faster than their class can move (a ghost fed by forged boxes,
        or a diverged filter). Sure: 3 sigma below the estimate is still above the fastest class
        with probability >= 0.1, so a young track whose velocity is not yet observed, or a cyclist
        still half-believed a pedestrian, is not deleted."""
        speed = speed_of(table, idx)
        # Cheap pre-filter: the bound below is at least the own class's (its probability >= 1/7).
        out = speed > self._max_speed_cls[table.class_id[idx]]
        sel = np.flatnonzero(out)
        if sel.size == 0:
            return out
        s = idx[sel]
        var = speed_var_of(table, s, speed[sel])
        probs = np.exp(table.class_logp[s])
        probs /= probs.sum(axis=1, keepdims=True)
        bound = np.where(probs >= 0.1, self._max_speed_cls[None, :], 0.0).max(axis=1)
        out[sel] = speed[sel] - 3.0 * np.sqrt(np.maximum(var, 0.0)) > bound
        return out

    def _merge_duplicates(self, table: TrackTable, idx: np.ndarray) -> None:
        """Delete the younger of two tracks of one motion model closer than the duplicate distance.

        The distance is ``duplicate_width_frac`` of the narrower box width (so two pedestrians
        walking side by side survive, two tracks on one car do not), capped by
        ``duplicate_distance_m`` and at least ``duplicate_min_distance_m``.
        """
        if idx.size < 2:
            return
        c = self.config
        pairs = ak.close_pairs_kernel(table.x, idx, c.duplicate_distance_m)
        if pairs.size == 0:
            return
        i, j = idx[pairs[:, 0]], idx[pairs[:, 1]]
        width = np.minimum(table.size_lwh_m[i, 1], table.size_lwh_m[j, 1])
        # np.clip's values, without its overhead (NaN kept).
        limit = np.minimum(
            np.maximum(c.duplicate_width_frac * width, c.duplicate_min_distance_m), c.duplicate_distance_m
        )
        dist = np.hypot(table.x[i, 0] - table.x[j, 0], table.x[i, 1] - table.x[j, 1])
        dup = (dist < limit) & (table.model[i] == table.model[j])
        if not dup.any():
            return
        # Keep the older (lower id) track, it carries the longer history.
        i, j = i[dup], j[dup]
        drop = np.zeros(table.capacity, np.bool_)
        drop[np.where(table.track_id[i] < table.track_id[j], j, i)] = True
        self.delete(table, np.flatnonzero(drop), "duplicate")  # each slot once, ascending

    def drop_non_finite(
        self, table: TrackTable, idx: np.ndarray, *outputs: np.ndarray
    ) -> tuple[np.ndarray, ...]:
        """Delete slots whose extrapolated outputs are not all finite (a diverged filter).

        Args:
            idx: (n,) slots; outputs: arrays with n rows (pos, vel, yaw, cov).

        Returns:
            ``idx`` and each of ``outputs`` without the deleted rows.
        """
        if idx.size == 0:
            return (idx, *outputs)
        ok = np.ones(idx.size, np.bool_)
        for a in outputs:
            ok &= np.isfinite(a).reshape(idx.size, -1).all(axis=1)
        if ok.all():
            return (idx, *outputs)
        self.delete(table, idx[~ok], "non_finite")
        return (idx[ok], *(a[ok] for a in outputs))
