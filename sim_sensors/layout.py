"""Column layouts of the simulator's packed tables, and the integer codes stored in them.

This is the one place that names columns. The numba kernels, the :class:`Simulation` wrapper, the
sensors and readers outside the simulator (``prescient.models.scenario_diffusion.data``) import from here.
All positions are world frame (x east, y north, m), yaw in rad ccw from +x, speeds m/s, and
``(x, y)`` is the box centre.

Three tables, C = fixed agent capacity, M = agents in one snapshot:

* Agent state ``F`` (C, NF) float64, columns ``F_*``, and ``I`` (C, NI) int64, columns ``I_*``.
  Row 0 is the ego. Owned by :class:`prescient.sim_sensors.simulation.Simulation`, stepped in place by
  :func:`prescient.sim_sensors.behaviour.step.step_agents_kernel`.
* Packed agents ``AG`` (M, NA) float64, columns ``A_*``: the world at one instant as the sensors
  see it, ego row last. Made by ``Simulation.snapshot`` and
  :func:`prescient.sim_sensors.sensors.pack_agents`; read by every sensor kernel.
* Behaviour parameters (NP,) float64, ``P_*``, and event counters (NC,) int64, ``C_*``.
* Ego plan override (NE,) float64, ``E_*``: all ``EGO_FREE`` / -1 in a normal run.

The agent tables also have record views (:func:`agent_records`): the same memory seen as (C,)
structured arrays whose field names are ``F_FIELDS`` / ``I_FIELDS``, so that a kernel can hand
one agent's row to a helper as a single pointer (``a.v``, ``b.lane``) instead of whole arrays.

Numba freezes these integers into compiled code, and its cache only notices edits to the file
that holds a kernel. After changing a value here, delete ``sim_sensors/**/__pycache__``.
"""

from __future__ import annotations

import numpy as np

# ----------------------------------------------------------------------------------------------
# Agent state, float columns F (C, NF).
# ----------------------------------------------------------------------------------------------
F_X, F_Y, F_YAW = 0, 1, 2  # box centre (m), heading (rad)
F_V, F_A = 3, 4  # speed along the heading (m/s), its rate (m/s^2)
F_S, F_D = 5, 6  # arc length on I_LANE (m), lateral offset from its centerline (m, + left)
F_V0 = 7  # desired speed (m/s)
F_LEN, F_WID, F_HGT = 8, 9, 10  # box size (m)
F_TIMER = 11  # animals: seconds until the next wander decision
F_FREE = 12  # jaywalkers: distance left to the far sidewalk (m)
F_HOMEX, F_HOMEY = 13, 14  # animals: point they stay near (m)
F_LCT, F_LCD = 15, 16  # lane change: seconds left, lateral offset rate (m/s)
F_VX, F_VY, F_AX, F_AY = 17, 18, 19, 20  # world velocity (m/s) and acceleration (m/s^2)
F_YAWRATE = 21  # rad/s
F_WAIT = 22  # seconds waiting (pedestrians at a crossing; vehicles stopped, for the stuck timeout)
NF = 23
# Field names of the record view, in column order (F_FIELDS[F_V] == "v").
F_FIELDS = (
    "x", "y", "yaw", "v", "a", "s", "d", "v0", "length", "width", "height", "timer", "free",
    "home_x", "home_y", "lc_time", "lc_rate", "vx", "vy", "ax", "ay", "yaw_rate", "wait",
)  # fmt: skip

# ----------------------------------------------------------------------------------------------
# Agent state, int columns I (C, NI).
# ----------------------------------------------------------------------------------------------
I_ACTIVE, I_ID, I_CLS = 0, 1, 2  # row in use (0/1), agent id (ego 0), CLS_* class
I_LANE, I_NEXT = 3, 4  # current lane, chosen successor (-1 none)
I_MODE, I_FLAGS, I_ATTR = 5, 6, 7  # MODE_*, FLAG_* bits, ATTR_* bits shown to sensors
NI = 8
I_FIELDS = ("active", "id", "cls", "lane", "next", "mode", "flags", "attr")  # I_FIELDS[I_LANE] == "lane"

