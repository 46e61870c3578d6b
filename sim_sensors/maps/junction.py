"""Junction layouts: signalised 3- / 4-way intersections and a single-lane roundabout.

Arms point outward from the origin at given angles (rad, ccw from east). Right-hand traffic:
incoming lanes lie left of an arm's outward axis, outgoing lanes right of it. Signalised
junctions give each arm its own signal group (protected phases) followed by an all-red
pedestrian phase; the roundabout has yield at entry and unsignalised crossings.
"""

from __future__ import annotations

import math

import numpy as np

from prescient.sim_sensors.layout import KIND_CROSS, KIND_VEHICLE
from prescient.sim_sensors.maps.builder import LANE_WIDTH_M, SIDEWALK_WIDTH_M, MapBuilder
from prescient.sim_sensors.maps.data import MapData
from prescient.sim_sensors.maps.geometry import arc, bezier, line, rect, strip, unit

# Signal timing per arm (s): green, yellow, all-red.
_GREEN_S, _YELLOW_S, _ALLRED_S = 8.0, 3.0, 1.0


def _add_arms(
    b: MapBuilder,
    angles: list[float],
    n_lanes: int,
    arm_len: float,
    r_junction: float,
    speed: float,
    cycle: float,
) -> tuple[list[list[int]], list[list[int]]]:
    """Incoming and outgoing lanes of every arm (with stop lines and signal groups if ``cycle``).

    Returns:
        ``(incoming, outgoing)``: per arm, lane indices ordered from the axis outward.
    """
    w = LANE_WIDTH_M
    signal = cycle > 0.0
    incoming: list[list[int]] = []
    outgoing: list[list[int]] = []
    for k, a in enumerate(angles):
        u, nrm = unit(a), unit(a + math.pi / 2)
        ins, outs = [], []
        for i in range(n_lanes):
            o = (i + 0.5) * w
            p_out, p_in = (r_junction + arm_len) * u + o * nrm, r_junction * u + o * nrm
            kw: dict = {}
            if signal:
                kw = {"stop_s": float(np.linalg.norm(p_out - p_in)) - 5.0, "group": k}
            ins.append(b.lane(line(p_out, p_in), KIND_VEHICLE, w, speed, **kw))
            outs.append(
                b.lane(
                    line(r_junction * u - o * nrm, (r_junction + arm_len) * u - o * nrm),
                    KIND_VEHICLE,
                    w,
                    speed,
                )
            )
            if signal:
                c = r_junction + 5.0
                b.stop_lines.append((np.stack([c * u + i * w * nrm, c * u + (i + 1) * w * nrm]), ins[-1]))
        b.set_neighbours(ins)
        b.set_neighbours(outs)
        incoming.append(ins)
        outgoing.append(outs)
        if signal:
            b.plans.append((_GREEN_S, _YELLOW_S, cycle - _GREEN_S - _YELLOW_S))
            b.offsets.append((_GREEN_S + _YELLOW_S + _ALLRED_S) * k)
    return incoming, outgoing


def _lane_pairs(turn: int, n_lanes: int) -> list[tuple[int, int]]:
    """(incoming, outgoing) lane pairs joined for a movement: left / right turns use the
    innermost / outermost lane only, straight on joins every lane to its twin."""
    if n_lanes == 1 or turn == -1:
        return [(0, 0)]
    if turn == 1:
        return [(n_lanes - 1, n_lanes - 1)]
    return [(i, i) for i in range(n_lanes)]


def _add_connectors(
    b: MapBuilder,
    angles: list[float],
    n_lanes: int,
    lanes: tuple[list[list[int]], list[list[int]]],
    speed: float,
) -> None:
    """Bezier connectors for every movement between different arms of a signalised junction."""
    incoming, outgoing = lanes
    for ka, a in enumerate(angles):
        h_in = -unit(a)
        for kb, bb in enumerate(angles):
            if ka == kb:
                continue
            h_out = unit(bb)
            cross = h_in[0] * h_out[1] - h_in[1] * h_out[0]
            turn = 0 if abs(cross) < 0.3 else (-1 if cross > 0 else 1)
            for i, j in _lane_pairs(turn, n_lanes):
                li, lo = incoming[ka][i], outgoing[kb][j]
                pts = bezier(b.lanes[li]["pts"][-1], h_in, b.lanes[lo]["pts"][0], h_out)
                c = b.lane(pts, KIND_VEHICLE, LANE_WIDTH_M, speed * 0.7, is_intersection=True, turn=turn)
                b.connect(li, c)
                b.connect(c, lo)


