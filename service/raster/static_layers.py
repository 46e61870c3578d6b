"""Static map layers: extracted once per map, pre-rendered once in the world frame, warped per tick.

The trajdata pattern: the map is drawn once into a north-up world-frame grid at the raster
resolution (:class:`StaticLayers`); each tick only a nearest-neighbour warp of the ``H x W``
output pixels runs (:func:`prescient.service.raster.kernels.warp_nearest_kernel`), so per-tick cost does
not grow with map size.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from prescient.bus.messages import LaneType, VectorMap
from prescient.service.raster import kernels
from prescient.service.raster.channels import STATIC_CHANNELS, ChannelSpec, channel_index
from prescient.service.raster.config import RasterConfig
from prescient.service.raster.render_context import WorldGrid, apply

log = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]


class MapTooLargeError(ValueError):
    """The world-frame pre-render of a map would exceed ``RasterConfig.max_static_px``."""


@dataclass(frozen=True)
class CsrPrimitives:
    """Polygons or polylines in the world frame, CSR layout.

    Attributes:
        points_m: (P, 2) float64 world-frame vertices.
        offsets: (G + 1,) int64.
        channels: (G,) int64 raster channel of each shape.
        values: (G,) float32 value written by each shape.
        seg_cos, seg_sin: (P,) float32 world-frame direction of the segment starting at each
            vertex (polylines with heading); zeros otherwise.
    """

    points_m: F64
    offsets: npt.NDArray[np.int64]
    channels: npt.NDArray[np.int64]
    values: npt.NDArray[np.float32]
    seg_cos: npt.NDArray[np.float32]
    seg_sin: npt.NDArray[np.float32]

    @staticmethod
    def build(shapes: list[tuple[F64, int, float]]) -> CsrPrimitives:
        """Pack ``(points (n, 2), channel, value)`` shapes; headings from consecutive vertices."""
        pts = [np.asarray(p, np.float64).reshape(-1, 2) for p, _, _ in shapes]
        offsets = np.zeros(len(pts) + 1, np.int64)
        offsets[1:] = np.cumsum([len(p) for p in pts]) if pts else []
        points = np.concatenate(pts) if pts else np.zeros((0, 2))
        seg_cos = np.zeros(len(points), np.float32)
        seg_sin = np.zeros(len(points), np.float32)
        for g, p in enumerate(pts):
            if len(p) >= 2:
                d = np.diff(p, axis=0)
                ang = np.arctan2(d[:, 1], d[:, 0])
                ang = np.append(ang, ang[-1])
                seg_cos[offsets[g] : offsets[g + 1]] = np.cos(ang)
                seg_sin[offsets[g] : offsets[g + 1]] = np.sin(ang)
        return CsrPrimitives(
            points_m=points,
            offsets=offsets,
            channels=np.array([c for _, c, _ in shapes], np.int64),
            values=np.array([v for _, _, v in shapes], np.float32),
            seg_cos=seg_cos,
            seg_sin=seg_sin,
        )

    @property
    def max_vertices(self) -> int:
        """Largest vertex count of one shape."""
        return int(np.max(np.diff(self.offsets))) if len(self.offsets) > 1 else 0


@dataclass(frozen=True)
class StaticPrimitives:
    """Everything static, in the order drawn: polygons, then plain polylines, then headed polylines.

    Attributes:
        polygons: filled areas (drivable, lanes, crossings, sidewalks, ...).
        polylines: lines without heading (lane boundaries, stop lines).
        centerlines: lane centerlines, written to ``centerline_ch`` plus heading cos/sin.
        cos_ch, sin_ch: the heading channels.
    """

    polygons: CsrPrimitives
    polylines: CsrPrimitives
    centerlines: CsrPrimitives
    cos_ch: int
    sin_ch: int

    def bounds_m(self) -> tuple[float, float, float, float] | None:
        """``(x_min, y_min, x_max, y_max)`` of every vertex, or None for an empty map."""
        pts = [p.points_m for p in (self.polygons, self.polylines, self.centerlines) if len(p.points_m)]
        if not pts:
            return None
        allp = np.concatenate(pts)
        return (*allp.min(axis=0), *allp.max(axis=0))


def _csr(points: np.ndarray, offsets: np.ndarray, i: int) -> F64:
    return np.asarray(points[offsets[i] : offsets[i + 1]], np.float64)


def static_primitives_from_map(
    vmap: VectorMap, channels: tuple[ChannelSpec, ...], cfg: RasterConfig
) -> StaticPrimitives:
    """Turn a :class:`VectorMap` into world-frame drawing primitives for the static channels.

    Args:
        vmap: the vector map (world frame).
        channels: the raster's channel table.
        cfg: raster config (speed-limit scale).

    Returns:
        The primitives; lanes without boundaries get no area, lanes without centerline no line.
    """
    ch = {name: channel_index(channels, name) for name, *_ in STATIC_CHANNELS}
    polygons: list[tuple[F64, int, float]] = []
    polylines: list[tuple[F64, int, float]] = []
    centerlines: list[tuple[F64, int, float]] = []
    for i in range(len(vmap.drivable_offsets) - 1):
        polygons.append((_csr(vmap.drivable_xy_m, vmap.drivable_offsets, i), ch["drivable_area"], 1.0))
    for i in range(len(vmap.lane_id)):
        left = _csr(vmap.left_boundary_xy_m, vmap.left_boundary_offsets, i)
        right = _csr(vmap.right_boundary_xy_m, vmap.right_boundary_offsets, i)
        if len(left) >= 2 and len(right) >= 2:
            area = np.concatenate([left, right[::-1]])
            lane_type = int(vmap.lane_type[i])
            if lane_type == LaneType.BIKE:
                polygons.append((area, ch["bike_lane"], 1.0))
            else:
                polygons.append((area, ch["lane_area"], 1.0))
                if lane_type == LaneType.BUS:
                    polygons.append((area, ch["bus_lane"], 1.0))
            if bool(vmap.lane_is_intersection[i]):
                polygons.append((area, ch["intersection"], 1.0))
            limit = float(vmap.lane_speed_limit_mps[i])
            if math.isfinite(limit) and limit > 0.0:
                polygons.append((area, ch["speed_limit"], min(limit / cfg.speed_limit_scale_mps, 2.0)))
        for bound in (left, right):
            if len(bound) >= 2:
                polylines.append((bound, ch["lane_boundary"], 1.0))
        center = _csr(vmap.centerline_xy_m, vmap.centerline_offsets, i)
        if len(center) >= 1:
            centerlines.append((center, ch["lane_centerline"], 1.0))
    for i in range(len(vmap.crossing_offsets) - 1):
        polygons.append((_csr(vmap.crossing_xy_m, vmap.crossing_offsets, i), ch["crossing"], 1.0))
    for i in range(len(vmap.sidewalk_offsets) - 1):
        polygons.append((_csr(vmap.sidewalk_xy_m, vmap.sidewalk_offsets, i), ch["sidewalk"], 1.0))
    for seg in np.asarray(vmap.stop_line_xy_m, np.float64).reshape(-1, 2, 2):
        polylines.append((seg, ch["stop_line"], 1.0))
    return StaticPrimitives(
        polygons=CsrPrimitives.build(polygons),
        polylines=CsrPrimitives.build(polylines),
        centerlines=CsrPrimitives.build(centerlines),
        cos_ch=ch["lane_heading_cos"],
        sin_ch=ch["lane_heading_sin"],
    )


def draw_primitives(
    raster: np.ndarray,
    prims: StaticPrimitives,
    px_from_world: F64,
    half_width_px: float,
    channel_map: np.ndarray,
) -> None:
    """Draw static primitives with the numba kernels into any image.

    Args:
        raster: (C', H', W') float32 target, written in place.
        prims: world-frame primitives.
        px_from_world: (3, 3) float64 target pixel ``(col, row, 1)`` from world ``(x, y, 1)``.
        half_width_px: polyline half width in target pixels.
        channel_map: (C,) int64 raster channel -> target plane (identity for the ego raster).
    """
    pg = prims.polygons
    if len(pg.channels):
        kernels.fill_polygons_kernel(
            raster,
            apply(px_from_world, pg.points_m),
            pg.offsets,
            channel_map[pg.channels],
            pg.values,
            np.zeros(max(pg.max_vertices, 1) + 1),
        )
    for lines, cos_ch, sin_ch in ((prims.polylines, -1, -1), (prims.centerlines, prims.cos_ch, prims.sin_ch)):
        if len(lines.channels):
            kernels.draw_polylines_kernel(
                raster,
                apply(px_from_world, lines.points_m),
                lines.offsets,
                channel_map[lines.channels],
                lines.values,
                lines.seg_cos,
                lines.seg_sin,
                int(channel_map[cos_ch]) if cos_ch >= 0 else -1,
                int(channel_map[sin_ch]) if sin_ch >= 0 else -1,
                float(half_width_px),
            )


class StaticLayers:
    """The static channels of one map, pre-rendered in a north-up world grid.

    Attributes:
        grid: the world grid (None for an empty map).
        out_channels: (Cs,) int64 raster channel of each pre-rendered plane.
        planes: (Cs, Hg * Wg) float32 pre-rendered planes.
    """

    def __init__(self, prims: StaticPrimitives | None, cfg: RasterConfig, num_channels: int) -> None:
        """Pre-render ``prims`` (None = no map: static channels stay 0).

        Raises:
            MapTooLargeError: when the grid would exceed ``cfg.max_static_px`` pixels.
        """
        self.out_channels = np.arange(len(STATIC_CHANNELS), dtype=np.int64)
        self.cos_k = prims.cos_ch if prims is not None else -1
        self.sin_k = prims.sin_ch if prims is not None else -1
        bounds = prims.bounds_m() if prims is not None else None
        if prims is None or bounds is None:
            self.grid = None
            self.planes = np.zeros((len(self.out_channels), 1), np.float32)
            self._src_w = 1
            return
        margin = 2.0 * cfg.resolution_m
        x0, y0, x1, y1 = bounds
        self.grid = WorldGrid(x0 - margin, y0 - margin, x1 + margin, y1 + margin, cfg.resolution_m)
        n_px = self.grid.height_px * self.grid.width_px
        if n_px * len(self.out_channels) > cfg.max_static_px:
            raise MapTooLargeError(
                f"map spans {x1 - x0:.0f} x {y1 - y0:.0f} m: the static pre-render would be "
                f"{self.grid.width_px} x {self.grid.height_px} px x {len(self.out_channels)} channels "
                f"> max_static_px={cfg.max_static_px}"
            )
        planes = np.zeros((len(self.out_channels), self.grid.height_px, self.grid.width_px), np.float32)
        channel_map = np.full(num_channels, -1, np.int64)
        channel_map[self.out_channels] = np.arange(len(self.out_channels))
        draw_primitives(planes, prims, self.grid.grid_from_world, cfg.line_half_width_px, channel_map)
        self.planes = planes.reshape(len(self.out_channels), -1)
        self._src_w = self.grid.width_px
        log.debug("static layers pre-rendered: %d x %d px", self.grid.width_px, self.grid.height_px)

    def warp_into(
        self, raster: np.ndarray, world_from_raster: F64, ego_yaw_rad: float, index_scratch: np.ndarray
    ) -> None:
        """Write every static channel of ``raster`` for the ego pose of ``world_from_raster``."""
        if self.grid is None:
            kernels.clear_channels_kernel(raster, 0, len(self.out_channels))
            return
        src_from_raster = self.grid.grid_from_world @ world_from_raster
        kernels.warp_nearest_kernel(
            raster,
            self.out_channels,
            self.planes,
            self._src_w,
            src_from_raster,
            self.cos_k,
            self.sin_k,
            math.cos(ego_yaw_rad),
            math.sin(ego_yaw_rad),
            index_scratch,
        )
