"""The stepping core: world state, schedules and message emission.

A :class:`Simulation` is a plain library object: no sockets, no wall clock. It is a pure function
of its :class:`~prescient.sim_sensors.config.SimConfig` (same config, same message stream). It owns the agent
tables (:mod:`prescient.sim_sensors.layout`) and wraps the behaviour kernel
(:func:`prescient.sim_sensors.behaviour.step_agents_kernel`) and the sensor rig.
"""

from __future__ import annotations

import copy
import heapq
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from prescient.bus.messages import (
    TOPIC_EGO,
    TOPIC_GROUND_TRUTH,
    TOPIC_TRAFFIC_LIGHTS,
    EgoState,
    GroundTruth,
    Header,
    Message,
    Modality,
    TrafficLights,
    VectorMap,
)
from prescient.sim_sensors.behaviour import StepEnv, step_agents_kernel
from prescient.sim_sensors.config import (
    EGO_CENTER_FROM_REAR_AXLE_M,
    EGO_SIZE_LWH_M,
    BehaviourSpec,
    ClassMix,
    SensorSuite,
    SimConfig,
)
from prescient.sim_sensors.lanes import LaneGraph, lane_graph
from prescient.sim_sensors.layout import (
    A_ATTR,
    A_CLS,
    A_FLAGS,
    A_H,
    A_ID,
    A_L,
    A_VX,
    A_VY,
    A_W,
    A_X,
    A_Y,
    A_YAW,
    C_JAYWALKS,
    C_LANE_CHANGES,
    C_LEFT_MAP,
    C_OUT_OF_BOUNDS,
    C_STUCK,
    EGO_FREE,
    F_A,
    F_AX,
    F_AY,
    F_HGT,
    F_LEN,
    F_S,
    F_VX,
    F_VY,
    F_WID,
    F_X,
    F_Y,
    F_YAW,
    F_YAWRATE,
    I_ACTIVE,
    I_ATTR,
    I_CLS,
    I_FLAGS,
    I_ID,
    I_LANE,
    I_NEXT,
    NA,
    NC,
    NE,
    NF,
    NI,
    agent_records,
)
from prescient.sim_sensors.maps import MapData, build_map_data
from prescient.sim_sensors.rng import agent_state
from prescient.sim_sensors.scenario_file import Placement, Scene
from prescient.sim_sensors.sensors import SensorRig
from prescient.sim_sensors.signals import SignalClock
from prescient.sim_sensors.spawning import Spawner

NS_PER_S = 1_000_000_000
STATE_PERIOD_NS = 100_000_000  # EgoState, GroundTruth, TrafficLights at 10 Hz


@dataclass(frozen=True)
class SimState:
    """Everything the world's physics depends on at one instant (not the sensors' frame queue).

    Made by :meth:`Simulation.save_state`, put back by :meth:`Simulation.restore_state`; copies, so
    the simulation may run on after saving. Signals are a function of ``time_ns`` and of their
    plans' offsets, which are kept (:func:`prescient.sim_sensors.resample.resample` may move them).

    Attributes:
        time_ns: sim time.
        F, I: (C, NF) float64 / (C, NI) int64 agent tables.
        krng: (C,) uint64 per-row kernel RNG states.
        counts: (NC,) int64 event counters.
        ego_plan: (NE,) float64 ego plan override.
        spawn_rng: the spawner's numpy bit generator state.
        spawned, next_id: the spawner's counters.
        signal_offsets_s: each signal group's plan offset (s).
    """

    time_ns: int
    F: np.ndarray
    I: np.ndarray  # noqa: E741 (I: int state table, as in the kernels)
    krng: np.ndarray
    counts: np.ndarray
    ego_plan: np.ndarray
    spawn_rng: dict[str, Any]
    spawned: int
    next_id: int
    signal_offsets_s: tuple[float, ...] = ()


def capture_time_ns(k_frame: int, rate_hz: float) -> int:
    """Capture time of frame ``k_frame`` of a sensor at ``rate_hz`` (exact in integer ns)."""
    millihz = round(rate_hz * 1000)
    return (k_frame * NS_PER_S * 1000) // millihz


