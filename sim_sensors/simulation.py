"""The stepping core: world state, spawning, schedules and message emission.

A :class:`Simulation` is a plain library object: no sockets, no wall clock. It is a pure function
of its :class:`~sim_sensors.config.SimConfig` (same config, same message stream).
"""

from __future__ import annotations

import heapq
import logging
import math
from collections.abc import Iterator

import numpy as np

from bus.messages import (
    TOPIC_EGO,
    TOPIC_GROUND_TRUTH,
    TOPIC_TRAFFIC_LIGHTS,
    AgentClass,
    EgoState,
    GroundTruth,
    Header,
    Message,
    Modality,
    TrafficLights,
    VectorMap,
)
from sim_sensors import kernels as k
from sim_sensors.config import (
    EGO_CENTER_FROM_REAR_AXLE_M,
    EGO_SIZE_LWH_M,
    BehaviourSpec,
    ClassMix,
    SensorSuite,
    SimConfig,
)
from sim_sensors.maps import KIND_BIKE, KIND_TURNAROUND, KIND_VEHICLE, KIND_WALK, MapData, build_map_data
from sim_sensors.scenario_file import Placement, Scene, place_scene, snap_to_lane
from sim_sensors.sensors import SensorRig

log = logging.getLogger(__name__)

NS_PER_S = 1_000_000_000
STATE_PERIOD_NS = 100_000_000  # EgoState, GroundTruth, TrafficLights at 10 Hz

# (length, width, height) ranges and desired-speed ranges (m/s) per class, typical values.
_SIZE = {
    AgentClass.CAR: ((4.2, 5.0), (1.75, 1.95), (1.4, 1.7)),
    AgentClass.TRUCK: ((7.0, 10.0), (2.4, 2.55), (3.0, 3.8)),
    AgentClass.BUS: ((11.5, 12.5), (2.5, 2.55), (3.0, 3.3)),
    AgentClass.PEDESTRIAN: ((0.45, 0.55), (0.55, 0.65), (1.55, 1.9)),
    AgentClass.CYCLIST: ((1.7, 1.9), (0.55, 0.65), (1.6, 1.8)),
    AgentClass.ANIMAL: ((0.6, 1.0), (0.25, 0.35), (0.4, 0.7)),
}
_V0 = {
    AgentClass.CAR: (11.0, 18.0),
    AgentClass.TRUCK: (10.0, 14.0),
    AgentClass.BUS: (9.0, 13.0),
    AgentClass.PEDESTRIAN: (1.1, 1.6),
    AgentClass.CYCLIST: (4.0, 6.5),
    AgentClass.ANIMAL: (0.8, 2.0),
}
_EGO_V0_MPS = 12.0


def capture_time_ns(k_frame: int, rate_hz: float) -> int:
    """Capture time of frame ``k_frame`` of a sensor at ``rate_hz`` (exact in integer ns)."""
    millihz = round(rate_hz * 1000)
    return (k_frame * NS_PER_S * 1000) // millihz


