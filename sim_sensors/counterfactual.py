"""Counterfactual simulation: branch the world at time t into several ego plans and roll each on.

The same scene under different ego actions: every branch starts from the exact state of the
simulation at t (agents, per-agent RNG streams, spawner, counters; :meth:`Simulation.save_state`)
and runs physics only (no sensors) for the horizon, with the ego's plan override set
(:mod:`prescient.sim_sensors.behaviour.ego_plan`). Other agents react to the ego as to any other
road user: they follow it, brake behind it when it stops, count it in their gap acceptance at
roundabout entries, and pedestrians at unsignalised crossings wait while it is moving near them.

Agents draw random numbers from their own streams (:mod:`prescient.sim_sensors.rng`), so an agent
the plan never reaches gets the same future in every branch. Exceptions: top-up spawns (where and
when new agents appear depends on the ego's position and on who left the map) and agents that
meet one of the agents the ego affected.

``keep`` is the simulator's own ego driver, unchanged: its branch reproduces the unbranched run
bit for bit. The simulation passed to :func:`branch` is left exactly as it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from prescient.sim_sensors.layout import (
    E_DECEL,
    E_MODE,
    E_ROUTE_LANE,
    E_ROUTE_NEXT,
    E_SPEED,
    EGO_CAP_SPEED,
    EGO_FREE,
    F_V,
    F_VX,
    F_VY,
    F_X,
    F_Y,
    F_YAW,
    I_ACTIVE,
    I_ID,
    I_LANE,
    I_NEXT,
    KIND_VEHICLE,
    NE,
)
from prescient.sim_sensors.simulation import NS_PER_S, STATE_PERIOD_NS, SimState, Simulation

PlanKind = Literal["keep", "slow", "stop", "route"]
PLAN_KINDS: tuple[PlanKind, ...] = ("keep", "slow", "stop", "route")
SAMPLE_DT_S = STATE_PERIOD_NS / NS_PER_S  # futures are sampled on the ground-truth grid, 0.1 s


@dataclass(frozen=True)
class Plan:
    """What the ego does in a branch.

    Kinds:
        * ``keep``: the simulator's own driver at its current desired speed (IDM: follows
          leaders, stops at red lights, the route it would have drawn). No override at all.
        * ``slow``: brake at ``slow_decel_mps2`` to ``slow_fraction`` of the speed at the branch
          time, then hold that speed (less when the driver needs to brake for a leader or light).
        * ``stop``: brake at ``stop_decel_mps2`` to a standstill and stay there.
        * ``route``: the driver of ``keep``, but at the first junction where ``keep`` picks a
          successor lane among several, take another one.

    Under ``slow`` and ``stop`` the ego makes no discretionary lane changes.
    """

    kind: PlanKind
    slow_fraction: float = 0.5
    slow_decel_mps2: float = 2.0
    stop_decel_mps2: float = 3.0

    def __post_init__(self) -> None:
        """Reject unknown kinds and non-physical parameters."""
        if self.kind not in PLAN_KINDS:
            raise ValueError(f"plan kind {self.kind!r} not in {PLAN_KINDS}")
        if not 0.0 <= self.slow_fraction <= 1.0:
            raise ValueError(f"slow_fraction must be in [0, 1], got {self.slow_fraction}")
        if self.slow_decel_mps2 <= 0.0 or self.stop_decel_mps2 <= 0.0:
            raise ValueError("decelerations must be > 0 m/s^2")

    @classmethod
    def of(cls, plan: Plan | str) -> Plan:
        """``plan`` itself, or the default plan of that kind name."""
        return plan if isinstance(plan, Plan) else cls(plan)  # type: ignore[arg-type]


@dataclass
class Branch:
    """The futures of one branch, sampled every 0.1 s after the branch time (T samples).

    Positions are box centres, world frame (m); yaw rad ccw from +x; velocities world frame (m/s).
    Agents are those active at the branch time, ego excluded, sorted by id, the same N rows in
    every branch of one :func:`branch` call; a sample is NaN once the agent has left the world.

    Attributes:
        plan: the ego's plan in this branch.
        t0_s: sim time of the branch (s); sample k is at ``t0_s + times_s[k]``.
        times_s: (T,) float64 seconds after ``t0_s``.
        ego_xy: (T, 2) float64 ego box centre; ego_yaw: (T,); ego_vel: (T, 2); ego_speed: (T,) m/s.
        ego_lane: (T,) int64 lane the ego is on.
        agent_ids: (N,) int64.
        xy: (N, T, 2) float64; yaw: (N, T); vel: (N, T, 2) (NaN where not ``valid``).
        valid: (N, T) bool: the agent still exists at that sample.
        route: ``(lane, next_lane)`` the ego was sent along (``route`` plans), else None.
        applied: False for a ``route`` plan that found no junction choice to change.
    """

    plan: Plan
    t0_s: float
    times_s: np.ndarray
    ego_xy: np.ndarray
    ego_yaw: np.ndarray
    ego_vel: np.ndarray
    ego_speed: np.ndarray
    ego_lane: np.ndarray
    agent_ids: np.ndarray
    xy: np.ndarray
    yaw: np.ndarray
    vel: np.ndarray
    valid: np.ndarray
    route: tuple[int, int] | None = None
    applied: bool = True
    lanes_visited: list[int] = field(default_factory=list, repr=False)  # ego lanes, in order

    @property
    def exists_throughout(self) -> np.ndarray:
        """(N,) bool: the agent exists at every sample of the horizon."""
        return np.asarray(self.valid.all(axis=1))

    @property
    def ego_pose(self) -> np.ndarray:
        """(T, 3) float64 ``[x, y, yaw]`` of the ego box centre (the plan a model is conditioned on)."""
        return np.concatenate([self.ego_xy, self.ego_yaw[:, None]], axis=1)


def _plan_array(sim: Simulation, plan: Plan, route: tuple[int, int] | None) -> np.ndarray:
    """(NE,) float64 ego override of ``plan`` at the simulation's current state."""
    out = np.array([EGO_FREE, 0.0, 0.0, -1.0, -1.0])
    if len(out) != NE:  # the E_* columns of layout.py
        raise RuntimeError(f"ego override has {len(out)} columns, layout says {NE}")
    if plan.kind == "slow":
        out[E_MODE], out[E_SPEED], out[E_DECEL] = (
            EGO_CAP_SPEED,
            plan.slow_fraction * sim.F[0, F_V],
            plan.slow_decel_mps2,
        )
    elif plan.kind == "stop":
        out[E_MODE], out[E_SPEED], out[E_DECEL] = EGO_CAP_SPEED, 0.0, plan.stop_decel_mps2
    if route is not None:
        out[E_ROUTE_LANE], out[E_ROUTE_NEXT] = route
    return out


