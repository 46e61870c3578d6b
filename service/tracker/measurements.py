"""World-frame measurements of one batch of sensor frames (one modality, one capture time).

Each detection becomes one row: LiDAR ``[x_m, y_m, yaw_rad]`` world, radar ``[range_m,
bearing_rad, range_rate_mps]`` from the sensor (range rate compensated for the sensor's own
motion, including the yaw-rate lever arm), camera / LWIR ``[bearing_rad]`` of the box centre; with
per-row variances and the sensor's world pose and velocity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from prescient.bus import messages as m
from prescient.service.tracker.config import TrackerConfig
from prescient.service.tracker.layout import MEAS_BEARING, MEAS_POSE, MEAS_RADAR
from prescient.service.tracker.measurement_kernels import frame_poses_kernel, frames_to_world_kernel


@dataclass
class Meas:
    """World-frame measurements of a batch of frames (M rows)."""

    kind: int
    modality: m.Modality
    sensors: np.ndarray  # (M, 5) [x_m, y_m, yaw_rad, vx_mps, vy_mps] world, per measurement
    z: np.ndarray  # (M, m) float64
    R: np.ndarray  # (M, m) float64 variances
    class_id: np.ndarray | None  # (M,) int
    class_conf: np.ndarray | None  # (M,) float
    attributes: np.ndarray | None  # (M,) uint8
    size_lwh_m: np.ndarray | None  # (M, 3)
    frame_of: np.ndarray  # (M,) index of the source frame within the batch
    starts: np.ndarray  # (F + 1,) int64 first row of each frame (rows of frame f: starts[f]:starts[f+1])


def _clipped(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``np.clip(a, lo, hi)`` in place (the same values, NaN kept; without clip's overhead)."""
    np.maximum(a, lo, out=a)
    return np.minimum(a, hi, out=a)


def measurements(frames: list[Any], ego: np.ndarray, c: TrackerConfig) -> Meas:
    """World-frame measurements of a batch of frames of one modality and capture time.

    Args:
        frames: admitted frames of one modality sharing a capture time (the corners).
        ego: (6,) ego state ``[x_m, y_m, yaw_rad, vx_mps, vy_mps, yaw_rate_radps]`` (world) at
            the capture time.
        c: noise levels.

    Returns:
        The batch's M measurements, rows grouped by frame in ``frames`` order.
    """
    nf = len(frames)
    first = frames[0]
    mounts = np.empty((nf, 4, 4))
    for i, f in enumerate(frames):
        mounts[i] = f.ego_from_sensor
    counts = np.empty(nf, np.int64)
    intr = np.zeros((nf, 3, 3))
    width = np.zeros(nf)
    class_id = conf = attrs = size = None
    if isinstance(first, m.LidarFrame):
        kind, modality, md = MEAS_POSE, m.Modality.LIDAR, 3
        for i, f in enumerate(frames):
            counts[i] = f.center_m.shape[0]
        raw = np.empty((int(counts.sum()), 4))
        raw[:, :3] = np.concatenate([f.center_m for f in frames]) if nf > 1 else first.center_m
        raw[:, 3] = np.concatenate([f.yaw_rad for f in frames]) if nf > 1 else first.yaw_rad
        params = np.array([c.lidar_pos_std_m, c.lidar_pos_std_per_m, c.lidar_yaw_std_rad])
        class_id = np.concatenate([f.class_id for f in frames])
        conf = _clipped(np.concatenate([f.score for f in frames], dtype=np.float64), 0.35, 0.95)
        size = np.concatenate([f.size_lwh_m for f in frames], dtype=np.float64)
    elif isinstance(first, m.RadarFrame):
        kind, modality, md = MEAS_RADAR, m.Modality.RADAR, 3
        for i, f in enumerate(frames):
            counts[i] = f.range_m.shape[0]
        raw = np.zeros((int(counts.sum()), 4))
        raw[:, 0] = np.concatenate([f.range_m for f in frames])
        raw[:, 1] = np.concatenate([f.azimuth_rad for f in frames])
        raw[:, 2] = np.concatenate([f.range_rate_mps for f in frames])
        params = np.array([c.radar_range_std_m, c.radar_bearing_std_rad, c.radar_range_rate_std_mps])
    else:
        kind, md = MEAS_BEARING, 1
        is_cam = isinstance(first, m.CameraFrame)
        modality = m.Modality.CAMERA if is_cam else m.Modality.LWIR
        for i, f in enumerate(frames):
            counts[i] = f.boxes_px.shape[0]
            intr[i] = f.intrinsics
            wh = f.image_wh_px
            width[i] = float(wh[0]) if wh.shape == (2,) and wh[0] > 0 else 2.0 * f.intrinsics[0, 2]
        raw = np.concatenate([f.boxes_px for f in frames], dtype=np.float64)
        std = c.camera_bearing_std_rad if is_cam else c.lwir_bearing_std_rad
        params = np.array([std, c.bearing_width_std_frac])
        class_id = np.concatenate([f.class_id for f in frames])
        conf = _clipped(np.concatenate([f.class_conf for f in frames], dtype=np.float64), 0.2, 0.97)
        if is_cam:
            attrs = np.concatenate([f.attributes for f in frames])
    M = raw.shape[0]
    sensors_f, frame_of, starts = frame_poses_kernel(ego, mounts, counts)
    z = np.empty((M, md))
    R = np.empty((M, md))
    sensors = np.empty((M, 5))
    if M:
        frames_to_world_kernel(
            kind, raw, frame_of, ego, sensors_f, mounts, intr, width, params, z, R, sensors
        )
    return Meas(kind, modality, sensors, z, R, class_id, conf, attrs, size, frame_of, starts)
