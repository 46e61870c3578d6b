"""Lanelet2 OSM map (``.osm``) -> :class:`prescient.bus.messages.VectorMap`, through the ``lanelet2`` package.

Frame: ``lanelet2.projection.UtmProjector(Origin(lat, lon))``, i.e. UTM easting/northing minus
those of the origin: x east, y north (grid north of the UTM zone), metres, z dropped. The same
``--origin`` always gives the same coordinates, so maps and logs recorded on them line up.

Mapping (lanelets are read in id order):
  * Lanelets of subtype ``road``, ``highway``, ``play_street``, ``emergency_lane`` -> VEHICLE
    lanes, ``bus_lane`` -> BUS, ``bicycle_lane`` -> BIKE. Lane id = lanelet id; a two-way
    lanelet (passable both ways under the traffic rules) also gives the reverse lane, id
    ``lanelet id + REVERSED_ID_OFFSET``. Boundaries: the lanelet's left/right ways in the
    direction of travel. Centreline: both boundaries resampled by arc length to one point per
    ~``CENTERLINE_STEP_M`` and averaged. Speed limit: the traffic rules' value (the lanelet's
    ``speed_limit`` tag, else the German default for its ``location``).
  * Successors / neighbours: ``lanelet2.routing.RoutingGraph`` with
    ``traffic_rules.create(Locations.Germany, <participant>)`` per lane type (Vehicle,
    VehicleBus, Bicycle); neighbours are the adjacent same-direction lanes (AV2 semantics,
    lane change allowed or not). Predecessors are the reverse of the successors.
  * Intersection flag: the lanelet has a ``turn_direction`` tag (Autoware convention), or it
    branches off (a predecessor has several successors) or merges (a successor has several
    predecessors); Lanelet2 itself has no such flag.
  * Stop lines: the ``ref_line`` of each regulatory element of a forward lane (traffic_light,
    traffic_sign, all_way_stop; right_of_way only on its yield lanelets), first and last point.
  * Traffic lights: each ``traffic_light`` regulatory element is a signal group controlling the
    lanes that reference it. Lanelet2 stores no timing, so groups get a fixed-time plan with
    protected phases (green 8 s, yellow 3 s, all-red 1 s, one group after another), the groups
    whose stop lines lie within ``JUNCTION_RADIUS_M`` of each other sharing one cycle. The light
    positions (no VectorMap field holds them) come back in :attr:`Lanelet2Import.light_xy_m`.
  * Crosswalk lanelets and areas -> crossing polygons; walkway lanelets and areas -> sidewalks;
    every vehicle/bus/bike lanelet's outline -> a drivable polygon.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from prescient.bus import messages as m
from prescient.bus.errors import MissingExtraError
from prescient.bus.importers import InputError

CENTERLINE_STEP_M: Final = 1.0
REVERSED_ID_OFFSET: Final = 1 << 40  # lanelet ids of real maps stay far below (OSM ids < 2**34)
JUNCTION_RADIUS_M: Final = 50.0
MAX_ORIGIN_DISTANCE_M: Final = 200_000.0  # a map farther from --origin was given the wrong origin
GREEN_S, YELLOW_S, ALL_RED_S = 8.0, 3.0, 1.0  # as the simulator's procedural junctions
_LANE_SUBTYPES: Final = {
    "road": m.LaneType.VEHICLE,
    "highway": m.LaneType.VEHICLE,
    "play_street": m.LaneType.VEHICLE,
    "emergency_lane": m.LaneType.VEHICLE,
    "bus_lane": m.LaneType.BUS,
    "bicycle_lane": m.LaneType.BIKE,
}
_PARTICIPANT: Final[dict[int, str]] = {
    m.LaneType.VEHICLE: "Vehicle",
    m.LaneType.BUS: "VehicleBus",
    m.LaneType.BIKE: "Bicycle",
}
_CROSSING, _SIDEWALK = "crosswalk", "walkway"


@dataclass(frozen=True, eq=False)
class Lanelet2Import:
    """What an import produced.

    Attributes:
        vector_map: the map, in the local frame of the origin (m).
        light_xy_m: (T, 2) float64 position of each traffic-light head (mean of its linestring), m.
        light_group: (T,) int32 signal group (index into ``vector_map.group_plan_s``) of each head.
        skipped: lanelet subtypes that map to nothing here -> count (``parking``, ``stairs``...).
    """

    vector_map: m.VectorMap
    light_xy_m: np.ndarray
    light_group: np.ndarray
    skipped: dict[str, int] = field(default_factory=dict)


@dataclass
class _Lane:
    """One directed lane while it is being built; xy arrays are (P, 2) float64 local frame, m."""

    id: int
    type: int
    left: np.ndarray
    right: np.ndarray
    centre: np.ndarray
    speed_mps: float
    succ: list[int]
    left_nb: int
    right_nb: int
    turn_tag: bool


def _xy(ls: Any) -> np.ndarray:
    """(P, 2) float64 x, y of a lanelet2 linestring or polygon (local frame, m)."""
    return np.array([(p.x, p.y) for p in ls], np.float64).reshape(-1, 2)


def _resample(xy: np.ndarray, n: int) -> np.ndarray:
    """(P, 2) polyline -> (n, 2) points equally spaced by arc length (same frame)."""
    s = np.r_[0.0, np.cumsum(np.hypot(*np.diff(xy, axis=0).T))]
    q = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(q, s, xy[:, 0]), np.interp(q, s, xy[:, 1])], axis=1)


def _length_m(xy: np.ndarray) -> float:
    return float(np.hypot(*np.diff(xy, axis=0).T).sum())


def centerline(left: np.ndarray, right: np.ndarray, step_m: float = CENTERLINE_STEP_M) -> np.ndarray:
    """Centre of a lane between its boundaries, resampled every ~``step_m``.

    Args:
        left, right: (P, 2) / (Q, 2) boundaries in the direction of travel, m (any frame).
        step_m: wanted spacing, m; the spacing used divides the mean boundary length evenly.

    Returns:
        (n, 2) float64, n >= 2, in the frame of the inputs.
    """
    n = max(2, math.ceil(0.5 * (_length_m(left) + _length_m(right)) / step_m) + 1)
    return 0.5 * (_resample(left, n) + _resample(right, n))


# ----------------------------------------------------------------------------------------------
# Loading.
# ----------------------------------------------------------------------------------------------
def _lanelet2() -> Any:
    """The lanelet2 package, or MissingExtraError naming the extra that installs it."""
    try:
        import lanelet2  # optional: the `lanelet2` extra
        import lanelet2.routing  # noqa: F401 (submodules used through the package)
        import lanelet2.traffic_rules  # noqa: F401
    except ModuleNotFoundError as e:
        raise MissingExtraError("lanelet2", "lanelet2") from e
    return lanelet2


def _check_origin(path: Path, lat_deg: float, lon_deg: float) -> None:
    if not (math.isfinite(lat_deg) and -80.0 <= lat_deg <= 84.0):  # where UTM is defined
        raise InputError(path, f"origin latitude {lat_deg} outside UTM's [-80, 84] deg")
    if not (math.isfinite(lon_deg) and -180.0 <= lon_deg <= 180.0):
        raise InputError(path, f"origin longitude {lon_deg} outside [-180, 180] deg")


def _load(path: Path, lat_deg: float, lon_deg: float) -> Any:
    """The LaneletMap in the origin's local frame; every parser error is an InputError."""
    _check_origin(path, lat_deg, lon_deg)
    if not path.is_file():
        raise InputError(path, "file not found")
    ll2 = _lanelet2()
    projector = ll2.projection.UtmProjector(ll2.io.Origin(lat_deg, lon_deg))
    try:
        lmap, errors = ll2.io.loadRobust(str(path), projector)
    except RuntimeError as e:  # lanelet2 raises RuntimeError for unreadable XML
        raise InputError(path, f"not a Lanelet2 OSM map: {_one_line(str(e))}") from e
    # loadRobust lists a header line ("Errors ocurred while parsing ...:") before the errors.
    errors = [_one_line(e) for e in errors if not e.rstrip().endswith(":")]
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        hint = " (is --origin the map's origin?)" if "UTM zone" in errors[0] else ""
        raise InputError(path, f"{errors[0]}{more}{hint}")
    if len(lmap.laneletLayer) == 0:
        raise InputError(path, "no lanelets (no relation tagged type=lanelet)")
    return lmap


