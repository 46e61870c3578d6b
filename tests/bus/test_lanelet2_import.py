"""``prescient import lanelet2``: the hand-drawn T-junction (tests/fixtures/lanelet2) read back as drawn.

The fixture's drawing (``make_t_junction.py``) is the reference: the same boundaries, in the same
local frame, must come out of the import (UTM round trip: well below a millimetre).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from prescient.bus import messages as m
from prescient.bus.importers import InputError
from prescient.bus.importers.map_file import read_map_json, write_map_json
from prescient.service.app.cli import main

pytest.importorskip("lanelet2")

from prescient.bus.importers.lanelet2_map import load_lanelet2_map  # noqa: E402 (after the skip)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lanelet2"
OSM = FIXTURES / "t_junction.osm"
LAT, LON = 49.0, 8.4  # make_t_junction.ORIGIN_LAT / ORIGIN_LON
SUCCESSORS = {
    ("E_in", "E_straight"), ("E_in", "E_right"), ("E_straight", "E_out"), ("E_right", "S_out"),
    ("W_in", "W_straight"), ("W_in", "W_left"), ("W_straight", "W_out"), ("W_left", "S_out"),
    ("N_in", "N_left"), ("N_in", "N_right"), ("N_left", "W_out"), ("N_right", "E_out"),
}  # fmt: skip
TURNS = {"E_straight", "E_right", "W_straight", "W_left", "N_left", "N_right"}


def _names() -> dict[int, str]:
    """Lanelet id -> the ``name`` tag the drawing gave it."""
    out = {}
    for rel in ET.parse(OSM).getroot().iter("relation"):
        tags = {t.get("k"): t.get("v") for t in rel.iter("tag")}
        if tags.get("type") == "lanelet" and "name" in tags:
            out[int(rel.get("id", "0"))] = tags["name"]
    return out


def _row(flat: np.ndarray, offsets: np.ndarray, i: int) -> np.ndarray:
    return flat[offsets[i] : offsets[i + 1]].astype(np.float64)


@pytest.fixture(scope="module")
def imported():
    return load_lanelet2_map(OSM, LAT, LON)


@pytest.fixture(scope="module")
def lane_of(imported) -> dict[str, int]:
    """Lane name -> row in the VectorMap."""
    names = _names()
    return {names[int(lid)]: i for i, lid in enumerate(imported.vector_map.lane_id)}


def test_import_t_junction_lanes_and_successors(imported, lane_of) -> None:
    """12 road lanes (the crosswalk is not a lane) with exactly the drawn successor pairs."""
    v = imported.vector_map
    assert len(v.lane_id) == 12 and set(lane_of) == {n for pair in SUCCESSORS for n in pair}
    assert (v.lane_type == m.LaneType.VEHICLE).all()
    name_of = {int(lid): n for n, i in lane_of.items() for lid in [v.lane_id[i]]}
    pairs = {
        (name_of[int(v.lane_id[i])], name_of[int(s)])
        for i in range(len(v.lane_id))
        for s in _row(v.successor_ids, v.successor_offsets, i)
    }
    assert pairs == SUCCESSORS
    preds = {
        (name_of[int(p)], name_of[int(v.lane_id[i])])
        for i in range(12)
        for p in _row(v.predecessor_ids, v.predecessor_offsets, i)
    }
    assert preds == SUCCESSORS
    flagged = {n for n, i in lane_of.items() if v.lane_is_intersection[i]}
    assert flagged == TURNS


def test_import_t_junction_geometry_matches_drawing(imported, lane_of) -> None:
    """Boundaries as drawn; centrelines every ~1 m midway; widths 3.5 m; speed limits from the tags."""
    v = imported.vector_map
    e_in = lane_of["E_in"]
    np.testing.assert_allclose(
        _row(v.left_boundary_xy_m, v.left_boundary_offsets, e_in), [[-50, 0], [-7, 0]], atol=1e-3
    )
    np.testing.assert_allclose(
        _row(v.right_boundary_xy_m, v.right_boundary_offsets, e_in), [[-50, -3.5], [-7, -3.5]], atol=1e-3
    )
    for name, i in lane_of.items():
        c = _row(v.centerline_xy_m, v.centerline_offsets, i)
        step = np.hypot(*np.diff(c, axis=0).T)
        assert 0.8 < step.min() and step.max() < 1.1, name
        left = _row(v.left_boundary_xy_m, v.left_boundary_offsets, i)
        right = _row(v.right_boundary_xy_m, v.right_boundary_offsets, i)
        # every centreline point lies half a lane (1.75 m) from both boundaries (straight or arc)
        for bound in (left, right):
            d = np.min(np.hypot(*(_dense(bound)[None] - c[:, None]).transpose(2, 0, 1)), axis=1)
            np.testing.assert_allclose(d, 1.75, atol=0.05, err_msg=name)
    np.testing.assert_allclose(v.lane_speed_limit_mps[lane_of["N_in"]], 30 / 3.6, rtol=1e-5)
    np.testing.assert_allclose(v.lane_speed_limit_mps[lane_of["E_in"]], 50 / 3.6, rtol=1e-5)


def _dense(xy: np.ndarray, step_m: float = 0.02) -> np.ndarray:
    """(P, 2) polyline densified to ~``step_m`` (distances to it then approximate the true ones)."""
    s = np.r_[0.0, np.cumsum(np.hypot(*np.diff(xy, axis=0).T))]
    q = np.linspace(0.0, s[-1], int(s[-1] / step_m) + 2)
    return np.stack([np.interp(q, s, xy[:, 0]), np.interp(q, s, xy[:, 1])], axis=1)


def test_import_t_junction_crosswalk_stop_line_and_light(imported, lane_of) -> None:
    """The crosswalk polygon, N_in's stop line at y = -17 m and its light at (4.3, -6) m, as drawn."""
    v = imported.vector_map
    assert len(v.crossing_offsets) == 2
    xw = _row(v.crossing_xy_m, v.crossing_offsets, 0)
    np.testing.assert_allclose(
        [xw[:, 0].min(), xw[:, 0].max(), xw[:, 1].min(), xw[:, 1].max()], [-5, 5, -15, -12], atol=1e-3
    )
    n_in = int(v.lane_id[lane_of["N_in"]])
    assert v.stop_line_lane_id.tolist() == [n_in]
    np.testing.assert_allclose(v.stop_line_xy_m[0], [[0, -17], [3.5, -17]], atol=1e-3)
    assert v.light_lane_id.tolist() == [n_in] and v.light_group.tolist() == [0]
    assert v.group_plan_s.shape == (1, 3) and v.group_plan_s[0, 0] > 0
    np.testing.assert_allclose(imported.light_xy_m, [[4.3, -6.0]], atol=1e-3)
    assert len(v.drivable_offsets) == 13  # one outline per road lanelet


