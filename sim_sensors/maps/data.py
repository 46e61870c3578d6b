"""The simulator's lane graph (:class:`MapData`) and the fixed-time signal plan."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prescient.bus.messages import VectorMap


@dataclass(frozen=True, eq=False)
class MapData:
    """Struct-of-arrays lane graph used by the simulation kernels (world frame, metres).

    L lanes (exported road lanes first: ``0 .. n_road-1``), P polyline points, G signal groups.

    Attributes:
        pts: (P, 2) float64 centerline points, CSR by ``off`` (L+1,) int64.
        cum_s: (P,) float64 arc length of each point from its lane start.
        length: (L,) float64 lane length.
        kind: (L,) int32 ``KIND_*`` (:mod:`prescient.sim_sensors.layout`).
        width: (L,) float64; speed: (L,) float64 speed limit incl. curvature limit, m/s.
        stop_s: (L,) float64 arc length of the stop line on the lane, -1 if none.
        group: (L,) int32 signal group controlling the lane, -1 if none.
        yield_: (L,) bool: must give way at its end (roundabout entries).
        left_nb / right_nb: (L,) int32 parallel neighbour lanes (aligned arc length), -1 if none.
        is_intersection: (L,) bool; turn: (L,) int32 -1 left, 0 straight, +1 right.
        succ_off / succ: successor CSR (indices); pred_off / pred: predecessor CSR.
        reverse: (L,) int32 opposite-direction twin of a walk lane, -1 if none.
        road_side: (L,) float64 +1 if the road is left of a sidewalk walk lane, -1 right, 0 n/a.
        jay_dist: (L,) float64 distance a jaywalker walks to reach the opposite sidewalk.
        turnaround: (L,) int32 ego-only turnaround lane from the end of an exit lane, -1 if none.
        ped_cycle_s / ped_start_s / ped_end_s: (L,) float64 walk window of a crossing lane
            (start may begin in ``[start, end)`` of each cycle); cycle 0 = unsignalised.
        group_plan_s: (G, 3) float64 ``[green, yellow, red]``; group_offset_s: (G,) float64.
        n_road: number of exported lanes.
        bounds: (4,) float64 ``[x_min, y_min, x_max, y_max]`` of everything, plus a margin.
    """

    name: str
    pts: np.ndarray
    off: np.ndarray
    cum_s: np.ndarray
    length: np.ndarray
    kind: np.ndarray
    width: np.ndarray
    speed: np.ndarray
    stop_s: np.ndarray
    group: np.ndarray
    yield_: np.ndarray
    left_nb: np.ndarray
    right_nb: np.ndarray
    is_intersection: np.ndarray
    turn: np.ndarray
    succ_off: np.ndarray
    succ: np.ndarray
    pred_off: np.ndarray
    pred: np.ndarray
    reverse: np.ndarray
    road_side: np.ndarray
    jay_dist: np.ndarray
    turnaround: np.ndarray
    ped_cycle_s: np.ndarray
    ped_start_s: np.ndarray
    ped_end_s: np.ndarray
    group_plan_s: np.ndarray
    group_offset_s: np.ndarray
    n_road: int
    bounds: np.ndarray
    vector_map: VectorMap

    @property
    def n_lanes(self) -> int:
        """Number of lanes of every kind."""
        return len(self.length)

    def lane_points(self, lane: int) -> np.ndarray:
        """(n, 2) float64 centerline of one lane."""
        return self.pts[self.off[lane] : self.off[lane + 1]]

    def successors(self, lane: int) -> np.ndarray:
        """Successor lane indices of ``lane``."""
        return self.succ[self.succ_off[lane] : self.succ_off[lane + 1]]

    def predecessors(self, lane: int) -> np.ndarray:
        """Predecessor lane indices of ``lane``."""
        return self.pred[self.pred_off[lane] : self.pred_off[lane + 1]]

    def light_states(self, t_s: float) -> np.ndarray:
        """(G,) uint8 LightState of each signal group at sim time ``t_s``."""
        return light_states_at(self.group_plan_s, self.group_offset_s, t_s)


def light_states_at(plan_s: np.ndarray, offset_s: np.ndarray, t_s: float) -> np.ndarray:
    """Fixed-time signal state per group: GREEN, then YELLOW, then RED, repeating.

    Args:
        plan_s: (G, 3) ``[green_s, yellow_s, red_s]``.
        offset_s: (G,) start of each group's green within the cycle, s.
        t_s: sim time, s.

    Returns:
        (G,) uint8 :class:`prescient.bus.messages.LightState` values.
    """
    cycle = plan_s.sum(axis=1)
    phase = np.mod(t_s - offset_s, np.where(cycle > 0, cycle, 1.0))
    out = np.full(len(plan_s), 1, np.uint8)  # RED
    out[phase < plan_s[:, 0] + plan_s[:, 1]] = 2  # YELLOW
    out[phase < plan_s[:, 0]] = 3  # GREEN
    return out
