"""Argoverse 2 vector-map JSON (``log_map_archive_*.json``) -> :class:`prescient.bus.messages.VectorMap`.

Mapping:
  * ``lane_segments`` (sorted by id) -> lanes: id, type (VEHICLE/BIKE/BUS), intersection flag,
    left/right neighbour ids (-1 = none), predecessor/successor lists (CSR), left/right boundaries.
    Centerlines: the file's ``centerline`` when present (motion-forecasting maps), else the
    midpoint of the two boundaries resampled by arc length to ``CENTERLINE_POINTS`` points (what
    the av2 API does for sensor-dataset maps, which store no centerline).
  * ``pedestrian_crossings``: polygon ``edge1[0], edge1[1], edge2[1], edge2[0]``.
  * ``drivable_areas``: the ``area_boundary`` polygon.
  * AV2 has no speed limits (0 = unknown), sidewalks, stop lines or traffic lights: empty arrays.
z coordinates are dropped; everything stays in the city frame (our world frame).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import numpy as np

from prescient.bus import messages as m
from prescient.bus.importers import INT64_MAX, MAX_ABS_VALUE, InputError

CENTERLINE_POINTS: Final = 10
_LANE_TYPES: Final = {"VEHICLE": m.LaneType.VEHICLE, "BIKE": m.LaneType.BIKE, "BUS": m.LaneType.BUS}
_LANE_KEYS: Final = (
    "id",
    "lane_type",
    "is_intersection",
    "left_lane_boundary",
    "right_lane_boundary",
    "predecessors",
    "successors",
    "left_neighbor_id",
    "right_neighbor_id",
)


def _points(path: Path, where: str, pts: Any) -> np.ndarray:
    if not isinstance(pts, list) or len(pts) < 2:
        raise InputError(path, f"{where}: expected a list of >= 2 points")
    try:
        a = np.array([[p["x"], p["y"]] for p in pts], np.float64)
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise InputError(path, f"{where}: points need numeric x, y ({type(e).__name__}: {e})") from e
    if a.shape != (len(pts), 2):
        raise InputError(path, f"{where}: points need numeric x, y")
    if not np.isfinite(a).all():
        raise InputError(path, f"{where}: NaN or inf coordinate")
    if (np.abs(a) > MAX_ABS_VALUE).any():
        raise InputError(path, f"{where}: coordinate beyond {MAX_ABS_VALUE:g} m")
    return a


def _resample(xy: np.ndarray, n: int) -> np.ndarray:
    """(P, 2) polyline -> (n, 2) points equally spaced by arc length."""
    s = np.r_[0.0, np.cumsum(np.hypot(*np.diff(xy, axis=0).T))]
    if s[-1] <= 0:
        return np.repeat(xy[:1], n, axis=0)
    q = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(q, s, xy[:, 0]), np.interp(q, s, xy[:, 1])], axis=1)


def _csr(parts: list[np.ndarray], width: int | None, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(parts) + 1, np.int64)
    offsets[1:] = np.cumsum([len(p) for p in parts])
    shape = (0, width) if width else (0,)
    flat = np.concatenate(parts).astype(dtype) if parts else np.zeros(shape, dtype)
    if width and flat.ndim == 1:
        flat = flat.reshape(-1, width)
    return flat, offsets


def _id(path: Path, where: str, v: Any) -> int:
    if v is None:
        return -1
    if isinstance(v, bool) or not isinstance(v, int) or not -INT64_MAX - 1 <= v <= INT64_MAX:
        raise InputError(path, f"{where}: id must be an int64 or null, got {str(v)[:40]}")
    return v


def _id_list(path: Path, where: str, v: Any) -> np.ndarray:
    if not isinstance(v, list):
        raise InputError(path, f"{where}: expected a list of ids, got {type(v).__name__}")
    return np.array([_id(path, where, x) for x in v], np.int64)


def _read_doc(path: Path) -> dict:
    """The map JSON with its three top-level objects checked."""
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(path, f"not valid JSON: {e}") from e
    except RecursionError as e:  # the json module recurses once per nesting level
        raise InputError(path, "not valid JSON: nested too deeply") from e
    if not isinstance(doc, dict):
        raise InputError(path, "top level must be an object")
    for key in ("lane_segments", "pedestrian_crossings", "drivable_areas"):
        if not isinstance(doc.get(key), dict):
            raise InputError(path, f"missing or malformed {key!r} (expected an object keyed by id)")
    return doc


def _crossings(path: Path, doc: dict) -> list[np.ndarray]:
    """(4, 2) world-frame corners of each pedestrian crossing, in id order."""
    out = []
    for cid, pc in sorted(doc["pedestrian_crossings"].items()):
        if not isinstance(pc, dict) or "edge1" not in pc or "edge2" not in pc:
            raise InputError(path, f"pedestrian crossing {cid}: missing edge1/edge2")
        e1 = _points(path, f"pedestrian crossing {cid} edge1", pc["edge1"])
        e2 = _points(path, f"pedestrian crossing {cid} edge2", pc["edge2"])
        out.append(np.stack([e1[0], e1[-1], e2[-1], e2[0]]))
    return out


def _areas(path: Path, doc: dict) -> list[np.ndarray]:
    """(P, 2) world-frame boundary of each drivable area, in id order."""
    out = []
    for aid, da in sorted(doc["drivable_areas"].items()):
        if not isinstance(da, dict) or "area_boundary" not in da:
            raise InputError(path, f"drivable area {aid}: missing area_boundary")
        out.append(_points(path, f"drivable area {aid} area_boundary", da["area_boundary"]))
    return out


def load_av2_map(path: str | Path, stamp_ns: int = 0) -> m.VectorMap:
    """Read and validate an AV2 map JSON file.

    Args:
        path: ``log_map_archive_*.json``.
        stamp_ns: header stamp of the returned message.

    Raises:
        InputError: naming the file, the lane / crossing / area id and the problem.
    """
    path = Path(path)
    doc = _read_doc(path)
    for ln in doc["lane_segments"].values():
        if not isinstance(ln, dict):
            raise InputError(path, "lane segment is not an object")
        missing = [k for k in _LANE_KEYS if k not in ln]
        if missing:
            raise InputError(path, f"lane {str(ln.get('id', '?'))[:40]}: missing keys {missing}")
        _id(path, "lane id", ln["id"])
    lanes = sorted(doc["lane_segments"].values(), key=lambda ln: _id(path, "lane id", ln["id"]))
    ids, types, inter, left_n, right_n = [], [], [], [], []
    centre, left, right, succ, pred = [], [], [], [], []
    for ln in lanes:
        lid = _id(path, "lane id", ln["id"])
        where = f"lane {lid}"
        if not isinstance(ln["lane_type"], str) or ln["lane_type"] not in _LANE_TYPES:
            raise InputError(
                path, f"{where}: unknown lane_type {ln['lane_type']!r} (expected {sorted(_LANE_TYPES)})"
            )
        lb = _points(path, f"{where} left_lane_boundary", ln["left_lane_boundary"])
        rb = _points(path, f"{where} right_lane_boundary", ln["right_lane_boundary"])
        if ln.get("centerline") is not None:
            c = _points(path, f"{where} centerline", ln["centerline"])
        else:
            c = 0.5 * (_resample(lb, CENTERLINE_POINTS) + _resample(rb, CENTERLINE_POINTS))
        ids.append(lid)
        types.append(_LANE_TYPES[ln["lane_type"]])
        inter.append(bool(ln["is_intersection"]))
        left_n.append(_id(path, f"{where} left_neighbor_id", ln["left_neighbor_id"]))
        right_n.append(_id(path, f"{where} right_neighbor_id", ln["right_neighbor_id"]))
        centre.append(c)
        left.append(lb)
        right.append(rb)
        succ.append(_id_list(path, f"{where} successors", ln["successors"]))
        pred.append(_id_list(path, f"{where} predecessors", ln["predecessors"]))
    if len(set(ids)) != len(ids):
        raise InputError(path, "duplicate lane ids")

    crossings, areas = _crossings(path, doc), _areas(path, doc)

    f32, i64 = np.float32, np.int64
    cl, cl_o = _csr(centre, 2, f32)
    lb_, lb_o = _csr(left, 2, f32)
    rb_, rb_o = _csr(right, 2, f32)
    su, su_o = _csr(succ, None, i64)
    pr, pr_o = _csr(pred, None, i64)
    cx, cx_o = _csr(crossings, 2, f32)
    dr, dr_o = _csr(areas, 2, f32)
    n = len(ids)
    map_id = path.stem.removeprefix("log_map_archive_")
    return m.VectorMap(
        header=m.Header(topic=m.TOPIC_MAP, stamp_ns=stamp_ns),
        map_id=map_id,
        lane_id=np.asarray(ids, i64).reshape(n),
        lane_type=np.asarray(types, np.uint8).reshape(n),
        lane_is_intersection=np.asarray(inter, bool).reshape(n),
        lane_speed_limit_mps=np.zeros(n, f32),
        lane_left_neighbor_id=np.asarray(left_n, i64).reshape(n),
        lane_right_neighbor_id=np.asarray(right_n, i64).reshape(n),
        centerline_xy_m=cl,
        centerline_offsets=cl_o,
        left_boundary_xy_m=lb_,
        left_boundary_offsets=lb_o,
        right_boundary_xy_m=rb_,
        right_boundary_offsets=rb_o,
        successor_ids=su,
        successor_offsets=su_o,
        predecessor_ids=pr,
        predecessor_offsets=pr_o,
        crossing_xy_m=cx,
        crossing_offsets=cx_o,
        sidewalk_xy_m=np.zeros((0, 2), f32),
        sidewalk_offsets=np.zeros(1, i64),
        drivable_xy_m=dr,
        drivable_offsets=dr_o,
        stop_line_xy_m=np.zeros((0, 2, 2), f32),
        stop_line_lane_id=np.zeros(0, i64),
        light_lane_id=np.zeros(0, i64),
        light_group=np.zeros(0, np.int32),
        group_plan_s=np.zeros((0, 3), f32),
        group_offset_s=np.zeros(0, f32),
    )


def find_map(directory: Path) -> Path:
    """The single ``log_map_archive_*.json`` in ``directory`` or its ``map/`` subfolder."""
    found = sorted(directory.glob("log_map_archive_*.json")) + sorted(
        directory.glob("map/log_map_archive_*.json")
    )
    if len(found) != 1:
        raise InputError(
            directory, f"expected one log_map_archive_*.json (here or in map/), found {len(found)}"
        )
    return found[0]
