"""The simulator's lane graph (:class:`MapData`) of an imported map (a VectorMap, e.g. from Lanelet2).

``prescient sim --map MAP.json`` drives on it. What the VectorMap does not say is filled in:
  * Road lanes: its vehicle/bus lanes (VEHICLE kind) and bike lanes, in lane-id order, with
    their centrelines, width = mean distance between the boundaries, speed limit (0 = unknown ->
    ``DEFAULT_SPEED_MPS``, lowered in curves as for the procedural maps), successors, neighbours
    (dropped when the two lanes' lengths differ by more than 20 %: the kernels need parallel
    neighbours), stop line (arc length where its segment crosses the centreline) and signal group.
    A lane with a light but no stop line stops at its end. Turn: from the heading change.
  * Pedestrians: each crossing polygon becomes a crossing walk lane (both directions) across the
    road, perpendicular to the nearest lane, plus a short sidewalk at each end (``STUB_M`` each way
    along the road), so pedestrians spawn near crossings and cross them. Unsignalised: pedestrians
    wait for a gap in traffic. No jaywalking (the sidewalks do not follow the road).
  * Ego turnarounds at dead ends, and the map bounds, come from :class:`MapBuilder` as usual.
The sim re-exports its own VectorMap (lane ids = its indices, ``map_id`` ``sim:<imported map_id>``).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from prescient.bus.messages import LaneType, VectorMap
from prescient.sim_sensors.config import ClassMix
from prescient.sim_sensors.layout import KIND_BIKE, KIND_CROSS, KIND_VEHICLE, KIND_WALK
from prescient.sim_sensors.maps.builder import MapBuilder
from prescient.sim_sensors.maps.data import MapData
from prescient.sim_sensors.maps.geometry import line, strip

DEFAULT_SPEED_MPS = 13.9  # 50 km/h where the map gives no limit
STUB_M = 8.0  # sidewalk length on each side of a crossing end
_TURN_RAD = 0.5  # heading change that makes a lane a turn (~30 deg)
_MAX_STOP_LINE_OFFSET_M = 5.0  # a stop line farther than this from the centreline is ignored


def _csr_row(flat: np.ndarray, offsets: np.ndarray, i: int) -> np.ndarray:
    return flat[offsets[i] : offsets[i + 1]]


def _arc_length(pts: np.ndarray) -> np.ndarray:
    """(n,) cumulative arc length of a (n, 2) polyline, m."""
    return np.r_[0.0, np.cumsum(np.hypot(*np.diff(pts, axis=0).T))]


def _resample(pts: np.ndarray, n: int) -> np.ndarray:
    s = _arc_length(pts)
    q = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(q, s, pts[:, 0]), np.interp(q, s, pts[:, 1])], axis=1)


def _width_m(left: np.ndarray, right: np.ndarray, n: int) -> float:
    """Mean distance between the boundaries (each resampled to ``n`` points by arc length), m."""
    return float(np.hypot(*(_resample(left, n) - _resample(right, n)).T).mean())


def _turn(pts: np.ndarray) -> int:
    """-1 left, 0 straight, +1 right (the MapData convention) from the start and end headings."""
    h0, h1 = pts[1] - pts[0], pts[-1] - pts[-2]
    d = math.atan2(h0[0] * h1[1] - h0[1] * h1[0], float(h0 @ h1))  # + ccw (left)
    return 0 if abs(d) < _TURN_RAD else (-1 if d > 0 else 1)


def _project(pts: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """(arc length s, distance) of the point of polyline ``pts`` (n, 2) nearest to ``p`` (2,), m."""
    a, seg = pts[:-1], np.diff(pts, axis=0)
    t = np.clip(np.einsum("ij,ij->i", p - a, seg) / np.maximum(np.einsum("ij,ij->i", seg, seg), 1e-12), 0, 1)
    d = np.hypot(*(a + t[:, None] * seg - p).T)
    k = int(np.argmin(d))
    return float(_arc_length(pts)[k] + t[k] * np.hypot(*seg[k])), float(d[k])


def _stop_s(pts: np.ndarray, seg: np.ndarray) -> float:
    """Arc length (m) where stop-line segment ``seg`` (2, 2) crosses centreline ``pts``; -1 if far."""
    cum = _arc_length(pts)
    p, r = seg[0], seg[1] - seg[0]
    for k in range(len(pts) - 1):
        q, e = pts[k], pts[k + 1] - pts[k]
        den = r[0] * e[1] - r[1] * e[0]
        if abs(den) < 1e-12:
            continue  # parallel: no single crossing point
        w = q - p
        t, u = (w[0] * e[1] - w[1] * e[0]) / den, (w[0] * r[1] - w[1] * r[0]) / den
        if 0.0 <= t <= 1.0 and 0.0 <= u <= 1.0:
            return float(cum[k] + u * np.hypot(*e))
    s, dist = _project(pts, seg.mean(axis=0))  # a stop line short of the centreline
    return s if dist <= _MAX_STOP_LINE_OFFSET_M else -1.0


def _add_road_lanes(b: MapBuilder, vmap: VectorMap) -> dict[int, int]:
    """Road lanes in lane-id order; returns lane id -> builder index."""
    index = {int(lid): i for i, lid in enumerate(vmap.lane_id)}
    group_of = {int(lid): int(g) for lid, g in zip(vmap.light_lane_id, vmap.light_group, strict=True)}
    for i, lid in enumerate(vmap.lane_id):
        pts = _csr_row(vmap.centerline_xy_m, vmap.centerline_offsets, i).astype(np.float64)
        left = _csr_row(vmap.left_boundary_xy_m, vmap.left_boundary_offsets, i).astype(np.float64)
        right = _csr_row(vmap.right_boundary_xy_m, vmap.right_boundary_offsets, i).astype(np.float64)
        limit = float(vmap.lane_speed_limit_mps[i]) or DEFAULT_SPEED_MPS
        kind = KIND_BIKE if vmap.lane_type[i] == LaneType.BIKE else KIND_VEHICLE
        b.lane(
            pts, kind, _width_m(left, right, len(pts)), limit,
            group=group_of.get(int(lid), -1), is_intersection=bool(vmap.lane_is_intersection[i]), turn=_turn(pts),
        )  # fmt: skip
    for seg, lid in zip(vmap.stop_line_xy_m.astype(np.float64), vmap.stop_line_lane_id, strict=True):
        lane = b.lanes[index[int(lid)]]
        b.stop_lines.append((seg, index[int(lid)]))  # re-exported on the sim's own VectorMap
        s = _stop_s(lane["pts"], seg)
        if s >= 0 and (lane["stop_s"] < 0 or s < lane["stop_s"]):  # the first line on the lane counts
            lane["stop_s"] = s
    for lane in b.lanes:
        if lane["group"] >= 0 and lane["stop_s"] < 0:
            lane["stop_s"] = max(0.0, float(_arc_length(lane["pts"])[-1]) - 1.0)
    return index


def _link_road_lanes(b: MapBuilder, vmap: VectorMap, index: dict[int, int]) -> None:
    """Successors and (parallel) neighbours from the VectorMap's ids."""
    lengths = [float(_arc_length(lane["pts"])[-1]) for lane in b.lanes]
    for i in range(len(vmap.lane_id)):
        for sid in _csr_row(vmap.successor_ids, vmap.successor_offsets, i):
            if int(sid) in index:
                b.connect(i, index[int(sid)])
        for key, nb in (
            ("left_nb", vmap.lane_left_neighbor_id[i]),
            ("right_nb", vmap.lane_right_neighbor_id[i]),
        ):
            j = index.get(int(nb), -1)
            if j >= 0 and abs(lengths[i] - lengths[j]) <= 0.2 * max(lengths[i], lengths[j]):
                b.lanes[i][key] = j


