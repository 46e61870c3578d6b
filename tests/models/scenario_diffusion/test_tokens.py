"""Token features and the YAML token spec."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from prescient.models.scenario_diffusion import grid as G
from prescient.models.scenario_diffusion.tokens import (
    MAX_AGENT_TOKENS,
    TokenSpecError,
    agent_tokens,
    curvature_1pm,
    load_spec,
    parse_spec,
)

EXAMPLE = (
    Path(__file__).resolve().parents[3] / "models" / "scenario_diffusion" / "examples" / "bus_right_turn.yaml"
)


def test_curvature_sign_and_value() -> None:
    r = 10.0
    t = np.zeros((3, G.AGENT_COLS))
    t[:, G.A_CLS], t[:, G.A_L], t[:, G.A_W] = 1, 4.5, 1.9
    t[:, G.A_YAW] = 0.7  # any heading: curvature is measured in the agent frame
    for i, (sign, arc) in enumerate(((1, 8.0), (-1, 8.0), (0, 8.0))):
        if sign == 0:
            u, v = arc, 0.0
        else:
            a = arc / r
            u, v = r * np.sin(a), sign * r * (1 - np.cos(a))
        c, s = np.cos(0.7), np.sin(0.7)
        t[i, G.A_FDX], t[i, G.A_FDY] = c * u - s * v, s * u + c * v
    np.testing.assert_allclose(curvature_1pm(t), [0.1, -0.1, 0.0], atol=1e-9)
    tok = agent_tokens(t)
    assert tok.shape == (3, 14) and np.all(tok[:, 0] == 1.0)


def test_example_spec_parses() -> None:
    spec = load_spec(EXAMPLE)
    assert spec.map_name == "intersection" and spec.density == 14 and spec.guidance == 2.0
    assert spec.agents.shape == (1, G.AGENT_COLS) and spec.agents[0, G.A_CLS] == 3
    assert spec.curvature_1pm[0] < 0
    tok, mask = spec.tokens()
    assert tok.shape == (MAX_AGENT_TOKENS, 14) and mask.sum() == 1 and tok[0, 13] == pytest.approx(-1.1)


def test_defaults_fill_size_and_speed() -> None:
    spec = parse_spec({"agents": [{"class": "Pedestrian", "x_m": 3, "y_m": 4, "yaw_rad": 0}]})
    assert spec.agents[0, G.A_L] == 0.5 and spec.density is None and spec.guidance == 1.0


@pytest.mark.parametrize(
    ("obj", "msg"),
    [
        ([1, 2], "expected a mapping"),
        ({"colour": 1}, "unknown keys"),
        (
            {"agents": [{"class": "tank", "x_m": 0, "y_m": 0, "yaw_rad": 0}]},
            r"agents\[0\]: unknown class 'tank'",
        ),
        ({"agents": [{"class": "car", "x_m": 0, "yaw_rad": 0}]}, r"agents\[0\]: missing 'y_m'"),
        ({"agents": [{"class": "car", "x_m": 50, "y_m": 0, "yaw_rad": 0}]}, "outside the"),
        ({"agents": [{"class": "car", "x_m": "a", "y_m": 0, "yaw_rad": 0}]}, "x_m must be a number"),
        ({"density": -3}, "density must be >= 0"),
        ({"agents": [{"class": "car", "x_m": 0, "y_m": 0, "yaw_rad": 0}] * 9}, "at most 8"),
    ],
)
def test_bad_specs_name_the_field(obj, msg) -> None:
    with pytest.raises(TokenSpecError, match=msg):
        parse_spec(obj)


def test_bad_yaml(tmp_path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text("agents: [\n")
    with pytest.raises(TokenSpecError, match="bad YAML"):
        load_spec(p)


def test_resolve_ego() -> None:
    from prescient.models.scenario_diffusion.generate import resolve_ego

    rng = np.random.default_rng(0)
    pose, v = resolve_ego("intersection", {"lane": 14, "s_m": 118.0, "speed_mps": 6.0}, rng)
    # Lane 14 runs north at x = 5.2; the box centre at y = -16, the rear axle 1.4 m behind.
    np.testing.assert_allclose(pose, [5.2, -17.4, np.pi / 2], atol=0.05)
    assert v == 6.0
    pose, _ = resolve_ego("arterial", {"x_m": 1, "y_m": 2, "yaw_rad": 3}, rng)
    assert pose.tolist() == [1.0, 2.0, 3.0]
    a = resolve_ego("roundabout", None, np.random.default_rng(1))[0]
    b = resolve_ego("roundabout", None, np.random.default_rng(1))[0]
    assert np.array_equal(a, b)
    with pytest.raises(TokenSpecError, match="not a vehicle lane"):
        resolve_ego("intersection", {"lane": 999}, rng)


def test_pin_rows_and_insertion() -> None:
    from prescient.models.scenario_diffusion.generate import insert_pins, pin_rows

    spec = parse_spec({"agents": [{"class": "bus", "x_m": 10, "y_m": 0, "yaw_rad": 0, "speed_mps": 5,
                                   "curvature_1pm": -0.1}]})  # fmt: skip
    rows = pin_rows(spec)
    # 10 m along a right-turning arc of radius 10 m: ahead and to the right (ego y < 0).
    assert rows[0, G.A_FDX] == pytest.approx(10 * np.sin(1.0)) and rows[0, G.A_FDY] == pytest.approx(
        -10 * (1 - np.cos(1.0))
    )
    assert rows[0, G.A_PDX] == pytest.approx(-10 * np.sin(1.0)) and rows[0, G.A_PDY] == pytest.approx(
        -10 * (1 - np.cos(1.0))
    )
    gen = np.zeros((2, G.AGENT_COLS + 1))
    gen[:, G.A_CLS], gen[:, G.A_L], gen[:, G.A_W], gen[:, -1] = 1, 4.5, 1.9, 0.9
    gen[:, G.A_X] = [12.0, -20.0]  # the first overlaps the inserted bus
    t, pinned, n = insert_pins(gen, rows, np.array([-1]))
    assert n == 1 and len(t) == 2 and pinned.tolist() == [False, True] and t[0, G.A_X] == -20.0
