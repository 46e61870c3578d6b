"""Resampling the world's future: the same state now, new random draws from now on.

Used to measure how predictable the simulated futures are at all (``prescient eval-floor``):
roll the world on many times from one instant, each time with fresh random draws, and see how
far apart the futures land. What counts as random can be widened to what a road user cannot
see at that instant, so that the spread bounds what any predictor could know:

* ``successors``: the successor lane an agent has already chosen but does not show yet: a
  vehicle's before it is within ``INDICATOR_RANGE_M`` of its lane's end (or on the junction), a
  pedestrian's always (no indicator). It is drawn again as the simulator draws it.
* ``signal_phase``: each light keeps its colour, but how long it has shown it is drawn again.

The ego keeps its own stream and choices: futures are conditioned on what the ego does.
Undo with :meth:`~prescient.sim_sensors.simulation.Simulation.restore_state` (it restores the
signal offsets too).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prescient.sim_sensors.behaviour.lane_motion import INDICATOR_RANGE_M
from prescient.sim_sensors.lanes import choose_next
from prescient.sim_sensors.layout import F_S, I_ACTIVE, I_ID, I_LANE, I_NEXT, KIND_VEHICLE
from prescient.sim_sensors.simulation import NS_PER_S, Simulation


@dataclass(frozen=True)
class Hidden:
    """What, beyond the draws still to come, is drawn again (see the module docstring)."""

    successors: bool = False
    signal_phase: bool = False


def agent_rows(sim: Simulation) -> np.ndarray:
    """(N,) int64 active rows other than the ego, sorted by agent id (as branches order them)."""
    rows = np.nonzero(sim.I[:, I_ACTIVE])[0]
    rows = rows[rows != 0]
    return rows[np.argsort(sim.I[rows, I_ID], kind="stable")]


def hidden_successors(sim: Simulation, rows: np.ndarray) -> np.ndarray:
    """(len(rows),) bool: the agent has chosen a successor lane that it does not show yet."""
    lanes = sim.graph.lanes
    out = np.zeros(len(rows), bool)
    for j, r in enumerate(np.asarray(rows).tolist()):
        lane, nxt = int(sim.I[r, I_LANE]), int(sim.I[r, I_NEXT])
        if lane < 0 or nxt < 0:
            continue
        ln = lanes[lane]
        if ln["kind"] == KIND_VEHICLE:
            out[j] = not (ln["is_intersection"] or ln["length"] - sim.F[r, F_S] < INDICATOR_RANGE_M)
        else:
            out[j] = True
    return out


def resample(sim: Simulation, seed: int, hidden: Hidden = Hidden()) -> np.ndarray:
    """Give ``sim`` new random draws from now on (every agent but the ego, and the spawner), and
    redraw what ``hidden`` names. Deterministic in (state, seed, hidden).

    Returns:
        (N,) bool over :func:`agent_rows`: agents whose successor lane was drawn again.
    """
    rows = agent_rows(sim)
    sim.reseed(seed, rows)
    redrawn = np.zeros(len(rows), bool)
    if hidden.successors:
        redrawn = hidden_successors(sim, rows)
        g = sim.graph
        for r in rows[redrawn].tolist():
            # The agent's own (new) stream, as the simulator draws a successor on entering a lane.
            stream = sim.agent_stream(r)
            sim.I[r, I_NEXT] = choose_next(g, int(sim.I[r, I_LANE]), False, stream)
    if hidden.signal_phase:
        sim.signals.redraw_phase(sim.time_ns / NS_PER_S, np.random.default_rng([seed, 1]))
    return redrawn
