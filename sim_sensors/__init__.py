"""Simulated world and sixteen corner sensors (camera, LiDAR, radar, LWIR at four corners).

Library API::

    from sim_sensors import SimConfig, Simulation, build_map, SCENARIOS
    sim = Simulation(SimConfig(scenario="intersection", seed=0, n_agents=50))
    for msgs in sim.run(10.0):
        ...
"""

from sim_sensors.config import (
    DEFAULT_SENSORS,
    BehaviourSpec,
    ClassMix,
    SensorSpec,
    SensorSuite,
    SimConfig,
)
from sim_sensors.maps import SCENARIOS, MapData, build_map, build_map_data
from sim_sensors.sensors import SensorRig, ego_from_sensor, pack_agents
from sim_sensors.simulation import Simulation

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
