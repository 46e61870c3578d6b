"""Bird's-eye-view rasterizer: the scene as the CNN sees it, ego at the centre, ~60 channels.

Public API::

    from prescient.service.raster import RasterConfig, RasterSpec, CHANNELS, SPEC_VERSION, Rasterizer

    r = Rasterizer(RasterConfig(), vector_map)  # static layers pre-rendered, kernels warmed up
    raster = r.render(tracks, ego_pose, lights, plan_xy_m, lidar, ego_history_xy_m)  # (C, H, W)

See :mod:`prescient.service.raster.render_context` for the image convention and ``CHANNELS.md`` for the
channel table.
"""

from prescient.service.raster.channels import (
    CHANNELS,
    DEFAULT_SPEC,
    ChannelSpec,
    build_channels,
    build_spec,
    channels_markdown,
)
from prescient.service.raster.config import SPEC_VERSION, RasterConfig, RasterSpec, RasterSpecMismatch
from prescient.service.raster.dynamic import RasterInputError
from prescient.service.raster.rasterizer import Rasterizer
from prescient.service.raster.render_context import RenderContext
from prescient.service.raster.static_layers import MapTooLargeError

__all__ = [
    "CHANNELS",
    "DEFAULT_SPEC",
    "SPEC_VERSION",
    "ChannelSpec",
    "MapTooLargeError",
    "RasterConfig",
    "RasterInputError",
    "RasterSpec",
    "RasterSpecMismatch",
    "Rasterizer",
    "RenderContext",
    "build_channels",
    "build_spec",
    "channels_markdown",
]
