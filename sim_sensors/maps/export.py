"""The wire view of a built map: :class:`prescient.bus.messages.VectorMap` of its road lanes and polygons."""

from __future__ import annotations

import numpy as np

from prescient.bus.messages import TOPIC_MAP, Header, LaneType, VectorMap
from prescient.sim_sensors.layout import KIND_BIKE
from prescient.sim_sensors.maps.geometry import normals, strip


def _csr(polys: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(xy (sum n, 2) float32, offsets (len+1,) int64) of a list of polylines."""
    offs = np.zeros(len(polys) + 1, np.int64)
    offs[1:] = np.cumsum([len(p) for p in polys])
    xy = np.concatenate(polys).astype(np.float32) if polys else np.zeros((0, 2), np.float32)
    return xy, offs


def _road_graph(succ: list[list[int]], n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Successor / predecessor CSR ``(ids, offsets)`` x 2 among the first ``n`` (road) lanes."""
    road_succ = [[b for b in succ[a] if b < n] for a in range(n)]
    road_pred: list[list[int]] = [[] for _ in range(n)]
    for a in range(n):
        for b in road_succ[a]:
            road_pred[b].append(a)
    s_off = np.zeros(n + 1, np.int64)
    s_off[1:] = np.cumsum([len(s) for s in road_succ])
    p_off = np.zeros(n + 1, np.int64)
    p_off[1:] = np.cumsum([len(p) for p in road_pred])
    s_ids = np.array([b for s in road_succ for b in s], np.int64)
    p_ids = np.array([a for p in road_pred for a in p], np.int64)
    return s_ids, s_off, p_ids, p_off


def vector_map_from_builder(b, d: dict) -> VectorMap:  # b: prescient.sim_sensors.maps.builder.MapBuilder
    """The VectorMap of builder ``b`` whose MapData fields are ``d`` (world frame, float32)."""
    n = d["n_road"]
    lanes = b.lanes[:n]
    center = [lane["pts"] for lane in lanes]
    left = [lane["pts"] + normals(lane["pts"]) * lane["width"] / 2 for lane in lanes]
    right = [lane["pts"] - normals(lane["pts"]) * lane["width"] / 2 for lane in lanes]
    cxy, coff = _csr(center)
    lxy, loff = _csr(left)
    rxy, roff = _csr(right)
    s_ids, s_off, p_ids, p_off = _road_graph(b.succ, n)
    xxy, xoff = _csr(b.crossings)
    wxy, woff = _csr(b.sidewalks)
    road_strips = [strip(lane["pts"], lane["width"]) for lane in lanes]
    dxy, doff = _csr(road_strips + b.drivable)
    lane_type = np.array(
        [LaneType.BIKE if lane["kind"] == KIND_BIKE else LaneType.VEHICLE for lane in lanes], np.uint8
    )
    sl_xy = np.array([s for s, _ in b.stop_lines], np.float32).reshape(-1, 2, 2)
    sl_lane = np.array([lane_idx for _, lane_idx in b.stop_lines], np.int64)
    light_lanes = np.array([i for i in range(n) if lanes[i]["group"] >= 0], np.int64)
    return VectorMap(
        header=Header(topic=TOPIC_MAP),
        map_id=f"sim:{b.name}",
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
        successor_ids=s_ids,
        successor_offsets=s_off,
        predecessor_ids=p_ids,
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
        group_plan_s=np.array(b.plans, np.float32).reshape(-1, 3),
        group_offset_s=np.array(b.offsets, np.float32),
    )
