"""Pure conversion of prescient messages to ``foxglove.messages.SceneUpdate`` (protobuf schemas).

Frames: every primitive is in ``map`` (prescient's ``world`` frame: x east, y north, metres, z up);
the ego's ``base_link`` follows from :func:`ego_transform`. One entity per kind (``map``, ``tracks``,
``predictions``, ``ego``), each replaced whole when its message arrives, so agents that left the
scene disappear without deletions. Times are ns on the Foxglove (UNIX) clock.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import numpy.typing as npt
from foxglove import messages as fm

from prescient.bus import messages as m

MAP_FRAME: Final = "map"
EGO_FRAME: Final = "base_link"
ELLIPSE_POINTS: Final = 24  # vertices of an uncertainty ellipse
MAP_Z_M: Final = 0.0
PATH_Z_M: Final = 0.3  # predicted paths float a little above the lanes
MIN_PATH_ALPHA: Final = 0.15  # the least likely mode stays visible

# RGB per AgentClass (0..1).
CLASS_RGB: Final = {
    m.AgentClass.UNKNOWN: (0.6, 0.6, 0.6),
    m.AgentClass.CAR: (0.20, 0.55, 1.00),
    m.AgentClass.TRUCK: (0.10, 0.30, 0.80),
    m.AgentClass.BUS: (0.55, 0.25, 0.85),
    m.AgentClass.PEDESTRIAN: (1.00, 0.55, 0.10),
    m.AgentClass.CYCLIST: (0.10, 0.80, 0.40),
    m.AgentClass.ANIMAL: (0.80, 0.60, 0.30),
}
EGO_RGB: Final = (0.95, 0.20, 0.20)
ArrayF = npt.NDArray[np.floating]


def timestamp(ns: int) -> fm.Timestamp:
    """A Foxglove timestamp from ns since the UNIX epoch."""
    sec, nsec = divmod(int(ns), 1_000_000_000)
    return fm.Timestamp(sec=sec, nsec=nsec)


def color(rgb: tuple[float, float, float], a: float = 1.0) -> fm.Color:
    """An RGBA colour, components in 0..1."""
    return fm.Color(r=rgb[0], g=rgb[1], b=rgb[2], a=float(a))


def class_rgb(class_id: int) -> tuple[float, float, float]:
    """The colour of an agent class (grey for an unknown id)."""
    try:
        return CLASS_RGB[m.AgentClass(int(class_id))]
    except ValueError:
        return CLASS_RGB[m.AgentClass.UNKNOWN]


def yaw_quaternion(yaw_rad: float) -> fm.Quaternion:
    """Rotation about +z by ``yaw_rad`` (counter-clockwise from +x)."""
    return fm.Quaternion(x=0.0, y=0.0, z=math.sin(yaw_rad / 2), w=math.cos(yaw_rad / 2))


def points3(xy_m: ArrayF, z_m: float = 0.0) -> list[fm.Point3]:
    """(P, 2) points in metres -> Foxglove points at height ``z_m``."""
    return [fm.Point3(x=float(x), y=float(y), z=z_m) for x, y in np.asarray(xy_m, np.float64)]


def csr_segments(xy_m: ArrayF, offsets: npt.NDArray[np.int64], closed: bool = False) -> ArrayF:
    """CSR polylines (points (P, 2), offsets (L+1,)) -> (S, 2, 2) segments for one LINE_LIST.

    ``closed`` adds each polygon's closing edge (last point back to the first).
    """
    xy = np.asarray(xy_m, np.float64).reshape(-1, 2)
    segs = []
    for a, b in zip(offsets[:-1], offsets[1:]):
        poly = xy[int(a) : int(b)]
        if len(poly) < 2:
            continue
        if closed:
            poly = np.vstack([poly, poly[:1]])
        segs.append(np.stack([poly[:-1], poly[1:]], axis=1))
    return np.concatenate(segs) if segs else np.zeros((0, 2, 2))


def line_list(segments: ArrayF, rgba: fm.Color, thickness_m: float, z_m: float = MAP_Z_M) -> fm.LinePrimitive:
    """(S, 2, 2) segments in metres -> one LINE_LIST primitive (world-scaled thickness)."""
    return fm.LinePrimitive(
        type=fm.LinePrimitiveLineType.LineList,
        points=points3(segments.reshape(-1, 2), z_m),
        thickness=thickness_m,
        scale_invariant=False,
        color=rgba,
    )


def map_entity(vmap: m.VectorMap, stamp_ns: int) -> fm.SceneEntity:
    """Lane boundaries (grey), centerlines (faint), crossings (white) of a map, ``map`` frame."""
    bounds = np.concatenate(
        [
            csr_segments(vmap.left_boundary_xy_m, vmap.left_boundary_offsets),
            csr_segments(vmap.right_boundary_xy_m, vmap.right_boundary_offsets),
        ]
    )
    layers = [
        (bounds, color((0.7, 0.7, 0.7), 0.9), 0.15),
        (csr_segments(vmap.centerline_xy_m, vmap.centerline_offsets), color((0.5, 0.5, 0.6), 0.4), 0.08),
        (csr_segments(vmap.crossing_xy_m, vmap.crossing_offsets, closed=True), color((1, 1, 1), 0.8), 0.2),
    ]
    lines = [line_list(segs, rgba, width) for segs, rgba, width in layers if len(segs)]
    return fm.SceneEntity(
        timestamp=timestamp(stamp_ns), frame_id=MAP_FRAME, id="map", frame_locked=True,
        metadata=[fm.KeyValuePair(key="map_id", value=vmap.map_id)],
        lines=lines,
    )  # fmt: skip


def box(center_xy_m: ArrayF, yaw_rad: float, size_lwh_m: ArrayF, rgba: fm.Color) -> fm.CubePrimitive:
    """An oriented box standing on the ground (z = 0), ``map`` frame, sizes in metres."""
    length, width, height = (float(v) for v in size_lwh_m)
    return fm.CubePrimitive(
        pose=fm.Pose(
            position=fm.Vector3(x=float(center_xy_m[0]), y=float(center_xy_m[1]), z=height / 2),
            orientation=yaw_quaternion(float(yaw_rad)),
        ),
        size=fm.Vector3(x=length, y=width, z=height),
        color=rgba,
    )


def tracks_entity(tracks: m.Tracks, stamp_ns: int) -> fm.SceneEntity:
    """Tracked agents as boxes coloured by class, with their ids as text, ``map`` frame."""
    cubes, texts = [], []
    for i in range(len(tracks.track_id)):
        cubes.append(
            box(
                tracks.position_m[i],
                tracks.yaw_rad[i],
                tracks.size_lwh_m[i],
                color(class_rgb(tracks.class_id[i]), 0.7),
            )
        )
        x, y = (float(v) for v in tracks.position_m[i])
        texts.append(
            fm.TextPrimitive(
                pose=fm.Pose(position=fm.Vector3(x=x, y=y, z=float(tracks.size_lwh_m[i][2]) + 0.5), orientation=yaw_quaternion(0.0)),
                billboard=True, font_size=12.0, scale_invariant=True, color=color((1, 1, 1)),
                text=str(int(tracks.track_id[i])),
            )
        )  # fmt: skip
    return fm.SceneEntity(
        timestamp=timestamp(stamp_ns), frame_id=MAP_FRAME, id="tracks", cubes=cubes, texts=texts
    )


def path_alpha(prob: float) -> float:
    """Opacity of a predicted path from its mode probability (0..1), at least ``MIN_PATH_ALPHA``."""
    return MIN_PATH_ALPHA + (1.0 - MIN_PATH_ALPHA) * min(max(float(prob), 0.0), 1.0)


def ellipse_xy(center_xy_m: ArrayF, radii_m: ArrayF, n: int = ELLIPSE_POINTS) -> ArrayF:
    """(n, 2) vertices of an axis-aligned ellipse (world axes) with semi-axes ``radii_m`` (2,)."""
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    return np.asarray(center_xy_m, np.float64) + np.stack([np.cos(t), np.sin(t)], 1) * np.asarray(
        radii_m, np.float64
    )


def prediction_lines(
    traj_m: ArrayF, scale_m: ArrayF, prob: float, rgb: tuple[float, float, float]
) -> list[fm.LinePrimitive]:
    """One mode: its path (T, 2) as a strip, and its uncertainty ellipse at the last step.

    The ellipse's semi-axes are the Laplace scales ``b`` (m) of x and y at the horizon (8 s):
    each axis holds 1 - 1/e (63 %) of that mode's probability mass within ``b``.
    """
    rgba = color(rgb, path_alpha(prob))
    path = fm.LinePrimitive(
        type=fm.LinePrimitiveLineType.LineStrip, points=points3(traj_m, PATH_Z_M),
        thickness=0.1 + 0.3 * float(prob), scale_invariant=False, color=rgba,
    )  # fmt: skip
    band = fm.LinePrimitive(
        type=fm.LinePrimitiveLineType.LineLoop, points=points3(ellipse_xy(traj_m[-1], scale_m[-1]), PATH_Z_M),
        thickness=0.05, scale_invariant=False, color=color(rgb, 0.5 * path_alpha(prob)),
    )  # fmt: skip
    return [path, band]


def predictions_entity(pred: m.Predictions, stamp_ns: int) -> fm.SceneEntity:
    """Every agent's K paths (alpha and width by probability) and horizon ellipses, ``map`` frame."""
    lines: list[fm.LinePrimitive] = []
    for i in range(len(pred.track_id)):
        rgb = class_rgb(pred.class_id[i])
        for k in range(pred.mode_probs.shape[1]):
            lines += prediction_lines(
                pred.trajectories_m[i, k], pred.scale_m[i, k], float(pred.mode_probs[i, k]), rgb
            )
    meta = [
        fm.KeyValuePair(key="model_id", value=pred.model_id),
        fm.KeyValuePair(key="degraded", value=str(pred.degraded)),
    ]
    return fm.SceneEntity(
        timestamp=timestamp(stamp_ns), frame_id=MAP_FRAME, id="predictions", lines=lines, metadata=meta
    )


