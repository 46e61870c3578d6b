"""Realism and compliance metrics of generated scenes (numpy + scipy).

All inputs are ego-frame agent tables (N, AGENT_COLS) of :mod:`prescient.models.scenario_diffusion.grid`.
"""

from __future__ import annotations

import numpy as np

from prescient.models.scenario_diffusion import grid as G
from prescient.sim_sensors.maps import KIND_VEHICLE, MapData

# Fixed Gaussian kernel widths per feature group (a sum of kernels over the listed widths).
MMD_WIDTHS = {
    "position": (2.0, 5.0, 10.0),  # metres
    "heading": (0.25, 0.5, 1.0),  # on (cos, sin)
    "speed": (1.0, 3.0),  # m/s
    "size": (0.5, 2.0),  # metres on (length, width)
}
VEHICLES = (1, 2, 3)


def _features(t: np.ndarray, group: str) -> np.ndarray:
    if group == "position":
        return t[:, [G.A_X, G.A_Y]]
    if group == "heading":
        return np.stack([np.cos(t[:, G.A_YAW]), np.sin(t[:, G.A_YAW])], 1)
    if group == "speed":
        return t[:, [G.A_SPEED]]
    if group == "size":
        return t[:, [G.A_L, G.A_W]]
    raise ValueError(f"unknown feature group {group!r}")


def mmd2(x: np.ndarray, y: np.ndarray, widths: tuple[float, ...]) -> float:
    """Biased squared MMD between samples x (N, D) and y (M, D) with a sum of Gaussian kernels."""
    if len(x) == 0 or len(y) == 0:
        return float("nan")

    def k(a: np.ndarray, b: np.ndarray) -> float:
        d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return float(sum(np.exp(-d2 / (2 * w * w)).mean() for w in widths) / len(widths))

    return k(x, x) + k(y, y) - 2 * k(x, y)


def mmd_table(
    gen: list[np.ndarray], ref: list[np.ndarray], max_agents: int = 1500, seed: int = 0
) -> dict[str, float]:
    """MMD^2 per feature group between the pooled agents of two scene sets (subsampled, seeded)."""
    rng = np.random.default_rng(seed)

    def pool(ts: list[np.ndarray]) -> np.ndarray:
        a = np.concatenate([t[:, : G.AGENT_COLS] for t in ts]) if ts else np.zeros((0, G.AGENT_COLS))
        return a[rng.permutation(len(a))[:max_agents]]

    a, b = pool(gen), pool(ref)
    return {g: mmd2(_features(a, g), _features(b, g), w) for g, w in MMD_WIDTHS.items()}


def on_drivable(t: np.ndarray, map_r: np.ndarray) -> np.ndarray:
    """(N,) bool: centre pixel of each agent lies on the drivable channel (0) of its map raster (N_MAP, H, W)."""
    row = np.clip(np.floor(G.H / 2 - t[:, G.A_X] / G.RES_M).astype(int), 0, G.H - 1)
    col = np.clip(np.floor(G.W / 2 - t[:, G.A_Y] / G.RES_M).astype(int), 0, G.W - 1)
    return map_r[0, row, col] > 0.5


def lane_heading_error(t: np.ndarray, ego_pose: np.ndarray, md: MapData, radius_m: float = 2.0) -> np.ndarray:
    """(N,) smallest |heading - lane direction| (rad) over vehicle-lane segments within ``radius_m``
    of each agent centre; NaN where no lane is that close."""
    road = np.arange(md.n_road)
    lanes = road[md.kind[: md.n_road] == KIND_VEHICLE]
    a = np.concatenate([md.pts[md.off[q] : md.off[q + 1] - 1] for q in lanes])
    v = np.concatenate([np.diff(md.pts[md.off[q] : md.off[q + 1]], axis=0) for q in lanes])
    seg_yaw = np.arctan2(v[:, 1], v[:, 0])
    x0, y0, yaw0 = ego_pose
    c, s = np.cos(yaw0), np.sin(yaw0)
    wx = x0 + c * t[:, G.A_X] - s * t[:, G.A_Y]
    wy = y0 + s * t[:, G.A_X] + c * t[:, G.A_Y]
    out = np.full(len(t), np.nan)
    ll = np.maximum((v**2).sum(1), 1e-12)
    for i in range(len(t)):
        p = np.array([wx[i], wy[i]])
        u = np.clip(((p - a) * v).sum(1) / ll, 0.0, 1.0)
        d = np.linalg.norm(a + u[:, None] * v - p, axis=1)
        near = d <= radius_m
        if near.any():
            dyaw = np.abs((t[i, G.A_YAW] + yaw0 - seg_yaw[near] + np.pi) % (2 * np.pi) - np.pi)
            out[i] = float(dyaw.min())
    return out


def collisions(t: np.ndarray, vehicles_only: bool = False) -> np.ndarray:
    """(N,) bool: the agent's box overlaps another agent's box or the ego's (t = 0).

    With ``vehicles_only`` only vehicle-vehicle and vehicle-ego overlaps count (pedestrians waiting
    at a crossing overlap each other in the simulator itself), and non-vehicles are False.
    """
    n = len(t)
    ov = G.overlaps_with_ego(t)
    if vehicles_only:
        veh = np.append(np.isin(t[:, G.A_CLS], VEHICLES), True)  # the ego is a vehicle
        ov &= veh[:, None] & veh[None, :]
    return ov[:n].any(1)


def scene_stats(tables: list[np.ndarray], maps: list[np.ndarray], poses: list[np.ndarray],
                mds: list[MapData]) -> dict[str, float]:  # fmt: skip
    """Pooled realism statistics of one scene set (vehicles for drivable area and lane heading)."""
    n_veh = n_drv = 0
    lane_err: list[float] = []
    n_coll = n_all = n_veh_coll = 0
    scenes_coll = 0
    for t, m, p, md in zip(tables, maps, poses, mds):
        t = t[:, : G.AGENT_COLS]
        veh = np.isin(t[:, G.A_CLS], VEHICLES)
        n_veh += int(veh.sum())
        n_drv += int(on_drivable(t[veh], m).sum())
        e = lane_heading_error(t[veh], p, md)
        lane_err += list(e[np.isfinite(e)])
        c = collisions(t)
        n_coll += int(c.sum())
        n_veh_coll += int(collisions(t, vehicles_only=True).sum())
        n_all += len(t)
        scenes_coll += int(c.any())
    return {
        "vehicles_on_drivable": n_drv / max(n_veh, 1),
        "lane_heading_err_median_rad": float(np.median(lane_err)) if lane_err else float("nan"),
        "lane_heading_err_over_0.5rad": float(np.mean(np.array(lane_err) > 0.5))
        if lane_err
        else float("nan"),
        "agents_in_collision": n_coll / max(n_all, 1),
        "vehicles_in_collision": n_veh_coll / max(n_veh, 1),
        "scenes_with_collision": scenes_coll / max(len(tables), 1),
        "mean_agents": n_all / max(len(tables), 1),
    }
