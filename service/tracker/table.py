"""The tracker's state: a struct-of-arrays table of ``N_MAX`` track slots, allocated once.

Every stage (motion, association, fusion, lifecycle, output) reads and writes these arrays on
the slots it is given; only :meth:`TrackTable.allocate` and :meth:`TrackTable.release` change
which slots are live. A slot is live where ``valid`` is True; the contents of other slots are
stale and meaningless.
"""

from __future__ import annotations

import math

import numpy as np

from prescient.bus import messages as m
from prescient.service.tracker.layout import STATE_DIM

NS_PER_S = 1_000_000_000
HISTORY_DT_NS = int(round(m.PRED_DT_S * NS_PER_S))
ATTR_BITS = np.array([int(a) for a in m.Attribute], dtype=np.uint8)  # (A,) one bit per attribute
ARRAY_NAMES = (
    "valid", "x", "P", "model", "sigma_a", "sigma_w", "sigma_j", "class_logp", "class_id",
    "status", "track_id", "birth_ns", "last_update_ns", "last_position_ns", "hits",
    "position_hits", "last_pos_xy_m", "size_lwh_m", "yaw_aux_rad", "attr_score", "hist_xy_m",
    "hist_yaw_rad", "hist_vel_mps", "hist_valid",
)  # fmt: skip


