"""Procedural road networks, exported as :class:`bus.messages.VectorMap`.

Every layout is built from polylines by :class:`_Builder`, which also keeps the simulator's own
lane graph (:class:`MapData`): vehicle and bike lanes (exported), plus pedestrian walk lanes along
sidewalks and across crossings and ego-only turnaround lanes at the map ends (internal; their
footprints are exported as sidewalk / drivable polygons). Right-hand traffic, world frame: x east,
y north, metres. Lane ids on the wire are the internal indices of the exported lanes.

Layouts (:data:`SCENARIOS`):
  * ``intersection``: signalised 4-way, 2 lanes per direction, one signal group per arm
    (protected phases) and an all-red pedestrian phase, crossings on all arms.
  * ``t_junction``: signalised 3-way, 1 lane per direction, same phasing.
  * ``arterial``: 600 m straight road, 3 lanes per direction plus bike lanes, a signalised
    mid-block pedestrian crossing.
  * ``roundabout``: single-lane ring (radius 22 m) with 4 single-lane arms, yield at entry,
    unsignalised crossings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bus.messages import TOPIC_MAP, Header, LaneType, VectorMap

SCENARIOS: tuple[str, ...] = ("intersection", "t_junction", "arterial", "roundabout")

# Internal lane kinds (not on the wire).
KIND_VEHICLE = 0
KIND_BIKE = 1
KIND_WALK = 2
KIND_CROSS = 3
KIND_TURNAROUND = 4

LANE_WIDTH_M = 3.5
BIKE_WIDTH_M = 1.5
SIDEWALK_WIDTH_M = 3.0
MAX_LAT_ACCEL_MPS2 = 2.5  # comfortable lateral acceleration that sets curve speed limits
_STEP_M = 2.0  # polyline spacing


@dataclass(frozen=True, eq=False)
class MapData:
    """Struct-of-arrays lane graph used by the simulation kernels (world frame, metres).

    L lanes (exported road lanes first: ``0 .. n_road-1``), P polyline points, G signal groups.

    Attributes:
        pts: (P, 2) float64 centerline points, CSR by ``off`` (L+1,) int64.
        cum_s: (P,) float64 arc length of each point from its lane start.
        length: (L,) float64 lane length.
        kind: (L,) int32 ``KIND_*``.
        width: (L,) float64; speed: (L,) float64 speed limit incl. curvature limit, m/s.
        stop_s: (L,) float64 arc length of the stop line on the lane, -1 if none.
        group: (L,) int32 signal group controlling the lane, -1 if none.
        yield_: (L,) bool: must give way at its end (roundabout entries).
        left_nb / right_nb: (L,) int32 parallel neighbour lanes (aligned arc length), -1 if none.
        is_intersection: (L,) bool; turn: (L,) int32 -1 left, 0 straight, +1 right.
        succ_off / succ: successor CSR (indices); pred_off / pred: predecessor CSR.
        reverse: (L,) int32 opposite-direction twin of a walk lane, -1 if none.
        road_side: (L,) float64 +1 if the road is left of a sidewalk walk lane, -1 right, 0 n/a.
        jay_dist: (L,) float64 distance a jaywalker walks to reach the opposite sidewalk.
        turnaround: (L,) int32 ego-only turnaround lane from the end of an exit lane, -1 if none.
        ped_cycle_s / ped_start_s / ped_end_s: (L,) float64 walk window of a crossing lane
            (start may begin in ``[start, end)`` of each cycle); cycle 0 = unsignalised.
        group_plan_s: (G, 3) float64 ``[green, yellow, red]``; group_offset_s: (G,) float64.
        n_road: number of exported lanes.
        bounds: (4,) float64 ``[x_min, y_min, x_max, y_max]`` of everything, plus a margin.
    """

    name: str
    pts: np.ndarray
    off: np.ndarray
    cum_s: np.ndarray
    length: np.ndarray
    kind: np.ndarray
    width: np.ndarray
    speed: np.ndarray
    stop_s: np.ndarray
    group: np.ndarray
    yield_: np.ndarray
    left_nb: np.ndarray
    right_nb: np.ndarray
    is_intersection: np.ndarray
    turn: np.ndarray
    succ_off: np.ndarray
    succ: np.ndarray
    pred_off: np.ndarray
    pred: np.ndarray
    reverse: np.ndarray
    road_side: np.ndarray
    jay_dist: np.ndarray
    turnaround: np.ndarray
    ped_cycle_s: np.ndarray
    ped_start_s: np.ndarray
    ped_end_s: np.ndarray
    group_plan_s: np.ndarray
    group_offset_s: np.ndarray
    n_road: int
    bounds: np.ndarray
    vector_map: VectorMap

    @property
    def n_lanes(self) -> int:
        """Number of lanes of every kind."""
        return len(self.length)

    def lane_points(self, lane: int) -> np.ndarray:
        """(n, 2) float64 centerline of one lane."""
        return self.pts[self.off[lane] : self.off[lane + 1]]

    def successors(self, lane: int) -> np.ndarray:
        """Successor lane indices of ``lane``."""
        return self.succ[self.succ_off[lane] : self.succ_off[lane + 1]]

    def predecessors(self, lane: int) -> np.ndarray:
        """Predecessor lane indices of ``lane``."""
        return self.pred[self.pred_off[lane] : self.pred_off[lane + 1]]

    def light_states(self, t_s: float) -> np.ndarray:
        """(G,) uint8 LightState of each signal group at sim time ``t_s``."""
        return light_states_at(self.group_plan_s, self.group_offset_s, t_s)


def light_states_at(plan_s: np.ndarray, offset_s: np.ndarray, t_s: float) -> np.ndarray:
    """Fixed-time signal state per group: GREEN, then YELLOW, then RED, repeating.

    Args:
        plan_s: (G, 3) ``[green_s, yellow_s, red_s]``.
        offset_s: (G,) start of each group's green within the cycle, s.
        t_s: sim time, s.

    Returns:
        (G,) uint8 :class:`bus.messages.LightState` values.
    """
    cycle = plan_s.sum(axis=1)
    phase = np.mod(t_s - offset_s, np.where(cycle > 0, cycle, 1.0))
    out = np.full(len(plan_s), 1, np.uint8)  # RED
    out[phase < plan_s[:, 0] + plan_s[:, 1]] = 2  # YELLOW
    out[phase < plan_s[:, 0]] = 3  # GREEN
    return out


# ----------------------------------------------------------------------------------------------
# Geometry helpers.
# ----------------------------------------------------------------------------------------------
def _line(p0: np.ndarray, p1: np.ndarray, step: float = _STEP_M) -> np.ndarray:
    n = max(2, int(math.ceil(np.linalg.norm(p1 - p0) / step)) + 1)
    t = np.linspace(0.0, 1.0, n)[:, None]
    return p0[None] * (1 - t) + p1[None] * t


def _bezier(
    p0: np.ndarray, h0: np.ndarray, p1: np.ndarray, h1: np.ndarray, c_frac: float = 0.4
) -> np.ndarray:
    """Cubic Bezier from ``p0`` heading ``h0`` to ``p1`` heading ``h1`` (unit vectors)."""
    d = float(np.linalg.norm(p1 - p0))
    c = c_frac * d
    q = np.stack([p0, p0 + h0 * c, p1 - h1 * c, p1])
    n = max(6, int(math.ceil(1.3 * d / _STEP_M)) + 1)
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 3 * q[0] + 3 * (1 - t) ** 2 * t * q[1] + 3 * (1 - t) * t**2 * q[2] + t**3 * q[3]


def _arc(center: np.ndarray, r: float, a0: float, a1: float) -> np.ndarray:
    n = max(3, int(math.ceil(abs(a1 - a0) * r / _STEP_M)) + 1)
    a = np.linspace(a0, a1, n)
    return center[None] + r * np.stack([np.cos(a), np.sin(a)], axis=1)


def _normals(pts: np.ndarray) -> np.ndarray:
    """(n, 2) unit left normals of a polyline (central differences)."""
    tang = np.gradient(pts, axis=0)
    tang /= np.maximum(np.linalg.norm(tang, axis=1, keepdims=True), 1e-9)
    return np.stack([-tang[:, 1], tang[:, 0]], axis=1)


def _curve_speed(pts: np.ndarray, limit: float) -> float:
    """Speed limit of a polyline from its tightest curvature (lateral accel ``MAX_LAT_ACCEL``)."""
    seg = np.diff(pts, axis=0)
    ang = np.arctan2(seg[:, 1], seg[:, 0])
    if len(ang) < 2:
        return limit
    dang = np.abs((np.diff(ang) + np.pi) % (2 * np.pi) - np.pi)
    ds = 0.5 * (np.linalg.norm(seg[1:], axis=1) + np.linalg.norm(seg[:-1], axis=1))
    kappa = float(np.max(dang / np.maximum(ds, 1e-6)))
    if kappa < 1e-4:
        return limit
    return float(min(limit, max(2.0, math.sqrt(MAX_LAT_ACCEL_MPS2 / kappa))))


def _strip(pts: np.ndarray, width: float) -> np.ndarray:
    nrm = _normals(pts)
    return np.concatenate([pts + nrm * width / 2, (pts - nrm * width / 2)[::-1]])


def _rect(p0: np.ndarray, p1: np.ndarray, width: float) -> np.ndarray:
    return _strip(np.stack([p0, p1]), width)


def _unit(a: float) -> np.ndarray:
    return np.array([math.cos(a), math.sin(a)])


# ----------------------------------------------------------------------------------------------
# Builder.
# ----------------------------------------------------------------------------------------------
class _Builder:
    def __init__(self, name: str) -> None:
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
        if kind in (KIND_VEHICLE, KIND_BIKE) and any(
            lane["kind"] not in (KIND_VEHICLE, KIND_BIKE) for lane in self.lanes
        ):
            raise ValueError(f"{self.name}: road lanes must be added before walk lanes")
        d = {
            "pts": np.asarray(pts, np.float64),
            "kind": kind,
            "width": width,
            "speed": _curve_speed(pts, speed)
            if kind in (KIND_VEHICLE, KIND_BIKE, KIND_TURNAROUND)
            else speed,
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
        if b not in self.succ[a]:
            self.succ[a].append(b)

    def walk_pair(self, pts: np.ndarray, **kw: object) -> tuple[int, int]:
        """Two walk lanes (both directions) along ``pts``; sets ``reverse``."""
        side = kw.pop("road_side", 0.0)
        a = self.lane(pts, kw.pop("kind", KIND_WALK), 1.0, 1.4, road_side=side, **kw)
        b = self.lane(pts[::-1].copy(), self.lanes[a]["kind"], 1.0, 1.4, road_side=-side, **kw)
        self.lanes[a]["reverse"], self.lanes[b]["reverse"] = b, a
        return a, b

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
            end, h_end = la["pts"][-1], la["pts"][-1] - la["pts"][-2]
            h_end = h_end / np.linalg.norm(h_end)
            best, best_d = -1, 0.0
            for b in range(n):
                lb = self.lanes[b]
                if lb["kind"] != KIND_VEHICLE or has_pred[b]:
                    continue
                h_b = lb["pts"][1] - lb["pts"][0]
                h_b = h_b / np.linalg.norm(h_b)
                d = float(np.linalg.norm(lb["pts"][0] - end))
                if float(h_b @ h_end) < -0.9 and 3.0 < d < 30.0 and d > best_d:
                    best, best_d = b, d
            if best >= 0:
                lb = self.lanes[best]
                h_b = lb["pts"][1] - lb["pts"][0]
                pts = _bezier(end, h_end, lb["pts"][0], h_b / np.linalg.norm(h_b), c_frac=2.0 / 3.0)
                t = self.lane(pts, KIND_TURNAROUND, LANE_WIDTH_M, 8.0)
                self.connect(t, best)
                la["turnaround"] = t

    def build(self) -> MapData:
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
        succ_off = np.zeros(n + 1, np.int64)
        succ_off[1:] = np.cumsum([len(s) for s in self.succ])
        succ = np.array([b for s in self.succ for b in s], np.int64)
        preds: list[list[int]] = [[] for _ in range(n)]
        for a in range(n):
            for b in self.succ[a]:
                preds[b].append(a)
        pred_off = np.zeros(n + 1, np.int64)
        pred_off[1:] = np.cumsum([len(p) for p in preds])
        pred = np.array([a for p in preds for a in p], np.int64)

        def col(key: str, dtype: type) -> np.ndarray:
            return np.array([lane.get(key, -1) for lane in lanes], dtype)

        ped = np.array([lane["ped"] for lane in lanes], np.float64)
        for i in range(n):  # turnaround footprints are drivable (cul-de-sac bulbs)
            if kinds[i] == KIND_TURNAROUND:
                self.drivable.append(_strip(lanes[i]["pts"], LANE_WIDTH_M))
        all_pts = np.concatenate([pts, *self.sidewalks, *self.drivable])
        margin = 20.0
        bounds = np.array(
            [
                all_pts[:, 0].min() - margin,
                all_pts[:, 1].min() - margin,
                all_pts[:, 0].max() + margin,
                all_pts[:, 1].max() + margin,
            ]
        )
        data = dict(
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
            bounds=bounds,
        )
        data["vector_map"] = self._vector_map(data)
        return MapData(**data)

    def _vector_map(self, d: dict) -> VectorMap:
        n = d["n_road"]
        lanes = self.lanes[:n]

        def csr(polys: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
            offs = np.zeros(len(polys) + 1, np.int64)
            offs[1:] = np.cumsum([len(p) for p in polys])
            xy = np.concatenate(polys).astype(np.float32) if polys else np.zeros((0, 2), np.float32)
            return xy, offs

        center = [lane["pts"] for lane in lanes]
        left = [lane["pts"] + _normals(lane["pts"]) * lane["width"] / 2 for lane in lanes]
        right = [lane["pts"] - _normals(lane["pts"]) * lane["width"] / 2 for lane in lanes]
        cxy, coff = csr(center)
        lxy, loff = csr(left)
        rxy, roff = csr(right)
        road_succ = [[b for b in self.succ[a] if b < n] for a in range(n)]
        road_pred: list[list[int]] = [[] for _ in range(n)]
        for a in range(n):
            for b in road_succ[a]:
                road_pred[b].append(a)
        s_off = np.zeros(n + 1, np.int64)
        s_off[1:] = np.cumsum([len(s) for s in road_succ])
        p_off = np.zeros(n + 1, np.int64)
        p_off[1:] = np.cumsum([len(p) for p in road_pred])
        xxy, xoff = csr(self.crossings)
        wxy, woff = csr(self.sidewalks)
        road_strips = [_strip(lane["pts"], lane["width"]) for lane in lanes]
        dxy, doff = csr(road_strips + self.drivable)
        lane_type = np.array(
            [LaneType.BIKE if lane["kind"] == KIND_BIKE else LaneType.VEHICLE for lane in lanes], np.uint8
        )
        sl_xy = np.array([s for s, _ in self.stop_lines], np.float32).reshape(-1, 2, 2)
        sl_lane = np.array([lane_idx for _, lane_idx in self.stop_lines], np.int64)
        light_lanes = np.array([i for i in range(n) if lanes[i]["group"] >= 0], np.int64)
        return VectorMap(
            header=Header(topic=TOPIC_MAP),
            map_id=f"sim:{self.name}",
            lane_id=np.arange(n, dtype=np.int64),
            lane_type=lane_type,
            lane_is_intersection=d["is_intersection"][:n].copy(),
            lane_speed_limit_mps=np.array([lane["speed"] for lane in lanes], np.float32),
            lane_left_neighbor_id=d["left_nb"][:n].astype(np.int64),
            lane_right_neighbor_id=d["right_nb"][:n].astype(np.int64),
            centerline_xy_m=cxy,
            centerline_offsets=coff,
            left_boundary_xy_m=lxy,
            left_boundary_offsets=loff,
            right_boundary_xy_m=rxy,
            right_boundary_offsets=roff,
            successor_ids=np.array([b for s in road_succ for b in s], np.int64),
            successor_offsets=s_off,
            predecessor_ids=np.array([a for p in road_pred for a in p], np.int64),
            predecessor_offsets=p_off,
            crossing_xy_m=xxy,
            crossing_offsets=xoff,
            sidewalk_xy_m=wxy,
            sidewalk_offsets=woff,
            drivable_xy_m=dxy,
            drivable_offsets=doff,
            stop_line_xy_m=sl_xy,
            stop_line_lane_id=sl_lane,
            light_lane_id=light_lanes,
            light_group=np.array([lanes[i]["group"] for i in light_lanes], np.int32),
            group_plan_s=np.array(self.plans, np.float32).reshape(-1, 3),
            group_offset_s=np.array(self.offsets, np.float32),
        )


# ----------------------------------------------------------------------------------------------
# Layouts.
# ----------------------------------------------------------------------------------------------
def _junction(
    name: str,
    angles: list[float],
    n_lanes: int,
    arm_len: float,
    r_junction: float,
    speed: float,
    roundabout_r: float = 0.0,
) -> MapData:
    """A junction at the origin with arms at ``angles`` (rad, ccw from east).

    Signalised (one group per arm plus a pedestrian phase) unless ``roundabout_r`` > 0, in which
    case the arms join a single-lane counter-clockwise ring of that radius with yield at entry.
    """
    b = _Builder(name)
    w = LANE_WIDTH_M
    hw = n_lanes * w
    n_arms = len(angles)
    signal = roundabout_r <= 0.0
    green, yellow, allred = 8.0, 3.0, 1.0
    per_arm = green + yellow + allred
    cross_len = 2 * (hw + 1.5)
    walk_start = per_arm * n_arms
    walk_end = walk_start + 4.0
    cycle = walk_end + cross_len / 1.1 + 1.0
    incoming: list[list[int]] = []
    outgoing: list[list[int]] = []
    for k, a in enumerate(angles):
        u, nrm = _unit(a), _unit(a + math.pi / 2)
        ins, outs = [], []
        for i in range(n_lanes):
            o = (i + 0.5) * w
            p_out, p_in = (r_junction + arm_len) * u + o * nrm, r_junction * u + o * nrm
            kw: dict = {}
            if signal:
                kw = {"stop_s": float(np.linalg.norm(p_out - p_in)) - 5.0, "group": k}
            ins.append(b.lane(_line(p_out, p_in), KIND_VEHICLE, w, speed, **kw))
            outs.append(
                b.lane(
                    _line(r_junction * u - o * nrm, (r_junction + arm_len) * u - o * nrm),
                    KIND_VEHICLE,
                    w,
                    speed,
                )
            )
            if signal:
                c = r_junction + 5.0
                b.stop_lines.append((np.stack([c * u + i * w * nrm, c * u + (i + 1) * w * nrm]), ins[-1]))
        for lanes in (ins, outs):
            for i, lane in enumerate(lanes):
                b.lanes[lane]["left_nb"] = lanes[i - 1] if i > 0 else -1
                b.lanes[lane]["right_nb"] = lanes[i + 1] if i + 1 < n_lanes else -1
        incoming.append(ins)
        outgoing.append(outs)
        if signal:
            b.plans.append((green, yellow, cycle - green - yellow))
            b.offsets.append(per_arm * k)

    if signal:
        # Connectors inside the junction.
        for ka, a in enumerate(angles):
            h_in = -_unit(a)
            for kb, bb in enumerate(angles):
                if ka == kb:
                    continue
                h_out = _unit(bb)
                cross = h_in[0] * h_out[1] - h_in[1] * h_out[0]
                turn = 0 if abs(cross) < 0.3 else (-1 if cross > 0 else 1)
                if n_lanes == 1:
                    pairs = [(0, 0)]
                elif turn == -1:
                    pairs = [(0, 0)]
                elif turn == 1:
                    pairs = [(n_lanes - 1, n_lanes - 1)]
                else:
                    pairs = [(i, i) for i in range(n_lanes)]
                for i, j in pairs:
                    li, lo = incoming[ka][i], outgoing[kb][j]
                    pts = _bezier(b.lanes[li]["pts"][-1], h_in, b.lanes[lo]["pts"][0], h_out)
                    c = b.lane(pts, KIND_VEHICLE, w, speed * 0.7, is_intersection=True, turn=turn)
                    b.connect(li, c)
                    b.connect(c, lo)
        hull = []
        for a in sorted(angles):
            u, nrm = _unit(a), _unit(a + math.pi / 2)
            hull += [r_junction * u - hw * nrm, r_junction * u + hw * nrm]
        b.drivable.append(np.array(hull))
    else:
        rr, delta = roundabout_r, 0.3
        marks = []  # (angle, kind, arm) around the ring, ccw
        for k, a in enumerate(angles):
            marks += [(a - delta, "exit", k), (a + delta, "entry", k)]
        marks.sort(key=lambda m: m[0])
        segs = []
        for i, (a0, _kind0, _k0) in enumerate(marks):
            a1 = marks[(i + 1) % len(marks)][0]
            if a1 <= a0:
                a1 += 2 * math.pi
            segs.append(b.lane(_arc(np.zeros(2), rr, a0, a1), KIND_VEHICLE, 4.0, 9.0, is_intersection=True))
        for i in range(len(segs)):
            b.connect(segs[i], segs[(i + 1) % len(segs)])
            b.drivable.append(_strip(b.lanes[segs[i]]["pts"], 5.0))
        for i, (am, kind, k) in enumerate(marks):
            ring_pt, ring_h = rr * _unit(am), _unit(am + math.pi / 2)
            if kind == "entry":
                li = incoming[k][0]
                pts = _bezier(b.lanes[li]["pts"][-1], -_unit(angles[k]), ring_pt, ring_h)
                c = b.lane(pts, KIND_VEHICLE, w, 7.0, is_intersection=True, yield_=True, turn=1)
                b.connect(li, c)
                b.connect(c, segs[i])
            else:
                lo = outgoing[k][0]
                pts = _bezier(ring_pt, ring_h, b.lanes[lo]["pts"][0], _unit(angles[k]))
                c = b.lane(pts, KIND_VEHICLE, w, 7.0, is_intersection=True, turn=1)
                b.connect(segs[i - 1], c)
                b.connect(c, lo)

    # Pedestrian network: sidewalks along each arm, corners between adjacent arms, crossings.
    r_c = r_junction + 2.5
    off = hw + 1.5
    order = sorted(range(n_arms), key=lambda k: angles[k])
    ped_kw = {"ped": (cycle, walk_start, walk_end)} if signal else {}
    for a in angles:
        u, nrm = _unit(a), _unit(a + math.pi / 2)
        for side in (1.0, -1.0):
            p0, p1 = r_c * u + side * off * nrm, (r_junction + arm_len) * u + side * off * nrm
            b.walk_pair(_line(p0, p1), road_side=-side, jay_dist=2 * off)
            b.sidewalks.append(_rect((r_junction + 1.0) * u + side * off * nrm, p1, SIDEWALK_WIDTH_M))
        p0, p1 = r_c * u + off * nrm, r_c * u - off * nrm
        b.walk_pair(_line(p0, p1, 1.0), kind=KIND_CROSS, **ped_kw)
        b.crossings.append(_rect(r_c * u + hw * nrm, r_c * u - hw * nrm, 3.0))
    for i, k in enumerate(order):
        k2 = order[(i + 1) % n_arms]
        u1, n1 = _unit(angles[k]), _unit(angles[k] + math.pi / 2)
        u2, n2 = _unit(angles[k2]), _unit(angles[k2] + math.pi / 2)
        p0, p1 = r_c * u1 + off * n1, r_c * u2 - off * n2
        b.walk_pair(_line(p0, p1))
        b.sidewalks.append(_rect(p0, p1, SIDEWALK_WIDTH_M))
    _link_walks(b)
    return b.build()


def _link_walks(b: _Builder) -> None:
    """Connect walk lanes whose end meets another's start (not its own reverse)."""
    walks = [i for i, lane in enumerate(b.lanes) if lane["kind"] in (KIND_WALK, KIND_CROSS)]
    starts = np.array([b.lanes[i]["pts"][0] for i in walks])
    for i in walks:
        end = b.lanes[i]["pts"][-1]
        d = np.linalg.norm(starts - end, axis=1)
        for j_idx in np.nonzero(d < 0.5)[0]:
            j = walks[j_idx]
            if j != b.lanes[i]["reverse"]:
                b.connect(i, j)


