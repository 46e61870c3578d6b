"""Scene generation: tokens + map -> DDIM in the latent -> VAE decoder -> detections -> Scene.

Public API::

    gen = ScenarioGenerator.load()                     # shipped weights
    scenes = gen.generate("intersection", spec, n=100, seed=0)
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from prescient.models.scenario_diffusion import grid as G
from prescient.models.scenario_diffusion.data import MapRaster, scene_from_table
from prescient.models.scenario_diffusion.model import (
    LatentUNet,
    ModelConfig,
    SceneVAE,
    cosine_alpha_bar,
    ddim_sample,
    grid_probabilities,
    pin_condition,
)
from prescient.models.scenario_diffusion.tokens import (
    GLOBAL_DIM,
    TokenSpec,
    TokenSpecError,
    global_token,
    token_rows,
)
from prescient.sim_sensors.config import EGO_CENTER_FROM_REAR_AXLE_M
from prescient.sim_sensors.maps import KIND_VEHICLE, SCENARIOS, build_map_data
from prescient.sim_sensors.scenario_file import Scene

log = logging.getLogger(__name__)

WEIGHTS_PATH = Path(__file__).resolve().parent / "weights.pt"
PIN_MAX_DIST_M = 2.2
PIN_MAX_DYAW_RAD = 0.2


class WeightsError(RuntimeError):
    """The weights file is missing or does not fit the networks."""


def resolve_ego(map_name: str, ego: dict | None, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """World ego pose (3,) (rear axle) and speed from a token-spec ``ego`` entry.

    ``{x_m, y_m, yaw_rad}`` is used as is; ``{lane, s_m}`` puts the ego box centre on that lane;
    None draws a seeded random pose on a non-intersection vehicle lane, 8 m/s.

    Raises:
        TokenSpecError: bad lane index or missing fields.
    """
    md = build_map_data(map_name)
    ego = dict(ego or {})
    speed = float(ego.get("speed_mps", 8.0))
    if {"x_m", "y_m", "yaw_rad"} <= set(ego):
        return np.array([float(ego["x_m"]), float(ego["y_m"]), float(ego["yaw_rad"])]), speed
    if "lane" in ego:
        lane = int(ego["lane"])
        if not 0 <= lane < md.n_road or md.kind[lane] != KIND_VEHICLE:
            raise TokenSpecError(f"ego.lane {lane} is not a vehicle lane of {map_name}")
        s = float(ego.get("s_m", 0.5 * md.length[lane]))
    elif ego.keys() - {"speed_mps"}:
        raise TokenSpecError("ego: give {x_m, y_m, yaw_rad} or {lane, s_m}")
    else:
        road = np.arange(md.n_road)
        lanes = road[(md.kind[: md.n_road] == KIND_VEHICLE) & ~md.is_intersection[: md.n_road]]
        lane = int(lanes[int(rng.integers(len(lanes)))])
        s = float(rng.uniform(0.2, 0.8) * md.length[lane])
    p = md.lane_points(lane)
    cs = md.cum_s[md.off[lane] : md.off[lane + 1]]
    x, y = np.interp(s, cs, p[:, 0]), np.interp(s, cs, p[:, 1])
    yaw = math.atan2(np.interp(s + 1, cs, p[:, 1]) - np.interp(s - 1, cs, p[:, 1]),
                     np.interp(s + 1, cs, p[:, 0]) - np.interp(s - 1, cs, p[:, 0]))  # fmt: skip
    off = EGO_CENTER_FROM_REAR_AXLE_M
    return np.array([x - off * math.cos(yaw), y - off * math.sin(yaw), yaw]), speed


def match_pins(pins: np.ndarray, agents: np.ndarray) -> np.ndarray:
    """(K,) index of the decoded agent answering each pinned token (-1 if none) by Hungarian matching.

    A pin is answered by an agent of the same class within PIN_MAX_DIST_M and PIN_MAX_DYAW_RAD.
    """
    from scipy.optimize import linear_sum_assignment

    out = np.full(len(pins), -1, np.int64)
    if len(pins) == 0 or len(agents) == 0:
        return out
    d = np.hypot(pins[:, None, G.A_X] - agents[None, :, G.A_X], pins[:, None, G.A_Y] - agents[None, :, G.A_Y])
    dyaw = np.abs((pins[:, None, G.A_YAW] - agents[None, :, G.A_YAW] + np.pi) % (2 * np.pi) - np.pi)
    ok = (
        (d <= PIN_MAX_DIST_M)
        & (dyaw <= PIN_MAX_DYAW_RAD)
        & (pins[:, None, G.A_CLS] == agents[None, :, G.A_CLS])
    )
    r, c = linear_sum_assignment(np.where(ok, d + dyaw, 1e6))
    good = ok[r, c]
    out[r[good]] = c[good]
    return out


def pin_rows(spec: TokenSpec) -> np.ndarray:
    """Ego-frame agent rows of the spec's pins with -2 s / +2 s centres from speed and curvature."""
    tok, mask = spec.tokens()
    return token_rows(tok[mask])