def _add_ring(
    b: MapBuilder, angles: list[float], lanes: tuple[list[list[int]], list[list[int]]], ring_r: float
) -> None:
    """Counter-clockwise single-lane ring of radius ``ring_r`` (m) with entry and exit connectors."""
    incoming, outgoing = lanes
    delta = 0.3
    marks = []  # (angle, kind, arm) around the ring, ccw
    for k, a in enumerate(angles):
        marks += [(a - delta, "exit", k), (a + delta, "entry", k)]
    marks.sort(key=lambda m: m[0])
    segs = []
    for i, (a0, _kind0, _k0) in enumerate(marks):
        a1 = marks[(i + 1) % len(marks)][0]
        if a1 <= a0:
            a1 += 2 * math.pi
        segs.append(b.lane(arc(np.zeros(2), ring_r, a0, a1), KIND_VEHICLE, 4.0, 9.0, is_intersection=True))
    for i in range(len(segs)):
        b.connect(segs[i], segs[(i + 1) % len(segs)])
        b.drivable.append(strip(b.lanes[segs[i]]["pts"], 5.0))
    for i, (am, kind, k) in enumerate(marks):
        ring_pt, ring_h = ring_r * unit(am), unit(am + math.pi / 2)
        if kind == "entry":
            li = incoming[k][0]
            pts = bezier(b.lanes[li]["pts"][-1], -unit(angles[k]), ring_pt, ring_h)
            c = b.lane(pts, KIND_VEHICLE, LANE_WIDTH_M, 7.0, is_intersection=True, yield_=True, turn=1)
            b.connect(li, c)
            b.connect(c, segs[i])
        else:
            lo = outgoing[k][0]
            pts = bezier(ring_pt, ring_h, b.lanes[lo]["pts"][0], unit(angles[k]))
            c = b.lane(pts, KIND_VEHICLE, LANE_WIDTH_M, 7.0, is_intersection=True, turn=1)
            b.connect(segs[i - 1], c)
            b.connect(c, lo)


def _add_walks(
    b: MapBuilder, angles: list[float], r_junction: float, arm_len: float, hw: float, ped_kw: dict
) -> None:
    """Sidewalks along each arm, corners between adjacent arms, a crossing on each arm.

    Args:
        hw: half width of the road (m); ped_kw: crossing walk window (``ped``) if signalised.
    """
    r_c = r_junction + 2.5
    off = hw + 1.5
    n_arms = len(angles)
    order = sorted(range(n_arms), key=lambda k: angles[k])
    for a in angles:
        u, nrm = unit(a), unit(a + math.pi / 2)
        for side in (1.0, -1.0):
            p0, p1 = r_c * u + side * off * nrm, (r_junction + arm_len) * u + side * off * nrm
            b.walk_pair(line(p0, p1), road_side=-side, jay_dist=2 * off)
            b.sidewalks.append(rect((r_junction + 1.0) * u + side * off * nrm, p1, SIDEWALK_WIDTH_M))
        p0, p1 = r_c * u + off * nrm, r_c * u - off * nrm
        b.walk_pair(line(p0, p1, 1.0), kind=KIND_CROSS, **ped_kw)
        b.crossings.append(rect(r_c * u + hw * nrm, r_c * u - hw * nrm, 3.0))
    for i, k in enumerate(order):
        k2 = order[(i + 1) % n_arms]
        u1, n1 = unit(angles[k]), unit(angles[k] + math.pi / 2)
        u2, n2 = unit(angles[k2]), unit(angles[k2] + math.pi / 2)
        p0, p1 = r_c * u1 + off * n1, r_c * u2 - off * n2
        b.walk_pair(line(p0, p1))
        b.sidewalks.append(rect(p0, p1, SIDEWALK_WIDTH_M))


def build_junction(
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

    Args:
        n_lanes: lanes per direction on each arm; arm_len: arm length (m) beyond ``r_junction``
            (m, where the arms start); speed: arm speed limit (m/s).
    """
    b = MapBuilder(name)
    hw = n_lanes * LANE_WIDTH_M
    signal = roundabout_r <= 0.0
    walk_start = (_GREEN_S + _YELLOW_S + _ALLRED_S) * len(angles)
    walk_end = walk_start + 4.0
    cycle = walk_end + 2 * (hw + 1.5) / 1.1 + 1.0  # then pedestrians cross at 1.1 m/s
    lanes = _add_arms(b, angles, n_lanes, arm_len, r_junction, speed, cycle if signal else 0.0)
    if signal:
        _add_connectors(b, angles, n_lanes, lanes, speed)
        hull = []
        for a in sorted(angles):
            u, nrm = unit(a), unit(a + math.pi / 2)
            hull += [r_junction * u - hw * nrm, r_junction * u + hw * nrm]
        b.drivable.append(np.array(hull))
    else:
        _add_ring(b, angles, lanes, roundabout_r)
    _add_walks(b, angles, r_junction, arm_len, hw, {"ped": (cycle, walk_start, walk_end)} if signal else {})
    b.link_walks()
    return b.build()