def _one_line(text: str) -> str:
    """lanelet2's multi-line messages ("Errors ...:\\n\\t- ...") as one line."""
    return " ".join(part.strip(" \t-") for part in text.splitlines() if part.strip(" \t-"))


# ----------------------------------------------------------------------------------------------
# Lanes.
# ----------------------------------------------------------------------------------------------
def _lane_id(cll: Any) -> int:
    return int(cll.id) + (REVERSED_ID_OFFSET if cll.inverted() else 0)


def _graphs(ll2: Any, lmap: Any, types: set[int]) -> dict[int, tuple[Any, Any]]:
    """(traffic rules, routing graph) per lane type present."""
    tr = ll2.traffic_rules
    out = {}
    for t in sorted(types):
        rules = tr.create(tr.Locations.Germany, getattr(tr.Participants, _PARTICIPANT[t]))
        out[t] = (rules, ll2.routing.RoutingGraph(lmap, rules))
    return out


def _bound(path: Path, lid: int, side: str, ls: Any) -> np.ndarray:
    xy = _xy(ls)
    if len(xy) < 2 or _length_m(xy) <= 0.0:
        raise InputError(path, f"lanelet {lid}: {side} bound way {ls.id} has fewer than 2 distinct points")
    return xy


def _neighbour(graph: Any, cll: Any, side: str) -> int:
    """Adjacent same-direction lane on ``side`` ('left' / 'right'), -1 if none."""
    nb = getattr(graph, side)(cll) or getattr(graph, f"adjacent{side.title()}")(cll)
    return _lane_id(nb) if nb is not None else -1


