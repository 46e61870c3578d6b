"""The channel table: index, name, meaning, encoding and value range of every raster channel.

One table in code, rendered to ``service/raster/CHANNELS.md`` (a test checks the file is up to
date; regenerate with ``python -m prescient.service.raster.channels > service/raster/CHANNELS.md``).

All directional quantities (lane heading, agent velocity, heading, acceleration) are expressed
in the **ego frame** at the raster's time (x forward, y left), so the CNN sees a rotation-
normalised scene. Every channel is 0 where nothing is drawn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from prescient.bus.messages import AgentClass
from prescient.service.raster.config import SPEC_VERSION, RasterConfig, RasterSpec


@dataclass(frozen=True)
class ChannelSpec:
    """One raster channel.

    Attributes:
        index: position in the ``(C, H, W)`` raster.
        name: stable identifier (used by the model manifest and ``to_rgb``).
        meaning: what a non-zero pixel says.
        encoding: how the value is computed.
        value_range: ``(lo, hi)`` of the values.
        group: ``static`` (map, pre-rendered), ``lights``, ``agents``, ``agent_features``, ``ego``
            or ``lidar``.
    """

    index: int
    name: str
    meaning: str
    encoding: str
    value_range: tuple[float, float]
    group: str


# Agent class groups of the occupancy channels; each AgentClass maps to exactly one.
CLASS_GROUPS: Final = ("vehicle", "large_vehicle", "pedestrian", "cyclist", "animal")
GROUP_OF_CLASS: Final = {
    AgentClass.UNKNOWN: 0,  # unknown objects are drawn as vehicles (the conservative choice)
    AgentClass.CAR: 0,
    AgentClass.TRUCK: 1,
    AgentClass.BUS: 1,
    AgentClass.PEDESTRIAN: 2,
    AgentClass.CYCLIST: 3,
    AgentClass.ANIMAL: 4,
}
_GROUP_MEANING: Final = {
    "vehicle": "car or unknown-class object",
    "large_vehicle": "truck or bus",
    "pedestrian": "pedestrian",
    "cyclist": "cyclist",
    "animal": "animal",
}

_BIN = "1 inside, else 0"

# name, meaning, encoding, range. Static map channels: pre-rendered once per map in the world
# frame at the raster resolution, nearest-neighbour resampled into the ego frame each tick.
STATIC_CHANNELS: Final = (
    ("drivable_area", "inside a drivable-area polygon", _BIN, (0.0, 1.0)),
    ("lane_area", "inside a vehicle or bus lane (between its boundaries)", _BIN, (0.0, 1.0)),
    ("lane_centerline", "on a lane centerline (any lane type)", "1 on the line, else 0", (0.0, 1.0)),
    (
        "lane_heading_cos",
        "direction of travel of the lane centerline under the pixel, ego frame",
        "cos(lane_yaw - ego_yaw) on centerlines, else 0",
        (-1.0, 1.0),
    ),
    (
        "lane_heading_sin",
        "direction of travel of the lane centerline under the pixel, ego frame",
        "sin(lane_yaw - ego_yaw) on centerlines, else 0",
        (-1.0, 1.0),
    ),
    ("lane_boundary", "on a left or right lane boundary", "1 on the line, else 0", (0.0, 1.0)),
    ("bike_lane", "inside a bike lane", _BIN, (0.0, 1.0)),
    ("bus_lane", "inside a bus lane", _BIN, (0.0, 1.0)),
    ("crossing", "inside a pedestrian crossing polygon", _BIN, (0.0, 1.0)),
    ("sidewalk", "inside a sidewalk polygon", _BIN, (0.0, 1.0)),
    ("stop_line", "on a stop line", "1 on the line, else 0", (0.0, 1.0)),
    ("intersection", "inside a lane flagged as part of an intersection", _BIN, (0.0, 1.0)),
    (
        "speed_limit",
        "speed limit of the lane under the pixel",
        "limit_mps / speed_limit_scale_mps (40) inside lanes, else 0",
        (0.0, 2.0),
    ),
)
LIGHT_CHANNELS: Final = (
    ("tl_red", "controlled lane whose light is red", "1 along the lane centerline", (0.0, 1.0)),
    ("tl_yellow", "controlled lane whose light is yellow", "1 along the lane centerline", (0.0, 1.0)),
    ("tl_green", "controlled lane whose light is green", "1 along the lane centerline", (0.0, 1.0)),
    (
        "tl_unknown",
        "controlled lane whose light state is unknown or not reported this tick",
        "1 along the lane centerline",
        (0.0, 1.0),
    ),
)
AGENT_FEATURE_CHANNELS: Final = (
    ("agent_vx", "agent velocity along ego x", "vx_ego_mps / velocity_scale_mps (20), clipped", (-2.0, 2.0)),
    ("agent_vy", "agent velocity along ego y", "vy_ego_mps / velocity_scale_mps (20), clipped", (-2.0, 2.0)),
    ("agent_heading_cos", "agent heading relative to ego", "cos(agent_yaw - ego_yaw)", (-1.0, 1.0)),
    ("agent_heading_sin", "agent heading relative to ego", "sin(agent_yaw - ego_yaw)", (-1.0, 1.0)),
    (
        "agent_ax",
        "agent acceleration along ego x",
        "ax_ego_mps2 / accel_scale_mps2 (5), clipped",
        (-2.0, 2.0),
    ),
    (
        "agent_ay",
        "agent acceleration along ego y",
        "ay_ego_mps2 / accel_scale_mps2 (5), clipped",
        (-2.0, 2.0),
    ),
    (
        "agent_confidence",
        "track confidence",
        "max class probability, halved while the track is tentative or coasting",
        (0.0, 1.0),
    ),
    ("agent_age", "track age", "min(age_s / age_scale_s (5), 1)", (0.0, 1.0)),
    ("attr_phone", "pedestrian holding a phone", "1 inside the box if the PHONE bit is set", (0.0, 1.0)),
    ("attr_brake_lights", "brake lights on", "1 inside the box if the BRAKE_LIGHTS bit is set", (0.0, 1.0)),
    ("attr_left_signal", "left turn signal on", "1 inside the box if the LEFT_SIGNAL bit is set", (0.0, 1.0)),
    (
        "attr_right_signal",
        "right turn signal on",
        "1 inside the box if the RIGHT_SIGNAL bit is set",
        (0.0, 1.0),
    ),
)
EGO_CHANNELS: Final = (
    ("ego_box", "the ego vehicle's footprint now", _BIN, (0.0, 1.0)),
    ("ego_past_path", "the ego's past positions (rear axle)", "1 on the polyline", (0.0, 1.0)),
    (
        "ego_plan",
        "the planner's candidate future path (conditional prediction input)",
        "1 on the polyline",
        (0.0, 1.0),
    ),
)
LIDAR_CHANNELS: Final = (
    (
        "lidar_occupancy",
        "at least one LiDAR point between lidar_z_min_m and lidar_z_max_m above ground",
        "1 if any point falls in the pixel, else 0",
        (0.0, 1.0),
    ),
)


def _history_label(offset_s: float) -> str:
    return "t0" if offset_s == 0.0 else f"tm{int(round(offset_s * 10)):02d}"


def build_channels(cfg: RasterConfig) -> tuple[ChannelSpec, ...]:
    """The channel table for a config (only ``history_frames``/``stride`` change it).

    Args:
        cfg: raster configuration.

    Returns:
        (C,) channel specs, index order.
    """
    rows: list[tuple[str, str, str, tuple[float, float], str]] = []
    rows += [(*r, "static") for r in STATIC_CHANNELS]
    rows += [(*r, "lights") for r in LIGHT_CHANNELS]
    for group in CLASS_GROUPS:
        for offset_s in cfg.history_offsets_s:
            when = "now" if offset_s == 0.0 else f"{offset_s:g} s ago"
            rows.append(
                (
                    f"occ_{group}_{_history_label(offset_s)}",
                    f"footprint of a {_GROUP_MEANING[group]} {when}",
                    _BIN + " (oriented box, current size)",
                    (0.0, 1.0),
                    "agents",
                )
            )
    rows += [(*r, "agent_features") for r in AGENT_FEATURE_CHANNELS]
    rows += [(*r, "ego") for r in EGO_CHANNELS]
    rows += [(*r, "lidar") for r in LIDAR_CHANNELS]
    return tuple(
        ChannelSpec(index=i, name=n, meaning=m, encoding=e, value_range=vr, group=g)
        for i, (n, m, e, vr, g) in enumerate(rows)
    )


def build_spec(cfg: RasterConfig) -> RasterSpec:
    """The :class:`RasterSpec` (what the model manifest records) of a config."""
    return RasterSpec(
        version=SPEC_VERSION,
        channel_names=tuple(c.name for c in build_channels(cfg)),
        height_px=cfg.height_px,
        width_px=cfg.width_px,
        resolution_m=cfg.resolution_m,
        history_offsets_s=cfg.history_offsets_s,
    )


CHANNELS: Final = build_channels(RasterConfig())
DEFAULT_SPEC: Final = build_spec(RasterConfig())


def channel_index(channels: tuple[ChannelSpec, ...], name: str) -> int:
    """Index of the channel called ``name``; ``KeyError`` naming it if absent."""
    for c in channels:
        if c.name == name:
            return c.index
    raise KeyError(f"no raster channel named {name!r}")


def channels_markdown(cfg: RasterConfig | None = None) -> str:
    """The channel table as markdown (the content of ``service/raster/CHANNELS.md``)."""
    cfg = cfg or RasterConfig()
    spec = build_spec(cfg)
    lines = [
        f"# Raster channels (spec version {SPEC_VERSION})",
        "",
        "Generated by `python -m prescient.service.raster.channels`; do not edit by hand "
        "(`tests/service/raster/test_channels.py` checks it is up to date).",
        "",
        f"Default config: {cfg.height_px} x {cfg.width_px} px (H x W) at {cfg.resolution_m:g} m/px, "
        f"{len(spec.channel_names)} channels, agent history frames at "
        f"{', '.join(f'-{o:g} s' if o else '0 s' for o in cfg.history_offsets_s)}. "
        f"Fingerprint `{spec.fingerprint()}`.",
        "",
        "Image convention: row 0 is the top; ego forward (+x) points up (towards row 0), ego left "
        "(+y) points left (towards column 0); the ego origin (rear axle) is at the image centre. "
        "Directional values are in the ego frame.",
        "",
        "| index | name | group | meaning | encoding | range |",
        "| ---: | --- | --- | --- | --- | --- |",
    ]
    for c in build_channels(cfg):
        lo, hi = c.value_range
        lines.append(
            f"| {c.index} | `{c.name}` | {c.group} | {c.meaning} | {c.encoding} | [{lo:g}, {hi:g}] |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(channels_markdown(), end="")
