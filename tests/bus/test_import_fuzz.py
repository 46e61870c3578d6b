"""Fuzz the importers' parsing entry points with malformed input (hypothesis, derandomized).

Contract (``bus/importers/__init__.py``): malformed input raises :class:`InputError` and nothing
else, never hangs, and leaves no output file; input that imports gives a log that reads cleanly.
Inputs are small valid files with cells, keys and lines replaced by hostile values (huge, NaN,
text, nested JSON), and raw bytes.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prescient.bus.importers import InputError, read_table
from prescient.bus.importers.av2_map import load_av2_map
from prescient.bus.importers.av2_motion import import_av2_motion
from prescient.bus.importers.av2_sensor import import_av2_sensor
from prescient.bus.importers.eth_ucy import import_eth_ucy, load_eth_ucy_scene
from prescient.bus.logreader import ReadStats, iter_log

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy overflow on hostile floats


def _fuzz(max_examples: int) -> settings:
    """Bounded, derandomized (same examples on every run), no deadline (CI machines are busy)."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )


_TOKENS = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(
        ["nan", "-inf", "1e999", "1e308", "-0", "", " ", "abc", "1,5", "9223372036854775808", "4e11", "True"]
    ),
    st.text(max_size=6).filter(lambda t: "," not in t and "\n" not in t and "\r" not in t and '"' not in t),
)


def _expect_input_error_or_clean_log(fn: Callable[[], Any], out: Path) -> None:
    """Run an import: InputError (and no ``out`` left) or a log that reads without problems."""
    try:
        counts = fn()
    except InputError:
        assert not out.exists()
        return
    stats = ReadStats()
    assert sum(1 for _ in iter_log(out, stats=stats)) == sum(counts.values())
    assert not stats.problems


# ---------------------------------------------------------------------------------------------- ETH/UCY
_SCENE = [f"{780 + 10 * k}\t{p}\t{1.5 * k + p}\t{0.5 * p}" for k in range(3) for p in (1, 2)]
_NEAR_VALID = st.integers(-3, 800).map(str) | st.floats(-50, 50).map(str)


@_fuzz(60)
@given(data=st.data())
def test_fuzz_eth_ucy_scene(tmp_path: Path, data: st.DataObject) -> None:
    """A valid scene with hostile cells, dropped or repeated lines: InputError or a clean log."""
    rows = [line.split("\t") for line in _SCENE]
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(rows) - 1))
        action = data.draw(st.sampled_from(["cell", "cell", "cell", "drop", "repeat", "drop_cell"]))
        if action == "cell" and rows[i]:
            j = data.draw(st.integers(0, len(rows[i]) - 1))
            rows[i][j] = data.draw(_TOKENS | _NEAR_VALID).replace("\t", " ")
        elif action == "drop" and len(rows) > 1:
            del rows[i]
        elif action == "repeat":
            rows.insert(i, list(rows[i]))
        elif action == "drop_cell" and rows[i]:
            del rows[i][-1]
    src, out = tmp_path / "scene.txt", tmp_path / "eth.mcap"
    src.write_bytes("\n".join("\t".join(r) for r in rows).encode("utf-8", "surrogatepass"))
    out.unlink(missing_ok=True)
    _expect_input_error_or_clean_log(lambda: import_eth_ucy(src, out, overwrite=True), out)


@_fuzz(30)
@given(raw=st.binary(max_size=300))
def test_fuzz_eth_ucy_raw_bytes(tmp_path: Path, raw: bytes) -> None:
    """Arbitrary bytes as a scene file: a scene or InputError."""
    src = tmp_path / "scene.txt"
    src.write_bytes(raw)
    try:
        load_eth_ucy_scene(src)
    except InputError:
        pass


# ---------------------------------------------------------------------------------------------- AV2 map
def _pt(x: float, y: float) -> dict[str, float]:
    return {"x": x, "y": y, "z": 0.0}


_MAP: dict[str, Any] = {
    "lane_segments": {
        "1": {
            "id": 1,
            "lane_type": "VEHICLE",
            "is_intersection": False,
            "left_lane_boundary": [_pt(0, 1), _pt(10, 1)],
            "right_lane_boundary": [_pt(0, -1), _pt(10, -1)],
            "predecessors": [],
            "successors": [2],
            "left_neighbor_id": None,
            "right_neighbor_id": None,
        },
        "2": {
            "id": 2,
            "lane_type": "BUS",
            "is_intersection": True,
            "left_lane_boundary": [_pt(10, 1), _pt(20, 1)],
            "right_lane_boundary": [_pt(10, -1), _pt(20, -1)],
            "centerline": [_pt(10, 0), _pt(20, 0)],
            "predecessors": [1],
            "successors": [],
            "left_neighbor_id": None,
            "right_neighbor_id": 1,
        },
    },
    "pedestrian_crossings": {
        "7": {"id": 7, "edge1": [_pt(0, 0), _pt(0, 4)], "edge2": [_pt(2, 0), _pt(2, 4)]}
    },
    "drivable_areas": {"9": {"id": 9, "area_boundary": [_pt(0, 0), _pt(10, 0), _pt(10, 10)]}},
}
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)


def _json_paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        out += _json_paths(v, (*prefix, k))
    return out