def rollout(
    sim: Simulation, plan: Plan, rows: np.ndarray, ids: np.ndarray, n_samples: int, route: tuple[int, int] | None = None
) -> Branch:
    """Run ``sim`` on (from its state now; not restored) under ``plan`` until ``n_samples`` 0.1 s
    samples are taken, recording agents ``rows`` (with ``ids``; see :func:`branch` for the order)."""
    t0_ns = sim.time_ns
    sim.ego_plan[:] = _plan_array(sim, plan, route)
    N = len(rows)
    ego = np.full((n_samples, 6), np.nan)  # x, y, yaw, vx, vy, v
    ego_lane = np.full(n_samples, -1, np.int64)
    agents = np.full((N, n_samples, 5), np.nan)  # x, y, yaw, vx, vy
    valid = np.zeros((N, n_samples), bool)
    times = np.zeros(n_samples)
    lanes_visited = [int(sim.I[0, I_LANE])]
    alive = np.ones(N, bool)
    k = 0
    while k < n_samples:
        boundary = sim.step_physics()
        lane = int(sim.I[0, I_LANE])
        if lane != lanes_visited[-1]:
            lanes_visited.append(lane)
        if not boundary:
            continue
        F, I = sim.F, sim.I  # noqa: E741 (I: int state table, as in the kernels)
        alive &= (I[rows, I_ACTIVE] != 0) & (I[rows, I_ID] == ids)  # rows are reused by new agents
        valid[:, k] = alive
        agents[alive, k] = F[rows[alive]][:, [F_X, F_Y, F_YAW, F_VX, F_VY]]
        ego[k] = F[0, [F_X, F_Y, F_YAW, F_VX, F_VY, F_V]]
        ego_lane[k] = lane
        times[k] = (sim.time_ns - t0_ns) / NS_PER_S
        k += 1
    lanes_visited.append(int(sim.I[0, I_NEXT]))  # the choice already made at the last lane
    return Branch(
        plan=plan,
        t0_s=t0_ns / NS_PER_S,
        times_s=times,
        ego_xy=ego[:, :2],
        ego_yaw=ego[:, 2],
        ego_vel=ego[:, 3:5],
        ego_speed=ego[:, 5],
        ego_lane=ego_lane,
        agent_ids=ids.copy(),
        xy=agents[:, :, :2],
        yaw=agents[:, :, 2],
        vel=agents[:, :, 3:5],
        valid=valid,
        route=route,
        lanes_visited=lanes_visited,
    )


