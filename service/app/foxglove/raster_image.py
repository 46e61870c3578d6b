"""The model's raster as a Foxglove image (``/raster``, ``foxglove.RawImage``, rgb8).

The service does not publish its raster (15 MB per tick), so the viewer draws it again from what
is on the bus or in the log: the map, the ego state (pose, plan, past path), the traffic lights
and the tracks, through the service's own :class:`~prescient.service.raster.rasterizer.Rasterizer`
with the default config, coloured as ``prescient raster`` draws it (:func:`~prescient.service.raster.rgb.to_rgb`,
the legend's colours). LiDAR is not drawn (the viewer does not subscribe to the sensors).
"""

from __future__ import annotations

from collections import deque

import numpy as np
from foxglove import messages as fm

from prescient.bus import messages as m
from prescient.service.app.foxglove.scene import timestamp
from prescient.service.raster.config import RasterConfig
from prescient.service.raster.rasterizer import Rasterizer
from prescient.service.raster.rgb import to_rgb

DEFAULT_PERIOD_NS = 500_000_000  # 2 Hz: drawing costs the viewer ~10 ms a frame


class RasterImages:
    """Holds the latest map, ego state and lights; draws the raster for a Tracks message.

    Args:
        period_ns: at most one image per this much sensor-clock time (0: one per Tracks).
        cfg: raster config (the service's default).
    """

    def __init__(self, period_ns: int = DEFAULT_PERIOD_NS, cfg: RasterConfig | None = None) -> None:
        self.period_ns = int(period_ns)
        self.cfg = cfg or RasterConfig()
        self._rasterizer: Rasterizer | None = None
        self._map_id = ""
        self._ego: m.EgoState | None = None
        self._lights: m.TrafficLights | None = None
        self._ego_xy: deque[np.ndarray] = deque(maxlen=m.TRACK_HISTORY_STEPS)
        self._last_ns: int | None = None

    def note(self, msg: object) -> None:
        """Keep what the next image needs (other message types are ignored)."""
        if isinstance(msg, m.VectorMap) and msg.map_id != self._map_id:
            self._rasterizer = Rasterizer(self.cfg, msg, warm_up=False)
            self._map_id = msg.map_id
        elif isinstance(msg, m.EgoState):
            self._ego = msg
            self._ego_xy.append(np.asarray(msg.pose[:2], np.float64))
        elif isinstance(msg, m.TrafficLights):
            self._lights = msg

    def image(self, tracks: m.Tracks, stamp_unix_ns: int) -> fm.RawImage | None:
        """The raster at ``tracks``' time as an rgb8 image, or None (no ego state yet, or too soon).

        The image is the raster's own picture: ego forward up, ego at the centre, frame ``base_link``.
        """
        stamp = int(tracks.header.stamp_ns)
        if self._ego is None or (self._last_ns is not None and 0 <= stamp - self._last_ns < self.period_ns):
            return None
        if self._rasterizer is None:  # no map yet: agents and ego only
            self._rasterizer = Rasterizer(self.cfg, None, warm_up=False)
        ego = self._ego
        plan = np.asarray(ego.plan_xy_m, np.float64) if len(ego.plan_xy_m) else None
        raster = self._rasterizer.render(
            tracks,
            np.asarray(ego.pose, np.float64),
            lights=self._lights,
            plan_xy_m=plan,
            ego_history_xy_m=np.array(self._ego_xy) if len(self._ego_xy) >= 2 else None,
        )
        rgb = to_rgb(raster, self._rasterizer.channels)
        self._last_ns = stamp
        h, w = rgb.shape[:2]
        return fm.RawImage(
            timestamp=timestamp(stamp_unix_ns),
            frame_id="base_link",
            width=w,
            height=h,
            encoding="rgb8",
            step=3 * w,
            data=rgb.tobytes(),
        )