def ego_entity(ego: m.EgoState, stamp_ns: int) -> fm.SceneEntity:
    """The ego box (pose is the rear axle; the box centre is drawn there too) and its plan, ``map`` frame."""
    x, y, yaw = (float(v) for v in ego.pose)
    lines = []
    if len(ego.plan_xy_m) >= 2:
        lines.append(
            fm.LinePrimitive(
                type=fm.LinePrimitiveLineType.LineStrip, points=points3(ego.plan_xy_m, PATH_Z_M),
                thickness=0.3, scale_invariant=False, color=color((0.3, 1.0, 0.3), 0.9),
            )
        )  # fmt: skip
    cube = box(np.array([x, y]), yaw, ego.size_lwh_m, color(EGO_RGB, 0.9))
    return fm.SceneEntity(
        timestamp=timestamp(stamp_ns), frame_id=MAP_FRAME, id="ego", cubes=[cube], lines=lines
    )


def scene_update(
    stamp_ns: int,
    *,
    vmap: m.VectorMap | None = None,
    tracks: m.Tracks | None = None,
    predictions: m.Predictions | None = None,
    ego: m.EgoState | None = None,
) -> fm.SceneUpdate:
    """One SceneUpdate holding an entity for each message given (``stamp_ns``: UNIX ns)."""
    entities = []
    if vmap is not None:
        entities.append(map_entity(vmap, stamp_ns))
    if tracks is not None:
        entities.append(tracks_entity(tracks, stamp_ns))
    if predictions is not None:
        entities.append(predictions_entity(predictions, stamp_ns))
    if ego is not None:
        entities.append(ego_entity(ego, stamp_ns))
    return fm.SceneUpdate(entities=entities)


def ego_transform(ego: m.EgoState, stamp_ns: int) -> fm.FrameTransform:
    """``map -> base_link`` from the ego pose ``[x_m, y_m, yaw_rad]`` (world frame)."""
    x, y, yaw = (float(v) for v in ego.pose)
    return fm.FrameTransform(
        timestamp=timestamp(stamp_ns), parent_frame_id=MAP_FRAME, child_frame_id=EGO_FRAME,
        translation=fm.Vector3(x=x, y=y, z=0.0), rotation=yaw_quaternion(yaw),
    )  # fmt: skip
