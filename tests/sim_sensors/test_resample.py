"""Resampling the world's future (the floor of ``prescient eval-floor``): new draws from now on,
optionally redrawing what road users cannot see yet; restore_state undoes all of it."""

from __future__ import annotations

import numpy as np

from prescient.sim_sensors.counterfactual import Plan, rollout
from prescient.sim_sensors.layout import I_LANE, I_NEXT
from prescient.sim_sensors.resample import Hidden, agent_rows, hidden_successors, resample
from prescient.sim_sensors.simulation import NS_PER_S, Simulation
from tests.sim_sensors.test_counterfactual import _sim_at


def _future(sim: Simulation, seed: int | None, hidden: Hidden | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(N, 40, 2) agent futures and (40, 2) ego future over 4 s, the state restored after."""
    state = sim.save_state()
    rows = agent_rows(sim)
    if seed is not None:
        resample(sim, seed, hidden or Hidden())
    b = rollout(sim, Plan("keep"), rows, sim.I[rows, 1].copy(), 40)
    sim.restore_state(state)
    return np.nan_to_num(b.xy, nan=1e9), b.ego_xy


def test_resample_is_deterministic_changes_some_futures_and_restores():
    sim = _sim_at("intersection", 1, 6.0, n_agents=40)
    own, own_ego = _future(sim, None)
    a, ego_a = _future(sim, 5)
    b, _ = _future(sim, 5)
    c, _ = _future(sim, 6)
    np.testing.assert_array_equal(a, b)
    moved = np.abs(a - c).max(axis=(1, 2)) > 0.5
    assert 0 < moved.sum() < len(moved)  # some agents' draws matter within 4 s, not all
    again, again_ego = _future(sim, None)  # restore_state put everything back
    np.testing.assert_array_equal(own, again)
    np.testing.assert_array_equal(own_ego, again_ego)


def test_only_unshown_successors_are_redrawn_and_stay_legal():
    sim = _sim_at("arterial", 2, 8.0, n_agents=60)
    rows = agent_rows(sim)
    before = sim.I[rows, I_NEXT].copy()
    hidden = hidden_successors(sim, rows)
    assert 0 < hidden.sum() < len(rows)
    state = sim.save_state()
    changed = np.zeros(len(rows), bool)
    for seed in range(12):
        sim.restore_state(state)
        redrawn = resample(sim, seed, Hidden(successors=True))
        np.testing.assert_array_equal(redrawn, hidden)
        after = sim.I[rows, I_NEXT]
        assert np.array_equal(after[~hidden], before[~hidden])  # shown turns are kept
        g = sim.graph
        for r, nxt in zip(rows[hidden].tolist(), after[hidden].tolist(), strict=True):
            ln = g.lanes[int(sim.I[r, I_LANE])]
            assert nxt in g.succ[ln["succ_lo"] : ln["succ_hi"]].tolist()
        changed |= after != before
    assert changed[hidden].any()
    sim.restore_state(state)
    np.testing.assert_array_equal(sim.I[rows, I_NEXT], before)


def test_signal_phase_keeps_every_lights_colour_now():
    sim = _sim_at("intersection", 3, 7.0, n_agents=40)
    clock = sim.signals
    t_s = sim.time_ns / NS_PER_S
    offsets = clock.offsets_s
    colours = [clock._group_state(g, t_s) for g in range(len(offsets))]
    assert offsets
    state = sim.save_state()
    moved = False
    for seed in range(5):
        sim.restore_state(state)
        resample(sim, seed, Hidden(signal_phase=True))
        assert [clock._group_state(g, t_s) for g in range(len(offsets))] == colours
        moved |= clock.offsets_s != offsets
    assert moved
    sim.restore_state(state)
    assert clock.offsets_s == offsets
