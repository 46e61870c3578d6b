"""State and measurement layouts shared by the tracker's kernels and stages (constants only).

State (``STATE_DIM`` = 6, float64, world frame), chosen per track by its motion model:
  * ``MODEL_CV`` (pedestrians, animals, unknown): constant velocity
    ``[x_m, y_m, vx_mps, vy_mps, 0, 0]``; indices 4 and 5 unused (their variances are held at 1 so
    that P stays invertible).
  * ``MODEL_CTRA`` (cars, trucks, buses, cyclists): constant turn rate and acceleration, a
    random-walk longitudinal acceleration, ``[x_m, y_m, yaw_rad, v_mps, yaw_rate_radps,
    accel_mps2]``. With ``sigma_jerk`` = 0 and ``accel`` = 0 it is exactly CTRV.

Measurement kinds (all world frame; each measurement row carries its sensor's world pose and
velocity ``[sx_m, sy_m, syaw_rad, svx_mps, svy_mps]``):
  * ``MEAS_POSE`` (LiDAR): ``[x_m, y_m, yaw_rad]``; the yaw row is zero for CV tracks, and a yaw
    innovation beyond +-pi/2 is folded by pi (box heading ambiguity).
  * ``MEAS_RADAR``: ``[range_m, bearing_rad, range_rate_mps]`` where the range rate is already
    ego-motion compensated (target velocity projected on the line of sight).
  * ``MEAS_BEARING`` (camera, LWIR): ``[bearing_rad]``.
"""

from __future__ import annotations

from typing import Final

STATE_DIM: Final = 6
MODEL_CV: Final = 0
MODEL_CTRA: Final = 1
MEAS_POSE: Final = 0
MEAS_RADAR: Final = 1
MEAS_BEARING: Final = 2
MEAS_DIM: Final = (3, 3, 1)  # rows of one measurement, indexed by kind
