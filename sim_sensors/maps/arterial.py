"""The arterial layout: a 600 m straight road with a signalised mid-block pedestrian crossing.

Three lanes per direction plus a bike lane (eastbound on the south side, westbound on the north
side), sidewalks on both sides, one signal group for the road and a walk window for the crossing.
"""

from __future__ import annotations

import numpy as np

from prescient.sim_sensors.layout import KIND_BIKE, KIND_CROSS, KIND_VEHICLE
from prescient.sim_sensors.maps.builder import BIKE_WIDTH_M, LANE_WIDTH_M, SIDEWALK_WIDTH_M, MapBuilder
from prescient.sim_sensors.maps.data import MapData
from prescient.sim_sensors.maps.geometry import line, rect

_N_LANES = 3
_HALF_LEN_M = 300.0
_SPEED_MPS = 16.7  # 60 km/h
_GREEN_S, _YELLOW_S, _CYCLE_S = 30.0, 3.0, 60.0
_HALF_WIDTH_M = _N_LANES * LANE_WIDTH_M + BIKE_WIDTH_M  # road centre to kerb


def _add_direction(b: MapBuilder, direction: float) -> None:
    """Vehicle lanes and the bike lane of one direction (+1 eastbound, -1 westbound)."""
    w, hw = LANE_WIDTH_M, _HALF_WIDTH_M
    side = -direction
    x0, x1 = -_HALF_LEN_M * direction, _HALF_LEN_M * direction
    lanes = []
    stop_s = _HALF_LEN_M - 6.0
    for i in range(_N_LANES):
        y = side * (i + 0.5) * w
        lanes.append(
            b.lane(
                line(np.array([x0, y]), np.array([x1, y])),
                KIND_VEHICLE,
                w,
                _SPEED_MPS,
                stop_s=stop_s,
                group=0,
            )
        )
        b.stop_lines.append(
            (np.array([[-6.0 * direction, side * i * w], [-6.0 * direction, side * (i + 1) * w]]), lanes[-1])
        )
    b.set_neighbours(lanes)
    y = side * (hw - BIKE_WIDTH_M / 2)
    bike = b.lane(
        line(np.array([x0, y]), np.array([x1, y])), KIND_BIKE, BIKE_WIDTH_M, 6.0, stop_s=stop_s, group=0
    )
    b.stop_lines.append(
        (np.array([[-6.0 * direction, side * (hw - BIKE_WIDTH_M)], [-6.0 * direction, side * hw]]), bike)
    )


def _add_sidewalk(b: MapBuilder, side: float, off: float) -> None:
    """Walk lanes of one sidewalk (+1 north, -1 south) ``off`` m from the road centre."""
    for x0, x1 in ((-_HALF_LEN_M, -2.0), (2.0, _HALF_LEN_M)):
        p0, p1 = np.array([x0, side * off]), np.array([x1, side * off])
        # eastbound walk lane on the north side has the road on its right (-1)
        b.walk_pair(line(p0, p1), road_side=-side, jay_dist=2 * off)
        b.sidewalks.append(rect(p0, p1, SIDEWALK_WIDTH_M))
    b.sidewalks.append(rect(np.array([-2.0, side * off]), np.array([2.0, side * off]), SIDEWALK_WIDTH_M))
    # short links across the crossing head on each sidewalk
    b.walk_pair(line(np.array([-2.0, side * off]), np.array([0.0, side * off]), 1.0))
    b.walk_pair(line(np.array([0.0, side * off]), np.array([2.0, side * off]), 1.0))


def build_arterial() -> MapData:
    """The ``arterial`` map.

    Raises:
        ValueError: the red phase is too short for pedestrians to cross (a timing edit gone wrong).
    """
    b = MapBuilder("arterial")
    hw = _HALF_WIDTH_M
    b.plans.append((_GREEN_S, _YELLOW_S, _CYCLE_S - _GREEN_S - _YELLOW_S))
    b.offsets.append(0.0)
    for direction in (1.0, -1.0):
        _add_direction(b, direction)
    off = hw + 1.5
    for side in (1.0, -1.0):
        _add_sidewalk(b, side, off)
    cross_len = 2 * off
    b.walk_pair(
        line(np.array([0.0, off]), np.array([0.0, -off]), 1.0),
        kind=KIND_CROSS,
        ped=(_CYCLE_S, _GREEN_S + _YELLOW_S + 1.0, _GREEN_S + _YELLOW_S + 7.0),
    )
    if _CYCLE_S - (_GREEN_S + _YELLOW_S + 7.0) < cross_len / 1.4:
        raise ValueError("arterial: red phase too short for pedestrians")
    b.crossings.append(rect(np.array([0.0, hw]), np.array([0.0, -hw]), 4.0))
    b.link_walks()
    return b.build()
