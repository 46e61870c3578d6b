"""Pictures of a Foxglove stream, drawn with matplotlib (``export-scene --picture``, ``foxglove-picture``).

They read the messages of the MCAP itself (an export, or what ``view --record`` wrote while
streaming), decoded with the protobuf descriptors the file carries: for ``/scene`` the newest
entity of each id up to the chosen time, as the Foxglove 3D panel keeps them, drawn top-down in
the ``map`` frame. :func:`render_layout` adds the other panels of the shipped layout: the newest
``/raster`` image, and processing latency, data age and tick rate up to that time. So a picture
shows what the stream holds, not a separate rendering of the log.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from prescient.service.app.foxglove.stream import TOPIC_HEALTH, TOPIC_PLANNER, TOPIC_RASTER, TOPIC_SCENE

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


def _draw_scene(ax: Any, entities: dict[str, Any]) -> None:
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


def panels_at(mcap: Path, t_s: float) -> dict[str, Any]:
    """The raster image and the plotted series of ``mcap`` up to ``t_s`` s after its first scene message.

    Returns:
        ``{"raster": (H, W, 3) uint8 or None, "latency": [(t_s, processing_ms, data_age_ms)],
        "rate": [(t_s, tick_rate_hz)]}`` (the predictor's health only).
    """
    import json

    import numpy as np
    from mcap.reader import make_reader

    topics = [TOPIC_SCENE, TOPIC_RASTER, TOPIC_PLANNER, TOPIC_HEALTH]
    out: dict[str, Any] = {"raster": None, "latency": [], "rate": []}
    t0_ns = None
    with mcap.open("rb") as fh:
        cls = None
        for schema, channel, msg in make_reader(fh).iter_messages(topics=topics):
            if t0_ns is None:
                if channel.topic != TOPIC_SCENE:
                    continue
                t0_ns = msg.log_time
            t = (msg.log_time - t0_ns) / 1e9
            if t > t_s:
                break
            if channel.topic == TOPIC_RASTER:
                cls = cls or _decoder(schema)
                img = cls.FromString(msg.data)
                out["raster"] = np.frombuffer(img.data, np.uint8).reshape(img.height, img.width, 3)
            elif channel.topic == TOPIC_PLANNER:
                doc = json.loads(msg.data)
                out["latency"].append((t, doc["e2e_latency_ms"], doc["data_age_ms"]))
            elif channel.topic == TOPIC_HEALTH:
                doc = json.loads(msg.data)
                if doc.get("node") == "predictor" and doc.get("tick_rate_hz") is not None:
                    out["rate"].append((t, doc["tick_rate_hz"]))
    return out


def render_layout(mcap: Path, t_s: float, out_png: Path) -> Path:
    """The shipped layout's panels at ``t_s``: the 3D scene, the raster image, latency and tick rate.

    Raises:
        ValueError: the file holds no scene message.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entities, shown_s = entities_at(mcap, t_s)
    if not entities:
        raise ValueError(f"{mcap}: no {TOPIC_SCENE} message (not a Foxglove export or recording?)")
    panels = panels_at(mcap, shown_s)
    fig = plt.figure(figsize=(15, 8), dpi=90)
    grid = fig.add_gridspec(2, 2, width_ratios=(1.15, 1.0))
    ax = fig.add_subplot(grid[:, 0])
    _draw_scene(ax, entities)
    ax.set_title(f"3D panel: {TOPIC_SCENE} at {shown_s:.1f} s (foxglove.SceneUpdate, top-down)", fontsize=9)
    ax_img = fig.add_subplot(grid[0, 1])
    if panels["raster"] is not None:
        ax_img.imshow(panels["raster"], interpolation="nearest")
    ax_img.set_axis_off()
    ax_img.set_title(f"image panel: {TOPIC_RASTER} (the model's raster, ego forward up)", fontsize=9)
    ax_lat = fig.add_subplot(grid[1, 1])
    if panels["latency"]:
        t, proc, age = zip(*panels["latency"])
        ax_lat.plot(t, proc, label="processing ms")
        ax_lat.plot(t, age, label="data age ms")
    if panels["rate"]:
        t, hz = zip(*panels["rate"])
        ax_lat.plot(t, [10 * r for r in hz], ":", label="tick rate x10 (Hz)")
    ax_lat.set_xlabel("s")
    ax_lat.legend(fontsize=8, loc="upper left")
    ax_lat.set_title(f"plots: {TOPIC_PLANNER} latency, {TOPIC_HEALTH} tick rate", fontsize=9)
    fig.suptitle(
        f"{mcap.name}: the prescient layout's panels, drawn from the stream's own messages", fontsize=10
    )
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, bbox_inches="tight")
    plt.close(fig)
    return out_png
