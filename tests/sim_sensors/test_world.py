"""World: maps, determinism, rates, spawning, drivable area, message validity."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest
from matplotlib.path import Path as MplPath

from prescient.bus import codec
from prescient.bus.messages import (
    SENSOR_TOPICS,
    TOPIC_EGO,
    TOPIC_GROUND_TRUTH,
    TOPIC_MAP,
    TOPIC_TRAFFIC_LIGHTS,
    AgentClass,
    GroundTruth,
    Modality,
    sensor_topic,
)
from prescient.sim_sensors import SCENARIOS, SimConfig, Simulation, build_map, build_map_data
from prescient.sim_sensors.config import DEFAULT_SENSORS
from prescient.sim_sensors.maps import KIND_CROSS, KIND_WALK

VEHICLES = (AgentClass.CAR, AgentClass.TRUCK, AgentClass.BUS, AgentClass.CYCLIST)


@pytest.fixture(scope="module")
def run10() -> tuple[Simulation, list]:
    """Intersection, 60 agents, 10 s of messages, (step end time, message) pairs."""
    sim = Simulation(SimConfig(scenario="intersection", seed=3, n_agents=60))
    out = []
    for msgs in sim.run(10.0):
        out += [(sim.time_ns, m) for m in msgs]
    return sim, out


@pytest.mark.parametrize("name", SCENARIOS)
def test_map_codec_round_trip_and_graph_consistent(name: str) -> None:
    """Every map encodes and decodes, and each successor starts where its predecessor ends."""
    vm = build_map(name, 0)
    back = codec.decode(TOPIC_MAP, codec.encode(vm))
    np.testing.assert_array_equal(back.centerline_xy_m, vm.centerline_xy_m)
    assert len(vm.lane_id) > 0 and len(vm.crossing_offsets) > 1 and len(vm.sidewalk_offsets) > 1
    md = build_map_data(name, 0)
    for a in range(md.n_lanes):
        for b in md.successors(a):
            gap = np.linalg.norm(md.lane_points(a)[-1] - md.lane_points(int(b))[0])
            assert gap < 0.5, f"{name}: lane {a} -> {b} gap {gap:.2f} m"
    # every signal-controlled lane has a stop line and a valid group
    for lane in vm.light_lane_id:
        assert lane in vm.stop_line_lane_id
    assert (vm.light_group < max(1, len(vm.group_plan_s))).all()


def test_unknown_scenario_rejected_with_names() -> None:
    """A bad scenario name fails validation and lists the valid ones."""
    with pytest.raises(ValueError, match="intersection"):
        SimConfig(scenario="moon_base")
    with pytest.raises(ValueError, match="camera"):
        SimConfig(disabled_modalities=("sonar",))


def test_same_seed_same_stream_different_seed_differs() -> None:
    """Two simulations with one config produce byte-identical streams; another seed does not."""

    def stream(seed: int) -> list[bytes]:
        sim = Simulation(SimConfig(scenario="t_junction", seed=seed, n_agents=30))
        return [codec.encode(m) for msgs in sim.run(1.5) for m in msgs]

    a, b, c = stream(5), stream(5), stream(6)
    assert a == b
    assert a != c


def test_every_message_encodes_and_decodes(run10) -> None:
    """Each emitted message passes the strict codec (dtype, shape, finite) both ways."""
    _, out = run10
    for _, m in out[::7]:
        back = codec.decode(m.header.topic, codec.encode(m))
        assert type(back) is type(m)
    for _, m in out:
        codec.check_message(m)


def test_each_sensor_publishes_at_its_rate(run10) -> None:
    """Counted by capture stamp over 2..9 s of sim time: camera/LWIR 30, LiDAR 10, radar 20, state 10 Hz."""
    _, out = run10
    counts = Counter(m.header.topic for _, m in out if 2e9 <= m.header.stamp_ns < 9e9)
    for modality, spec in DEFAULT_SENSORS.items():
        for topic in SENSOR_TOPICS:
            if topic.startswith(f"sensor.{modality.name.lower()}."):
                assert counts[topic] == round(7 * spec.rate_hz), (topic, counts[topic])
    for topic in (TOPIC_EGO, TOPIC_GROUND_TRUTH, TOPIC_TRAFFIC_LIGHTS):
        assert counts[topic] == 70


def test_frames_arrive_after_their_latency(run10) -> None:
    """A frame is delivered in the first step at or after capture + latency, never before."""
    sim, out = run10
    for t_emit, m in out:
        if m.header.topic.startswith("sensor."):
            modality = Modality[m.header.topic.split(".")[1].upper()]
            due = m.header.stamp_ns + DEFAULT_SENSORS[modality].latency_ns
            assert due <= t_emit < due + sim.dt_ns


def test_ground_truth_ids_unique_and_never_reused(run10) -> None:
    """Agent ids are unique per frame and an id that disappeared never comes back."""
    _, out = run10
    gone: set[int] = set()
    prev: set[int] = set()
    for _, m in out:
        if isinstance(m, GroundTruth):
            ids = set(m.agent_id.tolist())
            assert len(ids) == len(m.agent_id)
            assert not (ids & gone)
            gone |= prev - ids
            prev = ids


def _overlapping_pairs(gt: GroundTruth, idx: np.ndarray) -> list[tuple[int, int]]:
    r = 0.5 * np.hypot(gt.size_lwh_m[:, 0], gt.size_lwh_m[:, 1])
    bad = []
    for i in idx:
        d = np.hypot(*(gt.position_m - gt.position_m[i]).T)
        d[i] = np.inf
        for j in np.nonzero(d < r + r[i])[0]:
            bad.append((int(gt.agent_id[i]), int(gt.agent_id[j])))
    return bad


@pytest.mark.parametrize("name", SCENARIOS)
def test_no_agent_spawns_inside_another(name: str) -> None:
    """Initial and later spawns keep bounding circles apart."""
    sim = Simulation(SimConfig(scenario=name, seed=1, n_agents=120))
    seen: set[int] = set()
    checked = 0
    for msgs in sim.run(6.0):
        for m in msgs:
            if isinstance(m, GroundTruth):
                new = np.nonzero([i not in seen for i in m.agent_id.tolist()])[0]
                assert not _overlapping_pairs(m, new)
                checked += len(new)
                seen |= set(m.agent_id.tolist())
    assert checked >= 120


@pytest.mark.parametrize("name", SCENARIOS)
def test_vehicles_stay_on_drivable_area(name: str) -> None:
    """Every car/truck/bus/cyclist centre lies inside the union of drivable polygons, always."""
    sim = Simulation(SimConfig(scenario=name, seed=2, n_agents=80, disabled_modalities=tuple(Modality)))
    vm = sim.map
    polys = [
        MplPath(vm.drivable_xy_m[a:b]) for a, b in zip(vm.drivable_offsets[:-1], vm.drivable_offsets[1:])
    ]
    n = 0
    for msgs in sim.run(30.0):
        for m in msgs:
            if isinstance(m, GroundTruth):
                veh = np.isin(m.class_id, VEHICLES)
                pts = m.position_m[veh]
                inside = np.zeros(len(pts), bool)
                for p in polys:
                    # the sign of matplotlib's radius grows or shrinks depending on orientation
                    inside |= p.contains_points(pts, radius=0.05) | p.contains_points(pts, radius=-0.05)
                assert inside.all(), f"{name}: ids {m.agent_id[veh][~inside]} at {pts[~inside]} off road"
                n += len(pts)
    assert n > 1000


def test_pedestrians_off_road_except_crossings_and_jaywalking() -> None:
    """Pedestrians in lane mode are on walk lanes or crossings; the density is kept up."""
    sim = Simulation(SimConfig(scenario="arterial", seed=4, n_agents=80, disabled_modalities=tuple(Modality)))
    from prescient.sim_sensors import layout

    md = sim.map_data
    for _ in sim.run(20.0):
        ped = (sim.I[:, layout.I_ACTIVE] == 1) & (sim.I[:, layout.I_CLS] == AgentClass.PEDESTRIAN)
        lanes = sim.I[ped & (sim.I[:, layout.I_MODE] == layout.MODE_LANE), layout.I_LANE]
        assert np.isin(md.kind[lanes], (KIND_WALK, KIND_CROSS)).all()
    assert sim.n_active >= 75


def test_disabled_modalities_publish_nothing() -> None:
    """Disabling radar and LWIR removes exactly those eight topics."""
    sim = Simulation(
        SimConfig(scenario="roundabout", seed=0, n_agents=20, disabled_modalities=("radar", "lwir"))
    )
    topics = {m.header.topic for msgs in sim.run(0.5) for m in msgs}
    for c in range(4):
        assert sensor_topic(Modality.RADAR, c) not in topics
        assert sensor_topic(Modality.LWIR, c) not in topics
        assert sensor_topic(Modality.CAMERA, c) in topics
        assert sensor_topic(Modality.LIDAR, c) in topics


def test_traffic_moves_and_signals_cycle() -> None:
    """Vehicles make progress, brake lights and turn signals appear, lights change state."""
    sim = Simulation(
        SimConfig(scenario="intersection", seed=0, n_agents=60, disabled_modalities=tuple(Modality))
    )
    states: dict[int, set[int]] = defaultdict(set)
    attrs = 0
    speeds = []
    for msgs in sim.run(70.0):  # one full signal cycle (68.6 s)
        for m in msgs:
            if m.header.topic == TOPIC_TRAFFIC_LIGHTS:
                for lane, st in zip(m.lane_id.tolist(), m.state.tolist()):
                    states[lane].add(st)
            if isinstance(m, GroundTruth):
                veh = np.isin(m.class_id, VEHICLES[:3])
                speeds.append(np.hypot(*m.velocity_mps[veh].T).mean())
                attrs |= int(np.bitwise_or.reduce(m.attributes, initial=0))
    assert all(s == {1, 2, 3} for s in states.values())  # red, yellow, green each seen
    assert attrs & 2 and attrs & 4 and attrs & 8 and attrs & 1  # brake, left, right, phone
    assert np.mean(speeds) > 2.0
