"""The rig of sixteen corner sensors: checks inputs, owns buffers, turns kernel output into frames.

A snapshot is a packed agent table ``AG`` (M, NA) float64 at the capture time, with the ego box
as its last row (``A_FLAGS`` has ``FLAG_EGO``): the ego occludes like any object and is never
reported. Each modality's four corners are captured together (hardware-triggered), in one numba
call writing fresh buffers in the wire dtypes; the four frames are views into them. No sockets,
no wall clock.
"""

from __future__ import annotations

import numpy as np

from prescient.bus.messages import (
    CORNER_TAGS,
    MODALITY_TAGS,
    CameraFrame,
    Header,
    LidarFrame,
    LwirFrame,
    Modality,
    RadarFrame,
    sensor_topic,
)
from prescient.sim_sensors.config import (
    CLASS_HEAT_K,
    CLASS_RADAR_RETURNS,
    CLASS_RCS_DBSM,
    DEFAULT_SENSORS,
    SensorSpec,
)
from prescient.sim_sensors.layout import NA
from prescient.sim_sensors.rng import seed_state
from prescient.sim_sensors.sensors.camera import ImageOut, image_frame_kernel
from prescient.sim_sensors.sensors.lidar import LidarOut, lidar_frame_kernel
from prescient.sim_sensors.sensors.mounts import CORNERS, ego_from_sensor, n_bins, sensor_world_poses
from prescient.sim_sensors.sensors.occlusion import ScanBuffers
from prescient.sim_sensors.sensors.radar import RadarOut, radar_frame_kernel

_BOX_CAP = 256  # detections per sensor frame (objects + false alarms)
_RADAR_CAP = 512


