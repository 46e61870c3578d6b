"""Conditioning tokens and the YAML token spec of ``prescient scenarios generate``.

Agent token (pins one agent, ego frame): class, position, heading, size, speed, curvature.
Global scene token: the density, i.e. the number of agents whose centre lies in the
64 m x 64 m window around the ego.

Token spec (YAML; every key optional)::

    map: intersection            # must match --map when both are given
    ego:                         # the ego pose (world frame, rear axle); default: a seeded random
      lane: 3                    #   vehicle-lane pose. Either {lane, s_m} (lane index, arc length)
      s_m: 80.0                  #   or {x_m, y_m, yaw_rad}
      speed_mps: 8.0
    density: 20                  # global token; omit for "any density"
    guidance: 2.0                # classifier-free guidance scale (1 = none)
    agents:                      # agent tokens, ego frame (x forward, y left, metres, radians)
      - class: bus               # car|truck|bus|pedestrian|cyclist|animal
        x_m: 14.0
        y_m: -4.0
        yaw_rad: -1.57
        speed_mps: 4.0           # default: class typical
        curvature_1pm: -0.08     # 1/m, + left turn, - right turn; default 0
        length_m: 12.0           # default: class typical
        width_m: 2.5
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prescient.models.scenario_diffusion import grid as G
from prescient.sim_sensors.scenario_file import CLASS_BY_NAME

MAX_AGENT_TOKENS = 8
TOKEN_DIM = 14
GLOBAL_DIM = 2
CURV_SCALE = 10.0
# Typical (length, width, speed) per class id, used for omitted token fields.
CLASS_DEFAULTS = {1: (4.6, 1.85, 8.0), 2: (8.5, 2.5, 8.0), 3: (12.0, 2.52, 7.0), 4: (0.5, 0.6, 1.3),
                  5: (1.8, 0.6, 4.5), 6: (0.8, 0.3, 1.0)}  # fmt: skip


class TokenSpecError(ValueError):
    """A token spec is malformed; the message names the field."""


def curvature_1pm(table: np.ndarray) -> np.ndarray:
    """(N,) signed path curvature (1/m) from the +2 s centre delta of an ego-frame agent table.

    A constant-curvature arc through the origin with heading 0 reaches ``(u, v)`` with
    ``kappa = 2 v / (u^2 + v^2)``; agents moving less than 1 m get 0.
    """
    c, s = np.cos(table[:, G.A_YAW]), np.sin(table[:, G.A_YAW])
    dx, dy = np.nan_to_num(table[:, G.A_FDX]), np.nan_to_num(table[:, G.A_FDY])
    u, v = c * dx + s * dy, -s * dx + c * dy
    d2 = u * u + v * v
    return np.where(d2 > 1.0, 2.0 * v / np.maximum(d2, 1e-9), 0.0)


def agent_tokens(table: np.ndarray, curvature: np.ndarray | None = None) -> np.ndarray:
    """(N, TOKEN_DIM) float32 token features of ego-frame agent rows (N, AGENT_COLS)."""
    n = len(table)
    kappa = curvature_1pm(table) if curvature is None else curvature
    t = np.zeros((n, TOKEN_DIM), np.float32)
    t[np.arange(n), table[:, G.A_CLS].astype(np.int64) - 1] = 1.0
    t[:, 6] = table[:, G.A_X] / G.EXTENT_M
    t[:, 7] = table[:, G.A_Y] / G.EXTENT_M
    t[:, 8] = np.cos(table[:, G.A_YAW])
    t[:, 9] = np.sin(table[:, G.A_YAW])
    t[:, 10] = np.log(table[:, G.A_L])
    t[:, 11] = np.log(table[:, G.A_W])
    t[:, 12] = table[:, G.A_SPEED] / G.SPEED_SCALE_MPS
    t[:, 13] = np.clip(kappa * CURV_SCALE, -3.0, 3.0)
    return t


def token_rows(tokens: np.ndarray) -> np.ndarray:
    """(K, AGENT_COLS) ego-frame agent rows described by agent tokens (K, TOKEN_DIM).

    The inverse of :func:`agent_tokens`, except the -2 s / +2 s centre deltas, which are rebuilt
    from speed and curvature (a constant-curvature arc at constant speed): a token does not carry
    the real trajectory, so generation and training both see rows made this way.
    """
    k = len(tokens)
    rows = np.zeros((k, G.AGENT_COLS))
    if k == 0:
        return rows
    rows[:, G.A_CLS] = np.argmax(tokens[:, :6], axis=1) + 1
    rows[:, G.A_X] = tokens[:, 6] * G.EXTENT_M
    rows[:, G.A_Y] = tokens[:, 7] * G.EXTENT_M
    yaw = np.arctan2(tokens[:, 9], tokens[:, 8])
    rows[:, G.A_YAW] = yaw
    rows[:, G.A_L], rows[:, G.A_W] = np.exp(tokens[:, 10]), np.exp(tokens[:, 11])
    rows[:, G.A_SPEED] = tokens[:, 12] * G.SPEED_SCALE_MPS
    kappa = tokens[:, 13].astype(np.float64) / CURV_SCALE
    c, sn = np.cos(yaw), np.sin(yaw)
    for col, sign in ((G.A_PDX, -1.0), (G.A_FDX, 1.0)):
        arc = sign * 2.0 * rows[:, G.A_SPEED]
        straight = np.abs(kappa) < 1e-6
        ks = np.where(straight, 1.0, kappa)
        u = np.where(straight, arc, np.sin(ks * arc) / ks)
        v = np.where(straight, 0.0, (1.0 - np.cos(ks * arc)) / ks)
        rows[:, col], rows[:, col + 1] = c * u - sn * v, sn * u + c * v
    return rows


def pin_random_agents(tables: list[np.ndarray], rng: np.random.Generator,
                      max_pins: int = 3) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:  # fmt: skip
    """Pin 1..max_pins random agents of each scene (evaluation of token compliance).

    Returns:
        (pinned rows per scene, tokens (B, MAX_AGENT_TOKENS, TOKEN_DIM), mask (B, MAX_AGENT_TOKENS)).
    """
    tok = np.zeros((len(tables), MAX_AGENT_TOKENS, TOKEN_DIM), np.float32)
    mask = np.zeros((len(tables), MAX_AGENT_TOKENS), bool)
    pins = []
    for i, t in enumerate(tables):
        k = min(len(t), int(rng.integers(1, max_pins + 1)))
        p = t[rng.choice(len(t), k, replace=False)] if k else t[:0]
        pins.append(p)
        tok[i, :k], mask[i, :k] = agent_tokens(p), True
    return pins, tok, mask


def global_token(n_agents: float) -> np.ndarray:
    """(GLOBAL_DIM,) float32 density features of a scene with ``n_agents`` agents in the window."""
    return np.array([n_agents / 30.0, math.log1p(max(n_agents, 0.0)) / 4.0], np.float32)


@dataclass
class TokenSpec:
    """A parsed token spec (see the module docstring).

    Attributes:
        agents: (K, AGENT_COLS) ego-frame pinned agents (trajectory columns unused).
        curvature_1pm: (K,) curvature of each pinned agent.
        density: number of agents wanted in the window, or None (unconditional).
        guidance: classifier-free guidance scale.
        map_name: map named in the spec, or None.
        ego: raw ego entry (dict) or None.
    """

    agents: np.ndarray = field(default_factory=lambda: np.zeros((0, G.AGENT_COLS)))
    curvature_1pm: np.ndarray = field(default_factory=lambda: np.zeros(0))
    density: float | None = None
    guidance: float = 1.0
    map_name: str | None = None
    ego: dict[str, Any] | None = None

    def tokens(self) -> tuple[np.ndarray, np.ndarray]:
        """Padded agent tokens (MAX_AGENT_TOKENS, TOKEN_DIM) and their mask (MAX_AGENT_TOKENS,)."""
        tok = np.zeros((MAX_AGENT_TOKENS, TOKEN_DIM), np.float32)
        mask = np.zeros(MAX_AGENT_TOKENS, bool)
        k = len(self.agents)
        if k:
            tok[:k] = agent_tokens(self.agents, self.curvature_1pm)
            mask[:k] = True
        return tok, mask


def _num(d: dict, key: str, where: str, default: float | None = None) -> float:
    if key not in d:
        if default is None:
            raise TokenSpecError(f"{where}: missing {key!r}")
        return default
    try:
        v = float(d[key])
    except (TypeError, ValueError) as e:
        raise TokenSpecError(f"{where}: {key} must be a number, got {d[key]!r}") from e
    if not math.isfinite(v):
        raise TokenSpecError(f"{where}: {key} must be finite, got {v}")
    return v


def _agent_token(a: Any, w: str) -> tuple[np.ndarray, float]:
    """One agent token: its (AGENT_COLS,) row and its curvature (1/m). ``w`` names it in errors."""
    if not isinstance(a, dict):
        raise TokenSpecError(f"{w}: expected a mapping")
    name = str(a.get("class", "")).lower()
    if name not in CLASS_BY_NAME:
        raise TokenSpecError(
            f"{w}: unknown class {a.get('class')!r}; expected one of {', '.join(CLASS_BY_NAME)}"
        )
    cid = int(CLASS_BY_NAME[name])
    dl, dw, dv = CLASS_DEFAULTS[cid]
    row = np.zeros(G.AGENT_COLS)
    row[G.A_CLS] = cid
    row[G.A_X], row[G.A_Y] = _num(a, "x_m", w), _num(a, "y_m", w)
    if max(abs(row[G.A_X]), abs(row[G.A_Y])) >= G.EXTENT_M:
        raise TokenSpecError(
            f"{w}: position ({row[G.A_X]}, {row[G.A_Y]}) outside the +-{G.EXTENT_M:g} m window"
        )
    row[G.A_YAW] = _num(a, "yaw_rad", w)
    row[G.A_L], row[G.A_W] = _num(a, "length_m", w, dl), _num(a, "width_m", w, dw)
    if row[G.A_L] <= 0 or row[G.A_W] <= 0:
        raise TokenSpecError(f"{w}: length_m and width_m must be > 0")
    row[G.A_SPEED] = _num(a, "speed_mps", w, dv)
    return row, _num(a, "curvature_1pm", w, 0.0)


def parse_spec(obj: Any, where: str = "token spec") -> TokenSpec:
    """Validate a token spec object (the YAML's top level).

    Raises:
        TokenSpecError: naming the offending field.
    """
    if obj is None:
        return TokenSpec()
    if not isinstance(obj, dict):
        raise TokenSpecError(f"{where}: expected a mapping at the top level, got {type(obj).__name__}")
    unknown = set(obj) - {"map", "ego", "density", "guidance", "agents"}
    if unknown:
        raise TokenSpecError(f"{where}: unknown keys {sorted(unknown)}")
    spec = TokenSpec()
    spec.map_name = str(obj["map"]) if "map" in obj else None
    if "ego" in obj:
        if not isinstance(obj["ego"], dict):
            raise TokenSpecError(f"{where}: ego must be a mapping")
        spec.ego = dict(obj["ego"])
    if obj.get("density") is not None:
        spec.density = _num(obj, "density", where)
        if spec.density < 0:
            raise TokenSpecError(f"{where}: density must be >= 0, got {spec.density}")
    spec.guidance = _num(obj, "guidance", where, 1.0)
    agents = obj.get("agents") or []
    if not isinstance(agents, list):
        raise TokenSpecError(f"{where}: agents must be a list")
    if len(agents) > MAX_AGENT_TOKENS:
        raise TokenSpecError(f"{where}: at most {MAX_AGENT_TOKENS} agent tokens, got {len(agents)}")
    rows, kappa = [], []
    for i, a in enumerate(agents):
        row, k = _agent_token(a, f"{where}: agents[{i}]")
        rows.append(row)
        kappa.append(k)
    if rows:
        spec.agents = np.array(rows)
        spec.curvature_1pm = np.array(kappa)
    return spec


def load_spec(path: str | Path) -> TokenSpec:
    """Read a YAML token spec.

    Raises:
        TokenSpecError: unreadable file, bad YAML or a malformed spec.
    """
    import yaml

    p = Path(path)
    try:
        obj = yaml.safe_load(p.read_text())
    except OSError as e:
        raise TokenSpecError(f"{p}: cannot read: {e.strerror or e}") from e
    except yaml.YAMLError as e:
        raise TokenSpecError(f"{p}: bad YAML: {e}") from e
    return parse_spec(obj, where=str(p))
