"""Kernels on tiny hand-computed images, and against the numpy reference on random shapes."""

from __future__ import annotations

import numpy as np

from prescient.service.raster import kernels, reference


def _img(h: int = 6, w: int = 7) -> np.ndarray:
    return np.zeros((2, h, w), np.float32)


def test_fill_boxes_axis_aligned_hand_computed() -> None:
    """A 2 x 4 px box centred at (col 3, row 2) covers cols 2..3, rows 0..3 (ux along rows)."""
    img = _img()
    box = np.array([[3.0, 2.0, 0.0, 1.0, 2.0, 1.0]])  # long axis along +row, half 2 px; half width 1 px
    kernels.fill_boxes_kernel(img, box, np.array([[1, -1]], np.int64), np.array([[7.0, 0.0]], np.float32))
    expected = np.zeros((6, 7), np.float32)
    expected[0:4, 2:4] = 7.0
    assert np.array_equal(img[1], expected)
    assert not img[0].any()


def test_fill_boxes_clips_at_image_border() -> None:
    """A box hanging over the corner is clipped, not wrapped."""
    img = _img()
    kernels.fill_boxes_kernel(
        img,
        np.array([[0.0, 0.0, 1.0, 0.0, 1.5, 1.5]]),
        np.array([[0]], np.int64),
        np.array([[1.0]], np.float32),
    )
    expected = np.zeros((6, 7), np.float32)
    expected[0:2, 0:2] = 1.0  # centres 0.5 and 1.5 are within the 1.5 px half size (inclusive)
    assert np.array_equal(img[0], expected)


def test_polyline_horizontal_hand_computed() -> None:
    """A line along row 2.5 from col 1 to 5 lights row 2, cols 1..4 (centres within 0.75 px)."""
    img = _img()
    kernels.draw_polylines_kernel(
        img, np.array([[1.0, 2.5], [5.0, 2.5]]), np.array([0, 2], np.int64), np.array([0], np.int64),
        np.array([1.0], np.float32), np.zeros(2, np.float32), np.zeros(2, np.float32), -1, -1, 0.75,
    )  # fmt: skip
    expected = np.zeros((6, 7), np.float32)
    expected[2, 1:5] = 1.0  # col 0 centre is 0.5 px beyond the end: distance 0.5 <= 0.75 -> lit too
    expected[2, 0] = 1.0
    expected[2, 5] = 1.0
    assert np.array_equal(img[0], expected)


def test_polygon_triangle_hand_computed() -> None:
    """A right triangle (0,0)-(4,0)-(0,4) contains the centres with c + r + 1 < 4."""
    img = _img()
    kernels.fill_polygons_kernel(
        img, np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]]), np.array([0, 3], np.int64), np.array([1], np.int64),
        np.array([1.0], np.float32), np.zeros(4),
    )  # fmt: skip
    rr, cc = np.mgrid[0:6, 0:7]
    assert np.array_equal(img[1] == 1.0, (rr + cc + 1.0) < 4.0)


def test_splat_points_floor_and_bounds() -> None:
    """Points land in floor(col), floor(row); out-of-image points are dropped."""
    img = _img()
    pts = np.array([[0.2, 0.9], [6.99, 5.5], [-0.1, 2.0], [7.0, 1.0], [3.5, 6.0]])
    kernels.splat_points_kernel(img, 0, pts, np.float32(1.0))
    assert sorted(zip(*np.nonzero(img[0]))) == [(0, 0), (5, 6)]


def test_kernels_match_reference_on_random_shapes() -> None:
    """Boxes, polygons (incl. self-intersecting) and polylines match the per-pixel reference exactly."""
    rng = np.random.default_rng(7)
    h, w = 40, 56
    for _ in range(30):
        img = np.zeros((1, h, w), np.float32)
        box = np.array([*rng.uniform(-5, 60, 2), 0.0, 0.0, *rng.uniform(0.2, 12, 2)])
        ang = rng.uniform(-np.pi, np.pi)
        box[2:4] = np.cos(ang), np.sin(ang)
        kernels.fill_boxes_kernel(img, box[None], np.zeros((1, 1), np.int64), np.ones((1, 1), np.float32))
        assert np.array_equal(img[0] == 1.0, reference.box_mask(h, w, box))

        img[:] = 0
        poly = rng.uniform(-5, 60, (int(rng.integers(3, 9)), 2))
        kernels.fill_polygons_kernel(
            img, poly, np.array([0, len(poly)], np.int64), np.zeros(1, np.int64), np.ones(1, np.float32),
            np.zeros(len(poly) + 1),
        )  # fmt: skip
        assert np.array_equal(img[0] == 1.0, reference.polygon_mask(h, w, poly))

        img[:] = 0
        line = rng.uniform(-5, 60, (int(rng.integers(1, 6)), 2))
        hw = float(rng.uniform(0.5, 3.0))
        kernels.draw_polylines_kernel(
            img, line, np.array([0, len(line)], np.int64), np.zeros(1, np.int64), np.ones(1, np.float32),
            np.zeros(len(line), np.float32), np.zeros(len(line), np.float32), -1, -1, hw,
        )  # fmt: skip
        ref = np.zeros((h, w), bool)
        for _, a, b in reference._segments(line):
            ref |= reference.segment_mask(h, w, a, b, hw)
        assert np.array_equal(img[0] == 1.0, ref)


def test_warp_identity_and_heading_rotation() -> None:
    """An identity warp copies planes; the heading pair is rotated by -yaw; outside is 0."""
    src = np.arange(2 * 12, dtype=np.float32).reshape(2, 12) / 24.0
    img = np.full((3, 3, 4), 9.0, np.float32)
    scratch = np.zeros(12, np.int64)
    kernels.warp_nearest_kernel(img, np.array([0, 1], np.int64), src, 4, np.eye(3), -1, -1, 1.0, 0.0, scratch)
    assert np.array_equal(img[0], src[0].reshape(3, 4)) and np.array_equal(img[1], src[1].reshape(3, 4))
    assert np.all(img[2] == 9.0)
    cos_w = np.full((1, 12), np.cos(0.9), np.float32)
    sin_w = np.full((1, 12), np.sin(0.9), np.float32)
    shift = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])  # source col = col + 2
    kernels.warp_nearest_kernel(
        img, np.array([0, 1], np.int64), np.concatenate([cos_w, sin_w]), 4, shift, 0, 1, np.cos(0.4), np.sin(0.4),
        scratch,
    )  # fmt: skip
    assert np.allclose(img[0, :, :2], np.cos(0.5), atol=1e-6) and np.allclose(
        img[1, :, :2], np.sin(0.5), atol=1e-6
    )
    assert np.all(img[0, :, 2:] == 0.0) and np.all(img[1, :, 2:] == 0.0)