def _directed_lane(path: Path, cll: Any, lane_type: int, rules: Any, graph: Any) -> _Lane:
    left = _bound(path, cll.id, "left", cll.leftBound)
    right = _bound(path, cll.id, "right", cll.rightBound)
    return _Lane(
        id=_lane_id(cll),
        type=lane_type,
        left=left,
        right=right,
        centre=centerline(left, right),
        speed_mps=float(rules.speedLimit(cll).speedLimit) / 3.6,  # lanelet2 gives km/h
        succ=[_lane_id(f) for f in graph.following(cll, False)],
        left_nb=_neighbour(graph, cll, "left"),
        right_nb=_neighbour(graph, cll, "right"),
        turn_tag="turn_direction" in cll.attributes,
    )


def _lanes(path: Path, ll2: Any, lmap: Any) -> tuple[list[_Lane], list[Any], dict[str, int]]:
    """Directed lanes (id order), the forward lanelets they came from, skipped subtype counts."""
    typed: list[tuple[Any, int]] = []
    skipped: dict[str, int] = {}
    for ll in sorted(lmap.laneletLayer, key=lambda x: x.id):
        sub = ll.attributes["subtype"] if "subtype" in ll.attributes else "road"  # Lanelet2's default
        if sub in _LANE_SUBTYPES:
            typed.append((ll, _LANE_SUBTYPES[sub]))
        elif sub not in (_CROSSING, _SIDEWALK):
            skipped[sub] = skipped.get(sub, 0) + 1
    graphs = _graphs(ll2, lmap, {t for _, t in typed})
    lanes, forward = [], []
    for ll, t in typed:
        rules, graph = graphs[t]
        for cll in (ll, ll.invert()):
            if rules.canPass(cll):
                lanes.append(_directed_lane(path, cll, t, rules, graph))
                if not cll.inverted():
                    forward.append(ll)
    lanes.sort(key=lambda ln: ln.id)
    known = {ln.id for ln in lanes}
    for ln in lanes:  # a successor of another type (bus lane -> road) stays; unknown ids do not
        ln.succ = [s for s in ln.succ if s in known]
        ln.left_nb, ln.right_nb = (x if x in known else -1 for x in (ln.left_nb, ln.right_nb))
    return lanes, forward, skipped


