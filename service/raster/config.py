"""Raster configuration (pydantic, frozen) and the versioned raster spec a model is trained on.

``RasterConfig`` is what people type (TOML / CLI). ``RasterSpec`` is the derived, hashable
description of the tensor the CNN sees: spec version, channel names, ``(C, H, W)``, resolution,
ego position in the image and history offsets. The model manifest records
``RasterSpec.fingerprint()``; the runtime calls :meth:`RasterSpec.check_compatible` and refuses
a mismatch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, model_validator

from prescient.bus.messages import PRED_DT_S, TRACK_HISTORY_STEPS

# When changing the channel table, its encodings or the image convention: bump this number.
SPEC_VERSION: Final = 1


class RasterConfig(BaseModel):
    """Raster geometry and content options. Validated once at the edge, then frozen.

    Attributes:
        extent_m: half-size of the raster along ego x (forward/backward), metres. The image has
            ``height_px = round(2 * extent_m / resolution_m)`` rows.
        extent_lateral_m: half-size along ego y (left/right), metres; ``None`` = ``extent_m``.
            ``width_px = round(2 * extent_lateral_m / resolution_m)``.
        resolution_m: metres per pixel (square pixels).
        history_frames: number of agent occupancy frames per class group (1 = current only).
        history_stride_steps: spacing of those frames in track history steps (``PRED_DT_S``);
            frame k shows the agents at ``t - min(k * stride, H - 1) * PRED_DT_S``.
        line_half_width_px: a polyline lights a pixel whose centre lies within this distance
            (pixels) of a segment. >= 0.71 keeps diagonal lines 8-connected.
        ego_size_lwh_m: ego box length, width, height, metres.
        ego_rear_axle_to_center_m: distance from the ego origin (rear axle) forward to the
            box centre, metres.
        lidar_z_min_m / lidar_z_max_m: LiDAR points (ego frame z, ground = 0) inside this band
            are splatted; the rest (ground, overhangs) are dropped.
        velocity_scale_mps / accel_scale_mps2 / age_scale_s / speed_limit_scale_mps: the
            normalisation constants in the channel table.
        max_static_px: refuse maps whose world-frame pre-render would exceed this many pixels.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    extent_m: float = Field(64.0, gt=0.0, le=1000.0)
    extent_lateral_m: float | None = Field(None, gt=0.0, le=1000.0)
    resolution_m: float = Field(0.5, gt=0.01, le=10.0)
    history_frames: int = Field(5, ge=1, le=TRACK_HISTORY_STEPS)
    history_stride_steps: int = Field(5, ge=1, le=TRACK_HISTORY_STEPS)
    line_half_width_px: float = Field(0.75, gt=0.0, le=10.0)
    ego_size_lwh_m: tuple[float, float, float] = (4.8, 2.0, 1.6)
    ego_rear_axle_to_center_m: float = 1.4
    lidar_z_min_m: float = 0.3
    lidar_z_max_m: float = 3.0
    velocity_scale_mps: float = Field(20.0, gt=0.0)
    accel_scale_mps2: float = Field(5.0, gt=0.0)
    age_scale_s: float = Field(5.0, gt=0.0)
    speed_limit_scale_mps: float = Field(40.0, gt=0.0)
    max_static_px: int = Field(64_000_000, ge=1)

    @model_validator(mode="after")
    def _check_size(self) -> RasterConfig:
        if self.height_px < 4 or self.width_px < 4:
            raise ValueError(f"raster of {self.height_px}x{self.width_px} px is too small (>= 4x4)")
        if self.height_px * self.width_px > 4096 * 4096:
            raise ValueError(f"raster of {self.height_px}x{self.width_px} px is too large")
        if self.lidar_z_max_m <= self.lidar_z_min_m:
            raise ValueError("lidar_z_max_m must exceed lidar_z_min_m")
        return self

    @property
    def height_px(self) -> int:
        """Image rows H (ego x axis)."""
        return int(round(2.0 * self.extent_m / self.resolution_m))

    @property
    def width_px(self) -> int:
        """Image columns W (ego y axis)."""
        lateral = self.extent_m if self.extent_lateral_m is None else self.extent_lateral_m
        return int(round(2.0 * lateral / self.resolution_m))

    @property
    def history_offsets_steps(self) -> tuple[int, ...]:
        """History steps back from now of each occupancy frame, newest (0) first."""
        return tuple(
            min(k * self.history_stride_steps, TRACK_HISTORY_STEPS - 1) for k in range(self.history_frames)
        )

    @property
    def history_offsets_s(self) -> tuple[float, ...]:
        """Seconds back from now of each occupancy frame, newest (0.0) first."""
        return tuple(round(o * PRED_DT_S, 6) for o in self.history_offsets_steps)


class RasterSpecMismatch(ValueError):
    """A model trained on one raster spec was given a rasterizer with another."""


@dataclass(frozen=True)
class RasterSpec:
    """The contract between rasterizer and model: what each input channel holds.

    Attributes:
        version: ``SPEC_VERSION`` the rasterizer was built with.
        channel_names: (C,) names, in channel order.
        height_px / width_px: H, W.
        resolution_m: metres per pixel.
        history_offsets_s: seconds back of each agent occupancy frame.
    """

    version: int
    channel_names: tuple[str, ...]
    height_px: int
    width_px: int
    resolution_m: float
    history_offsets_s: tuple[float, ...]

    @property
    def num_channels(self) -> int:
        """C."""
        return len(self.channel_names)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the raster."""
        return (self.num_channels, self.height_px, self.width_px)

    def fingerprint(self) -> str:
        """Short stable id, e.g. ``raster-v1-58x256x256-0.5m-3f2a9c1d``, for the model manifest."""
        text = "|".join(
            [
                str(self.version),
                ",".join(self.channel_names),
                f"{self.height_px}x{self.width_px}",
                repr(float(self.resolution_m)),
                ",".join(repr(float(o)) for o in self.history_offsets_s),
            ]
        )
        digest = hashlib.sha256(text.encode()).hexdigest()[:8]
        c, h, w = self.shape
        return f"raster-v{self.version}-{c}x{h}x{w}-{self.resolution_m:g}m-{digest}"

    def check_compatible(self, expected: RasterSpec | str) -> None:
        """Raise :class:`RasterSpecMismatch` unless this spec equals ``expected``.

        Args:
            expected: the spec (or its fingerprint) the model was trained on.

        Raises:
            RasterSpecMismatch: naming the first difference found.
        """
        if isinstance(expected, str):
            if expected != self.fingerprint():
                raise RasterSpecMismatch(
                    f"model expects raster spec {expected}, rasterizer has {self.fingerprint()}"
                )
            return
        for name in ("version", "height_px", "width_px", "resolution_m", "history_offsets_s"):
            if getattr(expected, name) != getattr(self, name):
                raise RasterSpecMismatch(
                    f"raster spec {name}: model expects {getattr(expected, name)!r}, rasterizer has {getattr(self, name)!r}"
                )
        if expected.channel_names != self.channel_names:
            diff = [
                (i, a, b)
                for i, (a, b) in enumerate(zip(expected.channel_names, self.channel_names, strict=False))
                if a != b
            ]
            raise RasterSpecMismatch(
                f"raster spec channels: model expects {len(expected.channel_names)}, rasterizer has "
                f"{len(self.channel_names)}; first differences (index, model, rasterizer): {diff[:3]}"
            )
