"""Detection-grid codec, box overlap and NMS."""

from __future__ import annotations

import numpy as np

from prescient.models.scenario_diffusion import grid as G


def _agents(rows: list[tuple]) -> np.ndarray:
    t = np.zeros((len(rows), G.AGENT_COLS))
    for i, (cls, x, y, yaw, length, width, v) in enumerate(rows):
        t[i, [G.A_CLS, G.A_X, G.A_Y, G.A_YAW, G.A_L, G.A_W, G.A_SPEED]] = cls, x, y, yaw, length, width, v
        t[i, G.A_FDX], t[i, G.A_FDY] = 2 * v * np.cos(yaw), 2 * v * np.sin(yaw)
    return t


def test_encode_decode_roundtrip_is_exact() -> None:
    t = _agents(
        [
            (1, 10.3, -3.7, 0.2, 4.5, 1.9, 8.0),
            (4, -5.2, 12.9, -2.0, 0.5, 0.6, 1.2),
            (3, 20.0, 20.0, 1.5, 12.0, 2.5, 5.0),
        ]
    )
    g, lost = G.encode_grid(t)
    assert lost == 0 and g[G.CH_OBJ].sum() == 3
    d = G.decode_grid(g, 0.5)
    assert len(d) == 3
    d = d[np.argsort(d[:, G.A_CLS])]
    ref = t[np.argsort(t[:, G.A_CLS])]
    np.testing.assert_allclose(d[:, : G.AGENT_COLS], ref, atol=1e-4)


def test_window_shared_cells_and_image_convention() -> None:
    # Ego x forward -> upper half (row < 32); ego y left -> left half (col < 32).
    g, _ = G.encode_grid(_agents([(1, 10.5, 5.5, 0.0, 4.5, 1.9, 0.0)]))
    r, c = np.argwhere(g[G.CH_OBJ] > 0)[0]
    assert (r, c) == (32 - 11, 32 - 6)
    # Outside the window: ignored. Two centres in one cell: the larger box keeps it, the smaller
    # moves to the nearest free cell and still decodes at its true centre.
    t = _agents(
        [
            (1, 40.0, 0.0, 0.0, 4.5, 1.9, 0.0),
            (4, 3.2, 3.2, 0.0, 0.5, 0.6, 1.0),
            (2, 3.4, 3.4, 0.0, 8.0, 2.5, 0.0),
        ]
    )
    g, lost = G.encode_grid(t)
    assert lost == 0 and g[G.CH_OBJ].sum() == 2
    assert g[G.CH_CLS + 1, 32 - 4, 32 - 4] == 1.0  # the truck kept the shared cell
    d = G.decode_grid(g, 0.5)
    d = d[np.argsort(d[:, G.A_CLS])]
    np.testing.assert_allclose(d[:, [G.A_CLS, G.A_X, G.A_Y]], [[2, 3.4, 3.4], [4, 3.2, 3.2]], atol=1e-5)
    # Twenty centres on one point: nine cells within one cell's reach, eleven agents lost.
    g, lost = G.encode_grid(_agents([(4, 10.6, 10.6, 0.0, 0.5, 0.6, 1.0)] * 20))
    assert lost == 11 and g[G.CH_OBJ].sum() == 9


def test_boxes_overlap_hand_cases() -> None:
    x = np.array([0.0, 3.0, 10.0, 0.0])
    y = np.array([0.0, 0.0, 0.0, 1.4])
    yaw = np.array([0.0, 0.0, 0.0, np.pi / 2])
    ov = G.boxes_overlap(
        G.box_corners(x, y, yaw, np.array([4.0, 4.0, 4.0, 2.0]), np.array([2.0, 2.0, 2.0, 0.5]))
    )
    assert ov[0, 1] and ov[1, 0]  # 3 m apart, 4 m long: overlap
    assert not ov[0, 2] and not ov[1, 2]
    assert ov[0, 3]  # crossing box
    assert not ov.diagonal().any()
    # A 2 m square and a 45 deg diamond beside it: tip at x +- 1.414 m from its centre.
    for cx, hit in ((2.5, False), (2.3, True)):
        c = G.box_corners(
            np.array([0.0, cx]), np.zeros(2), np.array([0.0, np.pi / 4]), np.full(2, 2.0), np.full(2, 2.0)
        )
        assert G.boxes_overlap(c)[0, 1] == hit


