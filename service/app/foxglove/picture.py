"""A picture of an exported Foxglove scene (``prescient export-scene --picture``), drawn with matplotlib.

It reads the ``foxglove.SceneUpdate`` messages of the export itself (decoded with the protobuf
descriptors the MCAP carries), keeps the newest entity of each id up to the chosen time, as the
Foxglove 3D panel does, and draws their lines and boxes top-down in the ``map`` frame. So it
shows what the stream holds, not a separate rendering of the log.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from prescient.service.app.foxglove.stream import TOPIC_SCENE

VIEW_HALF_M = 60.0  # metres shown around the ego (or the scene's centre)


def _decoder(schema: Any) -> Any:
    """A protobuf message class for ``schema`` (its data is a FileDescriptorSet)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    pool = descriptor_pool.DescriptorPool()
    for f in descriptor_pb2.FileDescriptorSet.FromString(schema.data).file:
        pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(schema.name))


def entities_at(scene_mcap: Path, t_s: float) -> tuple[dict[str, Any], float]:
    """Newest entity of each id at ``t_s`` seconds after the first scene message, and that time.

    Returns:
        (entity id -> decoded ``foxglove.SceneEntity``, seconds from the first scene message).
    """
    from mcap.reader import make_reader

    entities: dict[str, Any] = {}
    t0_ns = None
    shown_s = 0.0
    with scene_mcap.open("rb") as fh:
        cls = None
        for schema, _channel, msg in make_reader(fh).iter_messages(topics=[TOPIC_SCENE]):
            t0_ns = msg.log_time if t0_ns is None else t0_ns
            if (msg.log_time - t0_ns) / 1e9 > t_s:
                break
            cls = cls or _decoder(schema)
            for e in cls.FromString(msg.data).entities:
                entities[e.id] = e
            shown_s = (msg.log_time - t0_ns) / 1e9
    return entities, shown_s


def _rgba(c: Any) -> tuple[float, float, float, float]:
    return (c.r, c.g, c.b, c.a)


def _draw_line(ax: Any, line: Any) -> None:
    xs, ys = [p.x for p in line.points], [p.y for p in line.points]
    if not xs:
        return
    width = max(0.3, 2.0 * line.thickness)
    if line.type == 2:  # LINE_LIST: pairs of points
        for i in range(0, len(xs) - 1, 2):
            ax.plot(xs[i : i + 2], ys[i : i + 2], color=_rgba(line.color), lw=width)
        return
    if line.type == 1:  # LINE_LOOP
        xs, ys = xs + xs[:1], ys + ys[:1]
    ax.plot(xs, ys, color=_rgba(line.color), lw=width)


def _draw_cube(ax: Any, cube: Any) -> None:
    from matplotlib.patches import Polygon

    q = cube.pose.orientation
    yaw = math.atan2(2 * (q.w * q.z + q.x * q.y), 1 - 2 * (q.y * q.y + q.z * q.z))
    c, s = math.cos(yaw), math.sin(yaw)
    hl, hw = cube.size.x / 2, cube.size.y / 2
    x, y = cube.pose.position.x, cube.pose.position.y
    corners = [
        (x + c * dx - s * dy, y + s * dx + c * dy) for dx, dy in ((hl, hw), (hl, -hw), (-hl, -hw), (-hl, hw))
    ]
    ax.add_patch(Polygon(corners, closed=True, facecolor=_rgba(cube.color), edgecolor="k", lw=0.5))


def render_scene(scene_mcap: Path, t_s: float, out_png: Path) -> Path:
    """Draw the scene of ``scene_mcap`` (an ``export-scene`` MCAP) at ``t_s`` to ``out_png``.

    Raises:
        ValueError: the file holds no scene message.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entities, shown_s = entities_at(scene_mcap, t_s)
    if not entities:
        raise ValueError(f"{scene_mcap}: no {TOPIC_SCENE} message (not an export-scene MCAP?)")
    fig, ax = plt.subplots(figsize=(8, 8), dpi=100)
    for ent in entities.values():
        for line in ent.lines:
            _draw_line(ax, line)
        for cube in ent.cubes:
            _draw_cube(ax, cube)
    ego = entities.get("ego")
    if ego is not None and ego.cubes:
        cx, cy = ego.cubes[0].pose.position.x, ego.cubes[0].pose.position.y
        ax.set_xlim(cx - VIEW_HALF_M, cx + VIEW_HALF_M)
        ax.set_ylim(cy - VIEW_HALF_M, cy + VIEW_HALF_M)
    ax.set_aspect("equal")
    ax.set_xlabel("map x (m)")
    ax.set_ylabel("map y (m)")
    ax.set_title(
        f"{scene_mcap.name}: {TOPIC_SCENE} at {shown_s:.1f} s, drawn from its foxglove.SceneUpdate messages\n"
        "boxes by class, predicted paths (alpha ~ probability) with 8 s scale ellipses, ego and plan",
        fontsize=9,
    )
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, bbox_inches="tight")
    plt.close(fig)
    return out_png
