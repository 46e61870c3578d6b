"""Score tracks against simulator ground truth: CLEAR-MOT / IDF1 with ``motmetrics`` plus RMSE.

``motmetrics`` is a dev dependency, imported only when :meth:`TrackingScorer.summary` runs.
Distances handed to motmetrics are Euclidean metres (not squared), so MOTP is in metres.
Only ground truth and published tracks within ``eval_range_m`` of the ego count. Optionally, ground
truth that no sensor could see (no LiDAR point on the object within a recent window, see
:class:`LidarVisibility`) is ignored: it is neither a miss, nor can a track on it be a false
positive (the "ignore region" convention of MOT benchmarks, and nuScenes' ``num_lidar_pts`` filter).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from prescient.bus import messages as m


@dataclass
class TrackingScorer:
    """Accumulates (tracks, ground truth) pairs of the same stamp.

    Args:
        eval_range_m: radius around the ego inside which GT and tracks are scored.
        match_dist_m: a track farther than this from a GT agent cannot match it.
    """

    eval_range_m: float = 50.0
    match_dist_m: float = 2.0
    frames: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)
    _errs: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    ignored_gt: int = 0
    ignored_tracks: int = 0

    def add(self, tracks: m.Tracks, gt: m.GroundTruth, visible_ids: set[int] | None = None) -> None:
        """Add one frame. ``tracks.header.stamp_ns`` should equal ``gt.header.stamp_ns``.

        Args:
            tracks: published tracks.
            gt: ground truth at the same time.
            visible_ids: if given, agents not in it are ignored (with the tracks on them).
        """
        ego = tracks.ego_pose[:2]
        g_in = np.hypot(*(gt.position_m - ego).T) <= self.eval_range_m
        h_in = np.hypot(*(tracks.position_m - ego).T) <= self.eval_range_m
        if visible_ids is not None:
            hidden = g_in & ~np.isin(gt.agent_id, np.fromiter(visible_ids, np.int64, len(visible_ids)))
            g_in &= ~hidden
            if hidden.any() and h_in.any():
                hp = tracks.position_m[h_in].astype(np.float64)
                dh = np.linalg.norm(gt.position_m[hidden][:, None, :] - hp[None], axis=-1)
                near_hidden = (dh <= self.match_dist_m).any(axis=0)
                # A track nearer to a visible agent than to the hidden one stays scored.
                vis_p = gt.position_m[g_in].astype(np.float64)
                if vis_p.size:
                    dv = np.linalg.norm(vis_p[:, None, :] - hp[None], axis=-1).min(axis=0)
                    near_hidden &= dh.min(axis=0) < dv
                h_idx = np.flatnonzero(h_in)
                h_in[h_idx[near_hidden]] = False
                self.ignored_tracks += int(near_hidden.sum())
            self.ignored_gt += int(hidden.sum())
        gp, hp = gt.position_m[g_in].astype(np.float64), tracks.position_m[h_in].astype(np.float64)
        dist = np.linalg.norm(gp[:, None, :] - hp[None, :, :], axis=-1) if gp.size and hp.size else None
        d = dist if dist is not None else np.zeros((gp.shape[0], hp.shape[0]))
        self.frames.append((gt.agent_id[g_in].copy(), tracks.track_id[h_in].copy(), d))
        if dist is None:
            return
        cost = np.where(dist <= self.match_dist_m, dist, 1e6)
        r, c = linear_sum_assignment(cost)
        ok = cost[r, c] <= self.match_dist_m
        gv = gt.velocity_mps[g_in][r[ok]]
        hv = tracks.velocity_mps[h_in][c[ok]]
        cls = gt.class_id[g_in][r[ok]]
        for cl, pe, ve in zip(cls, dist[r[ok], c[ok]], np.linalg.norm(gv - hv, axis=1)):
            self._errs.setdefault(int(cl), []).append((float(pe), float(ve)))

    def summary(self) -> dict[str, Any]:
        """MOTA, MOTP (m), IDF1, ID switches, FP, misses, and per-class position/velocity RMSE."""
        import motmetrics as mm  # dev dependency: only the benchmark / --score need it

        acc = mm.MOTAccumulator(auto_id=True)
        for gid, hid, d in self.frames:
            dd = np.where(d <= self.match_dist_m, d, np.nan)
            acc.update(gid.tolist(), hid.tolist(), dd)
        mh = mm.metrics.create()
        names = ["mota", "motp", "idf1", "num_switches", "num_false_positives", "num_misses", "num_objects"]
        df = mh.compute(acc, metrics=names, name="run")
        out: dict[str, Any] = {k: float(df[k].iloc[0]) for k in names}
        for k in ("num_switches", "num_false_positives", "num_misses", "num_objects"):
            out[k] = int(out[k])
        per_class = {}
        for cl, errs in sorted(self._errs.items()):
            e = np.asarray(errs)
            per_class[m.AgentClass(cl).name.lower()] = {
                "n": int(e.shape[0]),
                "pos_rmse_m": float(np.sqrt((e[:, 0] ** 2).mean())),
                "vel_rmse_mps": float(np.sqrt((e[:, 1] ** 2).mean())),
            }
        out["per_class"] = per_class
        veh = [e for cl, es in self._errs.items() if cl in (1, 2, 3) for e in es]
        out["vehicle_vel_rmse_mps"] = (
            float(np.sqrt((np.asarray(veh)[:, 1] ** 2).mean())) if veh else float("nan")
        )
        out["frames"] = len(self.frames)
        out["ignored_gt"] = self.ignored_gt
        out["ignored_tracks"] = self.ignored_tracks
        return out


class LidarVisibility:
    """Which ground-truth agents had at least one LiDAR point on them recently.

    Feed every LiDAR frame with the ego pose at its capture time, and the ground truth; then
    :meth:`visible` gives the agents with a point inside their box (grown by ``margin_m``) in any
    sweep captured within ``window_s`` before (and including) a time. Points and boxes are matched
    only at equal stamps (the simulator stamps LiDAR and ground truth on the same 100 ms grid).
    """

    def __init__(self, window_s: float = 1.0, margin_m: float = 0.3) -> None:
        self.window_ns = int(window_s * 1e9)
        self.margin_m = margin_m
        self._points: dict[int, list[np.ndarray]] = {}
        self._gt: dict[int, m.GroundTruth] = {}
        self._seen: dict[int, set[int]] | None = None

    def add_lidar(self, frame: m.LidarFrame, ego_pose: np.ndarray) -> None:
        """Store the frame's points in the world frame. ``ego_pose``: (3,) ``[x_m, y_m, yaw_rad]``."""
        p = frame.points_m.astype(np.float64)
        if p.size == 0:
            return
        e = frame.ego_from_sensor
        pe = p @ e[:3, :3].T + e[:3, 3]
        c, s = np.cos(ego_pose[2]), np.sin(ego_pose[2])
        w = np.stack(
            [ego_pose[0] + c * pe[:, 0] - s * pe[:, 1], ego_pose[1] + s * pe[:, 0] + c * pe[:, 1]], 1
        )
        self._points.setdefault(frame.header.stamp_ns, []).append(w)
        self._seen = None

    def add_gt(self, gt: m.GroundTruth) -> None:
        """Store one ground-truth message."""
        self._gt[gt.header.stamp_ns] = gt
        self._seen = None

    def _hits(self) -> dict[int, set[int]]:
        out: dict[int, set[int]] = {}
        for t, chunks in self._points.items():
            gt = self._gt.get(t)
            if gt is None or gt.agent_id.size == 0:
                continue
            pts = np.concatenate(chunks)
            d = pts[None, :, :] - gt.position_m[:, None, :].astype(np.float64)  # (N, P, 2)
            c, s = np.cos(gt.yaw_rad)[:, None], np.sin(gt.yaw_rad)[:, None]
            lon = c * d[..., 0] + s * d[..., 1]
            lat = -s * d[..., 0] + c * d[..., 1]
            hl = 0.5 * gt.size_lwh_m[:, 0:1] + self.margin_m
            hw = 0.5 * gt.size_lwh_m[:, 1:2] + self.margin_m
            inside = ((np.abs(lon) <= hl) & (np.abs(lat) <= hw)).any(axis=1)
            out[t] = set(gt.agent_id[inside].tolist())
        return out

    def visible(self, stamp_ns: int) -> set[int]:
        """Agents with a LiDAR point on them in ``(stamp_ns - window, stamp_ns]``."""
        if self._seen is None:
            self._seen = self._hits()
        ids: set[int] = set()
        for t, seen in self._seen.items():
            if stamp_ns - self.window_ns < t <= stamp_ns:
                ids |= seen
        return ids
