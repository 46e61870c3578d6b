"""Map helpers: the empty map that stands in for a log that holds none (ETH/UCY, Lyft)."""

from __future__ import annotations

from typing import Final

from prescient.bus.messages import TOPIC_MAP, VectorMap, empty

NO_MAP_ID: Final = "none"  # the map_id of the empty map


def empty_map(map_id: str = NO_MAP_ID, stamp_ns: int = 0) -> VectorMap:
    """A :class:`VectorMap` with nothing in it: the raster's map channels stay empty."""
    vmap: VectorMap = empty(VectorMap, TOPIC_MAP, stamp_ns, map_id=map_id)
    return vmap


def map_is_empty(vmap: VectorMap) -> bool:
    """True when ``vmap`` holds no lane and no polygon (nothing a raster's map channels show)."""
    polygons = (vmap.crossing_xy_m, vmap.sidewalk_xy_m, vmap.drivable_xy_m)
    return len(vmap.lane_id) == 0 and all(len(p) == 0 for p in polygons)