def insert_pins(table: np.ndarray, pins: np.ndarray, hit: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Add the pins the model missed (``hit`` < 0) to a decoded table (N, AGENT_COLS + 1), removing
    generated agents whose boxes overlap them.

    Returns:
        (new table, (N',) bool pinned flags, number inserted).
    """
    pinned = np.zeros(len(table), bool)
    pinned[hit[hit >= 0]] = True
    miss = pins[hit < 0]
    if len(miss) == 0:
        return table, pinned, 0
    add = np.concatenate([miss, np.ones((len(miss), 1))], 1)
    allr = np.concatenate([table, add])
    ov = G.boxes_overlap(
        G.box_corners(allr[:, G.A_X], allr[:, G.A_Y], allr[:, G.A_YAW], allr[:, G.A_L], allr[:, G.A_W])
    )
    n = len(table)
    keep = ~ov[:n, n:].any(1) | pinned  # a pin the model did find stays
    return (
        np.concatenate([table[keep], add]),
        np.concatenate([pinned[keep], np.ones(len(add), bool)]),
        len(add),
    )


class ScenarioGenerator:
    """Trained VAE + latent U-Net; see the module docstring."""

    def __init__(self, vae: SceneVAE, unet: LatentUNet, latent_scale: float, cfg: ModelConfig,
                 info: dict | None = None) -> None:  # fmt: skip
        self.vae, self.unet = vae.eval(), unet.eval()
        self.latent_scale = float(latent_scale)
        self.cfg = cfg
        self.info = info or {}
        self.alpha_bar = cosine_alpha_bar(cfg.diffusion_steps)
        self.map_raster = MapRaster()

    @staticmethod
    def load(path: str | Path = WEIGHTS_PATH) -> ScenarioGenerator:
        """Load shipped weights (tensors + JSON only: ``torch.load(weights_only=True)``).

        Raises:
            WeightsError: missing file or mismatching networks.
        """
        p = Path(path)
        if not p.is_file():
            raise WeightsError(
                f"scenario weights not found: {p} (train with python -m prescient.models.scenario_diffusion.train)"
            )
        try:
            d = torch.load(p, weights_only=True, map_location="cpu")
            info = json.loads(d["info_json"])
            cfg = ModelConfig(**{"pin_raster": False, "pin_latent": False, **info["config"]})
            vae, unet = SceneVAE(cfg), LatentUNet(cfg)
            vae.load_state_dict(d["vae"])
            unet.load_state_dict(d["unet"])
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            raise WeightsError(f"{p}: cannot load scenario weights: {e}") from e
        return ScenarioGenerator(vae, unet, float(d["latent_scale"]), cfg, info)

    @torch.no_grad()
    def generate_tables(self, map_rasters: np.ndarray, tokens: np.ndarray, token_mask: np.ndarray,
                        density: np.ndarray | None, seed: int, n_steps: int = 25, guidance: float = 1.0,
                        threshold: float = 0.5, inpaint_pins: bool = True) -> list[np.ndarray]:  # fmt: skip
        """Batch generation in the ego frame.

        Args:
            map_rasters: (B, N_MAP, H, W) float32 map rasters.
            tokens: (B, K, TOKEN_DIM) agent tokens; token_mask: (B, K) bool.
            density: (B,) wanted agent counts, NaN (or None) = unconditional.
            seed: noise seed.
            inpaint_pins: also paste the pins' latent at every DDIM step (see ``ddim_sample``).

        Returns:
            B agent tables (N, AGENT_COLS + 1), ego frame, last column the score.
        """
        b = len(map_rasters)
        m = torch.from_numpy(np.ascontiguousarray(map_rasters, np.float32))
        glob = np.zeros((b, GLOBAL_DIM), np.float32)
        gmask = np.zeros(b, bool)
        if density is not None:
            for i, v in enumerate(density):
                if np.isfinite(v):
                    glob[i], gmask[i] = global_token(float(v)), True
        gen = torch.Generator().manual_seed(int(seed))
        pins = None
        if self.cfg.pin_latent:
            pins = pin_condition(self.vae, [token_rows(t[k]) for t, k in zip(tokens, token_mask)], m,
                                 self.latent_scale)  # fmt: skip
        z = ddim_sample(self.unet, self.alpha_bar, F.avg_pool2d(m, 4), torch.from_numpy(tokens),
                        torch.from_numpy(token_mask), torch.from_numpy(glob), torch.from_numpy(gmask),
                        n_steps=n_steps, guidance=guidance, generator=gen, pin_cond=pins,
                        inpaint_pins=inpaint_pins)  # fmt: skip
        out = grid_probabilities(self.vae.decode(z / self.latent_scale, m)).numpy()
        return [G.decode_grid(o, threshold) for o in out]

    def generate(self, map_name: str, spec: TokenSpec | None = None, n: int = 1, seed: int = 0,
                 n_steps: int = 25, threshold: float = 0.5, batch: int = 32,
                 ego_pose: np.ndarray | None = None, enforce_pins: bool = False,
                 inpaint_pins: bool = True) -> list[Scene]:  # fmt: skip
        """``n`` scenes on ``map_name`` answering ``spec`` (world frame, with pinned flags and timing in meta).

        The ego pose comes from ``ego_pose``, else the spec's ``ego`` entry, else a seeded random lane
        pose (one per scene). ``inpaint_pins`` pastes the pins' latent at every DDIM step (see
        :func:`prescient.models.scenario_diffusion.model.ddim_sample`); without it only the learned
        conditioning places them. ``pins_found`` in each scene's meta counts the pins the model
        produced (2.2 m, 0.2 rad, same class); with ``enforce_pins`` the missing ones are then
        inserted as boxes (overlapping generated agents removed) and counted in ``pins_inserted``.

        Raises:
            TokenSpecError: unknown map or a spec for another map.
        """
        spec = spec or TokenSpec()
        if map_name not in SCENARIOS:
            raise TokenSpecError(f"unknown map {map_name!r}; expected one of {', '.join(SCENARIOS)}")
        if spec.map_name is not None and spec.map_name != map_name:
            raise TokenSpecError(f"the token spec is for map {spec.map_name!r}, not {map_name!r}")
        rng = np.random.default_rng(seed)
        tok, mask = spec.tokens()
        pins = pin_rows(spec)
        scenes: list[Scene] = []
        for s0 in range(0, n, batch):
            nb = min(batch, n - s0)
            poses, speeds = [], []
            for _ in range(nb):
                if ego_pose is not None:
                    poses.append(np.asarray(ego_pose, np.float64))
                    speeds.append(float((spec.ego or {}).get("speed_mps", 8.0)))
                else:
                    p, v = resolve_ego(map_name, spec.ego, rng)
                    poses.append(p)
                    speeds.append(v)
            maps = np.stack([self.map_raster(map_name, p) for p in poses])
            dens = np.full(nb, np.nan if spec.density is None else spec.density)
            t0 = time.perf_counter()
            tables = self.generate_tables(maps, np.repeat(tok[None], nb, 0), np.repeat(mask[None], nb, 0), dens,
                                          seed * 100003 + s0, n_steps, spec.guidance, threshold,
                                          inpaint_pins=inpaint_pins)  # fmt: skip
            dt = (time.perf_counter() - t0) / nb
            for j, t in enumerate(tables):
                hit = match_pins(spec.agents, t)
                n_ins = 0
                if enforce_pins:
                    t, pinned, n_ins = insert_pins(t, pins, hit)
                else:
                    pinned = np.zeros(len(t), bool)
                    pinned[hit[hit >= 0]] = True
                meta = {"source": "scenario_diffusion", "seed": seed, "index": s0 + j, "gen_time_s": round(dt, 4),
                        "pins_found": int((hit >= 0).sum()), "pins_requested": len(spec.agents), "pins_inserted": n_ins,
                        "density_token": spec.density, "guidance": spec.guidance, "ddim_steps": n_steps,
                        "inpaint_pins": inpaint_pins,
                        "pins": np.round(pins[:, : G.A_W + 1], 3).tolist()}  # fmt: skip
                scenes.append(scene_from_table(map_name, poses[j], speeds[j], t[:, : G.AGENT_COLS],
                                               t[:, G.AGENT_COLS], pinned, meta))  # fmt: skip
        return scenes
