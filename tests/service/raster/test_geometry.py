"""Golden hand-built scenes: image orientation, axes and non-square rasters (no W/H or x/y swaps)."""

from __future__ import annotations

import numpy as np
import pytest

from prescient.bus.messages import AgentClass
from prescient.service.raster import RasterConfig, Rasterizer
from prescient.service.raster.render_context import RenderContext, apply, ego_from_world, world_from_pose
from prescient.service.raster.scenes import make_tracks


def _occ(r: Rasterizer, raster: np.ndarray) -> np.ndarray:
    return raster[r.channel("occ_vehicle_t0")]


def _rows_cols(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.nonzero(mask)
    return rows, cols


@pytest.fixture(scope="module")
def square() -> Rasterizer:
    return Rasterizer(RasterConfig(extent_m=16.0, resolution_m=0.5, history_frames=1), None)


@pytest.fixture(scope="module")
def tall() -> Rasterizer:
    # H != W: 40 m forward/back (160 rows), 12 m left/right (48 cols)
    return Rasterizer(
        RasterConfig(extent_m=40.0, extent_lateral_m=12.0, resolution_m=0.5, history_frames=1), None
    )


def test_config_non_square_shape_is_h_by_w(tall: Rasterizer) -> None:
    """Height follows ego x (extent_m), width follows ego y (extent_lateral_m)."""
    assert tall.spec.shape == (tall.num_channels, 160, 48)
    assert tall.render(None, np.zeros(3)).shape == (tall.num_channels, 160, 48)


def test_render_box_ahead_lands_above_centre(square: Rasterizer) -> None:
    """A 4 x 2 m car 10 m ahead of an ego at the origin covers rows 8..15, cols 30..33 (64 x 64)."""
    tracks = make_tracks([[10.0, 0.0]], [0.0], [[4.0, 2.0]], [AgentClass.CAR])
    rows, cols = _rows_cols(_occ(square, square.render(tracks, np.zeros(3))))
    # x in [8, 12] -> row = 32 - x / 0.5 in [8, 16]; pixel centres 8.5..15.5 -> rows 8..15
    assert (rows.min(), rows.max()) == (8, 15)
    # y in [-1, 1] -> col = 32 - y / 0.5 in [30, 34] -> cols 30..33
    assert (cols.min(), cols.max()) == (30, 33)
    assert len(rows) == 8 * 4


def test_render_box_left_lands_on_image_left(square: Rasterizer) -> None:
    """A car 8 m to the ego's left is left of the image centre, on the ego's row band."""
    tracks = make_tracks([[0.0, 8.0]], [0.0], [[4.0, 2.0]], [AgentClass.CAR])
    rows, cols = _rows_cols(_occ(square, square.render(tracks, np.zeros(3))))
    assert cols.max() < 32 and cols.min() == 14  # y in [7, 9] -> col in [14, 18]
    assert (rows.min(), rows.max()) == (28, 35)  # x in [-2, 2] -> row in [28, 36]


def test_render_long_side_follows_yaw(square: Rasterizer) -> None:
    """Yaw 0 puts the 6 m side along the rows (vertical); yaw 90 deg along the columns."""
    for yaw, tall_box in ((0.0, True), (np.pi / 2, False)):
        tracks = make_tracks([[0.0, 0.0]], [yaw], [[6.0, 2.0]], [AgentClass.TRUCK])
        raster = square.render(tracks, np.zeros(3))
        rows, cols = _rows_cols(raster[square.channel("occ_large_vehicle_t0")])
        height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert (height, width) == ((12, 4) if tall_box else (4, 12))


def test_render_rotated_ego_puts_world_north_ahead(square: Rasterizer) -> None:
    """An ego at (100, 50) facing north (yaw 90 deg) sees a car 10 m north of it straight ahead."""
    pose = np.array([100.0, 50.0, np.pi / 2])
    tracks = make_tracks([[100.0, 60.0]], [np.pi / 2], [[4.0, 2.0]], [AgentClass.CAR], ego_pose=pose)
    raster = square.render(tracks, pose)
    rows, cols = _rows_cols(_occ(square, raster))
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (8, 15, 30, 33)
    # same-heading car: relative heading cos = 1, sin = 0
    assert np.allclose(raster[square.channel("agent_heading_cos")][rows, cols], 1.0)
    assert np.allclose(raster[square.channel("agent_heading_sin")][rows, cols], 0.0, atol=1e-6)


def test_render_non_square_box_positions(tall: Rasterizer) -> None:
    """In a 160 x 48 raster a car 30 m ahead and 5 m right sits near the top, right of centre."""
    tracks = make_tracks([[30.0, -5.0]], [0.0], [[4.0, 2.0]], [AgentClass.CAR])
    rows, cols = _rows_cols(_occ(tall, tall.render(tracks, np.zeros(3))))
    # x in [28, 32] -> row = 80 - 2x in [16, 24]; y in [-6, -4] -> col = 24 - 2y in [32, 36]
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (16, 23, 32, 35)


def test_pixels_from_world_matches_drawn_box(tall: Rasterizer) -> None:
    """pixels_from_world of an agent's centre falls inside that agent's drawn footprint."""
    pose = np.array([5.0, -3.0, 0.7])
    centre = apply(world_from_pose(pose), [[12.0, 4.0]])
    tracks = make_tracks(centre, [0.7], [[4.0, 2.0]], [AgentClass.CAR], ego_pose=pose)
    raster = tall.render(tracks, pose)
    col, row = tall.pixels_from_world(centre, pose)[0]
    assert raster[tall.channel("occ_vehicle_t0"), int(row), int(col)] == 1.0
    # the centre maps to (W/2 - y/res, H/2 - x/res)
    assert np.allclose([col, row], [24 - 4.0 / 0.5, 80 - 12.0 / 0.5], atol=1e-4)


def test_transforms_are_inverse() -> None:
    """ego_from_world inverts world_from_pose; raster_from_ego maps the ego origin to the centre."""
    pose = np.array([3.0, -7.0, 2.1])
    assert np.allclose(ego_from_world(pose) @ world_from_pose(pose), np.eye(3))
    ctx = RenderContext(RasterConfig(extent_m=10.0, extent_lateral_m=6.0, resolution_m=0.25))
    assert ctx.shape_hw == (80, 48)
    assert np.allclose(
        ctx.pixels_from_ego([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), [[24, 40], [24, 36], [20, 40]]
    )


def test_ego_box_and_paths_orientation(tall: Rasterizer) -> None:
    """The ego box sits just above the centre; the plan goes up, the past path down."""
    pose = np.array([10.0, 10.0, np.pi])  # facing west
    plan = np.column_stack([np.linspace(10.0, -10.0, 5), np.full(5, 10.0)])  # west = ahead
    past = np.column_stack([np.linspace(30.0, 10.0, 5), np.full(5, 10.0)])  # east = behind
    raster = tall.render(None, pose, plan_xy_m=plan, ego_history_xy_m=past)
    for name, above in (("ego_plan", True), ("ego_past_path", False)):
        rows, cols = _rows_cols(raster[tall.channel(name)])
        assert np.all(np.abs(cols - 23.5) <= 1.5)
        assert (rows.max() <= 81) if above else (rows.min() >= 79)
    rows, cols = _rows_cols(raster[tall.channel("ego_box")])
    # ego box x in [1.4 - 2.4, 1.4 + 2.4] = [-1, 3.8] -> rows 72.4..82
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (72, 81, 22, 25)
