"""Geometry of the raster: which pixel shows which point of the world.

Image convention (the one contract every consumer relies on):

* The raster is ``(C, H, W)`` float32: ``H = height_px`` rows, ``W = width_px`` columns.
  Row 0 is the **top** of the image, column 0 the **left**.
* Continuous pixel coordinates are ``(col, row)`` (x-like first, like OpenCV / matplotlib):
  pixel ``[r, c]`` covers ``col in [c, c+1)``, ``row in [r, r+1)``; its centre is
  ``(c + 0.5, r + 0.5)``. A pixel is "inside" a shape when its centre is.
* **Ego forward (+x_ego) points up** (towards row 0); **ego left (+y_ego) points left**
  (towards column 0). Rows therefore run along ego x, columns along ego y: the image height
  ``H`` covers ``2 * extent_m`` of ego x and the width ``W`` covers ``2 * extent_lateral_m`` of
  ego y.
* The ego origin (rear-axle centre) is at continuous pixel ``(W / 2, H / 2)``, i.e. the centre of
  the image: ``col = W/2 - y_ego / res``, ``row = H/2 - x_ego / res``.
* ``raster_from_ego`` maps homogeneous ``(x_m, y_m, 1)`` in the ego frame to ``(col, row, 1)``.
  It is a reflection (det < 0) because image rows grow downwards. A heading of 0 in the ego
  frame points up in the image, +90 deg (ego left) points to the image's left, so on screen a
  counter-clockwise ego rotation is still counter-clockwise.

Transforms are 3x3 float64 homogeneous matrices named ``dst_from_src``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from prescient.service.raster.config import RasterConfig

F64 = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]


def world_from_pose(pose: F64) -> F64:
    """``world_from_ego`` (3, 3) float64 for an ego pose ``[x_m, y_m, yaw_rad]`` (world frame)."""
    x, y, yaw = float(pose[0]), float(pose[1]), float(pose[2])
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, x], [s, c, y], [0.0, 0.0, 1.0]], dtype=np.float64)


def ego_from_world(pose: F64) -> F64:
    """``ego_from_world`` (3, 3) float64, the inverse of :func:`world_from_pose`."""
    x, y, yaw = float(pose[0]), float(pose[1]), float(pose[2])
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, s, -(c * x + s * y)], [-s, c, s * x - c * y], [0.0, 0.0, 1.0]], dtype=np.float64)


def apply(dst_from_src: F64, xy: npt.ArrayLike) -> F64:
    """Apply a 3x3 homogeneous transform to points.

    Args:
        dst_from_src: (3, 3) float64.
        xy: (N, 2) points in the source frame.

    Returns:
        (N, 2) float64 points in the destination frame.
    """
    pts = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    return pts @ dst_from_src[:2, :2].T + dst_from_src[:2, 2]


class RenderContext:
    """Pixel geometry of one raster configuration (see the module docstring for the convention).

    Attributes:
        height_px: H (rows, along ego x). width_px: W (columns, along ego y).
        resolution_m: metres per pixel.
        raster_from_ego: (3, 3) float64, ``(x_m, y_m, 1) -> (col, row, 1)``.
    """

    def __init__(self, cfg: RasterConfig) -> None:
        """Build the context of ``cfg`` (H, W, resolution)."""
        self.height_px = cfg.height_px
        self.width_px = cfg.width_px
        self.resolution_m = float(cfg.resolution_m)
        inv = 1.0 / self.resolution_m
        self.raster_from_ego = np.array(
            [[0.0, -inv, self.width_px / 2.0], [-inv, 0.0, self.height_px / 2.0], [0.0, 0.0, 1.0]],
            dtype=np.float64,
        )
        self.ego_from_raster = np.linalg.inv(self.raster_from_ego)

    @property
    def shape_hw(self) -> tuple[int, int]:
        """``(H, W)``."""
        return (self.height_px, self.width_px)

    def raster_from_world(self, ego_pose: F64) -> F64:
        """(3, 3) float64 ``raster_from_world`` for ego pose ``[x_m, y_m, yaw_rad]`` (world)."""
        return self.raster_from_ego @ ego_from_world(ego_pose)

    def world_from_raster(self, ego_pose: F64) -> F64:
        """(3, 3) float64 inverse of :meth:`raster_from_world`."""
        return world_from_pose(ego_pose) @ self.ego_from_raster

    def pixels_from_world(self, xy_m: npt.ArrayLike, ego_pose: F64) -> F32:
        """Continuous pixel coordinates of world points.

        Args:
            xy_m: (N, 2) world-frame points, metres.
            ego_pose: (3,) float64 ego pose ``[x_m, y_m, yaw_rad]`` in the world frame.

        Returns:
            (N, 2) float32 ``(col, row)``; ``int(col), int(row)`` indexes ``raster[:, row, col]``
            when inside ``[0, W) x [0, H)``.
        """
        return apply(self.raster_from_world(ego_pose), xy_m).astype(np.float32)

    def pixels_from_ego(self, xy_m: npt.ArrayLike) -> F64:
        """(N, 2) float64 ``(col, row)`` of (N, 2) ego-frame points in metres."""
        return apply(self.raster_from_ego, xy_m)


class WorldGrid:
    """A north-up world-frame image used to pre-render static map layers once per map.

    Column ``gc`` grows with world x (east), row ``gr`` grows with **decreasing** world y, so the
    grid is north-up; pixel centres sit at half-integer coordinates like the raster's.

    Attributes:
        x_min_m, y_max_m: world coordinates of the grid's top-left corner.
        resolution_m: metres per pixel (the raster's).
        height_px, width_px: grid rows and columns.
        grid_from_world: (3, 3) float64, ``(x_m, y_m, 1) -> (gc, gr, 1)``.
    """

    def __init__(
        self, x_min_m: float, y_min_m: float, x_max_m: float, y_max_m: float, resolution_m: float
    ) -> None:
        """Grid covering the world box ``[x_min, x_max] x [y_min, y_max]`` at ``resolution_m``."""
        self.resolution_m = float(resolution_m)
        self.x_min_m = float(x_min_m)
        self.y_max_m = float(y_max_m)
        self.width_px = max(1, int(np.ceil((x_max_m - x_min_m) / resolution_m)))
        self.height_px = max(1, int(np.ceil((y_max_m - y_min_m) / resolution_m)))
        inv = 1.0 / self.resolution_m
        self.grid_from_world = np.array(
            [[inv, 0.0, -self.x_min_m * inv], [0.0, -inv, self.y_max_m * inv], [0.0, 0.0, 1.0]],
            dtype=np.float64,
        )
