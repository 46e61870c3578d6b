"""RViz ``visualization_msgs/MarkerArray``s: track boxes and predicted-path line strips, ``map`` frame.

Each array starts with a DELETEALL marker scoped to its namespace, so RViz shows exactly the
objects of the newest message (no stale boxes, no lifetimes to tune).
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np

from prescient.bus import messages as m
from prescient.bus.ros2 import types as rt

NS_TRACKS: Final = "prescient_tracks"
NS_PREDICTIONS: Final = "prescient_predictions"
# Marker.type / Marker.action constants (visualization_msgs/msg/Marker).
CUBE: Final = 1
LINE_STRIP: Final = 4
ADD: Final = 0
DELETEALL: Final = 3
LINE_WIDTH_M: Final = 0.15
# (r, g, b) per class, 0..1.
CLASS_RGB: Final[dict[int, tuple[float, float, float]]] = {
    int(m.AgentClass.UNKNOWN): (0.7, 0.7, 0.7),
    int(m.AgentClass.CAR): (0.2, 0.6, 1.0),
    int(m.AgentClass.TRUCK): (0.1, 0.3, 0.8),
    int(m.AgentClass.BUS): (0.5, 0.2, 0.9),
    int(m.AgentClass.PEDESTRIAN): (1.0, 0.5, 0.1),
    int(m.AgentClass.CYCLIST): (0.1, 0.8, 0.3),
    int(m.AgentClass.ANIMAL): (0.8, 0.7, 0.2),
}


def _marker(
    store: Any, stamp_ns: int, ns: str, marker_id: int, kind: int, action: int = ADD, **fields: Any
) -> Any:
    """A Marker with every field set (rosbags' constructors take no defaults)."""
    t = store.types
    vec = t["geometry_msgs/msg/Vector3"]
    point = t["geometry_msgs/msg/Point"]
    defaults = {
        "pose": t["geometry_msgs/msg/Pose"](
            position=point(x=0.0, y=0.0, z=0.0), orientation=rt.quaternion_from_yaw(store, 0.0)
        ),
        "scale": vec(x=1.0, y=1.0, z=1.0),
        "color": t["std_msgs/msg/ColorRGBA"](r=1.0, g=1.0, b=1.0, a=1.0),
        "points": [],
    }
    defaults.update(fields)
    return t["visualization_msgs/msg/Marker"](
        header=rt.header(store, stamp_ns, rt.FRAME_MAP),
        ns=ns,
        id=marker_id,
        type=kind,
        action=action,
        lifetime=t["builtin_interfaces/msg/Duration"](sec=0, nanosec=0),
        frame_locked=False,
        colors=[],
        texture_resource="",
        texture=t["sensor_msgs/msg/CompressedImage"](
            header=rt.header(store, 0, ""), format="", data=np.zeros(0, np.uint8)
        ),
        uv_coordinates=[],
        text="",
        mesh_resource="",
        mesh_file=t["visualization_msgs/msg/MeshFile"](filename="", data=np.zeros(0, np.uint8)),
        mesh_use_embedded_materials=False,
        **defaults,
    )


def _color(store: Any, class_id: int, alpha: float) -> Any:
    r, g, b = CLASS_RGB.get(class_id, (1.0, 1.0, 1.0))
    return store.types["std_msgs/msg/ColorRGBA"](r=r, g=g, b=b, a=float(alpha))


def _marker_id(track_id: int, mode: int = 0, n_modes: int = 1) -> int:
    """An int32 Marker id, stable for one track (and mode) across messages."""
    return int((int(track_id) * n_modes + mode) % 2**31)


def track_markers(store: Any, tr: m.Tracks, stamp_ns: int) -> Any:
    """One CUBE per track (box centre at half its height, class colour)."""
    t = store.types
    markers = [_marker(store, stamp_ns, NS_TRACKS, 0, CUBE, DELETEALL)]
    for i in range(len(tr.track_id)):
        length, width, height = (float(v) for v in tr.size_lwh_m[i])
        pose = t["geometry_msgs/msg/Pose"](
            position=t["geometry_msgs/msg/Point"](
                x=float(tr.position_m[i, 0]), y=float(tr.position_m[i, 1]), z=0.5 * height
            ),
            orientation=rt.quaternion_from_yaw(store, float(tr.yaw_rad[i])),
        )
        markers.append(
            _marker(
                store,
                stamp_ns,
                NS_TRACKS,
                _marker_id(int(tr.track_id[i])),
                CUBE,
                pose=pose,
                scale=t["geometry_msgs/msg/Vector3"](x=length, y=width, z=height),
                color=_color(store, int(tr.class_id[i]), 0.5),
            )
        )
    return t[rt.MARKER_ARRAY](markers=markers)


def prediction_markers(store: Any, pred: m.Predictions, stamp_ns: int) -> Any:
    """One LINE_STRIP per agent and mode; opacity grows with the mode's probability."""
    t = store.types
    point = t["geometry_msgs/msg/Point"]
    markers = [_marker(store, stamp_ns, NS_PREDICTIONS, 0, LINE_STRIP, DELETEALL)]
    n_modes = pred.mode_probs.shape[1] if pred.mode_probs.ndim == 2 else 1
    for n, tid in enumerate(pred.track_id.tolist()):
        for k in range(n_modes):
            traj = pred.trajectories_m[n, k].astype(np.float64)  # (T, 2) map frame
            markers.append(
                _marker(
                    store,
                    stamp_ns,
                    NS_PREDICTIONS,
                    _marker_id(tid, k, n_modes),
                    LINE_STRIP,
                    scale=t["geometry_msgs/msg/Vector3"](x=LINE_WIDTH_M, y=0.0, z=0.0),
                    color=_color(store, int(pred.class_id[n]), 0.2 + 0.8 * float(pred.mode_probs[n, k])),
                    points=[point(x=x, y=y, z=0.0) for x, y in traj.tolist()],
                )
            )
    return t[rt.MARKER_ARRAY](markers=markers)
