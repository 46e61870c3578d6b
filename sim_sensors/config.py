"""Typed configuration of the simulated world and its sixteen corner sensors.

``SimConfig`` is pydantic (people type it: CLI, tests); the sensor specs are frozen dataclasses
handed to the hot path. Every default below is a *typical* datasheet-class value, not a
measurement of one product; the source of each number is given next to it.

Sensor frame convention (see :mod:`prescient.bus.messages`): x along the boresight, y left, z up; the mount
pose is given relative to the ego frame (origin at the rear-axle centre on the ground, x forward).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from prescient.bus.messages import AgentClass, Corner, Modality

# ----------------------------------------------------------------------------------------------
# Ego vehicle geometry (a mid-size sedan, typical: 4.8 m x 1.95 m x 1.5 m, 1.0 m rear overhang).
# ----------------------------------------------------------------------------------------------
EGO_SIZE_LWH_M = (4.8, 1.95, 1.5)
EGO_REAR_OVERHANG_M = 1.0
# Box centre relative to the rear axle along x (ego frame origin is the rear-axle centre).
EGO_CENTER_FROM_REAR_AXLE_M = EGO_SIZE_LWH_M[0] / 2.0 - EGO_REAR_OVERHANG_M

# Corner mount positions in the ego frame (x forward from the rear axle, y left), metres, and the
# boresight yaw: each sensor looks diagonally outward from its corner. 5 cm outside the body so
# the ego box is an occluder but never contains the sensor.
_FRONT_X_M = EGO_SIZE_LWH_M[0] - EGO_REAR_OVERHANG_M + 0.05
_REAR_X_M = -EGO_REAR_OVERHANG_M - 0.05
_HALF_W_M = EGO_SIZE_LWH_M[1] / 2.0 + 0.05
CORNER_MOUNT: dict[Corner, tuple[float, float, float]] = {
    Corner.FRONT_LEFT: (_FRONT_X_M, _HALF_W_M, math.radians(45.0)),
    Corner.FRONT_RIGHT: (_FRONT_X_M, -_HALF_W_M, math.radians(-45.0)),
    Corner.REAR_LEFT: (_REAR_X_M, _HALF_W_M, math.radians(135.0)),
    Corner.REAR_RIGHT: (_REAR_X_M, -_HALF_W_M, math.radians(-135.0)),
}


@dataclass(frozen=True)
class SensorSpec:
    """One sensor model (shared by the four corners of a modality).

    Attributes:
        modality: which modality this spec describes.
        rate_hz: frame rate.
        latency_s: capture-to-delivery delay; a frame stamped ``t`` is emitted at ``t + latency_s``.
        hfov_rad: horizontal field of view, centred on the boresight.
        range_m: maximum detection range (day, for a car-sized target).
        mount_height_m: sensor height above ground.
        angular_res_rad: azimuth resolution of the occlusion buffer (and LiDAR beam spacing).
        min_visible_frac: an object less visible than this (fraction of its azimuth extent) is missed.
        p_detect: detection probability of a fully visible object at short range.
        false_alarms_per_frame: mean of the Poisson number of false detections / clutter returns.
        pos_sigma_m: 1-sigma position noise (LiDAR box centre; radar range).
        size_sigma_m: 1-sigma LiDAR box size noise.
        yaw_sigma_rad: 1-sigma LiDAR box yaw noise.
        px_sigma: 1-sigma noise of each box edge in pixels (camera, LWIR).
        az_sigma_rad: 1-sigma radar azimuth noise.
        rr_sigma_mps: 1-sigma radar range-rate noise.
        rcs_sigma_db: 1-sigma radar RCS fluctuation (Swerling-like), dB.
        image_wh_px: image width, height (camera, LWIR).
        p_class_correct: probability the reported class is right (day).
        night_range_factor: range multiplier at night.
        night_p_detect_factor: detection-probability multiplier at night.
        night_px_sigma_factor: pixel-noise multiplier at night.
        point_sigma_m: LiDAR per-point range noise.
        n_channels: LiDAR vertical channels sampled per azimuth beam on an object (sparse cloud).
    """

    modality: Modality
    rate_hz: float
    latency_s: float
    hfov_rad: float
    range_m: float
    mount_height_m: float
    angular_res_rad: float
    min_visible_frac: float
    p_detect: float
    false_alarms_per_frame: float
    pos_sigma_m: float = 0.0
    size_sigma_m: float = 0.0
    yaw_sigma_rad: float = 0.0
    px_sigma: float = 0.0
    az_sigma_rad: float = 0.0
    rr_sigma_mps: float = 0.0
    rcs_sigma_db: float = 0.0
    image_wh_px: tuple[int, int] = (0, 0)
    p_class_correct: float = 0.95
    night_range_factor: float = 1.0
    night_p_detect_factor: float = 1.0
    night_px_sigma_factor: float = 1.0
    point_sigma_m: float = 0.0
    n_channels: int = 0

    @property
    def period_ns(self) -> int:
        """Frame period in integer nanoseconds."""
        return round(1e9 / self.rate_hz)

    @property
    def latency_ns(self) -> int:
        """Latency in integer nanoseconds."""
        return round(self.latency_s * 1e9)

    def intrinsics(self) -> np.ndarray:
        """Pinhole matrix K (3, 3) float64 for camera/LWIR: square pixels, principal point centred."""
        w, h = self.image_wh_px
        f_px = (w / 2.0) / math.tan(self.hfov_rad / 2.0)
        return np.array([[f_px, 0.0, w / 2.0], [0.0, f_px, h / 2.0], [0.0, 0.0, 1.0]])


# Camera: automotive 2-3 MP HDR module (e.g. Sony IMX390/IMX490-class) with a 120 deg wide lens,
# 30 fps; detector range ~150 m for cars by day (typical for 2 MP at 120 deg); 2 px box-edge noise
# is the typical localisation error of a modern 2-D detector; ~50 ms capture+ISP+inference
# latency (typical). At night without street lighting range drops to ~40% (headlight reach).
CAMERA = SensorSpec(
    modality=Modality.CAMERA,
    rate_hz=30.0,
    latency_s=0.050,
    hfov_rad=math.radians(120.0),
    range_m=150.0,
    mount_height_m=1.4,
    angular_res_rad=math.radians(0.5),
    min_visible_frac=0.25,
    p_detect=0.97,
    false_alarms_per_frame=0.05,
    px_sigma=2.0,
    image_wh_px=(1920, 1080),
    p_class_correct=0.95,
    night_range_factor=0.4,
    night_p_detect_factor=0.8,
    night_px_sigma_factor=2.0,
)

# LWIR: 640x512 uncooled microbolometer (FLIR Boson 640 class, 12 um pitch) with a 95 deg lens
# (a catalogue option of that core), 30 Hz; pedestrian detection to ~100 m is typical for a
# 640-px core (the 8-px minimum box below limits it to ~70 m at this FOV); ~40 ms latency
# (typical). Unaffected by darkness. Corner-mounted at +-45 deg, the four LWIR cameras leave a
# blind wedge straight ahead/behind/sideways closer than ~20 m.
LWIR = SensorSpec(
    modality=Modality.LWIR,
    rate_hz=30.0,
    latency_s=0.040,
    hfov_rad=math.radians(95.0),
    range_m=100.0,
    mount_height_m=1.2,
    angular_res_rad=math.radians(0.5),
    min_visible_frac=0.25,
    p_detect=0.95,
    false_alarms_per_frame=0.03,
    px_sigma=1.5,
    image_wh_px=(640, 512),
    p_class_correct=0.9,
)

# LiDAR: corner-mounted mechanical/solid-state unit, usable 180 deg per corner once the body
# blocks the rest; 10 Hz; 100 m range at 10% reflectivity and +-3 cm range accuracy are typical
# datasheet values (Hesai/Ouster/Velodyne class), 0.2 deg azimuth resolution (typical at 10 Hz); box-detector errors 0.15 m / 0.1 m / 0.05 rad
# are typical of PointPillars-class detectors at short-medium range. Latency ~60 ms (half a sweep
# plus detector, typical).
LIDAR = SensorSpec(
    modality=Modality.LIDAR,
    rate_hz=10.0,
    latency_s=0.060,
    hfov_rad=math.radians(180.0),
    range_m=100.0,
    mount_height_m=0.9,
    angular_res_rad=math.radians(0.2),
    min_visible_frac=0.1,
    p_detect=0.98,
    false_alarms_per_frame=0.1,
    pos_sigma_m=0.15,
    size_sigma_m=0.10,
    yaw_sigma_rad=0.05,
    p_class_correct=0.93,
    point_sigma_m=0.03,
    n_channels=3,
)

# Radar: 77 GHz corner radar (Continental SRR/ARS-corner, Bosch MRR-corner class): 150 deg FOV,
# ~100 m, 20 Hz; accuracy typical of such datasheets: range 0.15 m, azimuth 1 deg, range-rate
# 0.1 m/s; RCS fluctuates by a few dB (Swerling I/III-like); ~4 clutter returns per frame;
# ~50 ms latency (typical).
RADAR = SensorSpec(
    modality=Modality.RADAR,
    rate_hz=20.0,
    latency_s=0.050,
    hfov_rad=math.radians(150.0),
    range_m=100.0,
    mount_height_m=0.5,
    angular_res_rad=math.radians(0.5),
    min_visible_frac=0.1,
    p_detect=0.9,
    false_alarms_per_frame=4.0,
    pos_sigma_m=0.15,
    az_sigma_rad=math.radians(1.0),
    rr_sigma_mps=0.1,
    rcs_sigma_db=3.0,
)

DEFAULT_SENSORS: dict[Modality, SensorSpec] = {
    Modality.CAMERA: CAMERA,
    Modality.LIDAR: LIDAR,
    Modality.RADAR: RADAR,
    Modality.LWIR: LWIR,
}

# Per-class properties, indexed by AgentClass value (0 = UNKNOWN unused).
# Mean RCS (dBsm, 77 GHz, typical literature values): car 10, truck/bus 20, pedestrian -8,
# cyclist -3, dog -12. Apparent thermal contrast (K, typical): people ~10, animals ~8, cyclists
# ~9, vehicles ~4 (tyres/exhaust only), used by the LWIR model.
CLASS_RCS_DBSM = np.array([0.0, 10.0, 20.0, 20.0, -8.0, -3.0, -12.0])
CLASS_HEAT_K = np.array([0.0, 4.0, 5.0, 5.0, 10.0, 9.0, 8.0])
# Number of radar returns from a fully visible object of the class (max).
CLASS_RADAR_RETURNS = np.array([1, 3, 6, 7, 1, 1, 1], dtype=np.int64)


@dataclass(frozen=True)
class ClassMix:
    """Fractions of each class among the spawned agents (normalised on use)."""

    car: float = 0.50
    truck: float = 0.05
    bus: float = 0.03
    pedestrian: float = 0.27
    cyclist: float = 0.10
    animal: float = 0.05

    def probabilities(self) -> np.ndarray:
        """(7,) float64 probabilities indexed by AgentClass value."""
        p = np.array([0.0, self.car, self.truck, self.bus, self.pedestrian, self.cyclist, self.animal])
        return p / p.sum()


@dataclass(frozen=True)
class BehaviourSpec:
    """Behaviour parameters. IDM values are the usual textbook ones (Treiber et al. 2000)."""

    idm_accel_mps2: float = 1.5
    idm_decel_mps2: float = 2.5
    idm_headway_s: float = 1.4
    idm_min_gap_m: float = 2.0
    p_phone: float = 0.2  # fraction of pedestrians holding a phone
    p_jaywalker: float = 0.15  # fraction of pedestrians who may jaywalk
    jaywalk_rate_hz: float = 0.02  # how often a jaywalker starts crossing mid-block
    lane_change_rate_hz: float = 0.3
    stuck_timeout_s: float = 60.0  # a non-ego agent stopped this long (not at a light) is removed


@dataclass(frozen=True)
class SensorSuite:
    """The four modality specs; the same spec is mounted at each of the four corners."""

    specs: dict[Modality, SensorSpec] = field(default_factory=lambda: dict(DEFAULT_SENSORS))


class SimConfig(BaseModel):
    """What a user asks for. Validated once; the simulation is a pure function of it.

    Attributes:
        scenario: one of :data:`prescient.sim_sensors.maps.SCENARIOS`.
        seed: RNG seed; the same config gives the same message streams.
        n_agents: target number of agents (ego excluded) kept alive by spawning.
        night: darkness (camera degrades; LWIR does not).
        disabled_modalities: modality names or values whose sensors publish nothing.
        dt_s: physics step.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    scenario: str = "intersection"
    seed: int = Field(0, ge=0)
    n_agents: int = Field(50, ge=0, le=1000)
    night: bool = False
    disabled_modalities: tuple[Modality, ...] = ()
    dt_s: float = Field(0.02, gt=0.0, le=0.1)

    @field_validator("disabled_modalities", mode="before")
    @classmethod
    def _modalities(cls, v: object) -> tuple[Modality, ...]:
        if isinstance(v, (str, int)):
            v = (v,)
        out = []
        for item in v:  # type: ignore[attr-defined]
            if isinstance(item, str) and not item.isdigit():
                try:
                    out.append(Modality[item.upper()])
                except KeyError as e:
                    names = ", ".join(m.name.lower() for m in Modality)
                    raise ValueError(f"unknown modality {item!r}; expected one of {names}") from e
            else:
                out.append(Modality(int(item)))
        return tuple(out)

    @field_validator("scenario")
    @classmethod
    def _scenario(cls, v: str) -> str:
        return check_scenario(v)


CLASS_NAMES = {c.value: c.name.lower() for c in AgentClass}


def check_scenario(name: str) -> str:
    """``name`` if it is a known scenario (map), else ValueError naming the choices (validators)."""
    from prescient.sim_sensors.maps import SCENARIOS

    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; expected one of {', '.join(SCENARIOS)}")
    return name
