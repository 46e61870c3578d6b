"""Colour pictures of a raster for people: ``to_rgb`` and a PNG with a legend.

Layers are alpha-composited bottom to top in a fixed order (map, lights, agent history fading
with age, agents now, ego, plan, LiDAR), so the picture is the same for the same raster.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from prescient.service.raster.channels import CHANNELS, CLASS_GROUPS, ChannelSpec

# (channel name or "occ_<group>" prefix, RGB 0..1, opacity, legend label)
_LAYERS: tuple[tuple[str, tuple[float, float, float], float, str], ...] = (
    ("drivable_area", (0.30, 0.30, 0.32), 1.0, "drivable area"),
    ("sidewalk", (0.45, 0.40, 0.35), 1.0, "sidewalk"),
    ("lane_area", (0.42, 0.42, 0.46), 1.0, "lane"),
    ("bike_lane", (0.35, 0.55, 0.40), 1.0, "bike lane"),
    ("bus_lane", (0.55, 0.35, 0.35), 0.6, "bus lane"),
    ("intersection", (0.50, 0.50, 0.60), 0.5, "intersection"),
    ("crossing", (0.85, 0.85, 0.85), 0.6, "crossing"),
    ("lane_boundary", (0.95, 0.95, 0.75), 0.8, "lane boundary"),
    ("lane_centerline", (0.60, 0.65, 0.80), 0.6, "centerline"),
    ("stop_line", (1.00, 1.00, 1.00), 1.0, "stop line"),
    ("tl_unknown", (0.60, 0.60, 0.60), 1.0, "light unknown"),
    ("tl_green", (0.10, 0.90, 0.20), 1.0, "light green"),
    ("tl_yellow", (1.00, 0.85, 0.10), 1.0, "light yellow"),
    ("tl_red", (1.00, 0.15, 0.15), 1.0, "light red"),
    ("occ_vehicle", (0.20, 0.55, 1.00), 1.0, "vehicle"),
    ("occ_large_vehicle", (0.60, 0.30, 1.00), 1.0, "large vehicle"),
    ("occ_pedestrian", (1.00, 0.50, 0.10), 1.0, "pedestrian"),
    ("occ_cyclist", (1.00, 0.20, 0.70), 1.0, "cyclist"),
    ("occ_animal", (0.60, 0.40, 0.20), 1.0, "animal"),
    ("ego_past_path", (0.55, 0.95, 0.55), 1.0, "ego past"),
    ("ego_plan", (0.10, 0.95, 0.95), 1.0, "ego plan"),
    ("ego_box", (0.10, 0.85, 0.30), 1.0, "ego"),
    ("lidar_occupancy", (1.00, 1.00, 1.00), 0.5, "LiDAR points"),
)
_BACKGROUND = (0.08, 0.08, 0.10)


def to_rgb(
    raster: npt.NDArray[np.float32], channels: tuple[ChannelSpec, ...] = CHANNELS
) -> npt.NDArray[np.uint8]:
    """Colour picture of a raster.

    Args:
        raster: (C, H, W) float32 raster (not modified).
        channels: its channel table (``Rasterizer.channels``).

    Returns:
        (H, W, 3) uint8, row 0 at the top, ego forward up (the raster's own convention).
    """
    if raster.ndim != 3 or raster.shape[0] != len(channels):
        raise ValueError(f"raster: expected ({len(channels)}, H, W), got {raster.shape}")
    _, h, w = raster.shape
    img = np.empty((h, w, 3), np.float32)
    img[:] = _BACKGROUND
    by_name = {c.name: c.index for c in channels}
    for name, colour, alpha, _ in _LAYERS:
        if name.startswith("occ_"):
            frames = [c.index for c in channels if c.group == "agents" and c.name.startswith(name + "_")]
            # oldest first, fading: now = full opacity
            for k, idx in enumerate(reversed(frames)):
                a = alpha * (0.25 + 0.75 * (k + 1) / len(frames)) if len(frames) > 1 else alpha
                _blend(img, np.clip(raster[idx], 0.0, 1.0) * a, colour)
            continue
        index = by_name.get(name)
        if index is not None:
            _blend(img, np.clip(np.abs(raster[index]), 0.0, 1.0) * alpha, colour)
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _blend(img: np.ndarray, a: np.ndarray, colour: tuple[float, float, float]) -> None:
    a3 = a[:, :, None]
    img *= 1.0 - a3
    img += a3 * np.asarray(colour, np.float32)


def save_png(
    raster: npt.NDArray[np.float32],
    path: str | Path,
    channels: tuple[ChannelSpec, ...] = CHANNELS,
    resolution_m: float | None = None,
    title: str = "",
) -> Path:
    """Save the colour picture of a raster with a legend as a PNG (matplotlib, Agg backend).

    Args:
        raster: (C, H, W) float32.
        path: output file.
        channels: the raster's channel table.
        resolution_m: metres per pixel; when given the axes are labelled in metres (ego frame).
        title: figure title.

    Returns:
        The written path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    rgb = to_rgb(raster, channels)
    h, w = rgb.shape[:2]
    fig, ax = plt.subplots(figsize=(9.0, 7.0 * max(h / w, 0.5)), dpi=110)
    if resolution_m:
        # ego y on the horizontal axis (left positive), ego x on the vertical axis (up positive)
        extent = (w / 2 * resolution_m, -w / 2 * resolution_m, -h / 2 * resolution_m, h / 2 * resolution_m)
        ax.imshow(rgb, extent=extent, interpolation="nearest")
        ax.set_xlabel("ego y (left) [m]")
        ax.set_ylabel("ego x (forward) [m]")
    else:
        ax.imshow(rgb, interpolation="nearest")
        ax.set_xlabel("column")
        ax.set_ylabel("row")
    present = {c.name.rsplit("_t", 1)[0] if c.group == "agents" else c.name for c in channels}
    handles = [
        Patch(facecolor=colour, edgecolor="black", label=label)
        for name, colour, _, label in _LAYERS
        if name in present or (name.startswith("occ_") and name[4:] in CLASS_GROUPS)
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
