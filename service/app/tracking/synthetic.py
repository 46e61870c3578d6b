"""A small seeded synthetic scene emitting the 16 corner sensor frames, for tests and benchmarks.

This is not the simulator (:mod:`sim_sensors`): agents move on open ground with constant speed and
turn rate, sensors have a field of view, range, noise, misses and radar clutter. It exists so the
tracker can be tested and timed without any other package.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from prescient.bus import messages as m

_MOUNTS = {  # corner -> (x_m, y_m, yaw_rad) in the ego frame
    m.Corner.FRONT_LEFT: (3.6, 0.9, math.radians(45)),
    m.Corner.FRONT_RIGHT: (3.6, -0.9, math.radians(-45)),
    m.Corner.REAR_LEFT: (-0.8, 0.9, math.radians(135)),
    m.Corner.REAR_RIGHT: (-0.8, -0.9, math.radians(-135)),
}
INTRINSICS = np.array([[800.0, 0.0, 960.0], [0.0, 800.0, 540.0], [0.0, 0.0, 1.0]])
IMAGE_WH = np.array([1920, 1080], np.int32)
HALF_FOV_RAD = math.radians(62)


def ego_from_sensor_matrix(x_m: float, y_m: float, yaw_rad: float, z_m: float = 1.6) -> np.ndarray:
    """4x4 float64 mounting pose (planar yaw) of a sensor in the ego frame."""
    e = np.eye(4)
    c, s = math.cos(yaw_rad), math.sin(yaw_rad)
    e[:2, :2] = [[c, -s], [s, c]]
    e[:3, 3] = (x_m, y_m, z_m)
    return e


@dataclass
class SyntheticScene:
    """Seeded agents around a straight-driving ego; :meth:`step` returns one 100 ms tick of messages.

    Args:
        n_agents: number of agents, placed uniformly within ``radius_m`` of the ego's path.
        seed: RNG seed (the run is fully deterministic).
        ego_speed_mps: ego speed along world +x.
        radius_m: placement radius.
        sensor_range_m: range of every sensor.
        night: camera detection probability drops to 0.2 (LWIR unaffected).
        lidar_pos_std_m, radar_rr_std_mps: noise levels.
    """

    n_agents: int = 30
    seed: int = 0
    ego_speed_mps: float = 8.0
    radius_m: float = 60.0
    sensor_range_m: float = 80.0
    night: bool = False
    lidar_pos_std_m: float = 0.1
    radar_rr_std_mps: float = 0.1

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        self._rng = rng
        n = self.n_agents
        classes = rng.choice(
            [
                m.AgentClass.CAR,
                m.AgentClass.TRUCK,
                m.AgentClass.BUS,
                m.AgentClass.PEDESTRIAN,
                m.AgentClass.CYCLIST,
            ],
            size=n,
            p=[0.5, 0.1, 0.05, 0.25, 0.1],
        ).astype(np.int32)
        self.class_id = classes
        r = self.radius_m * np.sqrt(rng.uniform(0.04, 1.0, n))
        a = rng.uniform(-math.pi, math.pi, n)
        self.pos = np.stack([r * np.cos(a), r * np.sin(a)], axis=1)
        self.yaw = rng.uniform(-math.pi, math.pi, n)
        ped = classes == m.AgentClass.PEDESTRIAN
        self.speed = np.where(ped, rng.uniform(0.5, 1.8, n), rng.uniform(2.0, 12.0, n))
        self.yaw_rate = np.where(ped, 0.0, rng.uniform(-0.15, 0.15, n))
        self.size = np.array([m.DEFAULT_SIZE_LWH_M[m.AgentClass(c)] for c in classes], np.float64)
        self.agent_id = np.arange(n, dtype=np.int64)
        self.ego = np.array([0.0, 0.0, 0.0])
        self.time_ns = 1_000_000_000
        self._seq = 0

    def _advance(self, dt: float) -> None:
        self.yaw = self.yaw + self.yaw_rate * dt
        self.pos[:, 0] += self.speed * np.cos(self.yaw) * dt
        self.pos[:, 1] += self.speed * np.sin(self.yaw) * dt
        self.ego[0] += self.ego_speed_mps * dt
        self.time_ns += int(round(dt * 1e9))

    def velocity(self) -> np.ndarray:
        """(N, 2) world velocities of the agents, m/s."""
        return np.stack([self.speed * np.cos(self.yaw), self.speed * np.sin(self.yaw)], axis=1)

    def ground_truth(self) -> m.GroundTruth:
        """Ground truth at the current time."""
        n = self.n_agents
        return m.GroundTruth(
            header=m.Header(topic=m.TOPIC_GROUND_TRUTH, seq=self._seq, stamp_ns=self.time_ns),
            agent_id=self.agent_id.copy(),
            class_id=self.class_id.copy(),
            position_m=self.pos.astype(np.float32),
            yaw_rad=self.yaw.astype(np.float32),
            velocity_mps=self.velocity().astype(np.float32),
            accel_mps2=np.zeros((n, 2), np.float32),
            size_lwh_m=self.size.astype(np.float32),
            attributes=np.zeros(n, np.uint8),
        )

    def step(self) -> list:
        """Advance 100 ms and return EgoState, 16 sensor frames and GroundTruth for that instant."""
        self._advance(0.1)
        self._seq += 1
        t = self.time_ns
        out: list = [
            m.EgoState(
                header=m.Header(topic=m.TOPIC_EGO, seq=self._seq, stamp_ns=t),
                pose=self.ego.copy(),
                velocity_mps=np.array([self.ego_speed_mps, 0.0], np.float32),
                accel_mps2=0.0,
                yaw_rate_radps=0.0,
                size_lwh_m=np.array([4.8, 2.0, 1.6], np.float32),
                plan_xy_m=np.zeros((0, 2), np.float32),
            )
        ]
        vel = self.velocity()
        for modality in m.Modality:
            for corner in m.Corner:
                out.append(self._frame(modality, corner, t, vel))
        out.append(self.ground_truth())
        return out

    def _frame(self, modality: m.Modality, corner: m.Corner, t: int, vel: np.ndarray) -> object:
        rng = self._rng
        mx, my, myaw = _MOUNTS[corner]
        e = ego_from_sensor_matrix(mx, my, myaw)
        ce, se = math.cos(self.ego[2]), math.sin(self.ego[2])
        spos = self.ego[:2] + np.array([ce * mx - se * my, se * mx + ce * my])
        syaw = self.ego[2] + myaw
        cs, ss = math.cos(syaw), math.sin(syaw)
        d = self.pos - spos
        xs = cs * d[:, 0] + ss * d[:, 1]
        ys = -ss * d[:, 0] + cs * d[:, 1]
        rng_m = np.hypot(xs, ys)
        az = np.arctan2(ys, xs)
        seen = (np.abs(az) < HALF_FOV_RAD) & (rng_m < self.sensor_range_m) & (rng_m > 1.0)
        header = m.Header(topic=m.sensor_topic(modality, corner), seq=self._seq, stamp_ns=t)
        sensor_id = header.topic
        if modality == m.Modality.LIDAR:
            sel = np.flatnonzero(seen & (rng.uniform(size=self.n_agents) < 0.95))
            n = sel.size
            center = np.stack([xs[sel], ys[sel], np.full(n, -0.8)], axis=1)
            center[:, :2] += rng.normal(0, self.lidar_pos_std_m, (n, 2))
            cls = self.class_id[sel].copy()
            flip = rng.uniform(size=n) < 0.05
            cls[flip] = m.AgentClass.UNKNOWN
            return m.LidarFrame(
                header=header,
                sensor_id=sensor_id,
                ego_from_sensor=e,
                center_m=center.astype(np.float32),
                size_lwh_m=self.size[sel].astype(np.float32),
                yaw_rad=(self.yaw[sel] - syaw + rng.normal(0, 0.05, n)).astype(np.float32),
                class_id=cls.astype(np.int32),
                score=rng.uniform(0.6, 0.95, n).astype(np.float32),
                points_m=np.zeros((0, 3), np.float32),
            )
        if modality == m.Modality.RADAR:
            sel = np.flatnonzero(seen & (rng.uniform(size=self.n_agents) < 0.9))
            ux, uy = d[sel, 0] / rng_m[sel], d[sel, 1] / rng_m[sel]
            sv = np.array([self.ego_speed_mps, 0.0])
            rr = ux * (vel[sel, 0] - sv[0]) + uy * (vel[sel, 1] - sv[1])
            n_clutter = 3
            r = np.concatenate([rng_m[sel] + rng.normal(0, 0.3, sel.size), rng.uniform(5, 70, n_clutter)])
            a = np.concatenate([az[sel] + rng.normal(0, 0.01, sel.size), rng.uniform(-1, 1, n_clutter)])
            rrm = np.concatenate(
                [rr + rng.normal(0, self.radar_rr_std_mps, sel.size), rng.normal(0, 5, n_clutter)]
            )
            mm = r.size
            return m.RadarFrame(
                header=header,
                sensor_id=sensor_id,
                ego_from_sensor=e,
                range_m=r.astype(np.float32),
                azimuth_rad=a.astype(np.float32),
                range_rate_mps=rrm.astype(np.float32),
                rcs_dbsm=np.zeros(mm, np.float32),
            )
        p_det = 0.2 if (self.night and modality == m.Modality.CAMERA) else 0.9
        if modality == m.Modality.LWIR:
            seen = seen & (rng_m < 50.0)
        sel = np.flatnonzero(seen & (rng.uniform(size=self.n_agents) < p_det))
        n = sel.size
        u = INTRINSICS[0, 2] - INTRINSICS[0, 0] * np.tan(az[sel] + rng.normal(0, 0.003, n))
        half_w = 0.5 * INTRINSICS[0, 0] * self.size[sel, 1] / np.maximum(rng_m[sel], 1.0)
        boxes = np.stack([u - half_w, np.full(n, 500.0), u + half_w, np.full(n, 600.0)], axis=1)
        common: dict[str, Any] = dict(
            header=header,
            sensor_id=sensor_id,
            ego_from_sensor=e,
            intrinsics=INTRINSICS.copy(),
            image_wh_px=IMAGE_WH.copy(),
            boxes_px=boxes.astype(np.float32),
            class_id=self.class_id[sel].astype(np.int32),
            class_conf=rng.uniform(0.7, 0.95, n).astype(np.float32),
        )
        if modality == m.Modality.CAMERA:
            return m.CameraFrame(**common, attributes=np.zeros(n, np.uint8))
        return m.LwirFrame(**common, heat_k=np.full(n, 5.0, np.float32))