class Simulation:
    """Deterministic world + sixteen sensors.

    Args:
        cfg: what to simulate.
        sensors: sensor models (defaults: :class:`~sim_sensors.config.SensorSuite`).
        behaviour: behaviour parameters.
        class_mix: class fractions of spawned agents.

    Attributes:
        map: the VectorMap (world frame).
        map_data: the simulator's lane graph.
        time_ns: current sim time (starts at 0).
        counters: event counts (spawned, left_map, stuck, out_of_bounds, lane_changes, jaywalks).
    """

    def __init__(
        self,
        cfg: SimConfig,
        sensors: SensorSuite | None = None,
        behaviour: BehaviourSpec | None = None,
        class_mix: ClassMix | None = None,
        initial_scene: Scene | None = None,
    ) -> None:
        self.cfg = cfg
        self.behaviour = behaviour or BehaviourSpec()
        self.class_mix = class_mix or ClassMix()
        self.map_data: MapData = build_map_data(cfg.scenario, cfg.seed)
        self.map: VectorMap = self.map_data.vector_map
        suite = sensors or SensorSuite()
        self.rig = SensorRig(suite.specs, night=cfg.night, seed=cfg.seed)
        self.enabled = tuple(m for m in Modality if m not in cfg.disabled_modalities)
        self._rng = np.random.default_rng(cfg.seed)
        self._krng = np.array([(cfg.seed * 0x9E3779B97F4A7C15 + 7) % (1 << 64)], np.uint64)
        self.dt_ns = round(cfg.dt_s * NS_PER_S)
        self.time_ns = 0
        cap = max(
            64, 2 * cfg.n_agents + 16, (initial_scene.n_agents + 16) if initial_scene is not None else 0
        )
        self.F = np.zeros((cap, k.NF))
        self.I = np.zeros((cap, k.NI), np.int64)
        self._counts = np.zeros(k.NC, np.int64)
        self.spawned = 0
        self._next_id = 1
        b = self.behaviour
        self._params = np.array(
            [
                b.idm_accel_mps2,
                b.idm_decel_mps2,
                b.idm_headway_s,
                b.idm_min_gap_m,
                b.lane_change_rate_hz,
                b.jaywalk_rate_hz,
                b.stuck_timeout_s,
            ]
        )
        md = self.map_data
        self._light_lanes = np.nonzero(md.group[: md.n_road] >= 0)[0]
        self._crossings = np.nonzero(md.ped_cycle_s > 0)[0]
        self._unsignalised = np.nonzero((md.kind == 3) & (md.ped_cycle_s <= 0))[0]
        self._plans = [tuple(float(v) for v in p) for p in md.group_plan_s]
        self._offsets = [float(o) for o in md.group_offset_s]
        self._light_pairs = [(int(lane), int(md.group[lane])) for lane in self._light_lanes]
        self._crossings_list = [int(c) for c in self._crossings]
        self._lane_light = np.zeros(md.n_lanes, np.uint8)
        self._cross = np.full(md.n_lanes, -1.0)
        self._cross[self._unsignalised] = 1e9
        self._frame_k = {m: 1 for m in self.enabled}
        self._pending: list[tuple[int, int, Message]] = []
        self._order = 0
        self.placement: Placement | None = None
        if initial_scene is None:
            self._spawn_ego()
            self._spawn(cfg.n_agents, initial=True)
        else:
            self._place_scene(initial_scene)

    @classmethod
    def from_scenario(cls, scene: Scene, cfg: SimConfig | None = None, **kwargs: object) -> Simulation:
        """Start from a scene (e.g. a generated one) instead of the random spawn.

        The ego and every agent are snapped onto the lane graph by
        :func:`sim_sensors.scenario_file.place_scene` (what was dropped is in ``self.placement``);
        they then follow their behaviour models, and the spawner keeps ``cfg.n_agents`` alive as
        usual (default: the scene's agent count).

        Args:
            scene: the scene; its ``map_name`` overrides ``cfg.scenario``.
            cfg: other settings (seed, sensors, ...); default ``SimConfig()``.
            **kwargs: passed to the constructor (sensors, behaviour, class_mix).
        """
        base = cfg or SimConfig(n_agents=scene.n_agents)
        cfg2 = base.model_copy(update={"scenario": scene.map_name})
        return cls(cfg2, initial_scene=scene, **kwargs)  # type: ignore[arg-type]

    # ------------------------------------------------------------------------------------------
    # Public API.
    # ------------------------------------------------------------------------------------------
    @property
    def counters(self) -> dict[str, int]:
        """Event counters since start."""
        c = self._counts
        return {
            "spawned": self.spawned,
            "left_map": int(c[k.C_LEFT_MAP]),
            "stuck": int(c[k.C_STUCK]),
            "out_of_bounds": int(c[k.C_OUT_OF_BOUNDS]),
            "lane_changes": int(c[k.C_LANE_CHANGES]),
            "jaywalks": int(c[k.C_JAYWALKS]),
        }

    @property
    def n_active(self) -> int:
        """Active agents, ego excluded."""
        return int(self.I[:, k.I_ACTIVE].sum()) - 1

    def step(self) -> list[Message]:
        """Advance one physics step; return the messages due in it, oldest delivery first.

        Returns:
            Sensor frames whose delivery time (capture + latency) fell in this step, and at each
            100 ms boundary EgoState, GroundTruth and TrafficLights. Headers carry topic and
            ``stamp_ns`` (capture time); ``seq`` and ``sent_mono_ns`` are set by the publisher.
        """
        md = self.map_data
        t0, t1 = self.time_ns, self.time_ns + self.dt_ns
        t0_s = t0 / NS_PER_S
        lane_light, cross_elapsed = self._signal_inputs(t0_s)
        k.step_agents_kernel(
            self.F, self.I, md.pts, md.off, md.cum_s, md.length, md.kind, md.speed, md.stop_s, md.yield_,
            md.left_nb, md.right_nb, md.succ_off, md.succ, md.pred_off, md.pred, md.road_side, md.jay_dist,
            md.turnaround, md.turn, md.is_intersection, md.bounds, lane_light, cross_elapsed, self._params,
            t0_s, self.dt_ns / NS_PER_S, self._krng, self._counts,
        )  # fmt: skip
        self.time_ns = t1
        if t1 // STATE_PERIOD_NS > t0 // STATE_PERIOD_NS:
            if self.n_active < self.cfg.n_agents:
                self._spawn(min(5, self.cfg.n_agents - self.n_active), initial=False)
            self._queue(t1, self._state_messages(t1))
        if self.enabled:
            self._capture_due(t1)
        out = []
        while self._pending and self._pending[0][0] <= t1:
            out.append(heapq.heappop(self._pending)[2])
        return out

    def run(self, duration_s: float) -> Iterator[list[Message]]:
        """Step for ``duration_s`` of sim time, yielding each step's messages."""
        n = int(round(duration_s * NS_PER_S / self.dt_ns))
        for _ in range(n):
            yield self.step()

    def ego_pose(self) -> np.ndarray:
        """(3,) float64 world ``[x, y, yaw]`` of the ego rear axle now."""
        return self._ego_pose_at(0.0)

    def snapshot(self, dt_s: float = 0.0) -> np.ndarray:
        """Packed agent table (M, NA) at ``time_ns + dt_s`` (linear extrapolation), ego row last."""
        idx = np.nonzero(self.I[:, k.I_ACTIVE])[0]
        others = idx[idx != 0]
        order = np.concatenate([others, [0]])
        F, I = self.F[order], self.I[order]  # noqa: E741 (I: int state table, as in the kernels)
        AG = np.empty((len(order), k.NA))
        AG[:, k.A_X] = F[:, k.F_X] + F[:, k.F_VX] * dt_s
        AG[:, k.A_Y] = F[:, k.F_Y] + F[:, k.F_VY] * dt_s
        AG[:, k.A_YAW] = F[:, k.F_YAW] + F[:, k.F_YAWRATE] * dt_s
        AG[:, k.A_L] = F[:, k.F_LEN]
        AG[:, k.A_W] = F[:, k.F_WID]
        AG[:, k.A_H] = F[:, k.F_HGT]
        AG[:, k.A_VX] = F[:, k.F_VX]
        AG[:, k.A_VY] = F[:, k.F_VY]
        AG[:, k.A_CLS] = I[:, k.I_CLS]
        AG[:, k.A_ATTR] = I[:, k.I_ATTR]
        AG[:, k.A_FLAGS] = I[:, k.I_FLAGS]
        AG[:, k.A_ID] = I[:, k.I_ID]
        return AG

    # ------------------------------------------------------------------------------------------
    # Internals.
    # ------------------------------------------------------------------------------------------
    def _queue(self, emit_ns: int, msgs: list[Message]) -> None:
        for msg in msgs:
            heapq.heappush(self._pending, (emit_ns, self._order, msg))
            self._order += 1

    def _signal_inputs(self, t_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Per-lane light state and crossing walk time now (small loops: cheaper than numpy here)."""
        md = self.map_data
        lane_light = self._lane_light
        if len(self._plans):
            states = [self._group_state(g, t_s) for g in range(len(self._plans))]
            for lane, g in self._light_pairs:
                lane_light[lane] = states[g]
        cross = self._cross
        for lane in self._crossings_list:
            phase = t_s % md.ped_cycle_s[lane]
            start = md.ped_start_s[lane]
            cross[lane] = phase - start if start <= phase < md.ped_end_s[lane] else -1.0
        return lane_light, cross

    def _group_state(self, g: int, t_s: float) -> int:
        green, yellow, red = self._plans[g]
        phase = (t_s - self._offsets[g]) % (green + yellow + red)
        return 3 if phase < green else (2 if phase < green + yellow else 1)

    def _ego_pose_at(self, dt_s: float) -> np.ndarray:
        F = self.F[0]
        yaw = F[k.F_YAW] + F[k.F_YAWRATE] * dt_s
        cx, cy = F[k.F_X] + F[k.F_VX] * dt_s, F[k.F_Y] + F[k.F_VY] * dt_s
        off = EGO_CENTER_FROM_REAR_AXLE_M
        return np.array([cx - off * math.cos(yaw), cy - off * math.sin(yaw), yaw])

    def _capture_due(self, t1: int) -> None:
        cache: dict[int, np.ndarray] = {}
        for m in self.enabled:
            spec = self.rig.specs[m]
            while True:
                tc = capture_time_ns(self._frame_k[m], spec.rate_hz)
                if tc > t1:
                    break
                self._frame_k[m] += 1
                dt_s = (tc - t1) / NS_PER_S
                AG = cache.get(tc)
                if AG is None:
                    AG = cache[tc] = self.snapshot(dt_s)
                ego_v = self.F[0, k.F_VX : k.F_VY + 1]
                frames = self.rig.capture(m, tc, AG, self._ego_pose_at(dt_s), ego_v)
                self._queue(tc + spec.latency_ns, frames)

    def _state_messages(self, t_ns: int) -> list[Message]:
        md = self.map_data
        act = np.nonzero(self.I[:, k.I_ACTIVE])[0]
        act = act[act != 0]
        F, I = self.F[act], self.I[act]  # noqa: E741 (I: int state table, as in the kernels)
        gt = GroundTruth(
            header=Header(topic=TOPIC_GROUND_TRUTH, stamp_ns=t_ns),
            agent_id=I[:, k.I_ID].astype(np.int64),
            class_id=I[:, k.I_CLS].astype(np.int32),
            position_m=F[:, k.F_X : k.F_Y + 1].astype(np.float32),
            yaw_rad=F[:, k.F_YAW].astype(np.float32),
            velocity_mps=F[:, k.F_VX : k.F_VY + 1].astype(np.float32),
            accel_mps2=F[:, k.F_AX : k.F_AY + 1].astype(np.float32),
            size_lwh_m=F[:, k.F_LEN : k.F_HGT + 1].astype(np.float32),
            attributes=I[:, k.I_ATTR].astype(np.uint8),
        )
        e = self.F[0]
        ego = EgoState(
            header=Header(topic=TOPIC_EGO, stamp_ns=t_ns),
            pose=self._ego_pose_at(0.0),
            velocity_mps=np.array([e[k.F_VX], e[k.F_VY]], np.float32),
            accel_mps2=float(e[k.F_A]),
            yaw_rate_radps=float(e[k.F_YAWRATE]),
            size_lwh_m=np.array(EGO_SIZE_LWH_M, np.float32),
            plan_xy_m=self._ego_plan(),
        )
        states = md.light_states(t_ns / NS_PER_S) if len(md.group_plan_s) else np.zeros(0, np.uint8)
        lights = TrafficLights(
            header=Header(topic=TOPIC_TRAFFIC_LIGHTS, stamp_ns=t_ns),
            lane_id=self._light_lanes.astype(np.int64),
            state=states[md.group[self._light_lanes]].astype(np.uint8)
            if len(states)
            else np.zeros(0, np.uint8),
        )
        return [ego, gt, lights]

    def _ego_plan(self, horizon_m: float = 60.0, step_m: float = 2.0) -> np.ndarray:
        """(S, 2) float32 route ahead of the ego: current lane then the chosen next lane."""
        md = self.map_data
        lane, nxt, s = int(self.I[0, k.I_LANE]), int(self.I[0, k.I_NEXT]), float(self.F[0, k.F_S])
        parts = []
        for lane_i, s0 in ((lane, s), (nxt, 0.0)):
            if lane_i < 0:
                break
            a, b = md.off[lane_i], md.off[lane_i + 1]
            s_vals = np.arange(s0, md.length[lane_i], step_m)
            parts.append(np.stack([np.interp(s_vals, md.cum_s[a:b], md.pts[a:b, i]) for i in (0, 1)], axis=1))
        pts = np.concatenate(parts) if parts else np.zeros((0, 2))
        return pts[: int(horizon_m / step_m)].astype(np.float32)

    # ------------------------------------------------------------------------------------------
    # Spawning.
    # ------------------------------------------------------------------------------------------
    def _place_scene(self, scene: Scene) -> None:
        """Ego and agents from a scene (see :meth:`from_scenario`)."""
        md = self.map_data
        ego_xy = scene.ego_pose[:2] + EGO_CENTER_FROM_REAR_AXLE_M * np.array(
            [math.cos(scene.ego_pose[2]), math.sin(scene.ego_pose[2])]
        )
        road = np.arange(md.n_road)
        lane, s, _, _ = snap_to_lane(
            md, road[md.kind[: md.n_road] == KIND_VEHICLE], ego_xy, float(scene.ego_pose[2])
        )
        self._place(0, AgentClass.CAR, lane, s, EGO_SIZE_LWH_M, _EGO_V0_MPS, flags=k.FLAG_EGO)
        self.F[0, k.F_V] = scene.ego_speed_mps
        self._finish_pose(0)
        pl = place_scene(scene, md)
        self.placement = pl
        for j in range(len(pl.index)):
            slot = self._free_slot()
            if slot < 0:
                pl.dropped.append((int(pl.index[j]), "no free slot"))
                continue
            cls = AgentClass(int(pl.cls[j]))
            (_, _), (_, _), (h0, h1) = _SIZE[cls]
            size = (float(pl.size_lw_m[j, 0]), float(pl.size_lw_m[j, 1]), 0.5 * (h0 + h1))
            v = float(pl.speed_mps[j])
            v0 = max(v, 0.5 * sum(_V0[cls]))
            if cls == AgentClass.ANIMAL:
                self._place(slot, cls, -1, 0.0, size, v0)
                F = self.F[slot]
                self.I[slot, k.I_MODE] = k.MODE_ANIMAL
                self.I[slot, k.I_NEXT] = -1
                F[k.F_X], F[k.F_Y], F[k.F_YAW] = pl.xy_m[j, 0], pl.xy_m[j, 1], pl.yaw_rad[j]
                F[k.F_HOMEX], F[k.F_HOMEY] = pl.xy_m[j, 0], pl.xy_m[j, 1]
            else:
                self._place(slot, cls, int(pl.lane[j]), float(pl.s_m[j]), size, v0)
                if pl.next_lane[j] >= 0:
                    self.I[slot, k.I_NEXT] = int(pl.next_lane[j])
                self.F[slot, k.F_V] = (
                    min(v, float(md.speed[pl.lane[j]])) if cls != AgentClass.PEDESTRIAN else v0
                )
            self._finish_pose(slot)
            self.spawned += 1
        if pl.dropped:
            log.info(
                "from scenario: %d of %d agents not placed: %s",
                len(pl.dropped),
                scene.n_agents,
                pl.dropped[:5],
            )

    def _is_entry(self, lane: int) -> bool:
        """True for lanes where traffic enters the map (only ego turnarounds lead into them)."""
        md = self.map_data
        return bool(np.all(md.kind[md.predecessors(lane)] == KIND_TURNAROUND))

    def _free_slot(self) -> int:
        free = np.nonzero(self.I[:, k.I_ACTIVE] == 0)[0]
        free = free[free != 0]  # slot 0 is the ego
        return int(free[0]) if len(free) else -1

    def _spawn_ego(self) -> None:
        md = self.map_data
        entries = [i for i in range(md.n_road) if md.kind[i] == KIND_VEHICLE and self._is_entry(i)]
        lane = int(entries[int(self._rng.integers(len(entries)))])
        s = 0.4 * md.length[lane]
        if md.stop_s[lane] > 0:
            s = max(0.0, min(s, md.stop_s[lane] - 60.0))
        self._place(0, AgentClass.CAR, lane, s, EGO_SIZE_LWH_M, _EGO_V0_MPS, flags=k.FLAG_EGO)
        self.F[0, k.F_V] = 0.6 * _EGO_V0_MPS
        self._finish_pose(0)

    def _place(
        self, slot: int, cls: AgentClass, lane: int, s: float, size, v0: float, flags: int = 0
    ) -> None:
        F, I = self.F[slot], self.I[slot]  # noqa: E741 (I: int state table, as in the kernels)
        F[:] = 0.0
        I[:] = 0
        I[k.I_ACTIVE] = 1
        I[k.I_ID] = self._next_id if not flags & k.FLAG_EGO else 0
        if not flags & k.FLAG_EGO:
            self._next_id += 1
        I[k.I_CLS] = int(cls)
        I[k.I_FLAGS] = flags
        I[k.I_LANE] = lane
        F[k.F_S] = s
        F[k.F_LEN], F[k.F_WID], F[k.F_HGT] = size
        F[k.F_V0] = v0
        I[k.I_ATTR] = k.ATTR_PHONE if flags & k.FLAG_PHONE else 0
        I[k.I_MODE] = k.MODE_LANE
        if lane >= 0:
            I[k.I_NEXT] = k.choose_next_kernel(
                lane,
                bool(flags & k.FLAG_EGO),
                self.map_data.succ_off,
                self.map_data.succ,
                self.map_data.turnaround,
                self._krng,
            )

    def _finish_pose(self, slot: int) -> None:
        md = self.map_data
        F, I = self.F[slot], self.I[slot]  # noqa: E741 (I: int state table, as in the kernels)
        if I[k.I_MODE] == k.MODE_LANE:
            F[k.F_X], F[k.F_Y], F[k.F_YAW] = k.lane_pose_kernel(
                md.pts, md.off, md.cum_s, int(I[k.I_LANE]), F[k.F_S], 0.0
            )
        F[k.F_VX], F[k.F_VY] = F[k.F_V] * math.cos(F[k.F_YAW]), F[k.F_V] * math.sin(F[k.F_YAW])

    def _overlaps(self, x: float, y: float, radius: float, slot: int) -> bool:
        act = self.I[:, k.I_ACTIVE] != 0
        act[slot] = False
        F = self.F[act]
        r = 0.5 * np.hypot(F[:, k.F_LEN], F[:, k.F_WID])
        d = np.hypot(F[:, k.F_X] - x, F[:, k.F_Y] - y)
        return bool(np.any(d < r + radius + 1.0))

    def _spawn(self, n: int, initial: bool) -> int:
        """Try to add ``n`` agents at free places; returns how many were added."""
        md = self.map_data
        rng = self._rng
        probs = self.class_mix.probabilities()
        road = np.arange(md.n_road)
        veh_lanes = road[(md.kind[: md.n_road] == KIND_VEHICLE) & ~md.is_intersection[: md.n_road]]
        entry = np.array([i for i in veh_lanes if self._is_entry(i)])
        bike = road[md.kind[: md.n_road] == KIND_BIKE]
        if len(bike) == 0:
            bike = veh_lanes[md.right_nb[veh_lanes] < 0]
        walk = np.nonzero(md.kind == KIND_WALK)[0]
        ego_xy = self.F[0, k.F_X : k.F_Y + 1].copy()
        added = 0
        for _ in range(n):
            slot = self._free_slot()
            if slot < 0:
                break
            cls = AgentClass(int(rng.choice(len(probs), p=probs)))
            (l0, l1), (w0, w1), (h0, h1) = _SIZE[cls]
            size = (rng.uniform(l0, l1), rng.uniform(w0, w1), rng.uniform(h0, h1))
            v0 = rng.uniform(*_V0[cls])
            flags = 0
            if cls == AgentClass.PEDESTRIAN:
                if rng.random() < self.behaviour.p_phone:
                    flags |= k.FLAG_PHONE
                    v0 *= 0.8
                if rng.random() < self.behaviour.p_jaywalker:
                    flags |= k.FLAG_JAYWALKER
            radius = 0.5 * math.hypot(size[0], size[1])
            for _attempt in range(20):
                if cls in (AgentClass.CAR, AgentClass.TRUCK, AgentClass.BUS, AgentClass.CYCLIST):
                    pool = bike if cls == AgentClass.CYCLIST else (veh_lanes if initial else entry)
                    lane = int(pool[int(rng.integers(len(pool)))])
                    L = md.length[lane]
                    s = (
                        rng.uniform(size[0], max(size[0] + 1.0, L - 15.0))
                        if initial or cls == AgentClass.CYCLIST
                        else rng.uniform(size[0], size[0] + 10.0)
                    )
                    x, y, _ = k.lane_pose_kernel(md.pts, md.off, md.cum_s, lane, s, 0.0)
                    gap = 12.0 if initial else 20.0
                elif cls == AgentClass.PEDESTRIAN:
                    lane = int(walk[int(rng.integers(len(walk)))])
                    s = rng.uniform(0.0, md.length[lane])
                    x, y, _ = k.lane_pose_kernel(md.pts, md.off, md.cum_s, lane, s, 0.0)
                    gap = 0.0
                else:
                    lane = int(walk[int(rng.integers(len(walk)))])
                    s = rng.uniform(0.0, md.length[lane])
                    x, y, yaw = k.lane_pose_kernel(md.pts, md.off, md.cum_s, lane, s, 0.0)
                    side = -md.road_side[lane] if md.road_side[lane] != 0 else 1.0
                    off = rng.uniform(1.5, 4.0) * side  # away from the road
                    x, y = x - off * math.sin(yaw), y + off * math.cos(yaw)
                    gap = 0.0
                if not initial and math.hypot(x - ego_xy[0], y - ego_xy[1]) < 30.0:
                    continue
                if self._overlaps(x, y, radius + gap * 0.5, slot):
                    continue
                if cls == AgentClass.ANIMAL:
                    self._place(slot, cls, -1, 0.0, size, v0, flags)
                    F = self.F[slot]
                    self.I[slot, k.I_MODE] = k.MODE_ANIMAL
                    self.I[slot, k.I_NEXT] = -1
                    F[k.F_X], F[k.F_Y], F[k.F_YAW] = x, y, rng.uniform(-math.pi, math.pi)
                    F[k.F_HOMEX], F[k.F_HOMEY] = x, y
                else:
                    self._place(slot, cls, lane, s, size, v0, flags)
                    F = self.F[slot]
                    if cls == AgentClass.PEDESTRIAN:
                        F[k.F_V] = v0
                    else:
                        F[k.F_V] = min(v0, md.speed[lane]) * (0.7 if initial else 0.9)
                self._finish_pose(slot)
                self.spawned += 1
                added += 1
                break
        return added