def _intersection_flags(lanes: list[_Lane]) -> np.ndarray:
    """(L,) bool: tagged turn lanes, branches and merges (see the module docstring)."""
    n_succ = {ln.id: len(ln.succ) for ln in lanes}
    n_pred: dict[int, int] = {}
    preds: dict[int, list[int]] = {}
    for ln in lanes:
        for s in ln.succ:
            n_pred[s] = n_pred.get(s, 0) + 1
            preds.setdefault(s, []).append(ln.id)
    return np.array(
        [
            ln.turn_tag
            or any(n_succ[p] > 1 for p in preds.get(ln.id, []))
            or any(n_pred[s] > 1 for s in ln.succ)
            for ln in lanes
        ],
        bool,
    ).reshape(len(lanes))


# ----------------------------------------------------------------------------------------------
# Regulatory elements.
# ----------------------------------------------------------------------------------------------
def _ref_lines(ll2: Any, reg: Any, ll: Any) -> list[np.ndarray]:
    """(2, 2) stop-line segments (first, last point) that ``reg`` puts on lanelet ``ll``."""
    if isinstance(reg, ll2.core.RightOfWay) and ll.id not in {y.id for y in reg.yieldLanelets()}:
        return []  # the right-of-way side does not stop
    params = reg.parameters
    lines = params["ref_line"] if "ref_line" in params.keys() else []
    return [xy[[0, -1]] for xy in (_xy(ls) for ls in lines) if len(xy) >= 2]


def _regulatory(
    ll2: Any, forward: list[Any]
) -> tuple[
    list[tuple[np.ndarray, int]], dict[int, list[int]], dict[int, list[np.ndarray]], dict[int, np.ndarray]
]:
    """Stop lines ``(segment, lane id)``, and per traffic_light element id: its lanes, light
    positions (each (2,) m) and a reference point (stop-line middle, else a lane's end)."""
    stops: list[tuple[np.ndarray, int]] = []
    light_lanes: dict[int, list[int]] = {}
    light_xy: dict[int, list[np.ndarray]] = {}
    anchor: dict[int, np.ndarray] = {}
    for ll in forward:
        for reg in ll.regulatoryElements:
            segments = _ref_lines(ll2, reg, ll)
            stops += [(seg, int(ll.id)) for seg in segments]
            if not isinstance(reg, ll2.core.TrafficLight):
                continue
            light_lanes.setdefault(reg.id, []).append(int(ll.id))
            if reg.id not in light_xy:
                light_xy[reg.id] = [_xy(h).mean(axis=0) for h in reg.trafficLights if len(h)]
                anchor[reg.id] = segments[0].mean(axis=0) if segments else _xy(ll.centerline)[-1]
    return stops, light_lanes, light_xy, anchor


