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

from prescient.service.tracker import association_kernels as ak
from prescient.service.tracker.admission import TrackerStats
from prescient.service.tracker.config import TrackerConfig
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
            (track slots, measurement rows), both (k,) int64, ordered by measurement row (so by
            frame, then row) so that a track updated by several corners is updated in a stable
            order.
        """
        pa, pj, pcost = self._gate(table, idx, meas, n_frames)
        if pa.size == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        # owner[j]: the slot measurement row j is assigned to, -1 for none. Every row is
        # assigned at most once, so reading it out in row order gives the pairs in row order.
        owner = np.full(meas.z.shape[0], -1, np.int64)
        ha, hj, hcost = ak.split_pairs_kernel(pa, pj, pcost, meas.frame_of, idx, n_frames, owner)
        if ha.size:
            self._solve(table, idx, meas, n_frames, ha, hj, hcost, owner)
        dj = np.flatnonzero(owner >= 0)
        return owner[dj], dj

    def _gate(
        self, table: TrackTable, idx: np.ndarray, meas: Meas, n_frames: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Gated pairs: (K,) candidate index into ``idx``, measurement row, cost.

        Views of the gating scratch: valid until the next call.
        """
        c = self.config
        n, M = idx.shape[0], meas.z.shape[0]
        if meas.kind == MEAS_POSE:
            m_gate, gate, pre = 2, c.gate_pose_d2, c.max_assoc_dist_m
        elif meas.kind == MEAS_RADAR:
            m_gate, gate, pre = 3, c.gate_radar_d2, c.max_assoc_dist_m
        else:
            m_gate, gate, pre = 1, c.gate_bearing_d2, 0.0
        cap = n * M
        if cap > PAIR_BUF_KEEP:  # rare (a crowd, a flood): scratch freed after this batch
            pa, pj, pcost = np.empty(cap, np.int64), np.empty(cap, np.int64), np.empty(cap)
        else:
            if self.pair_buf[0].size < cap:
                self.pair_buf = (np.empty(cap, np.int64), np.empty(cap, np.int64), np.empty(cap))
            pa, pj, pcost = self.pair_buf
        npairs = ak.gate_kernel(
            table.x, table.P, table.model, idx, meas.kind, meas.sensors, meas.z, meas.R, meas.starts,
            m_gate, gate, pre, pa, pj, pcost,
        )  # fmt: skip
        return pa[:npairs], pj[:npairs], pcost[:npairs]

    def _solve(
        self,
        table: TrackTable,
        idx: np.ndarray,
        meas: Meas,
        n_frames: int,
        pa: np.ndarray,
        pj: np.ndarray,
        pcost: np.ndarray,
        owner: np.ndarray,
    ) -> None:
        """Hungarian assignment of the ambiguous pairs, class-aware cost; writes ``owner``."""
        c = self.config
        w = c.class_weight[meas.modality]
        conf = meas.class_conf
        if meas.class_id is not None and conf is not None and c.class_cost_weight > 0 and w > 0:
            # exp and log stay in numpy: numba's libm versions differ from numpy's SIMD ones in
            # the last bit, and the costs must not depend on where they are computed.
            probs = np.exp(table.class_logp[idx])  # (n, C)
            lik = ak.class_match_kernel(probs, pa, meas.class_id, conf, pj)  # (pairs,)
            pcost = pcost - c.class_cost_weight * np.log(lik)
        cost, row_track, col_meas = ak.cost_matrix_kernel(
            pa, pj, pcost, meas.frame_of, idx.shape[0], meas.z.shape[0], n_frames, _BIG
        )
        r, cc = linear_sum_assignment(cost)
        ok = cost[r, cc] < _BIG * 0.5
        owner[col_meas[cc[ok]]] = idx[row_track[r[ok]]]

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
