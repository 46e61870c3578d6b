"""A bird's-eye picture of one scene: map, ego, agents with their -2 s .. +2 s path, pinned agents outlined."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prescient.bus.messages import AgentClass
from prescient.sim_sensors.config import EGO_CENTER_FROM_REAR_AXLE_M, EGO_SIZE_LWH_M
from prescient.sim_sensors.maps import build_map
from prescient.sim_sensors.scenario_file import Scene
from prescient.sim_sensors.snapshot import _CLASS_COLOR, _box, draw_map


def draw_scene(scene: Scene, path: str | Path, view_m: float = 36.0, title: str | None = None) -> Path:
    """Write a PNG of ``scene`` (world frame, centred on the ego); returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Polygon

    vm = build_map(scene.map_name)
    fig, ax = plt.subplots(figsize=(7, 7), dpi=110)
    draw_map(ax, vm)
    ex, ey, eyaw = scene.ego_pose
    off = EGO_CENTER_FROM_REAR_AXLE_M
    ego_box = _box(
        ex + off * np.cos(eyaw), ey + off * np.sin(eyaw), eyaw, EGO_SIZE_LWH_M[0], EGO_SIZE_LWH_M[1]
    )
    ax.add_patch(Polygon(ego_box[:4], closed=True, fc="black", ec="black", zorder=4))
    for i in range(scene.n_agents):
        cls = AgentClass(int(scene.cls[i]))
        x, y = scene.xy_m[i]
        box = _box(x, y, scene.yaw_rad[i], scene.size_lw_m[i, 0], scene.size_lw_m[i, 1])
        pinned = bool(scene.pinned[i])
        ax.add_patch(Polygon(box[:4], closed=True, fc=_CLASS_COLOR.get(cls, "grey"), alpha=0.85,
                             ec="red" if pinned else "black", lw=2.5 if pinned else 0.5, zorder=5))  # fmt: skip
        path_xy = np.array([scene.past_xy_m[i], scene.xy_m[i], scene.future_xy_m[i]])
        if np.all(np.isfinite(path_xy)):
            ax.plot(path_xy[:2, 0], path_xy[:2, 1], color="grey", lw=1, zorder=3)
            ax.annotate("", xy=path_xy[2], xytext=path_xy[1], zorder=6,
                        arrowprops={"arrowstyle": "->", "color": "red" if pinned else "k", "lw": 1.2})  # fmt: skip
    ax.set_xlim(ex - view_m, ex + view_m)
    ax.set_ylim(ey - view_m, ey + view_m)
    ax.set_aspect("equal")
    handles = [
        plt.Line2D([], [], marker="s", ls="", color=c, label=k.name.lower()) for k, c in _CLASS_COLOR.items()
    ]
    handles.append(
        plt.Line2D([], [], marker="s", ls="", mfc="white", mec="red", mew=2, label="pinned (token)")
    )
    # The requested pins (ego frame, from the generator's meta) as dashed outlines, so a reader sees
    # how far the generated agent is from what was asked.
    requested = scene.meta.get("pins") or []
    ce, se = np.cos(eyaw), np.sin(eyaw)
    for _cls, px, py, pyaw, pl, pw in requested:
        corners = _box(ex + ce * px - se * py, ey + se * px + ce * py, eyaw + pyaw, pl, pw)
        ax.add_patch(Polygon(corners, closed=True, fill=False, ec="red", ls="--", lw=1.2, zorder=6))
    if requested:
        handles.append(plt.Line2D([], [], ls="--", color="red", label="requested pin"))
    ax.legend(handles=handles, loc="upper right", fontsize=7)
    if title is None:
        title = f"{scene.map_name}: {scene.n_agents} agents (ego black, arrows: +2 s)"
        if requested:
            title += (f"\npins matched by a generated agent (2.2 m, 0.2 rad, same class): "
                      f"{scene.meta.get('pins_found', 0)}/{len(requested)}")  # fmt: skip
        n_ins = int(scene.meta.get("pins_inserted", 0) or 0)
        if n_ins:
            title += f"\n{n_ins} pinned agent(s) inserted by --enforce-pins (the model did not produce them)"
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("x east (m)")
    ax.set_ylabel("y north (m)")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