def _signal_plans(anchor: dict[int, np.ndarray]) -> tuple[dict[int, int], np.ndarray, np.ndarray]:
    """Group index per traffic_light element, (G, 3) plans and (G,) offsets, s.

    Elements whose reference points lie within JUNCTION_RADIUS_M of each other (transitively)
    form one junction and take turns: group k of n is green from ``k * 12 s`` in an ``n * 12 s``
    cycle, so two approaches of one junction are never green together.
    """
    ids = sorted(anchor)
    junction = list(range(len(ids)))  # union-find over the reference points

    def root(i: int) -> int:
        while junction[i] != i:
            i = junction[i]
        return i

    for i in range(len(ids)):
        for j in range(i):
            if np.hypot(*(anchor[ids[i]] - anchor[ids[j]])) <= JUNCTION_RADIUS_M:
                junction[root(i)] = root(j)
    members: dict[int, list[int]] = {}
    for i in range(len(ids)):
        members.setdefault(root(i), []).append(i)
    slot_s = GREEN_S + YELLOW_S + ALL_RED_S
    plans, offsets = np.zeros((len(ids), 3), np.float32), np.zeros(len(ids), np.float32)
    for group in members.values():
        for k, i in enumerate(group):
            plans[i] = (GREEN_S, YELLOW_S, len(group) * slot_s - GREEN_S - YELLOW_S)
            offsets[i] = k * slot_s
    return {rid: i for i, rid in enumerate(ids)}, plans, offsets


# ----------------------------------------------------------------------------------------------
# Polygons and packing.
# ----------------------------------------------------------------------------------------------
def _polygons(lmap: Any, subtype: str) -> list[np.ndarray]:
    """Outlines (P, 2) of the lanelets (left bound, then right bound reversed) and areas of a subtype."""
    out = []
    for ll in sorted(lmap.laneletLayer, key=lambda x: x.id):
        if "subtype" in ll.attributes and ll.attributes["subtype"] == subtype:
            out.append(np.concatenate([_xy(ll.leftBound), _xy(ll.rightBound)[::-1]]))
    for area in sorted(lmap.areaLayer, key=lambda x: x.id):
        if "subtype" in area.attributes and area.attributes["subtype"] == subtype:
            out.append(_xy(area.outerBoundPolygon()))
    return out


