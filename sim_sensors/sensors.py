"""The sixteen corner sensors: one :class:`SensorRig` turns a world snapshot into sensor frames.

A snapshot is a packed agent table ``AG`` (M, NA) float64 at the capture time, with the ego box
as its last row (``A_FLAGS`` has ``FLAG_EGO``): the ego occludes like any object and is never
reported. Each modality's four corners are captured together (hardware-triggered), in one numba
call writing fresh buffers in the wire dtypes; the four frames are views into them. No sockets, no wall clock.
"""

from __future__ import annotations

import math

import numpy as np

from bus.messages import (
    CORNER_TAGS,
    MODALITY_TAGS,
    CameraFrame,
    Corner,
    Header,
    LidarFrame,
    LwirFrame,
    Modality,
    RadarFrame,
    sensor_topic,
)
from sim_sensors import kernels as k
from sim_sensors.config import (
    CLASS_HEAT_K,
    CLASS_RADAR_RETURNS,
    CLASS_RCS_DBSM,
    CORNER_MOUNT,
    DEFAULT_SENSORS,
    SensorSpec,
)

CORNERS: tuple[Corner, ...] = tuple(Corner)
_BOX_CAP = 256  # detections per sensor frame (objects + false alarms)
_RADAR_CAP = 512


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


def _mix_seed(seed: int, stream: int) -> np.ndarray:
    return np.array([(seed * 0x9E3779B97F4A7C15 + stream * 0xD1B54A32D192ED03 + 1) % (1 << 64)], np.uint64)