def _arterial() -> MapData:
    b = _Builder("arterial")
    w, n_lanes, half_len = LANE_WIDTH_M, 3, 300.0
    hw = n_lanes * w + BIKE_WIDTH_M
    speed = 16.7  # 60 km/h
    green, yellow = 30.0, 3.0
    cycle = 60.0
    b.plans.append((green, yellow, cycle - green - yellow))
    b.offsets.append(0.0)
    for direction in (1.0, -1.0):  # eastbound on the south side, westbound on the north side
        side = -direction
        x0, x1 = -half_len * direction, half_len * direction
        lanes = []
        stop_s = half_len - 6.0
        for i in range(n_lanes):
            y = side * (i + 0.5) * w
            lanes.append(
                b.lane(
                    _line(np.array([x0, y]), np.array([x1, y])),
                    KIND_VEHICLE,
                    w,
                    speed,
                    stop_s=stop_s,
                    group=0,
                )
            )
            b.stop_lines.append(
                (
                    np.array([[-6.0 * direction, side * i * w], [-6.0 * direction, side * (i + 1) * w]]),
                    lanes[-1],
                )
            )
        for i, lane in enumerate(lanes):
            b.lanes[lane]["left_nb"] = lanes[i - 1] if i > 0 else -1
            b.lanes[lane]["right_nb"] = lanes[i + 1] if i + 1 < n_lanes else -1
        y = side * (hw - BIKE_WIDTH_M / 2)
        bike = b.lane(
            _line(np.array([x0, y]), np.array([x1, y])), KIND_BIKE, BIKE_WIDTH_M, 6.0, stop_s=stop_s, group=0
        )
        b.stop_lines.append(
            (np.array([[-6.0 * direction, side * (hw - BIKE_WIDTH_M)], [-6.0 * direction, side * hw]]), bike)
        )
    off = hw + 1.5
    for side in (1.0, -1.0):
        for x0, x1 in ((-half_len, -2.0), (2.0, half_len)):
            p0, p1 = np.array([x0, side * off]), np.array([x1, side * off])
            # eastbound walk lane on the north side has the road on its right (-1)
            b.walk_pair(_line(p0, p1), road_side=-side, jay_dist=2 * off)
            b.sidewalks.append(_rect(p0, p1, SIDEWALK_WIDTH_M))
        b.sidewalks.append(_rect(np.array([-2.0, side * off]), np.array([2.0, side * off]), SIDEWALK_WIDTH_M))
        # short links across the crossing head on each sidewalk
        b.walk_pair(_line(np.array([-2.0, side * off]), np.array([0.0, side * off]), 1.0))
        b.walk_pair(_line(np.array([0.0, side * off]), np.array([2.0, side * off]), 1.0))
    cross_len = 2 * off
    b.walk_pair(
        _line(np.array([0.0, off]), np.array([0.0, -off]), 1.0),
        kind=KIND_CROSS,
        ped=(cycle, green + yellow + 1.0, green + yellow + 7.0),
    )
    if cycle - (green + yellow + 7.0) < cross_len / 1.4:
        raise ValueError("arterial: red phase too short for pedestrians")
    b.crossings.append(_rect(np.array([0.0, hw]), np.array([0.0, -hw]), 4.0))
    _link_walks(b)
    return b.build()


def build_map_data(name: str, seed: int = 0) -> MapData:
    """Build the simulator's lane graph (and its exported VectorMap) for a scenario.

    Args:
        name: one of :data:`SCENARIOS`.
        seed: reserved for randomised variants; the layouts are currently fixed per name, so
            the result depends only on ``name``.

    Raises:
        ValueError: unknown scenario name.
    """
    del seed
    if name == "intersection":
        return _junction(name, [0.0, math.pi / 2, math.pi, 3 * math.pi / 2], 2, 120.0, 14.0, 13.9)
    if name == "t_junction":
        return _junction(name, [0.0, math.pi, 3 * math.pi / 2], 1, 120.0, 10.0, 13.9)
    if name == "arterial":
        return _arterial()
    if name == "roundabout":
        return _junction(
            name, [0.0, math.pi / 2, math.pi, 3 * math.pi / 2], 1, 100.0, 36.0, 11.1, roundabout_r=22.0
        )
    raise ValueError(f"unknown scenario {name!r}; expected one of {', '.join(SCENARIOS)}")


def build_map(name: str, seed: int = 0) -> VectorMap:
    """The VectorMap (world frame) of a scenario; see :func:`build_map_data`."""
    return build_map_data(name, seed).vector_map
