"""Where the corner sensors sit: mounting poses in the ego frame and in the world."""

from __future__ import annotations

import math

import numpy as np

from prescient.bus.messages import Corner
from prescient.sim_sensors.config import CORNER_MOUNT, SensorSpec

CORNERS: tuple[Corner, ...] = tuple(Corner)


def ego_from_sensor(corner: Corner, spec: SensorSpec) -> np.ndarray:
    """(4, 4) float64 mounting pose of a corner sensor in the ego frame (rear axle origin)."""
    x, y, yaw = CORNER_MOUNT[corner]
    c, s = math.cos(yaw), math.sin(yaw)
    out = np.eye(4)
    out[:2, :2] = [[c, -s], [s, c]]
    out[:3, 3] = [x, y, spec.mount_height_m]
    return out


def sensor_world_poses(ego_pose: np.ndarray) -> np.ndarray:
    """(4, 3) float64 world ``[x, y, yaw]`` of the corners, in :data:`CORNERS` order.

    Args:
        ego_pose: (3,) world ``[x_m, y_m, yaw_rad]`` of the ego rear axle.
    """
    c, s = math.cos(ego_pose[2]), math.sin(ego_pose[2])
    out = np.empty((len(CORNERS), 3))
    for i, corner in enumerate(CORNERS):
        mx, my, myaw = CORNER_MOUNT[corner]
        out[i] = (ego_pose[0] + c * mx - s * my, ego_pose[1] + s * mx + c * my, ego_pose[2] + myaw)
    return out


def n_bins(spec: SensorSpec) -> int:
    """Number of azimuth bins of a spec's occlusion buffer."""
    return int(math.ceil(spec.hfov_rad / spec.angular_res_rad))
