"""Score one replay's predictions against the log's truth, with constant velocity beside them.

The metrics themselves are :func:`prescient.models.eval_sim.trajectory_metrics` (the code behind
``eval-sim`` and ``eval-av2``): minADE/minFDE over K modes, miss rate at 2 m, brier-minFDE and
the planner's most-likely-mode ADE/FDE. Truth is the log's ``sim.ground_truth`` (simulator logs)
or, for imported logs without it, the log's own ``perception.tracks`` (ground truth as tracks).
Tracker tracks are paired with true agents by position at the tick (Hungarian, 2 m gate).

An agent counts at horizon h when its true position is known at every step up to h, so a short
log still scores its short horizons. Everything is measured relative to the agent's position at
the tick (displacements do not depend on the frame).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from prescient.bus import messages as m
from prescient.bus.replayer import iter_messages
from prescient.models.eval_sim import HORIZONS_S, MetricAccumulator, trajectory_metrics
from prescient.service.model_io.baselines import constant_velocity_predictions
from prescient.service.pipeline_types import TickResult

MATCH_GATE_M = 2.0
MAX_TRUTH_GAP_S = 0.25  # truth frames further apart than this are not interpolated across
REPORTED = ("min_ade", "min_fde", "miss", "brier_min_fde", "ml_ade", "ml_fde")
METHODS = ("model", "cv")


@dataclass
class TruthIndex:
    """Each true agent's path: ``times_s[id]`` (M,) sorted, ``xy_m[id]`` (M, 2) world frame."""

    source: str
    times_s: dict[int, np.ndarray] = field(default_factory=dict)
    xy_m: dict[int, np.ndarray] = field(default_factory=dict)
    class_id: dict[int, int] = field(default_factory=dict)

    @classmethod
    def from_log(cls, path: Path, tracks_from_log: bool) -> TruthIndex:
        """Read the truth of ``path``: ground truth if it has any, else its Tracks when replayed from them."""
        gt = cls._read(path, m.TOPIC_GROUND_TRUTH, "agent_id", "sim.ground_truth")
        if gt.times_s or not tracks_from_log:
            return gt
        return cls._read(path, m.TOPIC_TRACKS, "track_id", "perception.tracks of the log")

    @classmethod
    def _read(cls, path: Path, topic: str, id_field: str, source: str) -> TruthIndex:
        rows: dict[int, list[tuple[float, float, float]]] = {}
        classes: dict[int, int] = {}
        for lm in iter_messages(path, topics=[topic]):
            msg = lm.msg
            t_s = msg.header.stamp_ns / 1e9
            for i, aid in enumerate(getattr(msg, id_field).tolist()):
                rows.setdefault(aid, []).append(
                    (t_s, float(msg.position_m[i, 0]), float(msg.position_m[i, 1]))
                )
                classes[aid] = int(msg.class_id[i])
        out = cls(source=source if rows else "none")
        for aid, r in rows.items():
            arr = np.array(sorted(r), np.float64)  # (M, 3): t, x, y
            out.times_s[aid], out.xy_m[aid], out.class_id[aid] = arr[:, 0], arr[:, 1:], classes[aid]
        return out

    def positions(self, aid: int, t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Interpolated (len(t_s), 2) world positions of agent ``aid`` and a (len(t_s),) validity mask."""
        ts, xy = self.times_s[aid], self.xy_m[aid]
        j = np.searchsorted(ts, t_s)
        inside = (j > 0) & (j < ts.size) | np.isin(t_s, ts)
        lo, hi = ts[np.clip(j - 1, 0, ts.size - 1)], ts[np.clip(j, 0, ts.size - 1)]
        valid = inside & ((hi - lo) <= MAX_TRUTH_GAP_S)
        pos = np.stack([np.interp(t_s, ts, xy[:, 0]), np.interp(t_s, ts, xy[:, 1])], -1)
        return pos, valid

    def at(self, t_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Ids (M,) of the agents known at ``t_s`` and their (M, 2) world positions."""
        ids, pos = [], []
        for aid in self.times_s:
            p, ok = self.positions(aid, np.array([t_s]))
            if ok[0]:
                ids.append(aid)
                pos.append(p[0])
        return np.array(ids, np.int64), np.array(pos, np.float64).reshape(-1, 2)


class LogScorer:
    """An ``on_tick`` for :func:`~prescient.service.offline.replay_log` that scores every tick."""

    def __init__(self, truth: TruthIndex, same_ids: bool) -> None:
        """``same_ids``: the predictions' track ids are the truth's ids (tracks read from the log)."""
        self.truth = truth
        self.same_ids = same_ids
        self.acc = {h: MetricAccumulator() for h in HORIZONS_S}

    def __call__(self, res: TickResult) -> None:
        """Score one tick: every predicted agent paired with a true one, at every horizon it reaches."""
        if not self.truth.times_s:
            return
        pred = res.predictions
        if pred.track_id.size == 0:
            return
        rows, ids = self._pair(res)
        if rows.size == 0:
            return
        t, dt = pred.trajectories_m.shape[2], float(pred.dt_s)
        now_s = pred.header.stamp_ns / 1e9
        future_s = now_s + dt * np.arange(1, t + 1)
        gt = np.zeros((rows.size, t, 2))
        known = np.zeros((rows.size, t), bool)
        for a, aid in enumerate(ids.tolist()):
            gt[a], known[a] = self.truth.positions(aid, future_s)
        self._add(res, rows, ids, gt, known, dt)

    def _pair(self, res: TickResult) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the predictions and the true ids they are paired with."""
        pred, snap = res.predictions, res.tracks
        if self.same_ids:
            rows = np.array([r for r, i in enumerate(pred.track_id.tolist()) if i in self.truth.times_s], int)
            return rows, pred.track_id[rows].astype(np.int64)
        ids, true_xy = self.truth.at(pred.header.stamp_ns / 1e9)
        if ids.size == 0:
            return np.zeros(0, int), np.zeros(0, np.int64)
        snap_row = {int(i): r for r, i in enumerate(snap.track_id.tolist())}
        here = np.array([snap.position_m[snap_row[int(i)]] for i in pred.track_id], np.float64)
        cost = np.linalg.norm(here[:, None] - true_xy[None], axis=-1)  # (N, M)
        r, c = linear_sum_assignment(cost)
        ok = cost[r, c] <= MATCH_GATE_M
        return r[ok], ids[c[ok]]

    def _add(
        self, res: TickResult, rows: np.ndarray, ids: np.ndarray, gt: np.ndarray, known: np.ndarray, dt: float
    ) -> None:
        """Add the paired agents to each horizon's accumulator: model and constant velocity."""
        pred, snap = res.predictions, res.tracks
        snap_row = {int(i): r for r, i in enumerate(snap.track_id.tolist())}
        srows = np.array([snap_row[int(pred.track_id[r])] for r in rows], int)
        origin = snap.position_m[srows].astype(np.float64)  # (A, 2) the agents at the tick
        traj = pred.trajectories_m[rows].astype(np.float64) - origin[:, None, None]  # (A, K, T, 2)
        gt_rel = gt - origin[:, None]
        t = traj.shape[2]
        cv = constant_velocity_predictions(
            np.zeros_like(origin),
            snap.velocity_mps[srows].astype(np.float64),
            num_modes=1,
            future_steps=t,
            dt_s=dt,
        )
        cls = np.array([self.truth.class_id[int(i)] for i in ids], np.int64)
        for h in HORIZONS_S:
            n = int(round(h / dt))
            keep = known[:, :n].all(-1) if n <= t else np.zeros(rows.size, bool)
            if not keep.any():
                continue
            per_method = {
                "model": trajectory_metrics(
                    traj[keep, :, :n], pred.mode_probs[rows][keep], pred.scale_m[rows][keep, :, :n],
                    gt_rel[keep, :n], dt, (h,),
                ),
                "cv": trajectory_metrics(cv[0][keep, :, :n], cv[1][keep], cv[2][keep, :, :n], gt_rel[keep, :n], dt, (h,)),
            }  # fmt: skip
            self.acc[h].add(per_method, cls[keep])

    def summary(self) -> dict[str, dict[str, dict[str, Any]]]:
        """``{class: {horizon: {"agents": n, "model": {metric: mean}, "cv": {...}}}}``.

        ``class`` is ``all`` or a group of :data:`prescient.models.eval_sim.CLASS_GROUPS`;
        ``horizon`` is ``"1s"`` ... ``"8s"``; metrics are :data:`REPORTED` (m, or a fraction for ``miss``).
        """
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for h, acc in self.acc.items():
            hk = f"{h:g}s"
            s = acc.summary()
            if not s["agents"]:
                continue
            groups = {"all": {"agents": s["agents"], **s["overall"]}, **s["per_class"]}
            for group, g in groups.items():
                out.setdefault(group, {})[hk] = {
                    "agents": int(g["agents"]),
                    **{meth: {k: g[meth][hk][k] for k in REPORTED} for meth in METHODS},
                }
        return out
