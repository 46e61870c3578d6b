"""Scene file format, placement on the lane graph and ``prescient sim --from-scenario``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from prescient.bus.messages import AgentClass
from prescient.sim_sensors import layout as k  # packed agent columns (A_*)
from prescient.sim_sensors.config import SimConfig
from prescient.sim_sensors.maps import build_map_data
from prescient.sim_sensors.scenario_file import (
    ScenarioFileError,
    Scene,
    load_scene,
    load_scenes,
    place_scene,
    save_scenes,
)
from prescient.sim_sensors.simulation import Simulation

# Intersection map: lane 14 runs north at x = 5.2 from y = -134 to -14; lane 2 runs west at y = 5.2.
EGO = np.array([5.2, -40.0, math.pi / 2])


def _scene() -> Scene:
    return Scene.from_arrays(
        "intersection", EGO, 6.0,
        cls=np.array([AgentClass.CAR, AgentClass.BUS, AgentClass.PEDESTRIAN, AgentClass.ANIMAL, AgentClass.CAR]),
        xy_m=np.array([[5.6, -25.0], [40.0, 5.0], [9.5, -30.0], [30.0, -30.0], [60.0, -60.0]]),
        yaw_rad=np.array([math.pi / 2 + 0.1, math.pi, math.pi / 2, 0.0, 0.0]),
        size_lw_m=np.array([[4.6, 1.9], [12.0, 2.5], [0.5, 0.6], [0.8, 0.3], [4.6, 1.9]]),
        speed_mps=np.array([8.0, 5.0, 1.3, 1.0, 3.0]),
        future_xy_m=np.array([[5.6, -9.0], [30.0, 5.2], [9.5, -27.4], [30.0, -29.0], [66.0, -60.0]]),
        pinned=np.array([False, True, False, False, False]),
    )  # fmt: skip


def test_roundtrip_and_index(tmp_path) -> None:
    s = _scene()
    p = save_scenes(tmp_path / "s.json", [s, Scene.empty("roundabout", np.zeros(3))])
    a, b = load_scenes(p)
    np.testing.assert_allclose(a.xy_m, s.xy_m, atol=1e-3)
    np.testing.assert_array_equal(a.cls, s.cls)
    assert a.pinned[1] and not a.pinned[0]
    assert np.isnan(a.past_xy_m).all() and np.isfinite(a.future_xy_m).all()
    assert b.map_name == "roundabout" and b.n_agents == 0
    assert load_scene(f"{p}#1").map_name == "roundabout"
    assert load_scene(p).map_name == "intersection"
    with pytest.raises(ScenarioFileError, match="out of range"):
        load_scene(f"{p}#2")
    with pytest.raises(ScenarioFileError, match="not an integer"):
        load_scene(f"{p}#x")


@pytest.mark.parametrize(
    ("mutate", "msg"),
    [
        (lambda d: d["scenes"][0]["agents"][0].update({"class": "tank"}), "agent 0: unknown class 'tank'"),
        (lambda d: d["scenes"][0]["agents"][1].pop("yaw_rad"), "agent 1: missing 'yaw_rad'"),
        (lambda d: d["scenes"][0].update({"map": "moon"}), "unknown map 'moon'"),
        (lambda d: d["scenes"][0]["agents"][2].update({"width_m": -1}), "agent 2: size_lw_m must be > 0"),
        (lambda d: d.update({"version": 99}), "version 99 unsupported"),
        (lambda d: d.update({"format": "x"}), "not a scene file"),
    ],
)
def test_malformed_files_name_the_problem(tmp_path, mutate, msg) -> None:
    p = save_scenes(tmp_path / "s.json", [_scene()])
    d = json.loads(p.read_text())
    mutate(d)
    p.write_text(json.dumps(d))
    with pytest.raises(ScenarioFileError, match=msg):
        load_scenes(p)


def test_unreadable_file(tmp_path) -> None:
    with pytest.raises(ScenarioFileError, match="cannot read"):
        load_scenes(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ScenarioFileError, match="not JSON"):
        load_scenes(tmp_path / "bad.json")


def test_place_scene_snaps_and_drops() -> None:
    md = build_map_data("intersection")
    pl = place_scene(_scene(), md)
    got = dict(zip(pl.index.tolist(), range(len(pl.index))))
    assert 4 not in got and pl.dropped[0][0] == 4  # 60 m off any lane
    car = got[0]
    assert (
        pl.lane[car] == 14 and abs(pl.xy_m[car, 0] - 5.2) < 0.1 and abs(pl.yaw_rad[car] - math.pi / 2) < 0.05
    )
    bus = got[1]
    assert pl.lane[bus] == 2  # westbound at y = 5.2
    assert pl.next_lane[bus] == -1  # its +2 s centre is still on its lane: the simulator chooses
    assert md.turn[pl.next_lane[car]] == 0  # +2 s centre past the lane end, straight on
    assert md.kind[pl.lane[got[2]]] in (2, 3)  # pedestrian on a walk lane or crossing
    assert pl.lane[got[3]] == -1  # animal roams


def test_simulation_from_scenario_runs() -> None:
    s = _scene()
    sim = Simulation.from_scenario(
        s, SimConfig(n_agents=4, disabled_modalities=("camera", "lidar", "radar", "lwir"))
    )
    assert sim.n_active == 4 and sim.cfg.scenario == "intersection"
    ego = sim.ego_pose()
    assert abs(ego[0] - 5.2) < 0.2 and abs(ego[1] - (-40.0)) < 0.5
    snap = sim.snapshot()
    bus = snap[snap[:, k.A_CLS] == AgentClass.BUS][0]
    assert abs(bus[k.A_Y] - 5.2) < 0.1
    for _ in range(50):
        sim.step()
    assert sim.counters["out_of_bounds"] == 0
    snap2 = sim.snapshot()
    assert snap2[snap2[:, k.A_CLS] == AgentClass.BUS][0][k.A_X] < bus[k.A_X]  # driving west


def test_sim_cli_from_scenario(tmp_path, capsys) -> None:
    from prescient.service.app.cli import main

    p = save_scenes(tmp_path / "s.json", [_scene()])
    assert main(["sim", "--offline", "--fast", "--duration", "1", "--from-scenario", f"{p}#0"]) == 0
    out = capsys.readouterr().out
    assert "4 of 5 agents placed" in out and "intersection" in out
    assert main(["sim", "--offline", "--fast", "--duration", "1", "--from-scenario", f"{p}#3"]) == 1
    assert "scene index 3 out of range" in capsys.readouterr().err
