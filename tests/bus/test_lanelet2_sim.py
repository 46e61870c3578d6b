"""``prescient sim --map``: the simulator drives on the imported Lanelet2 T-junction and agents stay on lanes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from prescient.bus.importers.map_file import write_map_json
from prescient.service.app.cli import main

pytest.importorskip("lanelet2")

from prescient.bus.importers.lanelet2_map import load_lanelet2_map  # noqa: E402 (after the skip)
from prescient.sim_sensors.config import SimConfig  # noqa: E402
from prescient.sim_sensors.layout import F_X, F_Y, I_ACTIVE, I_LANE, I_MODE, KIND_VEHICLE, MODE_LANE  # noqa: E402
from prescient.sim_sensors.maps.imported import class_mix_for, map_data_from_vector_map  # noqa: E402
from prescient.sim_sensors.simulation import Simulation  # noqa: E402

OSM = Path(__file__).resolve().parents[1] / "fixtures" / "lanelet2" / "t_junction.osm"


@pytest.fixture(scope="module")
def vmap():
    return load_lanelet2_map(OSM, 49.0, 8.4).vector_map


def _distance_to_lane(md, lane: int, xy: np.ndarray) -> float:
    """Distance (m) from ``xy`` to the centreline of ``lane`` (densified polyline)."""
    pts = md.lane_points(lane)
    t = np.linspace(0.0, 1.0, 50)[:, None]
    dense = np.concatenate([a + t * (b - a) for a, b in zip(pts[:-1], pts[1:], strict=True)])
    return float(np.hypot(*(dense - xy).T).min())


def test_map_data_from_lanelet2_keeps_graph_stop_line_and_light(vmap) -> None:
    """12 road lanes with their successors, N_in's stop line 33 m along it and its signal, crossings walkable."""
    md = map_data_from_vector_map(vmap)
    assert md.n_road == 12 and md.name == "lanelet2:t_junction"
    n_in = int(np.flatnonzero(vmap.lane_id == vmap.light_lane_id[0])[0])
    assert md.group[n_in] == 0 and md.stop_s[n_in] == pytest.approx(33.0, abs=0.05)  # y = -50 -> -17
    np.testing.assert_allclose(md.width[: md.n_road], 3.5, atol=0.02)
    for i in range(md.n_road):
        want = sorted(
            int(np.flatnonzero(vmap.lane_id == s)[0])
            for s in vmap.successor_ids[vmap.successor_offsets[i] : vmap.successor_offsets[i + 1]]
        )
        assert sorted(md.successors(i).tolist()) == want
    assert (md.kind == 3).sum() == 2  # one crossing, both directions (KIND_CROSS)
    assert md.vector_map.crossing_offsets[-1] > 0 and len(md.vector_map.stop_line_lane_id) == 1


def test_sim_on_lanelet2_map_agents_stay_on_lanes(vmap) -> None:
    """3 s with 20 agents: every lane-following road agent stays within its lane (half width + margin)."""
    md = map_data_from_vector_map(vmap)
    sim = Simulation(SimConfig(seed=3, n_agents=20), map_data=md, class_mix=class_mix_for(md))
    assert sim.n_active > 5
    checked = 0
    for _ in range(30):  # 30 x 0.1 s
        for _ in range(5):
            sim.step()
        for row in np.flatnonzero(sim.I[:, I_ACTIVE] != 0):
            lane = int(sim.I[row, I_LANE])
            if sim.I[row, I_MODE] != MODE_LANE or lane < 0 or md.kind[lane] != KIND_VEHICLE:
                continue
            d = _distance_to_lane(md, lane, sim.F[row, F_X : F_Y + 1])
            assert d < 0.5 * md.width[lane] + 0.5, (row, lane, d)
            checked += 1
    assert checked > 100
    assert sim.counters["out_of_bounds"] == 0


def test_sim_cli_map_runs_offline(vmap, tmp_path, capsys) -> None:
    """``prescient sim --map FILE --duration 3 --fast --offline`` exits 0 and names the map."""
    path = write_map_json(tmp_path / "t.json", vmap)
    rc = main(["sim", "--map", str(path), "--duration", "3", "--fast", "--offline", "--agents", "10"])
    assert rc == 0
    assert "prescient sim: lanelet2:t_junction seed=0: 3.0 sim s" in capsys.readouterr().out


@pytest.mark.parametrize("content", [None, "{}", "not json"])
def test_sim_cli_bad_map_exits_1_with_one_line(tmp_path, capsys, content) -> None:
    """A missing, foreign or unreadable --map file: exit 1 and one line on stderr."""
    path = tmp_path / "map.json"
    if content is not None:
        path.write_text(content)
    rc = main(["sim", "--map", str(path), "--duration", "1", "--fast", "--offline"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "--map" in err[0], err
