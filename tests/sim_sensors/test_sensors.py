"""Sensors on hand-built scenes: field of view, occlusion (by objects and by the ego), noise."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from prescient.bus.messages import AgentClass, Corner, Modality
from prescient.sim_sensors import DEFAULT_SENSORS, SensorRig, layout, pack_agents
from prescient.sim_sensors.sensors import sensor_world_poses
from prescient.sim_sensors.sensors.camera import project_box_kernel

EGO = np.array([0.0, 0.0, 0.0])  # rear axle at the origin, facing +x
SIZES = {
    AgentClass.CAR: (4.6, 1.9, 1.5),
    AgentClass.TRUCK: (9.0, 2.5, 3.5),
    AgentClass.PEDESTRIAN: (0.5, 0.6, 1.75),
}


def scene(objs: list[tuple[float, float, AgentClass]], vel=None) -> np.ndarray:
    """Packed agents at (x, y) with yaw 0, plus the ego box."""
    xy = np.array([(x, y) for x, y, _ in objs], float).reshape(-1, 2)
    cls = np.array([c for *_, c in objs])
    size = np.array([SIZES[c] for c in cls]).reshape(-1, 3)
    v = np.zeros((len(objs), 2)) if vel is None else vel
    return pack_agents(xy, np.zeros(len(objs)), size, v, cls, ego_pose=EGO)


def clean_rig(overrides: dict | None = None) -> SensorRig:
    """A rig with no false alarms and certain detection (unless overridden)."""
    overrides = overrides or {}
    specs = {
        m: dataclasses.replace(s, false_alarms_per_frame=0.0, p_detect=1.0, **overrides.get(m, {}))
        for m, s in DEFAULT_SENSORS.items()
    }
    return SensorRig(specs, seed=0)


def n_det(frame) -> int:
    if hasattr(frame, "boxes_px"):
        return len(frame.boxes_px)
    if hasattr(frame, "center_m"):
        return len(frame.center_m)
    return len(frame.range_m)


def test_object_ahead_seen_by_front_corners_only() -> None:
    """A car 40 m ahead is in every front sensor's FOV and in no rear camera's."""
    rig = clean_rig()
    AG = scene([(40.0, 0.0, AgentClass.CAR)])
    for m in Modality:  # over 10 frames: the LWIR misses cool cars now and then
        got = np.sum([[n_det(f) for f in rig.capture(m, 0, AG, EGO, np.zeros(2))] for _ in range(10)], axis=0)
        assert got[Corner.FRONT_LEFT] >= 1 and got[Corner.FRONT_RIGHT] >= 1, (m, got)
        if m in (Modality.CAMERA, Modality.LWIR):
            assert got[Corner.REAR_LEFT] == 0 and got[Corner.REAR_RIGHT] == 0, (m, got)


def test_object_outside_range_not_seen() -> None:
    """Beyond the configured range nothing is reported."""
    rig = clean_rig()
    AG = scene([(DEFAULT_SENSORS[Modality.LIDAR].range_m + 20.0, 0.0, AgentClass.TRUCK)])
    frames = rig.capture(Modality.LIDAR, 0, AG, EGO, np.zeros(2))
    assert sum(n_det(f) for f in frames) == 0


@pytest.mark.parametrize("modality", list(Modality))
def test_pedestrian_behind_truck_is_occluded(modality: Modality) -> None:
    """A pedestrian hidden behind a truck is missed; without the truck it is seen."""
    rig = clean_rig()
    fl = sensor_world_poses(EGO)[Corner.FRONT_LEFT]
    # put both on the FL boresight: truck at 15 m, pedestrian at 30 m
    u = np.array([math.cos(fl[2]), math.sin(fl[2])])
    truck, ped = fl[:2] + 15 * u, fl[:2] + 30 * u
    hidden = scene([(*truck, AgentClass.TRUCK), (*ped, AgentClass.PEDESTRIAN)])
    hidden[0, layout.A_YAW] = fl[2] + math.pi / 2  # truck broadside to the sensor
    alone = scene([(*ped, AgentClass.PEDESTRIAN)])
    f_hidden = rig.capture(modality, 0, hidden, EGO, np.zeros(2))[Corner.FRONT_LEFT]
    f_alone = rig.capture(modality, 0, alone, EGO, np.zeros(2))[Corner.FRONT_LEFT]
    assert n_det(f_alone) >= 1
    if modality == Modality.LIDAR:  # boxes near the pedestrian's position
        d = np.linalg.norm(f_hidden.center_m[:, :2] - np.array([30.0, 0.0]), axis=1)
        assert not (d < 3.0).any()
    elif modality == Modality.RADAR:
        assert not (np.abs(f_hidden.range_m - 30.0) < 3.0).any()
    else:
        assert n_det(f_hidden) == 1  # only the truck


def test_ego_body_occludes_its_own_blind_side() -> None:
    """With a 330 deg LiDAR, the FL sensor cannot see through the car to the rear-right."""
    rig = clean_rig({Modality.LIDAR: {"hfov_rad": math.radians(330.0)}})
    AG = scene([(-8.0, -3.0, AgentClass.CAR)])
    frames = rig.capture(Modality.LIDAR, 0, AG, EGO, np.zeros(2))
    assert n_det(frames[Corner.FRONT_LEFT]) == 0
    assert n_det(frames[Corner.REAR_RIGHT]) == 1
    # and the ego itself is never reported, although it fills part of every wide FOV
    clear = scene([])
    assert sum(n_det(f) for f in rig.capture(Modality.LIDAR, 0, clear, EGO, np.zeros(2))) == 0


def test_lidar_box_noise_matches_config() -> None:
    """Centre and yaw errors: mean ~0 and std within 10% of pos_sigma / yaw_sigma (n = 1500)."""
    rig = clean_rig()
    spec = DEFAULT_SENSORS[Modality.LIDAR]
    fl = sensor_world_poses(EGO)[Corner.FRONT_LEFT]
    AG = scene([(20.0, 10.0, AgentClass.CAR)])
    c, s = math.cos(fl[2]), math.sin(fl[2])
    dx, dy = 20.0 - fl[0], 10.0 - fl[1]
    truth = np.array([c * dx + s * dy, -s * dx + c * dy, 0.75 - spec.mount_height_m])
    errs, yaw_err = [], []
    for _ in range(500):
        f = rig.capture(Modality.LIDAR, 0, AG, EGO, np.zeros(2))[Corner.FRONT_LEFT]
        assert len(f.center_m) == 1
        errs.append(f.center_m[0] - truth)
        yaw_err.append((f.yaw_rad[0] + fl[2] + math.pi) % (2 * math.pi) - math.pi)
    errs = np.array(errs).ravel()
    yaw_err = np.array(yaw_err)
    yaw_err = yaw_err[np.abs(yaw_err) < 1.0]  # drop the 2% heading flips
    assert abs(errs.mean()) < 0.03
    assert abs(errs.std() / spec.pos_sigma_m - 1.0) < 0.10
    assert abs(yaw_err.std() / spec.yaw_sigma_rad - 1.0) < 0.15


def test_camera_pixel_noise_matches_config() -> None:
    """Box-edge errors against the noise-free projection: std within 10% of px_sigma (n = 1600)."""
    rig = clean_rig()
    spec = DEFAULT_SENSORS[Modality.CAMERA]
    fl = sensor_world_poses(EGO)[Corner.FRONT_LEFT]
    AG = scene([(20.0, 8.0, AgentClass.CAR)])
    K = spec.intrinsics()
    w, h = spec.image_wh_px
    ref = np.array(
        project_box_kernel(
            (fl[0], fl[1], fl[2], spec.mount_height_m),
            (K[0, 0], K[0, 2], K[1, 2], w, h),
            (20.0, 8.0, 0.0, 4.6, 1.9, 1.5),
        )
    )
    errs = []
    for _ in range(400):
        f = rig.capture(Modality.CAMERA, 0, AG, EGO, np.zeros(2))[Corner.FRONT_LEFT]
        assert len(f.boxes_px) == 1
        errs.append(f.boxes_px[0] - ref)
    errs = np.array(errs).ravel()
    assert abs(errs.mean()) < 0.2
    assert abs(errs.std() / spec.px_sigma - 1.0) < 0.10


def test_radar_doppler_noise_and_sign() -> None:
    """A car receding at 5 m/s: range rate ~ +5 * cos(angle), std within 10% of rr_sigma."""
    rig = clean_rig()
    spec = DEFAULT_SENSORS[Modality.RADAR]
    fl = sensor_world_poses(EGO)[Corner.FRONT_LEFT]
    u = np.array([math.cos(fl[2]), math.sin(fl[2])])
    pos = fl[:2] + 30 * u
    AG = scene([(*pos, AgentClass.CAR)], vel=(5.0 * u)[None])
    AG[0, layout.A_YAW] = fl[2]
    rr = []
    for _ in range(300):
        f = rig.capture(Modality.RADAR, 0, AG, EGO, np.zeros(2))[Corner.FRONT_LEFT]
        assert len(f.range_m) >= 1
        rr += (f.range_rate_mps - 5.0 * np.cos(f.azimuth_rad)).tolist()
    rr = np.array(rr)
    assert abs(rr.mean()) < 0.03
    # azimuth noise (1 deg) makes cos() deviate by < 0.002 m/s here; the spread is range-rate noise
    assert abs(rr.std() / spec.rr_sigma_mps - 1.0) < 0.10


def test_detection_probability_matches_config() -> None:
    """A fully visible car is detected with p_detect (binomial, 4 sigma tolerance, n = 2000)."""
    specs = {m: dataclasses.replace(s, false_alarms_per_frame=0.0) for m, s in DEFAULT_SENSORS.items()}
    rig = SensorRig(specs, seed=1)
    AG = scene([(20.0, 5.0, AgentClass.CAR)])
    p = specs[Modality.CAMERA].p_detect
    hits = sum(
        n_det(rig.capture(Modality.CAMERA, 0, AG, EGO, np.zeros(2))[Corner.FRONT_LEFT]) for _ in range(2000)
    )
    assert abs(hits / 2000 - p) < 4 * math.sqrt(p * (1 - p) / 2000)


def test_night_degrades_camera_not_lwir() -> None:
    """A pedestrian at 55 m: the camera sees it by day only; the LWIR sees it day and night."""
    specs = {m: dataclasses.replace(s, false_alarms_per_frame=0.0) for m, s in DEFAULT_SENSORS.items()}
    fl = sensor_world_poses(EGO)[Corner.FRONT_LEFT]
    u = np.array([math.cos(fl[2]), math.sin(fl[2])])
    AG = scene([(*(fl[:2] + 55 * u), AgentClass.PEDESTRIAN)])
    rate = {}
    for night in (False, True):
        rig = SensorRig(specs, night=night, seed=2)
        for m in (Modality.CAMERA, Modality.LWIR):
            rate[(m, night)] = np.mean(
                [n_det(rig.capture(m, 0, AG, EGO, np.zeros(2))[0]) for _ in range(200)]
            )
    assert rate[(Modality.CAMERA, False)] > 0.8
    assert rate[(Modality.CAMERA, True)] == 0.0
    assert rate[(Modality.LWIR, False)] > 0.8 and rate[(Modality.LWIR, True)] > 0.8


def test_lwir_sees_warm_bodies_better_than_cars() -> None:
    """LWIR detection rate is higher for pedestrians than for cars at the same place."""
    specs = {m: dataclasses.replace(s, false_alarms_per_frame=0.0) for m, s in DEFAULT_SENSORS.items()}
    rig = SensorRig(specs, seed=3)
    ped = scene([(20.0, 8.0, AgentClass.PEDESTRIAN)])
    car = scene([(20.0, 8.0, AgentClass.CAR)])
    r_ped = np.mean([n_det(rig.capture(Modality.LWIR, 0, ped, EGO, np.zeros(2))[0]) for _ in range(300)])
    r_car = np.mean([n_det(rig.capture(Modality.LWIR, 0, car, EGO, np.zeros(2))[0]) for _ in range(300)])
    assert r_ped > 0.85 and r_car < r_ped - 0.1


def test_lidar_points_lie_on_visible_faces() -> None:
    """Every LiDAR point of a lone car lies on its box outline (within 4 point sigmas)."""
    rig = clean_rig()
    fl = sensor_world_poses(EGO)[Corner.FRONT_LEFT]
    AG = scene([(20.0, 8.0, AgentClass.CAR)])
    f = rig.capture(Modality.LIDAR, 0, AG, EGO, np.zeros(2))[Corner.FRONT_LEFT]
    assert len(f.points_m) >= 10
    c, s = math.cos(fl[2]), math.sin(fl[2])
    wx = fl[0] + c * f.points_m[:, 0] - s * f.points_m[:, 1] - 20.0
    wy = fl[1] + s * f.points_m[:, 0] + c * f.points_m[:, 1] - 8.0
    edge = np.minimum(np.abs(np.abs(wx) - 2.3), np.abs(np.abs(wy) - 0.95))
    assert (edge < 4 * DEFAULT_SENSORS[Modality.LIDAR].point_sigma_m + 1e-3).all()


def test_bad_snapshot_rejected_with_reason() -> None:
    """A wrongly shaped or non-finite agent table raises ValueError naming the problem."""
    rig = clean_rig()
    with pytest.raises(ValueError, match="AG must be"):
        rig.capture(Modality.CAMERA, 0, np.zeros((2, 3)), EGO, np.zeros(2))
    bad = scene([(10.0, 0.0, AgentClass.CAR)])
    bad[0, layout.A_X] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        rig.capture(Modality.CAMERA, 0, bad, EGO, np.zeros(2))