# ----------------------------------------------------------------------------------------------
# Packed agents AG (M, NA) float64, the sensors' view of one instant (ego row last).
# ----------------------------------------------------------------------------------------------
A_X, A_Y, A_YAW = 0, 1, 2  # box centre (m), heading (rad)
A_L, A_W, A_H = 3, 4, 5  # box size (m)
A_VX, A_VY = 6, 7  # world velocity (m/s)
A_CLS, A_ATTR, A_FLAGS, A_ID = 8, 9, 10, 11  # CLS_*, ATTR_* bits, FLAG_* bits, agent id
NA = 12

# ----------------------------------------------------------------------------------------------
# Behaviour parameters (NP,) float64, filled from BehaviourSpec.
# ----------------------------------------------------------------------------------------------
P_IDM_A, P_IDM_B, P_IDM_T, P_IDM_S0 = 0, 1, 2, 3  # IDM accel, comfortable decel, headway, gap
P_LC_RATE, P_JAY_RATE, P_STUCK = 4, 5, 6  # lane changes (1/s), jaywalks (1/s), stuck timeout (s)
NP = 7

# ----------------------------------------------------------------------------------------------
# Ego plan override (NE,) float64, read by the step kernel (prescient.sim_sensors.counterfactual).
# ----------------------------------------------------------------------------------------------
E_MODE = 0  # EGO_* below
E_SPEED, E_DECEL = 1, 2  # EGO_CAP_SPEED: speed cap (m/s) reached braking at most this hard (m/s^2)
E_ROUTE_LANE, E_ROUTE_NEXT = 3, 4  # on lane E_ROUTE_LANE the ego's next lane is E_ROUTE_NEXT (-1: none)
NE = 5
# E_MODE: the simulator's own driver (IDM), or that driver with its speed capped.
EGO_FREE, EGO_CAP_SPEED = 0, 1

# ----------------------------------------------------------------------------------------------
# Event counters (NC,) int64.
# ----------------------------------------------------------------------------------------------
C_LEFT_MAP, C_STUCK, C_OUT_OF_BOUNDS, C_LANE_CHANGES, C_JAYWALKS = 0, 1, 2, 3, 4
NC = 5

# ----------------------------------------------------------------------------------------------
# Codes stored in the tables.
# ----------------------------------------------------------------------------------------------
# I_MODE: on the lane graph, walking straight off it (jaywalking), wandering (animals).
MODE_LANE, MODE_FREE, MODE_ANIMAL = 0, 1, 2
# I_FLAGS / A_FLAGS bits.
FLAG_EGO, FLAG_PHONE, FLAG_JAYWALKER = 1, 2, 4
# I_ATTR / A_ATTR bits (match prescient.bus.messages.Attribute).
ATTR_PHONE, ATTR_BRAKE, ATTR_LEFT, ATTR_RIGHT = 1, 2, 4, 8
# I_CLS / A_CLS (match prescient.bus.messages.AgentClass).
CLS_CAR, CLS_TRUCK, CLS_BUS, CLS_PED, CLS_CYCLIST, CLS_ANIMAL = 1, 2, 3, 4, 5, 6
# Lane kinds of MapData.kind (internal, not on the wire).
KIND_VEHICLE, KIND_BIKE, KIND_WALK, KIND_CROSS, KIND_TURNAROUND = 0, 1, 2, 3, 4

# ----------------------------------------------------------------------------------------------
# Record views of the agent tables.
# ----------------------------------------------------------------------------------------------
F_RECORD = np.dtype([(name, np.float64) for name in F_FIELDS])
I_RECORD = np.dtype([(name, np.int64) for name in I_FIELDS])


def agent_records(F: np.ndarray, I: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # noqa: E741 (I: int table)
    """(C,) record views ``(AF, AI)`` of the agent tables F (C, NF) float64 and I (C, NI) int64.

    Views, not copies: a write through ``AF[i].v`` is a write to ``F[i, F_V]``.

    Raises:
        ValueError: a table is not C-contiguous with the layout's column count and dtype.
    """
    for name, table, n, dtype in (("F", F, NF, np.float64), ("I", I, NI, np.int64)):
        if table.ndim != 2 or table.shape[1] != n or table.dtype != dtype or not table.flags.c_contiguous:
            raise ValueError(
                f"{name} must be C-contiguous (C, {n}) {np.dtype(dtype)}, got {table.shape} {table.dtype}"
            )
    return F.view(F_RECORD).reshape(-1), I.view(I_RECORD).reshape(-1)
