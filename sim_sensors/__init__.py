"""Simulated world and sixteen corner sensors (camera, LiDAR, radar, LWIR at four corners).

Library API::

    from prescient.sim_sensors import SimConfig, Simulation, build_map, SCENARIOS
    sim = Simulation(SimConfig(scenario="intersection", seed=0, n_agents=50))
    for msgs in sim.run(10.0):
        ...

Packages by concern: :mod:`.maps` (road networks), :mod:`.behaviour` (agent models),
:mod:`.sensors` (rig and sensor models); :mod:`.layout` names the columns of the agent tables
and the snapshot ``sim.snapshot()`` returns, for readers inside and outside the simulator.
Numba kernels sit in their own modules (``*_kernel`` functions), wrapped by
:class:`Simulation` and :class:`SensorRig`.
"""

# ruff: noqa: E402  (the kernel cache is configured before any kernel module is imported)
from prescient.bus import jit_cache as _jit_cache

_jit_cache.configure()  # before any numba kernel module is imported (see prescient.bus.jit_cache)

from prescient.sim_sensors.config import (
    DEFAULT_SENSORS,
    BehaviourSpec,
    ClassMix,
    SensorSpec,
    SensorSuite,
    SimConfig,
)
from prescient.sim_sensors.maps import SCENARIOS, MapData, build_map, build_map_data
from prescient.sim_sensors.sensors import SensorRig, ego_from_sensor, pack_agents
from prescient.sim_sensors.simulation import Simulation

__all__ = [
    "DEFAULT_SENSORS",
    "SCENARIOS",
    "BehaviourSpec",
    "ClassMix",
    "MapData",
    "SensorRig",
    "SensorSpec",
    "SensorSuite",
    "SimConfig",
    "Simulation",
    "build_map",
    "build_map_data",
    "ego_from_sensor",
    "pack_agents",
]
