"""Putting agents into the world: the ego, random spawns at free places, and placed scenes.

The :class:`Spawner` writes rows of the simulation's agent tables (:mod:`prescient.sim_sensors.layout`)
in place. It draws sizes, speeds and places from the simulation's numpy generator, in a fixed
order, seeds each new agent's own kernel RNG stream from its id and picks its next lane from it.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from prescient.bus.messages import AgentClass
from prescient.sim_sensors.config import EGO_CENTER_FROM_REAR_AXLE_M, EGO_SIZE_LWH_M, BehaviourSpec, ClassMix
from prescient.sim_sensors.lanes import LaneGraph, choose_next, lane_pose
from prescient.sim_sensors.layout import (
    ATTR_PHONE,
    F_HGT,
    F_HOMEX,
    F_HOMEY,
    F_LEN,
    F_S,
    F_V,
    F_V0,
    F_VX,
    F_VY,
    F_WID,
    F_X,
    F_Y,
    F_YAW,
    FLAG_EGO,
    FLAG_JAYWALKER,
    FLAG_PHONE,
    I_ACTIVE,
    I_ATTR,
    I_CLS,
    I_FLAGS,
    I_ID,
    I_LANE,
    I_MODE,
    I_NEXT,
    KIND_BIKE,
    KIND_TURNAROUND,
    KIND_VEHICLE,
    KIND_WALK,
    MODE_ANIMAL,
    MODE_LANE,
)
from prescient.sim_sensors.maps import MapData
from prescient.sim_sensors.rng import agent_state
from prescient.sim_sensors.scenario_file import Placement, Scene, place_scene, snap_to_lane

log = logging.getLogger(__name__)

# (length, width, height) ranges and desired-speed ranges (m/s) per class, typical values.
SIZE_RANGES_M = {
    AgentClass.CAR: ((4.2, 5.0), (1.75, 1.95), (1.4, 1.7)),
    AgentClass.TRUCK: ((7.0, 10.0), (2.4, 2.55), (3.0, 3.8)),
    AgentClass.BUS: ((11.5, 12.5), (2.5, 2.55), (3.0, 3.3)),
    AgentClass.PEDESTRIAN: ((0.45, 0.55), (0.55, 0.65), (1.55, 1.9)),
    AgentClass.CYCLIST: ((1.7, 1.9), (0.55, 0.65), (1.6, 1.8)),
    AgentClass.ANIMAL: ((0.6, 1.0), (0.25, 0.35), (0.4, 0.7)),
}
V0_RANGES_MPS = {
    AgentClass.CAR: (11.0, 18.0),
    AgentClass.TRUCK: (10.0, 14.0),
    AgentClass.BUS: (9.0, 13.0),
    AgentClass.PEDESTRIAN: (1.1, 1.6),
    AgentClass.CYCLIST: (4.0, 6.5),
    AgentClass.ANIMAL: (0.8, 2.0),
}
EGO_V0_MPS = 12.0
_ON_ROAD = (AgentClass.CAR, AgentClass.TRUCK, AgentClass.BUS, AgentClass.CYCLIST)


class Spawner:
    """Writes new agents into the agent tables ``F`` (C, NF) and ``I`` (C, NI); row 0 is the ego.

    Args:
        F, I: the simulation's agent tables (shared, written in place).
        map_data: the lane graph; graph: its :class:`~prescient.sim_sensors.lanes.LaneGraph` view.
        rng: numpy generator for sizes, speeds and places.
        krng: (C,) uint64 per-row kernel RNG states (:func:`prescient.sim_sensors.rng.agent_state`),
            reseeded for each new agent.
        behaviour, class_mix: what to spawn.
        seed: the simulation's seed (of the per-agent streams).

    Attributes:
        spawned: agents added so far (ego excluded).
    """

    def __init__(
        self,
        F: np.ndarray,
        I: np.ndarray,  # noqa: E741 (I: int state table, as in the kernels)
        map_data: MapData,
        graph: LaneGraph,
        rng: np.random.Generator,
        krng: np.ndarray,
        behaviour: BehaviourSpec,
        class_mix: ClassMix,
        seed: int = 0,
    ) -> None:
        """Keep references; nothing is spawned yet."""
        self.seed = seed
        self.F, self.I = F, I
        self.md, self.g = map_data, graph
        self.rng, self.krng = rng, krng
        self.behaviour, self.class_mix = behaviour, class_mix
        self.spawned = 0
        self._next_id = 1

    # ------------------------------------------------------------------------------------------
    # Rows.
    # ------------------------------------------------------------------------------------------
    def free_slot(self) -> int:
        """First inactive non-ego row, or -1 when the table is full."""
        free = np.nonzero(self.I[:, I_ACTIVE] == 0)[0]
        free = free[free != 0]  # slot 0 is the ego
        return int(free[0]) if len(free) else -1

    def place(self, slot: int, cls: AgentClass, lane: int, s: float, size, v0: float, flags: int = 0) -> None:
        """Reset row ``slot`` to a new agent at arc length ``s`` on ``lane`` (-1: off the graph)."""
        F, I = self.F[slot], self.I[slot]  # noqa: E741 (I: int state table, as in the kernels)
        F[:] = 0.0
        I[:] = 0
        I[I_ACTIVE] = 1
        I[I_ID] = self._next_id if not flags & FLAG_EGO else 0
        if not flags & FLAG_EGO:
            self._next_id += 1
        self.krng[slot] = agent_state(self.seed, int(I[I_ID]))
        I[I_CLS] = int(cls)
        I[I_FLAGS] = flags
        I[I_LANE] = lane
        F[F_S] = s
        F[F_LEN], F[F_WID], F[F_HGT] = size
        F[F_V0] = v0
        I[I_ATTR] = ATTR_PHONE if flags & FLAG_PHONE else 0
        I[I_MODE] = MODE_LANE
        if lane >= 0:
            I[I_NEXT] = choose_next(self.g, lane, bool(flags & FLAG_EGO), self.krng[slot : slot + 1])

    def place_animal(self, slot: int, cls: AgentClass, size, v0: float, pose: tuple, flags: int = 0) -> None:
        """Reset row ``slot`` to an animal at world ``pose`` (x_m, y_m, yaw_rad), home there."""
        self.place(slot, cls, -1, 0.0, size, v0, flags)
        F = self.F[slot]
        self.I[slot, I_MODE] = MODE_ANIMAL
        self.I[slot, I_NEXT] = -1
        F[F_X], F[F_Y], F[F_YAW] = pose
        F[F_HOMEX], F[F_HOMEY] = pose[0], pose[1]

    def finish_pose(self, slot: int) -> None:
        """World pose of a lane agent from its arc length, and velocity from its speed."""
        F, I = self.F[slot], self.I[slot]  # noqa: E741 (I: int state table, as in the kernels)
        if I[I_MODE] == MODE_LANE:
            F[F_X], F[F_Y], F[F_YAW] = lane_pose(self.g, int(I[I_LANE]), F[F_S], 0.0)
        F[F_VX], F[F_VY] = F[F_V] * math.cos(F[F_YAW]), F[F_V] * math.sin(F[F_YAW])

    def overlaps(self, x: float, y: float, radius: float, slot: int) -> bool:
        """True when a disc of ``radius`` m at (x, y) comes within 1 m of an active box's disc."""
        act = self.I[:, I_ACTIVE] != 0
        act[slot] = False
        F = self.F[act]
        r = 0.5 * np.hypot(F[:, F_LEN], F[:, F_WID])
        d = np.hypot(F[:, F_X] - x, F[:, F_Y] - y)
        return bool(np.any(d < r + radius + 1.0))

    def is_entry(self, lane: int) -> bool:
        """True for lanes where traffic enters the map (only ego turnarounds lead into them)."""
        md = self.md
        return bool(np.all(md.kind[md.predecessors(lane)] == KIND_TURNAROUND))

    # ------------------------------------------------------------------------------------------
    # The ego and placed scenes.
    # ------------------------------------------------------------------------------------------
    def spawn_ego(self) -> None:
        """The ego on a random entry lane, 40 % along (at least 60 m before a stop line)."""
        md = self.md
        entries = [i for i in range(md.n_road) if md.kind[i] == KIND_VEHICLE and self.is_entry(i)]
        lane = int(entries[int(self.rng.integers(len(entries)))])
        s = 0.4 * md.length[lane]
        if md.stop_s[lane] > 0:
            s = max(0.0, min(s, md.stop_s[lane] - 60.0))
        self.place(0, AgentClass.CAR, lane, s, EGO_SIZE_LWH_M, EGO_V0_MPS, flags=FLAG_EGO)
        self.F[0, F_V] = 0.6 * EGO_V0_MPS
        self.finish_pose(0)

    def place_scene(self, scene: Scene) -> Placement:
        """Ego and agents of ``scene`` snapped onto the lane graph; returns what was placed / dropped."""
        md = self.md
        ego_xy = scene.ego_pose[:2] + EGO_CENTER_FROM_REAR_AXLE_M * np.array(
            [math.cos(scene.ego_pose[2]), math.sin(scene.ego_pose[2])]
        )
        road = np.arange(md.n_road)
        lane, s, _, _ = snap_to_lane(
            md, road[md.kind[: md.n_road] == KIND_VEHICLE], ego_xy, float(scene.ego_pose[2])
        )
        self.place(0, AgentClass.CAR, lane, s, EGO_SIZE_LWH_M, EGO_V0_MPS, flags=FLAG_EGO)
        self.F[0, F_V] = scene.ego_speed_mps
        self.finish_pose(0)
        pl = place_scene(scene, md)
        for j in range(len(pl.index)):
            slot = self.free_slot()
            if slot < 0:
                pl.dropped.append((int(pl.index[j]), "no free slot"))
                continue
            self._place_scene_agent(slot, pl, j)
        if pl.dropped:
            log.info(
                "from scenario: %d of %d agents not placed: %s",
                len(pl.dropped),
                scene.n_agents,
                pl.dropped[:5],
            )
        return pl

    def _place_scene_agent(self, slot: int, pl: Placement, j: int) -> None:
        """Agent ``j`` of a placement into row ``slot`` (height: the class's typical mid value)."""
        cls = AgentClass(int(pl.cls[j]))
        (_, _), (_, _), (h0, h1) = SIZE_RANGES_M[cls]
        size = (float(pl.size_lw_m[j, 0]), float(pl.size_lw_m[j, 1]), 0.5 * (h0 + h1))
        v = float(pl.speed_mps[j])
        v0 = max(v, 0.5 * sum(V0_RANGES_MPS[cls]))
        if cls == AgentClass.ANIMAL:
            self.place_animal(slot, cls, size, v0, (pl.xy_m[j, 0], pl.xy_m[j, 1], pl.yaw_rad[j]))
        else:
            self.place(slot, cls, int(pl.lane[j]), float(pl.s_m[j]), size, v0)
            if pl.next_lane[j] >= 0:
                self.I[slot, I_NEXT] = int(pl.next_lane[j])
            self.F[slot, F_V] = (
                min(v, float(self.md.speed[pl.lane[j]])) if cls != AgentClass.PEDESTRIAN else v0
            )
        self.finish_pose(slot)
        self.spawned += 1

    # ------------------------------------------------------------------------------------------
    # Random spawns.
    # ------------------------------------------------------------------------------------------
    def _lane_pools(self, initial: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Lanes to spawn on: vehicles (anywhere at start, entries later), bikes, walk lanes."""
        md = self.md
        road = np.arange(md.n_road)
        veh_lanes = road[(md.kind[: md.n_road] == KIND_VEHICLE) & ~md.is_intersection[: md.n_road]]
        entry = np.array([i for i in veh_lanes if self.is_entry(i)])
        bike = road[md.kind[: md.n_road] == KIND_BIKE]
        if len(bike) == 0:
            bike = veh_lanes[md.right_nb[veh_lanes] < 0]
        walk = np.nonzero(md.kind == KIND_WALK)[0]
        return (veh_lanes if initial else entry), bike, walk

    def _new_agent(self, probs: np.ndarray) -> tuple[AgentClass, tuple[float, float, float], float, int]:
        """Random class (from ``probs`` (7,) per AgentClass), size (m), desired speed (m/s), flags."""
        rng = self.rng
        cls = AgentClass(int(rng.choice(len(probs), p=probs)))
        (l0, l1), (w0, w1), (h0, h1) = SIZE_RANGES_M[cls]
        size = (rng.uniform(l0, l1), rng.uniform(w0, w1), rng.uniform(h0, h1))
        v0 = rng.uniform(*V0_RANGES_MPS[cls])
        flags = 0
        if cls == AgentClass.PEDESTRIAN:
            if rng.random() < self.behaviour.p_phone:
                flags |= FLAG_PHONE
                v0 *= 0.8
            if rng.random() < self.behaviour.p_jaywalker:
                flags |= FLAG_JAYWALKER
        return cls, size, v0, flags

    def _candidate(
        self, cls: AgentClass, size, pools, initial: bool
    ) -> tuple[int, float, float, float, float]:
        """A random place for a new agent: ``(lane, s_m, x_m, y_m, clearance_m)``.

        Road users go on a lane (further from others than pedestrians and animals); animals
        1.5-4 m off a sidewalk, away from the road.
        """
        md, rng = self.md, self.rng
        road_pool, bike, walk = pools
        if cls in _ON_ROAD:
            pool = bike if cls == AgentClass.CYCLIST else road_pool
            lane = int(pool[int(rng.integers(len(pool)))])
            L = md.length[lane]
            s = (
                rng.uniform(size[0], max(size[0] + 1.0, L - 15.0))
                if initial or cls == AgentClass.CYCLIST
                else rng.uniform(size[0], size[0] + 10.0)
            )
            x, y, _ = lane_pose(self.g, lane, s, 0.0)
            return lane, s, x, y, 12.0 if initial else 20.0
        lane = int(walk[int(rng.integers(len(walk)))])
        s = rng.uniform(0.0, md.length[lane])
        x, y, yaw = lane_pose(self.g, lane, s, 0.0)
        if cls == AgentClass.ANIMAL:
            side = -md.road_side[lane] if md.road_side[lane] != 0 else 1.0
            off = rng.uniform(1.5, 4.0) * side  # away from the road
            x, y = x - off * math.sin(yaw), y + off * math.cos(yaw)
        return lane, s, x, y, 0.0

    def spawn(self, n: int, initial: bool) -> int:
        """Try to add ``n`` agents at free places (20 tries each); returns how many were added.

        Args:
            initial: the first fill (anywhere, closer together) rather than a top-up (at map
                entries, at least 30 m from the ego).
        """
        pools = self._lane_pools(initial)
        probs = self.class_mix.probabilities()
        ego_xy = self.F[0, F_X : F_Y + 1].copy()
        added = 0
        for _ in range(n):
            slot = self.free_slot()
            if slot < 0:
                break
            cls, size, v0, flags = self._new_agent(probs)
            radius = 0.5 * math.hypot(size[0], size[1])
            for _attempt in range(20):
                lane, s, x, y, gap = self._candidate(cls, size, pools, initial)
                if not initial and math.hypot(x - ego_xy[0], y - ego_xy[1]) < 30.0:
                    continue
                if self.overlaps(x, y, radius + gap * 0.5, slot):
                    continue
                self._spawn_at(slot, cls, size, v0, flags, lane, s, (x, y), initial)
                added += 1
                break
        return added

    def _spawn_at(
        self, slot: int, cls: AgentClass, size, v0: float, flags: int, lane: int, s: float, xy, initial: bool
    ) -> None:
        """Write a random spawn into row ``slot`` (animals face a random way)."""
        if cls == AgentClass.ANIMAL:
            self.place_animal(slot, cls, size, v0, (xy[0], xy[1], self.rng.uniform(-math.pi, math.pi)), flags)
        else:
            self.place(slot, cls, lane, s, size, v0, flags)
            if cls == AgentClass.PEDESTRIAN:
                self.F[slot, F_V] = v0
            else:
                self.F[slot, F_V] = min(v0, self.md.speed[lane]) * (0.7 if initial else 0.9)
        self.finish_pose(slot)
        self.spawned += 1
