"""The packed-table layout: names match columns, codes match the wire enums, views share memory."""

from __future__ import annotations

import numpy as np
import pytest

from prescient.bus.messages import AgentClass, Attribute, Modality
from prescient.sim_sensors import SCENARIOS, SimConfig, Simulation, build_map_data, layout
from prescient.sim_sensors.behaviour import StepEnv, step_agents_kernel
from prescient.sim_sensors.lanes import LANE_RECORD, lane_graph

# Column constant -> record field name, written out so that a renumbering shows up here.
F_NAMES = {
    "F_X": "x", "F_Y": "y", "F_YAW": "yaw", "F_V": "v", "F_A": "a", "F_S": "s", "F_D": "d",
    "F_V0": "v0", "F_LEN": "length", "F_WID": "width", "F_HGT": "height", "F_TIMER": "timer",
    "F_FREE": "free", "F_HOMEX": "home_x", "F_HOMEY": "home_y", "F_LCT": "lc_time",
    "F_LCD": "lc_rate", "F_VX": "vx", "F_VY": "vy", "F_AX": "ax", "F_AY": "ay",
    "F_YAWRATE": "yaw_rate", "F_WAIT": "wait",
}  # fmt: skip
I_NAMES = {
    "I_ACTIVE": "active", "I_ID": "id", "I_CLS": "cls", "I_LANE": "lane", "I_NEXT": "next",
    "I_MODE": "mode", "I_FLAGS": "flags", "I_ATTR": "attr",
}  # fmt: skip


def test_layout_field_names_match_column_constants() -> None:
    """Every F_* / I_* column has the record field of the same meaning, and none is missing."""
    assert len(F_NAMES) == layout.NF == len(layout.F_FIELDS) == len(set(layout.F_FIELDS))
    assert len(I_NAMES) == layout.NI == len(layout.I_FIELDS) == len(set(layout.I_FIELDS))
    for const, name in F_NAMES.items():
        assert layout.F_FIELDS[getattr(layout, const)] == name, const
    for const, name in I_NAMES.items():
        assert layout.I_FIELDS[getattr(layout, const)] == name, const
    a_cols = [getattr(layout, n) for n in dir(layout) if n.startswith("A_")]
    assert sorted(a_cols) == list(range(layout.NA))


def test_layout_codes_match_bus_enums() -> None:
    """Class and attribute codes in the tables are the wire values."""
    assert (layout.CLS_CAR, layout.CLS_TRUCK, layout.CLS_BUS) == (
        AgentClass.CAR,
        AgentClass.TRUCK,
        AgentClass.BUS,
    )
    assert (layout.CLS_PED, layout.CLS_CYCLIST, layout.CLS_ANIMAL) == (
        AgentClass.PEDESTRIAN,
        AgentClass.CYCLIST,
        AgentClass.ANIMAL,
    )
    assert (layout.ATTR_PHONE, layout.ATTR_BRAKE, layout.ATTR_LEFT, layout.ATTR_RIGHT) == (
        Attribute.PHONE,
        Attribute.BRAKE_LIGHTS,
        Attribute.LEFT_SIGNAL,
        Attribute.RIGHT_SIGNAL,
    )


def test_agent_records_write_through_and_reject_bad_tables() -> None:
    """Record views share memory with F / I; a table of the wrong shape is refused by name."""
    F, I = np.zeros((4, layout.NF)), np.zeros((4, layout.NI), np.int64)  # noqa: E741 (I: int table)
    AF, AI = layout.agent_records(F, I)
    AF[2]["v"] = 3.5
    AI[1]["lane"] = 7
    assert F[2, layout.F_V] == 3.5 and I[1, layout.I_LANE] == 7
    with pytest.raises(ValueError, match="I must be"):
        layout.agent_records(F, np.zeros((4, layout.NI)))
    with pytest.raises(ValueError, match="F must be"):
        layout.agent_records(F[:, :5], I)


@pytest.mark.parametrize("name", SCENARIOS)
def test_lane_graph_records_equal_map_data(name: str) -> None:
    """Each lane record holds exactly the MapData values of its lane (CSR offsets as lo / hi)."""
    md = build_map_data(name)
    g = lane_graph(md)
    assert g.lanes.dtype == LANE_RECORD and len(g.lanes) == md.n_lanes
    for field in ("length", "speed", "stop_s", "road_side", "jay_dist", "kind", "left_nb", "right_nb"):
        np.testing.assert_array_equal(g.lanes[field], getattr(md, field))
    for field in ("turnaround", "turn", "yield_", "is_intersection"):
        np.testing.assert_array_equal(g.lanes[field], getattr(md, field))
    for prefix, off in (("pt", md.off), ("succ", md.succ_off), ("pred", md.pred_off)):
        np.testing.assert_array_equal(g.lanes[f"{prefix}_lo"], off[:-1])
        np.testing.assert_array_equal(g.lanes[f"{prefix}_hi"], off[1:])


def test_snapshot_columns_follow_layout() -> None:
    """``Simulation.snapshot`` fills the A_* columns from the F_* / I_* ones, ego row last."""
    sim = Simulation(
        SimConfig(scenario="t_junction", seed=1, n_agents=10, disabled_modalities=tuple(Modality))
    )
    AG = sim.snapshot()
    assert AG.shape[1] == layout.NA
    assert AG[-1, layout.A_FLAGS] == layout.FLAG_EGO
    np.testing.assert_array_equal(AG[-1, [layout.A_X, layout.A_Y]], sim.F[0, [layout.F_X, layout.F_Y]])
    rows = np.nonzero(sim.I[1:, layout.I_ACTIVE])[0] + 1
    np.testing.assert_array_equal(AG[:-1, layout.A_ID], sim.I[rows, layout.I_ID])


def test_step_kernel_same_with_named_or_plain_tuples() -> None:
    """The behaviour kernel gives one result whether its arguments come as NamedTuples or tuples."""
    sim = Simulation(
        SimConfig(scenario="roundabout", seed=2, n_agents=30, disabled_modalities=tuple(Modality))
    )
    for _ in sim.run(1.0):
        pass
    out = []
    for named in (True, False):
        F, I = sim.F.copy(), sim.I.copy()  # noqa: E741 (I: int table)
        env = StepEnv(sim._signals.lane_light, sim._signals.cross_elapsed, sim._params, 0.02, sim._krng.copy(), np.zeros(layout.NC, np.int64))  # fmt: skip
        g = lane_graph(sim.map_data)
        AF, AI = layout.agent_records(F, I)
        for _ in range(25):
            step_agents_kernel(AF, AI, g if named else tuple(g), env if named else tuple(env))
        out.append((F, I))
    np.testing.assert_array_equal(out[0][0], out[1][0])
    np.testing.assert_array_equal(out[0][1], out[1][1])
