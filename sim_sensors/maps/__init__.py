"""Procedural road networks, exported as :class:`prescient.bus.messages.VectorMap`.

Every layout is built from polylines by :class:`~prescient.sim_sensors.maps.builder.MapBuilder`, which also
keeps the simulator's own lane graph (:class:`MapData`): vehicle and bike lanes (exported), plus
pedestrian walk lanes along sidewalks and across crossings and ego-only turnaround lanes at the
map ends (internal; their footprints are exported as sidewalk / drivable polygons). Right-hand
traffic, world frame: x east, y north, metres. Lane ids on the wire are the internal indices of
the exported lanes.

Layouts (:data:`SCENARIOS`):
  * ``intersection``: signalised 4-way, 2 lanes per direction, one signal group per arm
    (protected phases) and an all-red pedestrian phase, crossings on all arms.
  * ``t_junction``: signalised 3-way, 1 lane per direction, same phasing.
  * ``arterial``: 600 m straight road, 3 lanes per direction plus bike lanes, a signalised
    mid-block pedestrian crossing.
  * ``roundabout``: single-lane ring (radius 22 m) with 4 single-lane arms, yield at entry,
    unsignalised crossings.

Modules: :mod:`.data` (MapData, signal plan), :mod:`.geometry` (polylines), :mod:`.builder`,
:mod:`.export` (VectorMap), :mod:`.junction` and :mod:`.arterial` (the layouts).
"""

from __future__ import annotations

import math

from prescient.bus.messages import VectorMap
from prescient.sim_sensors.layout import KIND_BIKE, KIND_CROSS, KIND_TURNAROUND, KIND_VEHICLE, KIND_WALK
from prescient.sim_sensors.maps.arterial import build_arterial
from prescient.sim_sensors.maps.builder import BIKE_WIDTH_M, LANE_WIDTH_M, SIDEWALK_WIDTH_M
from prescient.sim_sensors.maps.data import MapData, light_states_at
from prescient.sim_sensors.maps.geometry import MAX_LAT_ACCEL_MPS2
from prescient.sim_sensors.maps.junction import build_junction

SCENARIOS: tuple[str, ...] = ("intersection", "t_junction", "arterial", "roundabout")

__all__ = [
    "BIKE_WIDTH_M",
    "KIND_BIKE",
    "KIND_CROSS",
    "KIND_TURNAROUND",
    "KIND_VEHICLE",
    "KIND_WALK",
    "LANE_WIDTH_M",
    "MAX_LAT_ACCEL_MPS2",
    "SCENARIOS",
    "SIDEWALK_WIDTH_M",
    "MapData",
    "build_map",
    "build_map_data",
    "light_states_at",
]


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
        return build_junction(name, [0.0, math.pi / 2, math.pi, 3 * math.pi / 2], 2, 120.0, 14.0, 13.9)
    if name == "t_junction":
        return build_junction(name, [0.0, math.pi, 3 * math.pi / 2], 1, 120.0, 10.0, 13.9)
    if name == "arterial":
        return build_arterial()
    if name == "roundabout":
        return build_junction(
            name, [0.0, math.pi / 2, math.pi, 3 * math.pi / 2], 1, 100.0, 36.0, 11.1, roundabout_r=22.0
        )
    raise ValueError(f"unknown scenario {name!r}; expected one of {', '.join(SCENARIOS)}")


def build_map(name: str, seed: int = 0) -> VectorMap:
    """The VectorMap (world frame) of a scenario; see :func:`build_map_data`."""
    return build_map_data(name, seed).vector_map