def alternative_route(sim: Simulation, lanes_visited: list[int]) -> tuple[int, int] | None:
    """``(lane, other_successor)`` at the first junction choice along the ego's lane sequence.

    A junction choice is a lane with several vehicle successors; the other successor is the first
    one in the map's order that the sequence did not take. None when the sequence has no choice.
    """
    md = sim.map_data
    for lane, taken in zip(lanes_visited[:-1], lanes_visited[1:], strict=True):
        if lane < 0 or taken < 0:
            continue
        succ = [
            int(s) for s in md.succ[md.succ_off[lane] : md.succ_off[lane + 1]] if md.kind[s] == KIND_VEHICLE
        ]
        others = [s for s in succ if s != taken]
        if taken in succ and others:
            return lane, others[0]
    return None


def branch(sim: Simulation, plans: Sequence[Plan | str], horizon_s: float = 8.0) -> list[Branch]:
    """Branch the world of ``sim`` now into one rollout per plan, physics only; ``sim`` is unchanged.

    Args:
        sim: the simulation at the branch time (any time; samples follow every 100 ms boundary).
        plans: ego plans (or kind names); a ``route`` plan changes the first junction choice of
            the ``keep`` branch (run for it if ``keep`` is not among the plans).
        horizon_s: how far to roll (s); T = round(horizon_s / 0.1) samples.

    Returns:
        One :class:`Branch` per plan, in order, all over the same agents.

    Deterministic: the same state and plan give bit-identical futures.
    """
    plans_ = [Plan.of(p) for p in plans]
    n_samples = int(round(horizon_s / SAMPLE_DT_S))
    if n_samples < 1:
        raise ValueError(f"horizon_s must be >= {SAMPLE_DT_S} s, got {horizon_s}")
    state: SimState = sim.save_state()
    rows = np.nonzero(sim.I[:, I_ACTIVE])[0]
    rows = rows[rows != 0]
    rows = rows[np.argsort(sim.I[rows, I_ID], kind="stable")]
    ids = sim.I[rows, I_ID].copy()
    out: list[Branch | None] = [None] * len(plans_)
    try:
        keep: Branch | None = None
        for k, p in enumerate(plans_):  # keep first: route plans need its lanes
            if p.kind == "keep":
                sim.restore_state(state)
                out[k] = keep = rollout(sim, p, rows, ids, n_samples, None)
        for k, p in enumerate(plans_):
            if p.kind == "keep":
                continue
            route = None
            if p.kind == "route":
                if keep is None:
                    sim.restore_state(state)
                    keep = rollout(sim, Plan("keep"), rows, ids, n_samples, None)
                route = alternative_route(sim, keep.lanes_visited)
            sim.restore_state(state)
            b = rollout(sim, p, rows, ids, n_samples, route)
            b.applied = p.kind != "route" or route is not None
            out[k] = b
    finally:
        sim.restore_state(state)
    return [b for b in out if b is not None]


def future_spread(branches: list[Branch]) -> np.ndarray:
    """(N,) float64 largest distance (m) between any two branches' positions of each agent.

    Taken over the samples where both branches have the agent; 0 for an agent never in two.
    """
    N = len(branches[0].agent_ids)
    spread = np.zeros(N)
    for i, bi in enumerate(branches):
        for bj in branches[i + 1 :]:
            both = bi.valid & bj.valid
            d = np.linalg.norm(bi.xy - bj.xy, axis=-1)
            spread = np.maximum(spread, np.where(both, d, 0.0).max(axis=1, initial=0.0))
    return spread
