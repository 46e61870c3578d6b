"""A bird's-eye picture of the simulation: map, agents, sensor footprints and detections.

Uses matplotlib's Agg backend (no display needed). Camera and LWIR boxes have no range, so they
are drawn as bearing rays from their sensor; LiDAR boxes and radar returns are drawn where they
were measured (sensor frame -> world through the ego pose at capture).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from prescient.bus.messages import AgentClass, CameraFrame, LidarFrame, LwirFrame, Modality, RadarFrame
from prescient.sim_sensors import layout
from prescient.sim_sensors.sensors import CORNERS, sensor_world_poses

_CLASS_COLOR = {
    AgentClass.CAR: "#1f77b4",
    AgentClass.TRUCK: "#17becf",
    AgentClass.BUS: "#9467bd",
    AgentClass.PEDESTRIAN: "#d62728",
    AgentClass.CYCLIST: "#ff7f0e",
    AgentClass.ANIMAL: "#8c564b",
}
_MOD_COLOR = {
    Modality.CAMERA: "#2ca02c",
    Modality.LIDAR: "#1f77b4",
    Modality.RADAR: "#d62728",
    Modality.LWIR: "#ff7f0e",
}


def _polys(xy: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    return [xy[a:b] for a, b in zip(offsets[:-1], offsets[1:])]


def _box(x: float, y: float, yaw: float, length: float, width: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    ex = np.array([1, 1, -1, -1, 1]) * length / 2
    ey = np.array([1, -1, -1, 1, 1]) * width / 2
    return np.stack([x + c * ex - s * ey, y + s * ex + c * ey], axis=1)


def draw_map(ax, vm) -> None:
    """Drivable areas, sidewalks, crossings and lane centerlines of ``vm`` on a matplotlib axis."""
    from matplotlib.patches import Polygon

    for p in _polys(vm.drivable_xy_m, vm.drivable_offsets):
        ax.add_patch(Polygon(p, closed=True, fc="#dddddd", ec="none", zorder=0))
    for p in _polys(vm.sidewalk_xy_m, vm.sidewalk_offsets):
        ax.add_patch(Polygon(p, closed=True, fc="#f2e8cf", ec="none", zorder=0))
    for p in _polys(vm.crossing_xy_m, vm.crossing_offsets):
        ax.add_patch(Polygon(p, closed=True, fc="white", ec="#999999", hatch="||", zorder=1))
    for p in _polys(vm.centerline_xy_m, vm.centerline_offsets):
        ax.plot(p[:, 0], p[:, 1], color="#aaaaaa", lw=0.5, ls="--", zorder=1)


def draw_snapshot(sim, frames: dict[str, object], path: str | Path, view_m: float = 70.0) -> Path:
    """Write a PNG of the current state of ``sim`` with the latest ``frames`` per sensor topic.

    Args:
        sim: a :class:`~prescient.sim_sensors.simulation.Simulation`.
        frames: newest sensor frame per topic (any subset of the sixteen).
        path: output file.
        view_m: half-size of the square view around the ego, metres.

    Returns:
        The written path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Polygon, Wedge

    vm = sim.map
    ego = sim.ego_pose()
    fig, ax = plt.subplots(figsize=(10, 10), dpi=110)
    draw_map(ax, vm)
    t_s = sim.time_ns / 1e9
    states = vm.group_plan_s.shape[0] and sim.map_data.light_states(t_s)
    light_color = {1: "red", 2: "gold", 3: "limegreen"}
    for seg, lane in zip(vm.stop_line_xy_m, vm.stop_line_lane_id):
        g = sim.map_data.group[lane]
        color = light_color.get(int(states[g]), "black") if g >= 0 else "black"
        ax.plot(seg[:, 0], seg[:, 1], color=color, lw=2.5, zorder=2)
    # sensor footprints (FOV wedges at range), one alpha layer per modality
    poses = sensor_world_poses(ego)
    for m, spec in sim.rig.specs.items():
        if m not in sim.enabled:
            continue
        for c, pose in enumerate(poses):
            del c
            a0 = math.degrees(pose[2] - spec.hfov_rad / 2)
            a1 = math.degrees(pose[2] + spec.hfov_rad / 2)
            r = min(spec.range_m, view_m * 1.5)
            ax.add_patch(
                Wedge(pose[:2], r, a0, a1, fc=_MOD_COLOR[m], alpha=0.04, ec=_MOD_COLOR[m], lw=0.3, zorder=2)
            )
    # agents
    F, I = sim.F, sim.I  # noqa: E741 (I: int state table, as in the kernels)
    for i in np.nonzero(I[:, layout.I_ACTIVE])[0]:
        cls = AgentClass(int(I[i, layout.I_CLS]))
        is_ego = bool(I[i, layout.I_FLAGS] & layout.FLAG_EGO)
        box = _box(
            F[i, layout.F_X], F[i, layout.F_Y], F[i, layout.F_YAW], F[i, layout.F_LEN], F[i, layout.F_WID]
        )
        color = "black" if is_ego else _CLASS_COLOR.get(cls, "grey")
        ax.add_patch(Polygon(box[:4], closed=True, fc=color, ec="black", lw=0.5, alpha=0.85, zorder=4))
        if (
            not is_ego
            and I[i, layout.I_ATTR] & layout.ATTR_BRAKE
            and cls in (AgentClass.CAR, AgentClass.TRUCK, AgentClass.BUS)
        ):
            ax.plot(*box[2:4].T, color="red", lw=2, zorder=5)
    # detections
    for topic, f in frames.items():
        corner = [c for c in CORNERS if topic.endswith("." + ("fl", "fr", "rl", "rr")[c])]
        if not corner:
            continue
        sx, sy, syaw = poses[corner[0]]
        cs, ss = math.cos(syaw), math.sin(syaw)
        if isinstance(f, LidarFrame):
            pts = f.points_m
            ax.scatter(
                sx + cs * pts[:, 0] - ss * pts[:, 1],
                sy + ss * pts[:, 0] + cs * pts[:, 1],
                s=0.5,
                c="#1f77b4",
                zorder=6,
            )
            for cen, size, yaw in zip(f.center_m, f.size_lwh_m, f.yaw_rad):
                wx, wy = sx + cs * cen[0] - ss * cen[1], sy + ss * cen[0] + cs * cen[1]
                b = _box(wx, wy, syaw + yaw, size[0], size[1])
                ax.plot(b[:, 0], b[:, 1], color="#1f77b4", lw=0.8, zorder=6)
        elif isinstance(f, RadarFrame):
            wa = syaw + f.azimuth_rad
            ax.scatter(
                sx + f.range_m * np.cos(wa),
                sy + f.range_m * np.sin(wa),
                s=8,
                marker="x",
                c="#d62728",
                lw=0.8,
                zorder=6,
            )
        elif isinstance(f, (CameraFrame, LwirFrame)):
            fx, cx = f.intrinsics[0, 0], f.intrinsics[0, 2]
            color = _MOD_COLOR[Modality.CAMERA if isinstance(f, CameraFrame) else Modality.LWIR]
            for box in f.boxes_px:
                az = syaw + math.atan2(cx - 0.5 * (box[0] + box[2]), fx)
                ax.plot(
                    [sx, sx + 40 * math.cos(az)],
                    [sy, sy + 40 * math.sin(az)],
                    color=color,
                    lw=0.4,
                    alpha=0.6,
                    zorder=3,
                )
    ax.set_xlim(ego[0] - view_m, ego[0] + view_m)
    ax.set_ylim(ego[1] - view_m, ego[1] + view_m)
    ax.set_aspect("equal")
    ax.set_title(
        f"{vm.map_id}  t={t_s:.1f} s  agents={sim.n_active}  "
        "(boxes: agents; blue: LiDAR boxes/points; red x: radar; green/orange rays: camera/LWIR bearings)",
        fontsize=8,
    )
    ax.set_xlabel("x east [m]")
    ax.set_ylabel("y north [m]")
    out = Path(path)
    fig.savefig(out, bbox_inches="tight")
    plt.close(fig)
    return out
