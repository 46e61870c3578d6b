"""The sixteen corner sensors: one :class:`SensorRig` turns a world snapshot into sensor frames.

Wrappers (no numba): :mod:`.rig` (the rig), :mod:`.mounts` (where the sensors sit),
:mod:`.pack` (hand-built snapshots). Numba kernels, one concern each: :mod:`.occlusion`,
:mod:`.camera` (camera and LWIR), :mod:`.lidar`, :mod:`.radar`, :mod:`.confusion`. As with the
behaviour kernels, numba's cache does not notice edits to a callee in another file (e.g.
:mod:`.occlusion` under :mod:`.lidar`): delete ``sim_sensors/**/__pycache__`` after such an edit.
"""

from prescient.sim_sensors.sensors.mounts import CORNERS, ego_from_sensor, n_bins, sensor_world_poses
from prescient.sim_sensors.sensors.pack import pack_agents
from prescient.sim_sensors.sensors.rig import SensorRig

__all__ = ["CORNERS", "SensorRig", "ego_from_sensor", "n_bins", "pack_agents", "sensor_world_poses"]