class SensorRig:
    """Four corners x four modalities with their noise models.

    Args:
        specs: spec per modality (defaults: :data:`prescient.sim_sensors.config.DEFAULT_SENSORS`).
        night: darkness (camera range, detection probability and pixel noise degrade).
        seed: seeds one independent RNG stream per modality, so disabling one modality does not
            change the others' outputs.
    """

    def __init__(
        self, specs: dict[Modality, SensorSpec] | None = None, night: bool = False, seed: int = 0
    ) -> None:
        self.specs = dict(DEFAULT_SENSORS if specs is None else specs)
        self.night = night
        self._rng = {m: seed_state(seed, 100 + int(m)) for m in Modality}
        self._mounts = {m: [ego_from_sensor(c, self.specs[m]) for c in CORNERS] for m in self.specs}
        self._topics = {m: [sensor_topic(m, c) for c in CORNERS] for m in Modality}
        self._ids = {m: [f"{MODALITY_TAGS[m]}.{CORNER_TAGS[c]}" for c in CORNERS] for m in Modality}
        # Occlusion scratch per modality, reused across captures; the per-agent part grows with M.
        self._scratch = {m: self._scan_buffers(n_bins(spec), 64) for m, spec in self.specs.items()}
        S = len(CORNERS)
        self._counts = np.zeros(S, np.int64)
        self._pt_counts = np.zeros(S, np.int64)
        lidar = self.specs[Modality.LIDAR]
        self._pcap = n_bins(lidar) * max(1, lidar.n_channels)
        self._sp = {m: self._spec_vector(m) for m in self.specs}

    @staticmethod
    def _scan_buffers(n_bins: int, n_agents: int) -> ScanBuffers:
        """Occlusion scratch for ``n_bins`` azimuth bins and up to ``n_agents`` agents."""
        return ScanBuffers(
            np.empty(n_bins), np.empty(n_bins, np.int64), *(np.empty(n_agents, np.int64) for _ in range(4))
        )

    def _scan_for(self, modality: Modality, n_agents: int) -> tuple:
        """This modality's scratch with room for ``n_agents``, as a plain tuple (numba types a
        plain tuple argument ~2x faster than a NamedTuple; the kernels restore the names)."""
        scan = self._scratch[modality]
        if len(scan.vis_bins) < n_agents:
            scan = self._scratch[modality] = self._scan_buffers(len(scan.depth), 2 * n_agents)
        return tuple(scan)

    def _spec_vector(self, m: Modality) -> np.ndarray:
        """(n,) float64 spec vector of modality ``m`` in the layout its kernel documents."""
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
        if AG.ndim != 2 or AG.shape[1] != NA or AG.dtype != np.float64:
            raise ValueError(f"AG must be (M, {NA}) float64, got {AG.shape} {AG.dtype}")
        if not np.isfinite(AG).all():
            raise ValueError("AG contains NaN or inf")
        modality = Modality(modality)
        poses = sensor_world_poses(np.asarray(ego_pose, np.float64))
        scan = self._scan_for(modality, AG.shape[0])
        if modality in (Modality.CAMERA, Modality.LWIR):
            return self._capture_image(modality, stamp_ns, poses, AG, scan)
        if modality == Modality.LIDAR:
            return self._capture_lidar(stamp_ns, poses, AG, scan)
        ego_v = np.array([float(ego_velocity[0]), float(ego_velocity[1])])
        return self._capture_radar(stamp_ns, poses, AG, ego_v, scan)

    def _header(self, modality: Modality, corner: int, stamp_ns: int) -> dict:
        """Header, sensor id and mount of one corner's frame (common frame fields)."""
        return dict(
            header=Header(topic=self._topics[modality][corner], stamp_ns=stamp_ns),
            sensor_id=self._ids[modality][corner],
            ego_from_sensor=self._mounts[modality][corner],
        )

    def _capture_image(self, modality: Modality, stamp_ns: int, poses, AG, scan) -> list:
        n = len(CORNERS) * _BOX_CAP
        out = ImageOut(
            box=np.empty((n, 4), np.float32),
            cls=np.empty(n, np.int32),
            conf=np.empty(n, np.float32),
            attr=np.empty(n, np.uint8),
            heat=np.empty(n, np.float32),
            counts=self._counts,
        )
        thermal = modality == Modality.LWIR
        image_frame_kernel(
            poses,
            self._sp[modality],
            AG,
            CLASS_HEAT_K,
            thermal,
            self.night,
            self._rng[modality],
            scan,
            tuple(out),
        )
        spec = self.specs[modality]
        K = spec.intrinsics()
        wh = np.array(spec.image_wh_px, np.int32)
        frames: list[CameraFrame | LwirFrame] = []
        for c in range(len(CORNERS)):
            a, b = c * _BOX_CAP, c * _BOX_CAP + int(out.counts[c])
            common = dict(
                **self._header(modality, c, stamp_ns),
                intrinsics=K,
                image_wh_px=wh,
                boxes_px=out.box[a:b],
                class_id=out.cls[a:b],
                class_conf=out.conf[a:b],
            )
            if thermal:
                frames.append(LwirFrame(heat_k=out.heat[a:b], **common))
            else:
                frames.append(CameraFrame(attributes=out.attr[a:b], **common))
        return frames

    def _capture_lidar(self, stamp_ns: int, poses, AG, scan) -> list:
        S = len(CORNERS)
        n = S * _BOX_CAP
        out = LidarOut(
            center=np.empty((n, 3), np.float32),
            size=np.empty((n, 3), np.float32),
            yaw=np.empty(n, np.float32),
            cls=np.empty(n, np.int32),
            score=np.empty(n, np.float32),
            counts=self._counts,
            pts=np.empty((S * self._pcap, 3), np.float32),
            pt_counts=self._pt_counts,
        )
        lidar_frame_kernel(poses, self._sp[Modality.LIDAR], AG, self._rng[Modality.LIDAR], scan, tuple(out))
        frames = []
        for c in range(S):
            a, b = c * _BOX_CAP, c * _BOX_CAP + int(out.counts[c])
            pa, pb = c * self._pcap, c * self._pcap + int(out.pt_counts[c])
            frames.append(
                LidarFrame(
                    **self._header(Modality.LIDAR, c, stamp_ns),
                    center_m=out.center[a:b],
                    size_lwh_m=out.size[a:b],
                    yaw_rad=out.yaw[a:b],
                    class_id=out.cls[a:b],
                    score=out.score[a:b],
                    points_m=out.pts[pa:pb],
                )
            )
        return frames

    def _capture_radar(self, stamp_ns: int, poses, AG, ego_v, scan) -> list:
        out = RadarOut(ret=np.empty((len(CORNERS) * _RADAR_CAP, 4), np.float32), counts=self._counts)
        radar_frame_kernel(
            poses, self._sp[Modality.RADAR], AG, CLASS_RCS_DBSM, CLASS_RADAR_RETURNS, ego_v,
            self._rng[Modality.RADAR], scan, tuple(out),
        )  # fmt: skip
        frames = []
        for c in range(len(CORNERS)):
            a, b = c * _RADAR_CAP, c * _RADAR_CAP + int(out.counts[c])
            r = out.ret[a:b]
            frames.append(
                RadarFrame(
                    **self._header(Modality.RADAR, c, stamp_ns),
                    range_m=r[:, 0].copy(),
                    azimuth_rad=r[:, 1].copy(),
                    range_rate_mps=r[:, 2].copy(),
                    rcs_dbsm=r[:, 3].copy(),
                )
            )
        return frames
