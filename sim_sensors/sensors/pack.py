"""Hand-built packed agent tables (:mod:`prescient.sim_sensors.layout` ``A_*``) for the sensors and tests."""

from __future__ import annotations

import math

import numpy as np

from prescient.sim_sensors.config import EGO_CENTER_FROM_REAR_AXLE_M, EGO_SIZE_LWH_M
from prescient.sim_sensors.layout import (
    A_ATTR,
    A_CLS,
    A_FLAGS,
    A_H,
    A_ID,
    A_L,
    A_VX,
    A_VY,
    A_X,
    A_Y,
    A_YAW,
    CLS_CAR,
    FLAG_EGO,
    NA,
)


def pack_agents(
    xy_m: np.ndarray,
    yaw_rad: np.ndarray,
    size_lwh_m: np.ndarray,
    velocity_mps: np.ndarray,
    class_id: np.ndarray,
    attributes: np.ndarray | None = None,
    agent_id: np.ndarray | None = None,
    ego_pose: np.ndarray | None = None,
    ego_size_lwh_m: tuple[float, float, float] | None = None,
    ego_velocity_mps: np.ndarray | None = None,
) -> np.ndarray:
    """Build the packed agent table for :meth:`SensorRig.capture` (hand-built scenes, tests).

    Args:
        xy_m: (N, 2) world box centres; yaw_rad: (N,); size_lwh_m: (N, 3); velocity_mps: (N, 2);
        class_id: (N,) AgentClass values; attributes: (N,) Attribute bits; agent_id: (N,).
        ego_pose: (3,) rear-axle world pose; when given the ego box is appended as the last row.

    Returns:
        (N or N+1, NA) float64.
    """
    n = len(xy_m)
    rows = n + (1 if ego_pose is not None else 0)
    AG = np.zeros((rows, NA))
    AG[:n, A_X : A_Y + 1] = xy_m
    AG[:n, A_YAW] = yaw_rad
    AG[:n, A_L : A_H + 1] = size_lwh_m
    AG[:n, A_VX : A_VY + 1] = velocity_mps
    AG[:n, A_CLS] = class_id
    AG[:n, A_ATTR] = 0 if attributes is None else attributes
    AG[:n, A_ID] = np.arange(n) if agent_id is None else agent_id
    if ego_pose is not None:
        c, s = math.cos(ego_pose[2]), math.sin(ego_pose[2])
        size = EGO_SIZE_LWH_M if ego_size_lwh_m is None else ego_size_lwh_m
        off = EGO_CENTER_FROM_REAR_AXLE_M
        AG[n, A_X], AG[n, A_Y], AG[n, A_YAW] = ego_pose[0] + c * off, ego_pose[1] + s * off, ego_pose[2]
        AG[n, A_L : A_H + 1] = size
        if ego_velocity_mps is not None:
            AG[n, A_VX : A_VY + 1] = ego_velocity_mps
        AG[n, A_CLS] = CLS_CAR
        AG[n, A_FLAGS] = FLAG_EGO
        AG[n, A_ID] = -1
    return AG