def test_import_t_junction_rasterizes(imported, tmp_path) -> None:
    """The raster shows the crosswalk, the stop line and the lanes where they were drawn (picture in tmp)."""
    from prescient.service.raster import RasterConfig, Rasterizer
    from prescient.service.raster.rgb import save_png

    cfg = RasterConfig()
    r = Rasterizer(cfg, imported.vector_map)
    pose = np.array([1.75, -35.0, np.pi / 2])  # on N_in, facing the junction
    raster = r.render(None, pose)
    checks = {"crossing": (0.0, -13.5), "stop_line": (1.75, -17.0), "lane_area": (-20.0, -1.75)}
    for name, xy in checks.items():
        col, row = r.pixels_from_world(np.array([xy]), pose)[0].astype(int)
        assert raster[r.channel(name), row - 1 : row + 2, col - 1 : col + 2].max() == 1.0, name
    col, row = r.pixels_from_world(np.array([(-20.0, -20.0)]), pose)[0].astype(int)  # off the road
    assert raster[r.channel("lane_area"), row, col] == 0.0
    png = save_png(
        raster.copy(), tmp_path / "t_junction_raster.png", resolution_m=cfg.resolution_m, title="lanelet2 T"
    )
    assert png.stat().st_size > 1000


def test_map_json_round_trip_is_exact(imported, tmp_path) -> None:
    """write_map_json -> read_map_json gives every field back bit for bit."""
    path = write_map_json(tmp_path / "map.json", imported.vector_map)
    back = read_map_json(path)
    assert back.map_id == "lanelet2:t_junction"
    for name in m.array_specs(m.VectorMap):
        a, b = getattr(imported.vector_map, name), getattr(back, name)
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), name
    with pytest.raises(FileExistsError):
        write_map_json(path, imported.vector_map)


# ----------------------------------------------------------------------------------------------
# Hostile input: one line, non-zero exit.
# ----------------------------------------------------------------------------------------------
def _broken(tmp_path: Path, name: str) -> Path:
    text = OSM.read_text()
    if name == "not_osm":
        text = "this is not XML\n"
    elif name == "no_lanelets":
        text = '<?xml version="1.0"?>\n<osm version="0.6"><node id="1" lat="49" lon="8.4"/></osm>\n'
    elif name == "missing_way":  # E_in's right bound points at a way that does not exist
        e_in = next(i for i, n in _names().items() if n == "E_in")
        rel = next(r for r in ET.parse(OSM).getroot().iter("relation") if int(r.get("id", "0")) == e_in)
        right = next(mm.get("ref") for mm in rel.iter("member") if mm.get("role") == "right")
        text = text.replace(
            f'<member type="way" ref="{right}" role="right"/>',
            '<member type="way" ref="987654" role="right"/>',
        )
    path = tmp_path / f"{name}.osm"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("name", "expect"),
    [
        ("not_osm", "not a Lanelet2 OSM map"),
        ("no_lanelets", "no lanelets"),
        ("missing_way", "nonexistent member 987654"),
    ],
)
def test_import_lanelet2_bad_map_exits_1_with_one_line(tmp_path, capsys, name, expect) -> None:
    """A non-OSM file, an OSM without lanelets, a lanelet with a missing way: exit 1, one line, no output."""
    src, out = _broken(tmp_path, name), tmp_path / "out.json"
    with pytest.raises(InputError, match=expect):
        load_lanelet2_map(src, LAT, LON)
    rc = main(["import", "lanelet2", str(src), "--origin", str(LAT), str(LON), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and expect in err[0] and "Traceback" not in err[0], err
    assert not out.exists()


def test_import_lanelet2_cli_writes_map_json(tmp_path, capsys) -> None:
    """The command writes the map file and names what it found; the wrong origin is refused."""
    out = tmp_path / "t.json"
    assert main(["import", "lanelet2", str(OSM), "--origin", str(LAT), str(LON), "--out", str(out)]) == 0
    assert "12 lanes, 1 crossings, 1 stop lines, 1 traffic lights" in capsys.readouterr().out
    assert len(read_map_json(out).lane_id) == 12
    rc = main(
        ["import", "lanelet2", str(OSM), "--origin", "40.7", "-74.0", "--out", str(tmp_path / "x.json")]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "--origin" in err[0]