class Simulation:
    """Deterministic world + sixteen sensors.

    Args:
        cfg: what to simulate.
        sensors: sensor models (defaults: :class:`~prescient.sim_sensors.config.SensorSuite`).
        behaviour: behaviour parameters.
        class_mix: class fractions of spawned agents.
        initial_scene: start from this scene instead of the random spawn (see :meth:`from_scenario`).
        map_data: drive on this lane graph (e.g. an imported map) instead of ``cfg.scenario``'s.

    Attributes:
        map: the VectorMap (world frame).
        map_data: the simulator's lane graph.
        F, I: (C, NF) float64 / (C, NI) int64 agent tables (:mod:`prescient.sim_sensors.layout`), row 0 the ego.
        time_ns: current sim time (starts at 0).
        counters: event counts (spawned, left_map, stuck, out_of_bounds, lane_changes, jaywalks).
        placement: what :meth:`from_scenario` placed and dropped (None for a random start).
    """

    def __init__(
        self,
        cfg: SimConfig,
        sensors: SensorSuite | None = None,
        behaviour: BehaviourSpec | None = None,
        class_mix: ClassMix | None = None,
        initial_scene: Scene | None = None,
        map_data: MapData | None = None,
    ) -> None:
        """Build the map and sensors, then spawn the ego and agents (or place ``initial_scene``)."""
        self.cfg = cfg
        self.behaviour = behaviour or BehaviourSpec()
        self.class_mix = class_mix or ClassMix()
        self.map_data: MapData = map_data if map_data is not None else build_map_data(cfg.scenario, cfg.seed)
        self.map: VectorMap = self.map_data.vector_map
        self._graph = lane_graph(self.map_data)
        suite = sensors or SensorSuite()
        self.rig = SensorRig(suite.specs, night=cfg.night, seed=cfg.seed)
        self.enabled = tuple(m for m in Modality if m not in cfg.disabled_modalities)
        self.dt_ns = round(cfg.dt_s * NS_PER_S)
        self.time_ns = 0
        cap = max(
            64, 2 * cfg.n_agents + 16, (initial_scene.n_agents + 16) if initial_scene is not None else 0
        )
        self.F = np.zeros((cap, NF))
        self.I = np.zeros((cap, NI), np.int64)
        self._AF, self._AI = agent_records(self.F, self.I)  # the kernels' view of F and I
        self._krng = np.zeros(cap, np.uint64)  # each row's own RNG stream, seeded by the spawner
        # Off in a normal run; prescient.sim_sensors.counterfactual sets it in its branches.
        self._ego_override = np.array([EGO_FREE, 0.0, 0.0, -1.0, -1.0])
        if len(self._ego_override) != NE:  # the E_* columns of layout.py
            raise RuntimeError(f"ego override has {len(self._ego_override)} columns, layout says {NE}")
        self._counts = np.zeros(NC, np.int64)
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
        )  # P_* order
        self._signals = SignalClock(self.map_data)
        # Kernel arguments, built once: every buffer in them is updated in place. Plain tuples,
        # because numba types a NamedTuple argument ~2x slower (the kernel rebuilds the names).
        self._graph_arg = tuple(self._graph)
        self._env_arg = tuple(
            StepEnv(
                self._signals.lane_light, self._signals.cross_elapsed, self._params, self.dt_ns / NS_PER_S,
                self._krng, self._counts, self._ego_override,
            )
        )  # fmt: skip
        self._frame_k = {m: 1 for m in self.enabled}
        self._pending: list[tuple[int, int, Message]] = []
        self._order = 0
        self._spawner = Spawner(
            self.F, self.I, self.map_data, self._graph, np.random.default_rng(cfg.seed), self._krng,
            self.behaviour, self.class_mix, cfg.seed,
        )  # fmt: skip
        self.placement: Placement | None = None
        if initial_scene is None:
            self._spawner.spawn_ego()
            self._spawner.spawn(cfg.n_agents, initial=True)
        else:
            self.placement = self._spawner.place_scene(initial_scene)

    @classmethod
    def from_scenario(cls, scene: Scene, cfg: SimConfig | None = None, **kwargs: object) -> Simulation:
        """Start from a scene (e.g. a generated one) instead of the random spawn.

        The ego and every agent are snapped onto the lane graph by
        :func:`prescient.sim_sensors.scenario_file.place_scene` (what was dropped is in ``self.placement``);
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
    def spawned(self) -> int:
        """Agents added since start (ego excluded)."""
        return self._spawner.spawned

    @property
    def counters(self) -> dict[str, int]:
        """Event counters since start."""
        c = self._counts
        return {
            "spawned": self.spawned,
            "left_map": int(c[C_LEFT_MAP]),
            "stuck": int(c[C_STUCK]),
            "out_of_bounds": int(c[C_OUT_OF_BOUNDS]),
            "lane_changes": int(c[C_LANE_CHANGES]),
            "jaywalks": int(c[C_JAYWALKS]),
        }

    @property
    def n_active(self) -> int:
        """Active agents, ego excluded."""
        return int(self.I[:, I_ACTIVE].sum()) - 1

    def step(self) -> list[Message]:
        """Advance one physics step; return the messages due in it, oldest delivery first.

        Returns:
            Sensor frames whose delivery time (capture + latency) fell in this step, and at each
            100 ms boundary EgoState, GroundTruth and TrafficLights. Headers carry topic and
            ``stamp_ns`` (capture time); ``seq`` and ``sent_mono_ns`` are set by the publisher.
        """
        t1 = self.time_ns + self.dt_ns
        if self.step_physics():
            self._queue(t1, self._state_messages(t1))
        if self.enabled:
            self._capture_due(t1)
        out = []
        while self._pending and self._pending[0][0] <= t1:
            out.append(heapq.heappop(self._pending)[2])
        return out

    def step_physics(self) -> bool:
        """Advance the world one physics step (agents, signals, top-up spawns), no sensors, no messages.

        :meth:`step` is this plus the messages; counterfactual branches run this alone.

        Returns:
            True when the step crossed a 100 ms boundary (where :meth:`step` emits ground truth).
        """
        t0, t1 = self.time_ns, self.time_ns + self.dt_ns
        self._signals.update(t0 / NS_PER_S)
        step_agents_kernel(self._AF, self._AI, self._graph_arg, self._env_arg)
        self.time_ns = t1
        boundary = t1 // STATE_PERIOD_NS > t0 // STATE_PERIOD_NS
        if boundary and self.n_active < self.cfg.n_agents:
            self._spawner.spawn(min(5, self.cfg.n_agents - self.n_active), initial=False)
        return boundary

    def save_state(self) -> SimState:
        """A copy of the world's state now (agents, RNG streams, counters, time; not the sensors)."""
        sp = self._spawner
        return SimState(
            time_ns=self.time_ns,
            F=self.F.copy(),
            I=self.I.copy(),
            krng=self._krng.copy(),
            counts=self._counts.copy(),
            ego_plan=self._ego_override.copy(),
            spawn_rng=copy.deepcopy(dict(sp.rng.bit_generator.state)),
            spawned=sp.spawned,
            next_id=sp._next_id,
            signal_offsets_s=self._signals.offsets_s,
        )

    def restore_state(self, state: SimState) -> None:
        """Put the world back to ``state`` (of this simulation), in place: the kernels' views stay valid.

        The sensors are not rewound: restore the state a branch started from before stepping on
        with :meth:`step`.
        """
        if state.F.shape != self.F.shape:
            raise ValueError(f"state of another simulation: F {state.F.shape}, this one {self.F.shape}")
        self.time_ns = state.time_ns
        self.F[:] = state.F
        self.I[:] = state.I
        self._krng[:] = state.krng
        self._counts[:] = state.counts
        self._ego_override[:] = state.ego_plan
        sp = self._spawner
        sp.rng.bit_generator.state = copy.deepcopy(state.spawn_rng)
        sp.spawned = state.spawned
        sp._next_id = state.next_id
        if state.signal_offsets_s:
            self._signals.set_offsets(state.signal_offsets_s)

    @property
    def ego_plan(self) -> np.ndarray:
        """(NE,) float64 ego plan override the step kernel reads (``E_*`` of :mod:`prescient.sim_sensors.layout`).

        Write into it (in place) to override the ego; :mod:`prescient.sim_sensors.counterfactual`
        does so inside branches and puts it back.
        """
        return self._ego_override

    def reseed(self, seed: int, rows: np.ndarray) -> None:
        """New random streams from now on for agent ``rows`` (each its own, from ``seed`` and its
        id) and for the spawner; the state is otherwise unchanged (see
        :func:`prescient.sim_sensors.resample.resample`)."""
        for r in np.asarray(rows, np.int64).tolist():
            self._krng[r] = agent_state(seed, int(self.I[r, I_ID]))
        self._spawner.rng.bit_generator.state = np.random.default_rng(seed).bit_generator.state

    def agent_stream(self, row: int) -> np.ndarray:
        """(1,) uint64 view of agent ``row``'s RNG stream (drawing from it advances the agent's)."""
        return self._krng[row : row + 1]

    @property
    def signals(self) -> SignalClock:
        """The map's fixed-time signal plans (read by the step kernel each step)."""
        return self._signals

    @property
    def graph(self) -> LaneGraph:
        """The lane graph the kernels move agents on."""
        return self._graph

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
        idx = np.nonzero(self.I[:, I_ACTIVE])[0]
        others = idx[idx != 0]
        order = np.concatenate([others, [0]])
        F, I = self.F[order], self.I[order]  # noqa: E741 (I: int state table, as in the kernels)
        AG = np.empty((len(order), NA))
        AG[:, A_X] = F[:, F_X] + F[:, F_VX] * dt_s
        AG[:, A_Y] = F[:, F_Y] + F[:, F_VY] * dt_s
        AG[:, A_YAW] = F[:, F_YAW] + F[:, F_YAWRATE] * dt_s
        AG[:, A_L] = F[:, F_LEN]
        AG[:, A_W] = F[:, F_WID]
        AG[:, A_H] = F[:, F_HGT]
        AG[:, A_VX] = F[:, F_VX]
        AG[:, A_VY] = F[:, F_VY]
        AG[:, A_CLS] = I[:, I_CLS]
        AG[:, A_ATTR] = I[:, I_ATTR]
        AG[:, A_FLAGS] = I[:, I_FLAGS]
        AG[:, A_ID] = I[:, I_ID]
        return AG

    # ------------------------------------------------------------------------------------------
    # Internals.
    # ------------------------------------------------------------------------------------------
    def _queue(self, emit_ns: int, msgs: list[Message]) -> None:
        for msg in msgs:
            heapq.heappush(self._pending, (emit_ns, self._order, msg))
            self._order += 1

    def _ego_pose_at(self, dt_s: float) -> np.ndarray:
        F = self.F[0]
        yaw = F[F_YAW] + F[F_YAWRATE] * dt_s
        cx, cy = F[F_X] + F[F_VX] * dt_s, F[F_Y] + F[F_VY] * dt_s
        off = EGO_CENTER_FROM_REAR_AXLE_M
        return np.array([cx - off * math.cos(yaw), cy - off * math.sin(yaw), yaw])

    def _capture_due(self, t1: int) -> None:
        """Capture every sensor frame due by ``t1`` and queue it for delivery after its latency."""
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
                ego_v = self.F[0, F_VX : F_VY + 1]
                frames = self.rig.capture(m, tc, AG, self._ego_pose_at(dt_s), ego_v)
                self._queue(tc + spec.latency_ns, frames)

    def _state_messages(self, t_ns: int) -> list[Message]:
        """EgoState, GroundTruth and TrafficLights at ``t_ns``."""
        md = self.map_data
        act = np.nonzero(self.I[:, I_ACTIVE])[0]
        act = act[act != 0]
        F, I = self.F[act], self.I[act]  # noqa: E741 (I: int state table, as in the kernels)
        gt = GroundTruth(
            header=Header(topic=TOPIC_GROUND_TRUTH, stamp_ns=t_ns),
            agent_id=I[:, I_ID].astype(np.int64),
            class_id=I[:, I_CLS].astype(np.int32),
            position_m=F[:, F_X : F_Y + 1].astype(np.float32),
            yaw_rad=F[:, F_YAW].astype(np.float32),
            velocity_mps=F[:, F_VX : F_VY + 1].astype(np.float32),
            accel_mps2=F[:, F_AX : F_AY + 1].astype(np.float32),
            size_lwh_m=F[:, F_LEN : F_HGT + 1].astype(np.float32),
            attributes=I[:, I_ATTR].astype(np.uint8),
        )
        e = self.F[0]
        ego = EgoState(
            header=Header(topic=TOPIC_EGO, stamp_ns=t_ns),
            pose=self._ego_pose_at(0.0),
            velocity_mps=np.array([e[F_VX], e[F_VY]], np.float32),
            accel_mps2=float(e[F_A]),
            yaw_rate_radps=float(e[F_YAWRATE]),
            size_lwh_m=np.array(EGO_SIZE_LWH_M, np.float32),
            plan_xy_m=self._ego_plan(),
        )
        light_lanes = self._signals.light_lanes
        states = md.light_states(t_ns / NS_PER_S) if len(md.group_plan_s) else np.zeros(0, np.uint8)
        lights = TrafficLights(
            header=Header(topic=TOPIC_TRAFFIC_LIGHTS, stamp_ns=t_ns),
            lane_id=light_lanes.astype(np.int64),
            state=states[md.group[light_lanes]].astype(np.uint8) if len(states) else np.zeros(0, np.uint8),
        )
        return [ego, gt, lights]

    def _ego_plan(self, horizon_m: float = 60.0, step_m: float = 2.0) -> np.ndarray:
        """(S, 2) float32 route ahead of the ego: current lane then the chosen next lane."""
        md = self.map_data
        lane, nxt, s = int(self.I[0, I_LANE]), int(self.I[0, I_NEXT]), float(self.F[0, F_S])
        parts = []
        for lane_i, s0 in ((lane, s), (nxt, 0.0)):
            if lane_i < 0:
                break
            a, b = md.off[lane_i], md.off[lane_i + 1]
            s_vals = np.arange(s0, md.length[lane_i], step_m)
            parts.append(np.stack([np.interp(s_vals, md.cum_s[a:b], md.pts[a:b, i]) for i in (0, 1)], axis=1))
        pts = np.concatenate(parts) if parts else np.zeros((0, 2))
        return pts[: int(horizon_m / step_m)].astype(np.float32)
