"""The map builder: lanes from polylines, connections, then the packed :class:`MapData`.

Road lanes (vehicle, bike) must be added before pedestrian walk lanes, so that the exported
lanes are ``0 .. n_road-1``. Turnarounds for the ego are added last, by :meth:`MapBuilder.build`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from prescient.sim_sensors.layout import KIND_BIKE, KIND_CROSS, KIND_TURNAROUND, KIND_VEHICLE, KIND_WALK
from prescient.sim_sensors.maps.data import MapData
from prescient.sim_sensors.maps.export import vector_map_from_builder
from prescient.sim_sensors.maps.geometry import bezier, curve_speed, strip

LANE_WIDTH_M = 3.5
BIKE_WIDTH_M = 1.5
SIDEWALK_WIDTH_M = 3.0


class MapBuilder:
    """Accumulates lanes, their connections and the exported polygons of one map.

    Attributes:
        lanes: per-lane dicts (``pts`` (n, 2) plus the MapData per-lane attributes).
        succ: successor lists per lane.
        crossings / sidewalks / drivable: exported polygons (n, 2), world frame, m.
        stop_lines: ``((2, 2) segment, lane)`` pairs.
        plans / offsets: signal groups ``(green_s, yellow_s, red_s)`` and their start offsets (s).
    """

    def __init__(self, name: str) -> None:
        """Empty map called ``name``."""
        self.name = name
        self.lanes: list[dict] = []
        self.succ: list[list[int]] = []
        self.crossings: list[np.ndarray] = []
        self.sidewalks: list[np.ndarray] = []
        self.drivable: list[np.ndarray] = []
        self.stop_lines: list[tuple[np.ndarray, int]] = []
        self.plans: list[tuple[float, float, float]] = []
        self.offsets: list[float] = []

    def lane(self, pts: np.ndarray, kind: int, width: float, speed: float, **kw: object) -> int:
        """Add a lane along ``pts`` (n, 2); returns its index. ``kw`` sets MapData attributes."""
        if kind in (KIND_VEHICLE, KIND_BIKE) and any(
            lane["kind"] not in (KIND_VEHICLE, KIND_BIKE) for lane in self.lanes
        ):
            raise ValueError(f"{self.name}: road lanes must be added before walk lanes")
        d = {
            "pts": np.asarray(pts, np.float64),
            "kind": kind,
            "width": width,
            "speed": curve_speed(pts, speed) if kind in (KIND_VEHICLE, KIND_BIKE, KIND_TURNAROUND) else speed,
            "stop_s": -1.0,
            "group": -1,
            "yield_": False,
            "left_nb": -1,
            "right_nb": -1,
            "is_intersection": False,
            "turn": 0,
            "reverse": -1,
            "road_side": 0.0,
            "jay_dist": 0.0,
            "ped": (0.0, 0.0, 0.0),
        }
        d.update(kw)
        self.lanes.append(d)
        self.succ.append([])
        return len(self.lanes) - 1

    def connect(self, a: int, b: int) -> None:
        """Make lane ``b`` a successor of lane ``a``."""
        if b not in self.succ[a]:
            self.succ[a].append(b)

    def set_neighbours(self, lanes: list[int]) -> None:
        """Link parallel lanes, ordered left to right, as each other's neighbours."""
        for i, lane in enumerate(lanes):
            self.lanes[lane]["left_nb"] = lanes[i - 1] if i > 0 else -1
            self.lanes[lane]["right_nb"] = lanes[i + 1] if i + 1 < len(lanes) else -1

    def walk_pair(self, pts: np.ndarray, **kw: Any) -> tuple[int, int]:
        """Two walk lanes (both directions) along ``pts``; sets ``reverse``."""
        side = kw.pop("road_side", 0.0)
        a = self.lane(pts, kw.pop("kind", KIND_WALK), 1.0, 1.4, road_side=side, **kw)
        b = self.lane(pts[::-1].copy(), self.lanes[a]["kind"], 1.0, 1.4, road_side=-side, **kw)
        self.lanes[a]["reverse"], self.lanes[b]["reverse"] = b, a
        return a, b

    def link_walks(self) -> None:
        """Connect walk lanes whose end meets another's start (not its own reverse)."""
        walks = [i for i, lane in enumerate(self.lanes) if lane["kind"] in (KIND_WALK, KIND_CROSS)]
        starts = np.array([self.lanes[i]["pts"][0] for i in walks])
        for i in walks:
            end = self.lanes[i]["pts"][-1]
            d = np.linalg.norm(starts - end, axis=1)
            for j_idx in np.nonzero(d < 0.5)[0]:
                j = walks[j_idx]
                if j != self.lanes[i]["reverse"]:
                    self.connect(i, j)

    def _turnaround_target(self, a: int, has_pred: np.ndarray) -> int:
        """Farthest entry lane (no predecessor) 3..30 m from exit lane ``a``'s end, facing back; -1."""
        la = self.lanes[a]
        end, h_end = la["pts"][-1], la["pts"][-1] - la["pts"][-2]
        h_end = h_end / np.linalg.norm(h_end)
        best, best_d = -1, 0.0
        for b in range(len(has_pred)):  # lanes that existed before any turnaround was added
            lb = self.lanes[b]
            if lb["kind"] != KIND_VEHICLE or has_pred[b]:
                continue
            h_b = lb["pts"][1] - lb["pts"][0]
            h_b = h_b / np.linalg.norm(h_b)
            d = float(np.linalg.norm(lb["pts"][0] - end))
            if float(h_b @ h_end) < -0.9 and 3.0 < d < 30.0 and d > best_d:
                best, best_d = b, d
        return best

    def add_turnarounds(self) -> None:
        """Ego-only U-turns from each exit lane to the farthest opposite entry lane within 30 m."""
        n = len(self.lanes)
        has_pred = np.zeros(n, bool)
        for a in range(n):
            for b in self.succ[a]:
                has_pred[b] = True
        for a in range(n):
            la = self.lanes[a]
            if la["kind"] != KIND_VEHICLE or self.succ[a]:
                continue
            best = self._turnaround_target(a, has_pred)
            if best >= 0:
                end, h_end = la["pts"][-1], la["pts"][-1] - la["pts"][-2]
                h_end = h_end / np.linalg.norm(h_end)
                lb = self.lanes[best]
                h_b = lb["pts"][1] - lb["pts"][0]
                pts = bezier(end, h_end, lb["pts"][0], h_b / np.linalg.norm(h_b), c_frac=2.0 / 3.0)
                t = self.lane(pts, KIND_TURNAROUND, LANE_WIDTH_M, 8.0)
                self.connect(t, best)
                la["turnaround"] = t

    def _csr(self, lists: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """(offsets (n+1,) int64, flat values int64) of per-lane index lists."""
        offs = np.zeros(len(lists) + 1, np.int64)
        offs[1:] = np.cumsum([len(x) for x in lists])
        return offs, np.array([v for x in lists for v in x], np.int64)

    def _bounds(self, pts: np.ndarray, margin: float = 20.0) -> np.ndarray:
        """(4,) ``[x_min, y_min, x_max, y_max]`` of lanes and polygons plus ``margin`` m."""
        all_pts = np.concatenate([pts, *self.sidewalks, *self.drivable])
        return np.array(
            [
                all_pts[:, 0].min() - margin,
                all_pts[:, 1].min() - margin,
                all_pts[:, 0].max() + margin,
                all_pts[:, 1].max() + margin,
            ]
        )

    def build(self) -> MapData:
        """Add turnarounds, pack everything into a :class:`MapData` with its VectorMap."""
        self.add_turnarounds()
        lanes = self.lanes
        n = len(lanes)
        kinds = np.array([lane["kind"] for lane in lanes], np.int32)
        road = np.isin(kinds, (KIND_VEHICLE, KIND_BIKE))
        n_road = int(road.sum())
        if not road[:n_road].all():
            raise ValueError(f"{self.name}: road lanes must come first")
        pts_list = [lane["pts"] for lane in lanes]
        off = np.zeros(n + 1, np.int64)
        off[1:] = np.cumsum([len(p) for p in pts_list])
        pts = np.concatenate(pts_list)
        cum_s = np.concatenate(
            [np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(p, axis=0), axis=1))]) for p in pts_list]
        )
        length = np.array([cum_s[off[i + 1] - 1] for i in range(n)])
        succ_off, succ = self._csr(self.succ)
        preds: list[list[int]] = [[] for _ in range(n)]
        for a in range(n):
            for b in self.succ[a]:
                preds[b].append(a)
        pred_off, pred = self._csr(preds)

        def col(key: str, dtype: type) -> np.ndarray:
            return np.array([lane.get(key, -1) for lane in lanes], dtype)

        ped = np.array([lane["ped"] for lane in lanes], np.float64)
        for i in range(n):  # turnaround footprints are drivable (cul-de-sac bulbs)
            if kinds[i] == KIND_TURNAROUND:
                self.drivable.append(strip(lanes[i]["pts"], LANE_WIDTH_M))
        data: dict[str, Any] = dict(
            name=self.name,
            pts=pts,
            off=off,
            cum_s=cum_s,
            length=length,
            kind=kinds,
            width=col("width", np.float64),
            speed=col("speed", np.float64),
            stop_s=col("stop_s", np.float64),
            group=col("group", np.int32),
            yield_=col("yield_", np.bool_),
            left_nb=col("left_nb", np.int32),
            right_nb=col("right_nb", np.int32),
            is_intersection=col("is_intersection", np.bool_),
            turn=col("turn", np.int32),
            succ_off=succ_off,
            succ=succ,
            pred_off=pred_off,
            pred=pred,
            reverse=col("reverse", np.int32),
            road_side=col("road_side", np.float64),
            jay_dist=col("jay_dist", np.float64),
            turnaround=col("turnaround", np.int32),
            ped_cycle_s=ped[:, 0].copy(),
            ped_start_s=ped[:, 1].copy(),
            ped_end_s=ped[:, 2].copy(),
            group_plan_s=np.array(self.plans, np.float64).reshape(-1, 3),
            group_offset_s=np.array(self.offsets, np.float64),
            n_road=n_road,
            bounds=self._bounds(pts),
        )
        data["vector_map"] = vector_map_from_builder(self, data)
        return MapData(**data)
