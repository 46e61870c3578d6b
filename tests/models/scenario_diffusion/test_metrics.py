"""Realism metrics on hand-made scenes."""

from __future__ import annotations

import math

import numpy as np

from prescient.models.scenario_diffusion import grid as G
from prescient.models.scenario_diffusion.data import MapRaster
from prescient.models.scenario_diffusion.metrics import (
    collisions,
    lane_heading_error,
    mmd2,
    mmd_table,
    on_drivable,
    scene_stats,
)
from prescient.sim_sensors.maps import build_map_data

# Ego on lane 14 of the intersection (northbound, x = 5.2): ego frame x = north, y = west.
EGO = np.array([5.2, -40.0, math.pi / 2])


def _t(rows) -> np.ndarray:
    t = np.zeros((len(rows), G.AGENT_COLS))
    for i, (cls, x, y, yaw, length, width) in enumerate(rows):
        t[i, [G.A_CLS, G.A_X, G.A_Y, G.A_YAW, G.A_L, G.A_W]] = cls, x, y, yaw, length, width
    return t


def test_mmd_zero_for_same_and_grows_with_shift() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2))
    assert mmd2(x, x, (1.0,)) == 0.0
    small, big = mmd2(x, x + 0.5, (1.0,)), mmd2(x, x + 3.0, (1.0,))
    assert 0 < small < big
    t = _t([(1, 5, 0, 0, 4.5, 1.9)] * 3)
    r = mmd_table([t], [t])
    assert set(r) == {"position", "heading", "speed", "size"} and all(abs(v) < 1e-12 for v in r.values())


def test_lane_heading_drivable_and_collisions() -> None:
    md = build_map_data("intersection")
    m = MapRaster()("intersection", EGO)
    # Car 10 m ahead on the ego's lane, aligned; one reversed on the same lane; one on the sidewalk.
    t = _t([(1, 10.0, 0.0, 0.0, 4.5, 1.9), (1, 20.0, 0.0, math.pi, 4.5, 1.9), (1, 10.0, -9.0, 0.0, 4.5, 1.9)])
    e = lane_heading_error(t, EGO, md)
    assert e[0] < 0.05 and e[1] > 3.0 and np.isnan(e[2])
    assert on_drivable(t, m).tolist() == [True, True, False]
    c = collisions(
        _t([(1, 10.0, 0.0, 0.0, 4.5, 1.9), (1, 12.0, 0.5, 0.0, 4.5, 1.9), (4, 1.0, 0.5, 0.0, 0.5, 0.6)])
    )
    assert c.tolist() == [True, True, True]  # two cars overlap; the pedestrian stands in the ego box
    two_peds = _t([(4, 10.0, 5.0, 0.0, 0.5, 0.6), (4, 10.2, 5.0, 0.0, 0.5, 0.6), (1, 12.0, 0.5, 0.0, 4.5, 1.9),
                   (1, 10.0, 0.0, 0.0, 4.5, 1.9), (4, 1.0, 0.5, 0.0, 0.5, 0.6)])  # fmt: skip
    assert collisions(two_peds, vehicles_only=True).tolist() == [False, False, True, True, False]
    assert collisions(two_peds).tolist() == [True, True, True, True, True]
    s = scene_stats([t], [m], [EGO], [md])
    assert s["vehicles_on_drivable"] == 2 / 3 and s["agents_in_collision"] == 0.0 and s["mean_agents"] == 3