class SensorRig:
    """Four corners x four modalities with their noise models.

    Args:
        specs: spec per modality (defaults: :data:`sim_sensors.config.DEFAULT_SENSORS`).
        night: darkness (camera range, detection probability and pixel noise degrade).
        seed: seeds one independent RNG stream per modality, so disabling one modality does not
            change the others' outputs.
    """

    def __init__(
        self, specs: dict[Modality, SensorSpec] | None = None, night: bool = False, seed: int = 0
    ) -> None:
        self.specs = dict(DEFAULT_SENSORS if specs is None else specs)
        self.night = night
        self._rng = {m: _mix_seed(seed, 100 + int(m)) for m in Modality}
        self._mounts = {m: [ego_from_sensor(c, self.specs[m]) for c in CORNERS] for m in self.specs}
        self._topics = {m: [sensor_topic(m, c) for c in CORNERS] for m in Modality}
        self._ids = {m: [f"{MODALITY_TAGS[m]}.{CORNER_TAGS[c]}" for c in CORNERS] for m in Modality}
        self._scratch: dict[Modality, tuple[np.ndarray, ...]] = {}
        S = len(CORNERS)
        for m, spec in self.specs.items():
            self._scratch[m] = (
                np.empty(n_bins(spec)),
                np.empty(n_bins(spec), np.int64),
            )
        self._counts = np.zeros(S, np.int64)
        self._pt_counts = np.zeros(S, np.int64)
        lidar = self.specs[Modality.LIDAR]
        self._pcap = n_bins(lidar) * max(1, lidar.n_channels)
        self._sp = {m: self._spec_vector(m) for m in self.specs}

    def _spec_vector(self, m: Modality) -> np.ndarray:
        sp = self.specs[m]
        common = [
            sp.hfov_rad,
            sp.range_m,
            sp.angular_res_rad,
            sp.mount_height_m,
            sp.min_visible_frac,
            sp.p_detect,
            sp.false_alarms_per_frame,
        ]
        if m in (Modality.CAMERA, Modality.LWIR):
            extra = [
                sp.px_sigma,
                *sp.image_wh_px,
                sp.p_class_correct,
                sp.night_range_factor,
                sp.night_p_detect_factor,
                sp.night_px_sigma_factor,
            ]
        elif m == Modality.LIDAR:
            extra = [
                sp.pos_sigma_m,
                sp.size_sigma_m,
                sp.yaw_sigma_rad,
                sp.p_class_correct,
                sp.point_sigma_m,
                sp.n_channels,
            ]
        else:
            extra = [sp.pos_sigma_m, sp.az_sigma_rad, sp.rr_sigma_mps, sp.rcs_sigma_db]
        return np.array(common + extra, np.float64)

    def capture(
        self,
        modality: Modality,
        stamp_ns: int,
        AG: np.ndarray,
        ego_pose: np.ndarray,
        ego_velocity: np.ndarray,
    ) -> list:
        """Frames of the four corner sensors of ``modality`` captured at ``stamp_ns``.

        Args:
            modality: which sensors.
            stamp_ns: capture time (sim clock) written into each header.
            AG: (M, NA) float64 packed agents at the capture time, ego row last.
            ego_pose: (3,) world ``[x_m, y_m, yaw_rad]`` of the ego rear axle at capture.
            ego_velocity: (2,) world-frame ego velocity, m/s (radar Doppler reference).

        Returns:
            Four frames (CameraFrame / LidarFrame / RadarFrame / LwirFrame), corners in order.

        Raises:
            ValueError: ``AG`` has the wrong shape or non-finite values.
        """
        if AG.ndim != 2 or AG.shape[1] != k.NA or AG.dtype != np.float64:
            raise ValueError(f"AG must be (M, {k.NA}) float64, got {AG.shape} {AG.dtype}")
        if not np.isfinite(AG).all():
            raise ValueError("AG contains NaN or inf")
        modality = Modality(modality)
        poses = sensor_world_poses(np.asarray(ego_pose, np.float64))
        depth, owner = self._scratch[modality]
        M = AG.shape[0]
        vis, tot, lo, hi = (np.empty(M, np.int64) for _ in range(4))
        rng = self._rng[modality]
        S = len(CORNERS)
        if modality in (Modality.CAMERA, Modality.LWIR):
            n = S * _BOX_CAP
            box, cls, conf = np.empty((n, 4), np.float32), np.empty(n, np.int32), np.empty(n, np.float32)
            attr, heat = np.empty(n, np.uint8), np.empty(n, np.float32)
            thermal = modality == Modality.LWIR
            k.image_frame_kernel(
                poses, self._sp[modality], AG, CLASS_HEAT_K, thermal, self.night, rng, depth, owner, vis, tot, lo, hi,
                box, cls, conf, attr, heat, self._counts,
            )  # fmt: skip
            spec = self.specs[modality]
            K = spec.intrinsics()
            wh = np.array(spec.image_wh_px, np.int32)
            out = []
            for c in range(S):
                a, b = c * _BOX_CAP, c * _BOX_CAP + int(self._counts[c])
                common = dict(
                    header=Header(topic=self._topics[modality][c], stamp_ns=stamp_ns),
                    sensor_id=self._ids[modality][c],
                    ego_from_sensor=self._mounts[modality][c],
                    intrinsics=K,
                    image_wh_px=wh,
                    boxes_px=box[a:b],
                    class_id=cls[a:b],
                    class_conf=conf[a:b],
                )
                if thermal:
                    out.append(LwirFrame(heat_k=heat[a:b], **common))
                else:
                    out.append(CameraFrame(attributes=attr[a:b], **common))
            return out
        if modality == Modality.LIDAR:
            n = S * _BOX_CAP
            center, size = np.empty((n, 3), np.float32), np.empty((n, 3), np.float32)
            yaw, cls, score = np.empty(n, np.float32), np.empty(n, np.int32), np.empty(n, np.float32)
            pts = np.empty((S * self._pcap, 3), np.float32)
            k.lidar_frame_kernel(
                poses, self._sp[modality], AG, rng, depth, owner, vis, tot, lo, hi,
                center, size, yaw, cls, score, self._counts, pts, self._pt_counts,
            )  # fmt: skip
            out = []
            for c in range(S):
                a, b = c * _BOX_CAP, c * _BOX_CAP + int(self._counts[c])
                pa, pb = c * self._pcap, c * self._pcap + int(self._pt_counts[c])
                out.append(
                    LidarFrame(
                        header=Header(topic=self._topics[modality][c], stamp_ns=stamp_ns),
                        sensor_id=self._ids[modality][c],
                        ego_from_sensor=self._mounts[modality][c],
                        center_m=center[a:b],
                        size_lwh_m=size[a:b],
                        yaw_rad=yaw[a:b],
                        class_id=cls[a:b],
                        score=score[a:b],
                        points_m=pts[pa:pb],
                    )
                )
            return out
        ret = np.empty((S * _RADAR_CAP, 4), np.float32)
        k.radar_frame_kernel(
            poses, self._sp[modality], AG, CLASS_RCS_DBSM, CLASS_RADAR_RETURNS, float(ego_velocity[0]),
            float(ego_velocity[1]), rng, depth, owner, vis, tot, lo, hi, ret, self._counts,
        )  # fmt: skip
        out = []
        for c in range(S):
            a, b = c * _RADAR_CAP, c * _RADAR_CAP + int(self._counts[c])
            r = ret[a:b]
            out.append(
                RadarFrame(
                    header=Header(topic=self._topics[modality][c], stamp_ns=stamp_ns),
                    sensor_id=self._ids[modality][c],
                    ego_from_sensor=self._mounts[modality][c],
                    range_m=r[:, 0].copy(),
                    azimuth_rad=r[:, 1].copy(),
                    range_rate_mps=r[:, 2].copy(),
                    rcs_dbsm=r[:, 3].copy(),
                )
            )
        return out


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
    from sim_sensors.config import EGO_CENTER_FROM_REAR_AXLE_M, EGO_SIZE_LWH_M

    n = len(xy_m)
    rows = n + (1 if ego_pose is not None else 0)
    AG = np.zeros((rows, k.NA))
    AG[:n, k.A_X : k.A_Y + 1] = xy_m
    AG[:n, k.A_YAW] = yaw_rad
    AG[:n, k.A_L : k.A_H + 1] = size_lwh_m
    AG[:n, k.A_VX : k.A_VY + 1] = velocity_mps
    AG[:n, k.A_CLS] = class_id
    AG[:n, k.A_ATTR] = 0 if attributes is None else attributes
    AG[:n, k.A_ID] = np.arange(n) if agent_id is None else agent_id
    if ego_pose is not None:
        c, s = math.cos(ego_pose[2]), math.sin(ego_pose[2])
        size = EGO_SIZE_LWH_M if ego_size_lwh_m is None else ego_size_lwh_m
        off = EGO_CENTER_FROM_REAR_AXLE_M
        AG[n, k.A_X], AG[n, k.A_Y], AG[n, k.A_YAW] = ego_pose[0] + c * off, ego_pose[1] + s * off, ego_pose[2]
        AG[n, k.A_L : k.A_H + 1] = size
        if ego_velocity_mps is not None:
            AG[n, k.A_VX : k.A_VY + 1] = ego_velocity_mps
        AG[n, k.A_CLS] = 1
        AG[n, k.A_FLAGS] = k.FLAG_EGO
        AG[n, k.A_ID] = -1
    return AG
