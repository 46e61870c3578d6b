"""The bird's-eye-view rasterizer: tracks + ego pose + map -> ``(C, H, W)`` float32 raster.

Per tick: the static channels are warped from the world-frame pre-render, then the dynamic
scene is turned into pixel-space primitives with numpy (:mod:`prescient.service.raster.dynamic`, shared with the
reference) and drawn by the numba kernels. No sockets, no clocks: everything comes from the
arguments, so a replay gives identical rasters.
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt

from prescient.bus.messages import (
    LidarFrame,
    LightState,
    Tracks,
    TrafficLights,
    VectorMap,
)
from prescient.service.raster import kernels
from prescient.service.raster.channels import (
    build_channels,
    build_spec,
    channel_index,
)
from prescient.service.raster.config import RasterConfig, RasterSpec
from prescient.service.raster.dynamic import (
    DynamicPrimitives,
    RasterInputError,
    RasterStats,
    _check_pose,
    _check_xy,
    _Layout,
    prepare_dynamic,
)
from prescient.service.raster.render_context import F32, F64, RenderContext
from prescient.service.raster.static_layers import StaticLayers, static_primitives_from_map
from prescient.service.tracks import TrackSnapshot

log = logging.getLogger(__name__)


class Rasterizer:
    """Renders the BEV raster for one map; buffers and static layers are built once.

    Example::

        r = Rasterizer(RasterConfig(), vector_map)
        raster = r.render(tracks, ego_pose)  # (C, H, W) float32, overwritten by the next call

    Attributes:
        cfg: the config. ctx: pixel geometry. channels: (C,) channel table. spec: the
        :class:`RasterSpec` a model must have been trained on. stats: skipped-input counters.
    """

    def __init__(self, cfg: RasterConfig, vector_map: VectorMap | None, warm_up: bool = True) -> None:
        """Pre-render the static layers, allocate the buffer, compile and warm up the kernels.

        Args:
            cfg: raster config.
            vector_map: the map (world frame) or None for no static layers.
            warm_up: render one dummy frame so no JIT or first-touch cost reaches the 10 Hz path.

        Raises:
            MapTooLargeError: if the map's world-frame pre-render would exceed ``cfg.max_static_px``.
        """
        self.cfg = cfg
        self.ctx = RenderContext(cfg)
        self.channels = build_channels(cfg)
        self.spec: RasterSpec = build_spec(cfg)
        self._layout = _Layout(self.channels, cfg)
        self.stats = RasterStats()
        if warm_up:
            kernels.warm_up_kernels()
        self.vector_map = vector_map
        prims = static_primitives_from_map(vector_map, self.channels, cfg) if vector_map is not None else None
        self.static_primitives = prims
        self.static = StaticLayers(prims, cfg, len(self.channels))
        self._raster = np.zeros(self.spec.shape, np.float32)
        self._index_scratch = np.zeros(cfg.height_px * cfg.width_px, np.int64)
        # Controlled lanes: centerlines (world) in CSR, in the map's light order.
        self._light_lane_ids = np.zeros(0, np.int64)
        self._light_points = np.zeros((0, 2))
        self._light_offsets = np.zeros(1, np.int64)
        if vector_map is not None and len(vector_map.light_lane_id):
            row_of_lane = {int(lid): i for i, lid in enumerate(vector_map.lane_id)}
            pts, lane_ids = [], []
            for lid in np.unique(vector_map.light_lane_id):
                i = row_of_lane.get(int(lid))
                if i is None:
                    continue
                c = vector_map.centerline_xy_m[
                    vector_map.centerline_offsets[i] : vector_map.centerline_offsets[i + 1]
                ]
                if len(c):
                    pts.append(np.asarray(c, np.float64))
                    lane_ids.append(int(lid))
            if pts:
                self._light_lane_ids = np.array(lane_ids, np.int64)
                self._light_points = np.concatenate(pts)
                self._light_offsets = np.concatenate([[0], np.cumsum([len(p) for p in pts])]).astype(np.int64)
        if warm_up:
            self.render(None, np.zeros(3))
            self.stats = RasterStats()

    @property
    def num_channels(self) -> int:
        """C."""
        return len(self.channels)

    def channel(self, name: str) -> int:
        """Index of channel ``name`` (``KeyError`` if absent)."""
        return channel_index(self.channels, name)

    def raster_from_world(self, ego_pose: npt.ArrayLike) -> F64:
        """(3, 3) float64 ``(x_m, y_m, 1)`` world -> ``(col, row, 1)`` raster for this ego pose."""
        return self.ctx.raster_from_world(_check_pose(ego_pose))

    def pixels_from_world(self, xy_m: npt.ArrayLike, ego_pose: npt.ArrayLike) -> F32:
        """(N, 2) float32 ``(col, row)`` of (N, 2) world points; see :mod:`.render_context`."""
        return self.ctx.pixels_from_world(xy_m, _check_pose(ego_pose))

    def light_states(self, lights: TrafficLights | None) -> npt.NDArray[np.int64]:
        """(Q,) LightState per controlled lane of the map; unreported lanes are UNKNOWN."""
        states = np.full(len(self._light_lane_ids), int(LightState.UNKNOWN), np.int64)
        if lights is None or len(self._light_lane_ids) == 0:
            return states
        pos = {int(lid): i for i, lid in enumerate(self._light_lane_ids)}
        for lid, s in zip(lights.lane_id.tolist(), lights.state.tolist()):
            i = pos.get(int(lid))
            if i is None or s not in LightState._value2member_map_:
                self.stats.light_lanes_unknown += 1
                continue
            states[i] = s
        return states

    def prepare(
        self,
        tracks: TrackSnapshot | Tracks | None,
        ego_pose: npt.ArrayLike,
        lights: TrafficLights | None = None,
        plan_xy_m: npt.ArrayLike | None = None,
        lidar: list[LidarFrame] | None = None,
        ego_history_xy_m: npt.ArrayLike | None = None,
    ) -> tuple[F64, DynamicPrimitives]:
        """Validate inputs and build this tick's pixel-space primitives (used by the reference too).

        A wire ``Tracks`` is checked here (:meth:`~prescient.service.tracks.TrackSnapshot.from_message`; rows
        left out are counted in ``stats``); a :class:`~prescient.service.tracks.TrackSnapshot` is trusted.
        """
        pose = _check_pose(ego_pose)
        snap = self._snapshot(tracks)
        prims = prepare_dynamic(
            self.ctx,
            self._layout,
            self.cfg,
            snap,
            pose,
            self._light_points,
            self._light_offsets,
            self.light_states(lights),
            _check_xy("plan_xy_m", plan_xy_m),
            lidar,
            _check_xy("ego_history_xy_m", ego_history_xy_m),
            self.stats,
        )
        return pose, prims

    def _snapshot(self, tracks: TrackSnapshot | Tracks | None) -> TrackSnapshot | None:
        if isinstance(tracks, Tracks):
            try:
                snap = TrackSnapshot.from_message(tracks)
            except ValueError as e:
                raise RasterInputError(str(e)) from e
            dropped = snap.dropped_rows or {}
            self.stats.tracks_dropped_bad_class += dropped.get("bad_class", 0)
            self.stats.tracks_dropped_nonfinite += dropped.get("non_finite", 0)
            return snap
        return tracks

    def render(
        self,
        tracks: TrackSnapshot | Tracks | None,
        ego_pose: npt.ArrayLike,
        lights: TrafficLights | None = None,
        plan_xy_m: npt.ArrayLike | None = None,
        lidar: list[LidarFrame] | None = None,
        ego_history_xy_m: npt.ArrayLike | None = None,
    ) -> F32:
        """Render one frame.

        Args:
            tracks: world-frame tracks at the raster time (None or empty: no agents). Rows of a
                wire ``Tracks`` with non-finite state or an unknown class are skipped and counted
                in ``stats``; a ``TrackSnapshot`` is used as it is.
            ego_pose: (3,) float64 world ``[x_m, y_m, yaw_rad]`` of the ego (rear axle).
            lights: traffic-light states; controlled lanes not reported are drawn as unknown.
            plan_xy_m: (S, 2) world-frame planned path (conditional prediction) or None.
            lidar: LiDAR frames whose points (sensor frame) are splatted, or None.
            ego_history_xy_m: (H, 2) world-frame past ego positions or None.

        Returns:
            (C, H, W) float32, **the rasterizer's internal buffer**: it is overwritten by the next
            call; copy it if you need to keep it.

        Raises:
            RasterInputError: for an ego pose or path of the wrong shape or a non-finite pose.
        """
        pose, prims = self.prepare(tracks, ego_pose, lights, plan_xy_m, lidar, ego_history_xy_m)
        raster = self._raster
        lay = self._layout
        kernels.clear_channels_kernel(raster, lay.first_dynamic, raster.shape[0])
        self.static.warp_into(raster, self.ctx.world_from_raster(pose), float(pose[2]), self._index_scratch)
        draw_dynamic(raster, prims, self.cfg.line_half_width_px)
        self.stats.frames += 1
        return raster

    def to_rgb(self, raster: npt.NDArray[np.float32] | None = None) -> npt.NDArray[np.uint8]:
        """(H, W, 3) uint8 colour picture of a raster (default: the last rendered)."""
        from prescient.service.raster.rgb import to_rgb

        return to_rgb(self._raster if raster is None else raster, self.channels)


def draw_dynamic(raster: F32, prims: DynamicPrimitives, half_width_px: float, erase: bool = False) -> None:
    """Draw the dynamic primitives with the kernels (boxes, then lines, then LiDAR splats).

    With ``erase`` every pixel the primitives cover is set to 0 instead, in every channel they
    write: drawing then erasing the same primitives restores all-zero dynamic planes exactly.
    """
    if len(prims.boxes):
        values = np.zeros_like(prims.box_values) if erase else prims.box_values
        kernels.fill_boxes_kernel(raster, prims.boxes, prims.box_channels, values)
    if len(prims.line_channels):
        kernels.draw_polylines_kernel(
            raster,
            prims.line_points,
            prims.line_offsets,
            prims.line_channels,
            np.zeros_like(prims.line_values) if erase else prims.line_values,
            np.zeros(len(prims.line_points), np.float32),
            np.zeros(len(prims.line_points), np.float32),
            -1,
            -1,
            float(half_width_px),
        )
    if len(prims.splat_points):
        kernels.splat_points_kernel(
            raster, prims.splat_channel, prims.splat_points, np.float32(0.0 if erase else 1.0)
        )
