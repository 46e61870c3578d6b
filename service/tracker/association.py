"""Association of one batch of measurements with the live tracks: gating, then assignment.

Gating (:func:`~prescient.service.tracker.association_kernels.gate_kernel`) keeps the (track, measurement)
pairs inside a chi-square gate on the Mahalanobis distance (LiDAR on ``[x, y]``, radar on
``[range, bearing, range rate]``, bearings on ``[bearing]``), after a Euclidean pre-gate. Pairs
with one candidate on both sides are assigned directly; the rest go to
``scipy.optimize.linear_sum_assignment`` on ``d2 + log det S + class cost``, one block-diagonal
problem for the batch, so each measurement takes at most one track and each track at most one
measurement per frame (sensor). LiDAR pairs that would need a teleport are dropped afterwards.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from prescient.bus import messages as m
from prescient.service.tracker import association_kernels as ak
from prescient.service.tracker.admission import TrackerStats
from prescient.service.tracker.config import TrackerConfig
from prescient.service.tracker.fusion import class_likelihood
from prescient.service.tracker.layout import MEAS_POSE, MEAS_RADAR
from prescient.service.tracker.measurements import Meas
from prescient.service.tracker.table import NS_PER_S, TrackTable

_BIG = 1e6  # cost of a pair the solver must not choose
# Gating scratch kept between batches: (track, measurement) pairs, 24 B each (1.5 MB). A busy
# scene needs ~200 tracks x ~250 boxes = 50k; a larger batch gets a temporary buffer.
PAIR_BUF_KEEP = 1 << 16


class Association:
    """Gating and assignment, with gating scratch reused across batches.

    Args:
        config: gates, pre-gate distance, class cost weight.
        stats: event counters (shared with the other stages).
    """

    def __init__(self, config: TrackerConfig, stats: TrackerStats) -> None:
        self.config = config
        self.stats = stats
        # (pair's candidate index, measurement row, cost), grown on demand up to PAIR_BUF_KEEP
        self.pair_buf = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0))

    def associate(
        self, table: TrackTable, idx: np.ndarray, meas: Meas, n_frames: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Assign measurements of a batch to the candidate slots ``idx``.

        Args:
            idx: (n,) int64 live slots, predicted to the batch's capture time.
            meas: the batch's M measurements, rows grouped by frame.
            n_frames: frames in the batch.

        Returns:
            (track slots, measurement rows), both (k,) int64, ordered by frame (then row) so that
            a track updated by several corners is updated in a stable order.
        """
        pa, pj, pcost = self._gate(table, idx, meas, n_frames)
        if pa.size == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        n, M = idx.shape[0], meas.z.shape[0]
        easy = ak.unambiguous_pairs_kernel(pa, pj, meas.frame_of, n, M, n_frames)
        ti, dj = idx[pa[easy]], pj[easy]
        hard = ~easy
        if hard.any():
            ht, hd = self._solve(table, idx, meas, n_frames, pa[hard], pj[hard], pcost[hard])
            ti = np.concatenate([ti, ht])
            dj = np.concatenate([dj, hd])
        order = np.argsort(meas.frame_of[dj] * M + dj, kind="stable")
        return ti[order], dj[order]

    def _gate(
        self, table: TrackTable, idx: np.ndarray, meas: Meas, n_frames: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Gated pairs: (K,) candidate index into ``idx``, measurement row, cost (copies)."""
        c = self.config
        n, M = idx.shape[0], meas.z.shape[0]
        if meas.kind == MEAS_POSE:
            m_gate, gate, pre = 2, c.gate_pose_d2, c.max_assoc_dist_m
        elif meas.kind == MEAS_RADAR:
            m_gate, gate, pre = 3, c.gate_radar_d2, c.max_assoc_dist_m
        else:
            m_gate, gate, pre = 1, c.gate_bearing_d2, 0.0
        starts = np.searchsorted(meas.frame_of, np.arange(n_frames + 1)).astype(np.int64)
        cap = n * M
        if cap > PAIR_BUF_KEEP:  # rare (a crowd, a flood): scratch freed after this batch
            pa, pj, pcost = np.empty(cap, np.int64), np.empty(cap, np.int64), np.empty(cap)
        else:
            if self.pair_buf[0].size < cap:
                self.pair_buf = (np.empty(cap, np.int64), np.empty(cap, np.int64), np.empty(cap))
            pa, pj, pcost = self.pair_buf
        npairs = ak.gate_kernel(
            table.x, table.P, table.model, idx, meas.kind, meas.sensors, meas.z, meas.R, starts,
            m_gate, gate, pre, pa, pj, pcost,
        )  # fmt: skip
        return pa[:npairs].copy(), pj[:npairs].copy(), pcost[:npairs].copy()

    def _solve(
        self,
        table: TrackTable,
        idx: np.ndarray,
        meas: Meas,
        n_frames: int,
        pa: np.ndarray,
        pj: np.ndarray,
        pcost: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Hungarian assignment of the ambiguous pairs, class-aware cost; (slots, rows)."""
        c = self.config
        n, M = idx.shape[0], meas.z.shape[0]
        w = c.class_weight[meas.modality]
        conf = meas.class_conf
        if meas.class_id is not None and conf is not None and c.class_cost_weight > 0 and w > 0:
            L = class_likelihood(meas.class_id[pj], conf[pj])  # (pairs, C)
            lik = (np.exp(table.class_logp[idx[pa]]) * L).sum(axis=1)
            pcost = pcost - c.class_cost_weight * np.log(np.maximum(lik * m.NUM_CLASSES, 1e-12))
        ri, ci, row_track, col_meas = ak.compact_pairs_kernel(pa, pj, meas.frame_of, n, M, n_frames)
        cost = np.full((row_track.size, col_meas.size), _BIG)
        cost[ri, ci] = pcost
        r, cc = linear_sum_assignment(cost)
        ok = cost[r, cc] < _BIG * 0.5
        return idx[row_track[r[ok]]], col_meas[cc[ok]]

    def plausible_pairs(
        self, table: TrackTable, ti: np.ndarray, dj: np.ndarray, meas: Meas, t: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Drop (track, LiDAR box) pairs whose box lies farther from the track's last position than
        ``max_implied_speed_mps`` could take it since then: a detection reached only by teleporting
        starts its own (tentative) track instead of dragging a real one away."""
        a = self.config.admission
        dt_s = np.maximum((t - table.last_position_ns[ti]) / NS_PER_S, a.implied_speed_min_dt_s)
        d = meas.z[dj, :2] - table.last_pos_xy_m[ti]
        ok = np.hypot(d[:, 0], d[:, 1]) <= a.max_implied_speed_mps * dt_s
        if ok.all():
            return ti, dj
        self.stats.count("implausible_pairs", int((~ok).sum()))
        return ti[ok], dj[ok]