@_fuzz(120)
@given(data=st.data())
def test_fuzz_av2_map_json(tmp_path: Path, data: st.DataObject) -> None:
    """The valid map with up to 3 values replaced by arbitrary JSON or removed: a map or InputError."""
    doc = copy.deepcopy(_MAP)
    for _ in range(data.draw(st.integers(1, 3))):
        *parent_path, key = data.draw(st.sampled_from(_json_paths(doc)))
        parent = doc
        for k in parent_path:
            parent = parent[k]
        if isinstance(parent, dict) and data.draw(st.booleans()):
            del parent[key]
        else:
            parent[key] = data.draw(_JSON)
    path = tmp_path / "log_map_archive_x.json"
    path.write_text(json.dumps(doc))
    try:
        load_av2_map(path)
    except InputError:
        pass


@_fuzz(30)
@given(raw=st.binary(max_size=200) | st.integers(1, 100_000).map(lambda n: b"[" * n + b"]" * n))
def test_fuzz_av2_map_raw_bytes(tmp_path: Path, raw: bytes) -> None:
    """Arbitrary bytes and deeply nested arrays as the map file: InputError, never RecursionError."""
    path = tmp_path / "log_map_archive_x.json"
    path.write_bytes(raw)
    with pytest.raises(InputError):
        load_av2_map(path)


# ---------------------------------------------------------------------------------------------- tables
_MOTION_HEADER = "observed,track_id,object_type,object_category,timestep,position_x,position_y,heading,velocity_x,velocity_y,start_timestamp"
_MOTION_ROWS = [f"True,AV,vehicle,1,{k},{k},0,0,10,0,1000" for k in range(3)] + [
    f"True,5,pedestrian,2,{k},3,{k * 0.1},1.57,0,1,1000" for k in range(3)
]
_POSE_HEADER = "timestamp_ns,qw,qx,qy,qz,tx_m,ty_m,tz_m"
_POSES = [f"{t},1,0,0,0,{t / 1e9:.3f},0,0" for t in range(0, 300_000_000, 50_000_000)]
_ANN_HEADER = "timestamp_ns,track_uuid,category,length_m,width_m,height_m,qw,qx,qy,qz,tx_m,ty_m,tz_m"
_ANNS = [
    f"{t},u1,REGULAR_VEHICLE,4,2,1.5,1,0,0,0,{5 + t / 1e8:.3f},1,0" for t in (0, 100_000_000, 200_000_000)
]
_TABLE_TOKENS = (
    _TOKENS
    | _NEAR_VALID
    | st.sampled_from(["AV", "5", "u2", "vehicle", "unicorn", "BOLLARD", "0", "50000000"])
)


def _edit_rows(data: st.DataObject, tables: list[list[list[str]]]) -> None:
    """Replace up to 4 cells (or drop a row) in the given tables of split CSV rows."""
    for _ in range(data.draw(st.integers(1, 4))):
        rows = data.draw(st.sampled_from(tables))
        i = data.draw(st.integers(0, len(rows) - 1))
        if data.draw(st.integers(0, 5)) == 0 and len(rows) > 1:
            del rows[i]
        else:
            rows[i][data.draw(st.integers(0, len(rows[i]) - 1))] = data.draw(_TABLE_TOKENS)


def _csv(header: str, rows: list[list[str]]) -> str:
    return header + "\n" + "".join(",".join(r) + "\n" for r in rows)


@_fuzz(50)
@given(data=st.data())
def test_fuzz_av2_motion_scenario(tmp_path: Path, data: st.DataObject) -> None:
    """A tiny scenario CSV with hostile cells or dropped rows: InputError or a clean log."""
    rows = [r.split(",") for r in _MOTION_ROWS]
    _edit_rows(data, [rows])
    src, out = tmp_path / "scenario", tmp_path / "motion.mcap"
    src.mkdir(exist_ok=True)
    (src / "log_map_archive_t.json").write_text(json.dumps(_MAP))
    (src / "scenario_t.csv").write_text(_csv(_MOTION_HEADER, rows))
    out.unlink(missing_ok=True)
    _expect_input_error_or_clean_log(lambda: import_av2_motion(src, out, overwrite=True), out)


@_fuzz(50)
@given(data=st.data())
def test_fuzz_av2_sensor_log(tmp_path: Path, data: st.DataObject) -> None:
    """Tiny pose and annotation CSVs with hostile cells or dropped rows: InputError or a clean log."""
    poses, anns = [r.split(",") for r in _POSES], [r.split(",") for r in _ANNS]
    _edit_rows(data, [poses, anns])
    src, out = tmp_path / "log", tmp_path / "sensor.mcap"
    (src / "map").mkdir(parents=True, exist_ok=True)
    (src / "map" / "log_map_archive_t.json").write_text(json.dumps(_MAP))
    (src / "city_SE3_egovehicle.csv").write_text(_csv(_POSE_HEADER, poses))
    (src / "annotations.csv").write_text(_csv(_ANN_HEADER, anns))
    out.unlink(missing_ok=True)
    _expect_input_error_or_clean_log(lambda: import_av2_sensor(src, out, overwrite=True), out)


@_fuzz(40)
@given(raw=st.binary(max_size=400), suffix=st.sampled_from([".csv", ".feather", ".parquet", ".txt"]))
def test_fuzz_read_table_raw_bytes(tmp_path: Path, raw: bytes, suffix: str) -> None:
    """Arbitrary bytes as a CSV, feather or parquet table: a table or InputError."""
    path = tmp_path / f"table{suffix}"
    path.write_bytes(raw)
    try:
        read_table(path, ("timestamp_ns",))
    except InputError:
        pass
