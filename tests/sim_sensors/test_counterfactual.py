"""Counterfactual branches: state copy, ego plans, agents reacting to the ego, far agents unaffected."""

from __future__ import annotations

import numpy as np
import pytest

from prescient.bus.messages import Modality
from prescient.sim_sensors.config import EGO_SIZE_LWH_M, SimConfig
from prescient.sim_sensors.counterfactual import Plan, branch, future_spread
from prescient.sim_sensors.layout import F_LEN, F_S, F_V, F_X, F_Y, I_ACTIVE, I_ID, I_LANE
from prescient.sim_sensors.simulation import NS_PER_S, Simulation


def _sim_at(scenario: str, seed: int, at_s: float, n_agents: int = 30) -> Simulation:
    """A physics-only simulation (no sensors) stepped to ``at_s``."""
    sim = Simulation(
        SimConfig(scenario=scenario, seed=seed, n_agents=n_agents, disabled_modalities=tuple(Modality))
    )
    while sim.time_ns < round(at_s * NS_PER_S):
        sim.step_physics()
    return sim


def _row_of(sim: Simulation, agent_id: int) -> int:
    return int(np.nonzero((sim.I[:, I_ID] == agent_id) & (sim.I[:, I_ACTIVE] != 0))[0][0])


def test_keep_branch_equals_unbranched_run_bit_for_bit() -> None:
    """``keep`` reproduces what the simulator then does (state copy incl. RNG and spawner), and the
    simulation is left as it was."""
    sim = _sim_at("intersection", 1, 6.0, n_agents=40)
    before = sim.save_state()
    (keep,) = branch(sim, ["keep"], horizon_s=8.0)
    after = sim.save_state()
    np.testing.assert_array_equal(before.F, after.F)
    np.testing.assert_array_equal(before.krng, after.krng)
    assert sim.time_ns == before.time_ns and keep.xy.shape == (len(keep.agent_ids), 80, 2)
    rows = {int(i): _row_of(sim, int(i)) for i in keep.agent_ids}
    k = 0
    while k < 80:
        if not sim.step_physics():
            continue
        np.testing.assert_array_equal(sim.F[0, [F_X, F_Y]], keep.ego_xy[k])
        for n, agent in enumerate(keep.agent_ids):
            r = rows[int(agent)]
            alive = sim.I[r, I_ACTIVE] != 0 and sim.I[r, I_ID] == agent
            assert alive == keep.valid[n, k]
            if alive:
                np.testing.assert_array_equal(sim.F[r, [F_X, F_Y]], keep.xy[n, k])
        k += 1


def test_follower_stops_behind_stopped_ego_without_collision() -> None:
    """The car right behind the ego on its lane brakes to a stop behind it under ``stop``."""
    sim = _sim_at("roundabout", 0, 4.0)
    lane, s_ego = sim.I[0, I_LANE], sim.F[0, F_S]
    act = np.nonzero(sim.I[:, I_ACTIVE])[0]
    behind = [r for r in act if r != 0 and sim.I[r, I_LANE] == lane and sim.F[r, F_S] < s_ego]
    row = max(behind, key=lambda r: sim.F[r, F_S])
    keep, stop = branch(sim, [Plan("keep"), Plan("stop")])
    n = int(np.nonzero(keep.agent_ids == sim.I[row, I_ID])[0][0])
    assert stop.ego_speed[-1] == 0.0 and keep.ego_speed[-1] > 2.0
    assert keep.valid[n].all() and stop.valid[n].all()
    assert np.linalg.norm(keep.xy[n, -1] - stop.xy[n, -1]) > 5.0
    gap = np.linalg.norm(stop.xy[n] - stop.ego_xy, axis=1) - 0.5 * (sim.F[row, F_LEN] + EGO_SIZE_LWH_M[0])
    assert gap.min() > 0.5  # centre distance minus half lengths: never touching


def test_roundabout_entry_yields_to_ego_in_ring() -> None:
    """A car on another arm waits at its give-way line while the ego drives into the ring (keep);
    when the ego stops before the ring, it enters without waiting."""
    sim = _sim_at("roundabout", 0, 18.0)
    keep, stop = branch(sim, ["keep", "stop"])
    n = int(np.nonzero(keep.agent_ids == 37)[0][0])
    assert sim.I[_row_of(sim, 37), I_LANE] != sim.I[0, I_LANE]  # not behind the ego
    assert future_spread([keep, stop])[n] > 1.0
    v_keep, v_stop = (np.linalg.norm(b.vel[n], axis=1) for b in (keep, stop))
    assert v_keep.min() < 0.5 < v_stop.min()


def test_far_agents_unaffected_by_ego_plan() -> None:
    """Agents > 80 m away and not upstream of the ego get bit-identical futures in every branch.

    Upstream traffic (same direction, behind the ego) is excluded on purpose: the IDM couples
    every car to the one ahead at any distance, so a slowing ego sends a real (small) wave back
    through the queue behind it.
    """
    sim = _sim_at("arterial", 0, 12.0, n_agents=50)
    bs = branch(sim, ["keep", "slow", "stop"])
    rel = bs[0].xy[:, 0] - bs[0].ego_xy[0]
    yaw_e = bs[0].ego_yaw[0]
    along = rel[:, 0] * np.cos(yaw_e) + rel[:, 1] * np.sin(yaw_e)
    same_dir = np.cos(bs[0].yaw[:, 0] - yaw_e) > 0.5
    far = (np.linalg.norm(rel, axis=1) > 80.0) & ~(same_dir & (along < 0.0))
    assert far.sum() >= 10
    assert future_spread(bs)[far].max() == 0.0


def test_branches_deterministic_and_plans_validated() -> None:
    """Two calls give the same futures; ``route`` sends the ego elsewhere when keep had a choice."""
    sim = _sim_at("t_junction", 1, 2.0)
    a = branch(sim, ["keep", "slow", "stop", "route"])
    b = branch(sim, ["keep", "slow", "stop", "route"])
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.xy, y.xy)
        np.testing.assert_array_equal(x.ego_xy, y.ego_xy)
    assert a[3].route is not None and a[3].applied
    assert np.nanmax(np.linalg.norm(a[3].ego_xy - a[0].ego_xy, axis=1)) > 1.0
    lane, other = a[3].route
    assert other in a[3].lanes_visited and other not in a[0].lanes_visited
    assert a[1].ego_speed[-1] <= 0.5 * sim.F[0, F_V] + 1e-9  # slow: half the speed at the branch
    with pytest.raises(ValueError, match="plan kind"):
        Plan("reverse")  # type: ignore[arg-type]