def _csr(parts: list[np.ndarray], width: int | None, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    """(flat, offsets (len+1,) int64) of a list of arrays; ``width``: trailing dim of points."""
    offsets = np.zeros(len(parts) + 1, np.int64)
    offsets[1:] = np.cumsum([len(p) for p in parts])
    if not parts:
        return np.zeros((0, width) if width else (0,), dtype), offsets
    return np.concatenate(parts).astype(dtype), offsets


def _check_extent(path: Path, lanes: list[_Lane]) -> None:
    far = max(float(np.abs(ln.centre).max()) for ln in lanes)
    if far > MAX_ORIGIN_DISTANCE_M:
        raise InputError(
            path, f"the map lies {far / 1000:.0f} km from --origin (limit {MAX_ORIGIN_DISTANCE_M / 1000:.0f} km): "
            "pass the map's own origin"
        )  # fmt: skip


def _vector_map(
    path: Path, lanes: list[_Lane], polys: dict[str, list[np.ndarray]], reg: tuple
) -> m.VectorMap:
    """Pack lanes, polygons and ``reg = (stops, light lanes, group of element, plans, offsets)``."""
    stops, light_lanes, group_of, plans, offsets = reg
    preds: dict[int, list[int]] = {ln.id: [] for ln in lanes}
    for ln in lanes:
        for s in ln.succ:
            preds[s].append(ln.id)
    f32, i64 = np.float32, np.int64
    cl, cl_o = _csr([ln.centre for ln in lanes], 2, f32)
    lb, lb_o = _csr([ln.left for ln in lanes], 2, f32)
    rb, rb_o = _csr([ln.right for ln in lanes], 2, f32)
    su, su_o = _csr([np.array(ln.succ, i64) for ln in lanes], None, i64)
    pr, pr_o = _csr([np.array(preds[ln.id], i64) for ln in lanes], None, i64)
    cx, cx_o = _csr(polys["crossing"], 2, f32)
    sw, sw_o = _csr(polys["sidewalk"], 2, f32)
    dr, dr_o = _csr(polys["drivable"], 2, f32)
    controlled = [(lane, group_of[rid]) for rid, lids in sorted(light_lanes.items()) for lane in lids]
    n = len(lanes)
    return m.VectorMap(
        header=m.Header(topic=m.TOPIC_MAP),
        map_id=f"lanelet2:{path.stem}",
        lane_id=np.array([ln.id for ln in lanes], i64).reshape(n),
        lane_type=np.array([ln.type for ln in lanes], np.uint8).reshape(n),
        lane_is_intersection=_intersection_flags(lanes),
        lane_speed_limit_mps=np.array([ln.speed_mps for ln in lanes], f32).reshape(n),
        lane_left_neighbor_id=np.array([ln.left_nb for ln in lanes], i64).reshape(n),
        lane_right_neighbor_id=np.array([ln.right_nb for ln in lanes], i64).reshape(n),
        centerline_xy_m=cl,
        centerline_offsets=cl_o,
        left_boundary_xy_m=lb,
        left_boundary_offsets=lb_o,
        right_boundary_xy_m=rb,
        right_boundary_offsets=rb_o,
        successor_ids=su,
        successor_offsets=su_o,
        predecessor_ids=pr,
        predecessor_offsets=pr_o,
        crossing_xy_m=cx,
        crossing_offsets=cx_o,
        sidewalk_xy_m=sw,
        sidewalk_offsets=sw_o,
        drivable_xy_m=dr,
        drivable_offsets=dr_o,
        stop_line_xy_m=np.array([s for s, _ in stops], f32).reshape(-1, 2, 2),
        stop_line_lane_id=np.array([lane for _, lane in stops], i64),
        light_lane_id=np.array([lane for lane, _ in controlled], i64),
        light_group=np.array([g for _, g in controlled], np.int32),
        group_plan_s=plans,
        group_offset_s=offsets,
    )


def load_lanelet2_map(path: str | Path, origin_lat_deg: float, origin_lon_deg: float) -> Lanelet2Import:
    """Read a Lanelet2 OSM map into a VectorMap in the local frame of the origin.

    Args:
        path: the ``.osm`` file.
        origin_lat_deg, origin_lon_deg: WGS84 origin of the local frame (x east, y north, m).

    Raises:
        InputError: one line naming the file and the problem (not XML / not OSM, parser errors
            such as a lanelet with a missing way, no lanelets, no drivable lanelet, wrong origin).
        MissingExtraError: the lanelet2 package is not installed.
    """
    path = Path(path)
    lmap = _load(path, origin_lat_deg, origin_lon_deg)
    ll2 = _lanelet2()
    lanes, forward, skipped = _lanes(path, ll2, lmap)
    if not lanes:
        raise InputError(path, f"no drivable lanelet (subtypes {sorted(_LANE_SUBTYPES)}); found {skipped}")
    _check_extent(path, lanes)
    stops, light_lanes, light_xy, anchor = _regulatory(ll2, forward)
    group_of, plans, offsets = _signal_plans(anchor)
    by_id = {ln.id: ln for ln in lanes}
    polys = {
        "crossing": _polygons(lmap, _CROSSING),
        "sidewalk": _polygons(lmap, _SIDEWALK),
        "drivable": [np.concatenate([by_id[ll.id].left, by_id[ll.id].right[::-1]]) for ll in forward],
    }
    vmap = _vector_map(path, lanes, polys, (stops, light_lanes, group_of, plans, offsets))
    heads = [(xy, group_of[rid]) for rid in sorted(light_xy) for xy in light_xy[rid]]
    return Lanelet2Import(
        vector_map=vmap,
        light_xy_m=np.array([xy for xy, _ in heads], np.float64).reshape(-1, 2),
        light_group=np.array([g for _, g in heads], np.int32),
        skipped=skipped,
    )