def _add_crossing(b: MapBuilder, poly: np.ndarray, n_road: int) -> None:
    """Crossing walk lanes across ``poly`` (P, 2), and sidewalk stubs at both ends."""
    c = poly.mean(axis=0)
    best = min(range(n_road), key=lambda i: _project(b.lanes[i]["pts"], c)[1])
    pts = b.lanes[best]["pts"]
    s, _ = _project(pts, c)
    k = min(int(np.searchsorted(_arc_length(pts), s)), len(pts) - 1)
    h = pts[max(k, 1)] - pts[max(k, 1) - 1]
    h = h / max(float(np.hypot(*h)), 1e-9)  # road direction at the crossing
    axis = np.array([-h[1], h[0]])  # pedestrians walk across it
    t = (poly - c) @ axis
    e0, e1 = c + t.min() * axis, c + t.max() * axis
    b.walk_pair(line(e0, e1, 1.0), kind=KIND_CROSS)
    for e in (e0, e1):
        for a, z in ((e - STUB_M * h, e), (e, e + STUB_M * h)):
            b.walk_pair(line(a, z, 1.0))
            b.sidewalks.append(strip(np.stack([a, z]), 2.0))


def map_data_from_vector_map(vmap: VectorMap) -> MapData:
    """The simulator's lane graph of an imported map (see the module docstring).

    Raises:
        ValueError: no vehicle lane, or none where traffic can enter the map (no lane without a
            predecessor): the spawner needs both.
    """
    b = MapBuilder(vmap.map_id)
    index = _add_road_lanes(b, vmap)
    _link_road_lanes(b, vmap, index)
    n_road = len(b.lanes)
    has_pred = {j for succ in b.succ for j in succ}
    if not any(lane["kind"] == KIND_VEHICLE and i not in has_pred for i, lane in enumerate(b.lanes)):
        raise ValueError(
            f"map {vmap.map_id!r}: no vehicle lane where traffic enters (every lane has a predecessor)"
        )
    for k in range(len(vmap.crossing_offsets) - 1):
        poly = _csr_row(vmap.crossing_xy_m, vmap.crossing_offsets, k).astype(np.float64)
        if len(poly) >= 3:
            _add_crossing(b, poly, n_road)
            b.crossings.append(poly)
    for k in range(len(vmap.sidewalk_offsets) - 1):
        b.sidewalks.append(_csr_row(vmap.sidewalk_xy_m, vmap.sidewalk_offsets, k).astype(np.float64))
    b.link_walks()
    b.plans = [(float(p[0]), float(p[1]), float(p[2])) for p in vmap.group_plan_s]
    b.offsets = [float(o) for o in vmap.group_offset_s]
    return b.build()


def class_mix_for(md: MapData, mix: ClassMix | None = None) -> ClassMix:
    """``mix`` (default ClassMix()) without pedestrians and animals when the map has no walk lanes.

    Pedestrians and animals spawn on walk lanes, which an imported map only has at crossings.
    """
    mix = mix or ClassMix()
    if np.any(md.kind == KIND_WALK):
        return mix
    return dataclasses.replace(mix, pedestrian=0.0, animal=0.0)


def load_map_data(path: str) -> tuple[MapData, ClassMix]:
    """``prescient sim --map FILE``: the lane graph of a map JSON file and the class mix it allows.

    Raises:
        StartupError: the file cannot be read or the map cannot be driven on, in one line.
    """
    from prescient.bus.errors import StartupError
    from prescient.bus.importers import InputError
    from prescient.bus.importers.map_file import read_map_json

    try:
        md = map_data_from_vector_map(read_map_json(path))
    except (InputError, ValueError) as e:
        raise StartupError(f"--map: {e}") from e
    return md, class_mix_for(md)