def test_decode_suppresses_duplicates_but_keeps_queued_cars() -> None:
    g, _ = G.encode_grid(_agents([(1, 0.5, 10.5, 0.0, 4.6, 1.9, 0.0), (1, 7.5, 10.5, 0.0, 4.6, 1.9, 0.0)]))
    # A weaker duplicate of the first car 2 m ahead (outside its 3x3 peak neighbourhood).
    g[:, 32 - 3, 32 - 11] = g[:, 32 - 1, 32 - 11]
    g[G.CH_OBJ, 32 - 3, 32 - 11] = 0.8
    d = G.decode_grid(g, 0.5)
    assert len(d) == 2
    np.testing.assert_allclose(np.sort(d[:, G.A_X]), [0.5, 7.5], atol=1e-5)
    assert np.all(d[:, -1] == 1.0)


def test_footprint_covers_box() -> None:
    f = G.footprint(_agents([(3, 0.0, 10.0, 0.0, 12.0, 2.5, 0.0)]))
    assert 30 <= f.sum() <= 60  # 12 x 2.5 m at 1 m/px plus the 0.35 m margin
    assert f[32, 32 - 10] == 1.0 and f[0, 0] == 0.0


def test_neighbouring_pedestrians_survive_but_weak_shoulders_do_not() -> None:
    g, _ = G.encode_grid(_agents([(4, 5.5, 5.5, 0.0, 0.5, 0.6, 1.0), (4, 5.5, 6.5, 0.0, 0.5, 0.6, 1.0)]))
    assert len(G.decode_grid(g, 0.3)) == 2  # adjacent cells, both confident
    r, c = np.argwhere(g[G.CH_OBJ] > 0)[0]
    g[:, r + 1, c] = g[:, r, c]
    g[G.CH_OBJ, r + 1, c] = 0.5  # a weak shoulder below the first one
    assert len(G.decode_grid(g, 0.3)) == 2
    assert len(G.decode_grid(g, 0.3, non_peak_min=0.0)) == 3


def test_overlapping_pedestrians_are_not_suppressed() -> None:
    # Two pedestrians 0.2 m apart (they do overlap at crossings in the simulator), two cars likewise.
    t = _agents([(4, 5.5, 5.5, 0.0, 0.5, 0.6, 1.0), (4, 5.5, 5.3, 0.0, 0.5, 0.6, 1.0),
                 (1, 20.5, 5.5, 0.0, 4.6, 1.9, 0.0), (1, 20.5, 5.3, 0.0, 4.6, 1.9, 0.0)])  # fmt: skip
    d = G.decode_grid(G.encode_grid(t)[0], 0.5)
    assert sorted(d[:, G.A_CLS].tolist()) == [1, 4, 4]


def test_agents_on_the_ego_are_dropped_and_touching_cars_kept() -> None:
    # A car over the ego's own box, a pedestrian beside the ego, a car 8 m ahead.
    t = _agents([(1, 1.5, 0.0, 0.0, 4.6, 1.9, 0.0), (4, 1.0, 3.0, 0.0, 0.5, 0.6, 1.0),
                 (1, 10.5, 0.5, 0.0, 4.6, 1.9, 0.0)])  # fmt: skip
    assert G.overlaps_ego(t).tolist() == [True, False, False]
    g = G.encode_grid(t)[0]
    assert sorted(G.decode_grid(g, 0.5)[:, G.A_X].round(1).tolist()) == [1.0, 10.5]
    assert len(G.decode_grid(g, 0.5, drop_on_ego=False)) == 3
    # Queued cars 5 m apart (4.6 m long) do not overlap, so full-size NMS keeps both.
    q = _agents([(1, 10.5, 0.5, 0.0, 4.6, 1.9, 0.0), (1, 15.5, 0.5, 0.0, 4.6, 1.9, 0.0)])
    assert len(G.decode_grid(G.encode_grid(q)[0], 0.5)) == 2