class TrackTable:
    """Per-slot track arrays (N = ``capacity`` slots, H = ``TRACK_HISTORY_STEPS``, C classes).

    Filter state (world frame, at time ``filter_ns`` for every live slot):
        x: (N, 6) float64 state, layout by ``model`` (:mod:`prescient.service.tracker.layout`).
        P: (N, 6, 6) float64 covariance of ``x``.
        model: (N,) int8 ``MODEL_CV`` or ``MODEL_CTRA``.
        sigma_a: (N,) float64 white acceleration noise, m/s^2 (from the class).
        sigma_w: (N,) float64 white yaw acceleration noise, rad/s^2 (CTRA only).
        sigma_j: (N,) float64 white jerk noise, m/s^3 (CTRA only).

    Identity, class and lifecycle:
        valid: (N,) bool live slots.
        track_id: (N,) int64 id, unique over the tracker's life (-1 never used).
        class_logp: (N, C) float64 log class probabilities (normalised, floored).
        class_id: (N,) int32 most probable :class:`~prescient.bus.messages.AgentClass`.
        status: (N,) uint8 :class:`~prescient.bus.messages.TrackStatus`.
        birth_ns, last_update_ns, last_position_ns: (N,) int64 sensor-clock ns of the birth,
            the last associated measurement, the last position (LiDAR) update.
        hits, position_hits: (N,) int32 associated measurements, of them position updates.
        last_pos_xy_m: (N, 2) float64 world position right after the last position update.

    Attributes estimated outside the filter:
        size_lwh_m: (N, 3) float64 box size (EMA of LiDAR boxes), m.
        yaw_aux_rad: (N,) float64 heading of CV tracks (from LiDAR boxes / velocity), world.
        attr_score: (N, A) float64 EMA of each :class:`~prescient.bus.messages.Attribute` bit, in [0, 1].

    History on the ``PRED_DT_S`` grid, oldest first, last column at grid step ``hist_k``:
        hist_xy_m: (N, H, 2) float32 world position, m.
        hist_yaw_rad: (N, H) float32 world heading.
        hist_vel_mps: (N, H, 2) float32 world velocity.
        hist_valid: (N, H) bool.

    Args:
        capacity: N, the number of slots (``TrackerConfig.capacity``).
    """

    def __init__(self, capacity: int) -> None:
        n = capacity
        H = m.TRACK_HISTORY_STEPS
        self.capacity = n
        self.valid = np.zeros(n, np.bool_)
        self.x = np.zeros((n, STATE_DIM))
        self.P = np.tile(np.eye(STATE_DIM), (n, 1, 1))
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
        self.last_pos_xy_m = np.zeros((n, 2))
        self.size_lwh_m = np.zeros((n, 3))
        self.yaw_aux_rad = np.zeros(n)
        self.attr_score = np.zeros((n, len(ATTR_BITS)))
        self.hist_xy_m = np.zeros((n, H, 2), np.float32)
        self.hist_yaw_rad = np.zeros((n, H), np.float32)
        self.hist_vel_mps = np.zeros((n, H, 2), np.float32)
        self.hist_valid = np.zeros((n, H), np.bool_)
        self.hist_k: int | None = None  # grid step (multiple of HISTORY_DT_NS) of the last column
        self.filter_ns: int | None = None  # time every live slot's x and P are predicted to
        self.next_id = 0

    def copy_live_from(self, other: TrackTable) -> None:
        """Make the live slots of this table those of ``other``, copying only the slots up to
        ``other``'s highest live one (slots are allocated lowest first, so a checkpoint of a
        table with 100 tracks copies about a fifth of it). The slots beyond are not live here
        afterwards; their contents stay stale, which no stage reads (a birth sets every field)."""
        if other.capacity != self.capacity:
            raise ValueError(f"TrackTable.copy_live_from: capacity {other.capacity} != {self.capacity}")
        live = np.flatnonzero(other.valid)
        hi = int(live[-1]) + 1 if live.size else 0
        np.copyto(self.valid, other.valid)
        for name in ARRAY_NAMES[1:]:  # ARRAY_NAMES[0] is "valid"
            getattr(self, name)[:hi] = getattr(other, name)[:hi]
        self.hist_k, self.filter_ns, self.next_id = other.hist_k, other.filter_ns, other.next_id

    def live(self) -> np.ndarray:
        """(n,) int64 live slots, ascending."""
        return np.flatnonzero(self.valid)

    @property
    def num_live(self) -> int:
        """Number of live slots (any status)."""
        return int(self.valid.sum())

    def allocate(self, n: int) -> np.ndarray:
        """Up to ``n`` free slots (lowest first), with fresh ids; the caller fills them in.

        The slots are marked live, their ids assigned in slot order, their history cleared.

        Returns:
            (k,) int64 slots, k = min(n, free slots).
        """
        slots = np.flatnonzero(~self.valid)[:n]
        k = slots.size
        if k:
            self.track_id[slots] = np.arange(self.next_id, self.next_id + k)
            self.next_id += k
            # History is cleared whole, not only marked invalid: the output publishes the
            # columns, and a slot's contents must follow from its own life alone (see copy_live_from).
            self.hist_xy_m[slots] = 0.0
            self.hist_yaw_rad[slots] = 0.0
            self.hist_vel_mps[slots] = 0.0
            self.hist_valid[slots] = False
            self.valid[slots] = True
        return slots

    def release(self, slots: np.ndarray) -> None:
        """Free ``slots`` (their contents become stale)."""
        self.valid[slots] = False
        self.hist_valid[slots] = False

    def push_history(
        self, now_ns: int, idx: np.ndarray, pos: np.ndarray, yaw: np.ndarray, vel: np.ndarray
    ) -> None:
        """Record the output of ``now_ns`` as the newest history column of slots ``idx``.

        The columns shift left by the number of ``PRED_DT_S`` grid steps since the last call
        (columns falling off lose their validity); a call for an older grid step records nothing.

        Args:
            now_ns: output time, sensor clock.
            idx: (n,) int64 slots; pos, vel: (n, 2) world m, m/s; yaw: (n,) world rad.
        """
        kk = int(round(now_ns / HISTORY_DT_NS))
        H = m.TRACK_HISTORY_STEPS
        if self.hist_k is not None and kk > self.hist_k:
            s = min(kk - self.hist_k, H)
            for arr in (self.hist_xy_m, self.hist_yaw_rad, self.hist_vel_mps, self.hist_valid):
                arr[:, : H - s] = arr[:, s:]
            self.hist_valid[:, H - s :] = False
        if self.hist_k is None or kk >= self.hist_k:
            self.hist_k = kk
            self.hist_xy_m[idx, -1] = pos
            self.hist_yaw_rad[idx, -1] = yaw
            self.hist_vel_mps[idx, -1] = vel
            self.hist_valid[idx, -1] = True

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first array with a wrong shape or dtype, or a live slot
        with a non-finite state or a duplicate id. For tests and debugging, not every tick."""
        n, H, S = self.capacity, m.TRACK_HISTORY_STEPS, STATE_DIM
        expected = {
            "valid": ((n,), np.bool_), "x": ((n, S), np.float64), "P": ((n, S, S), np.float64),
            "model": ((n,), np.int8), "sigma_a": ((n,), np.float64), "sigma_w": ((n,), np.float64),
            "sigma_j": ((n,), np.float64), "class_logp": ((n, m.NUM_CLASSES), np.float64),
            "class_id": ((n,), np.int32), "status": ((n,), np.uint8), "track_id": ((n,), np.int64),
            "birth_ns": ((n,), np.int64), "last_update_ns": ((n,), np.int64),
            "last_position_ns": ((n,), np.int64), "hits": ((n,), np.int32),
            "position_hits": ((n,), np.int32), "last_pos_xy_m": ((n, 2), np.float64),
            "size_lwh_m": ((n, 3), np.float64), "yaw_aux_rad": ((n,), np.float64),
            "attr_score": ((n, len(ATTR_BITS)), np.float64), "hist_xy_m": ((n, H, 2), np.float32),
            "hist_yaw_rad": ((n, H), np.float32), "hist_vel_mps": ((n, H, 2), np.float32),
            "hist_valid": ((n, H), np.bool_),
        }  # fmt: skip
        for name, (shape, dtype) in expected.items():
            a = getattr(self, name)
            if a.shape != shape or a.dtype != dtype:
                raise ValueError(f"TrackTable.{name}: {a.dtype}{a.shape}, expected {np.dtype(dtype)}{shape}")
        live = self.live()
        if not (np.isfinite(self.x[live]).all() and np.isfinite(self.P[live]).all()):
            raise ValueError("TrackTable: non-finite state in a live slot")
        if np.unique(self.track_id[live]).size != live.size:
            raise ValueError("TrackTable.track_id: duplicate id among live slots")
