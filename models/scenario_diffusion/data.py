"""Training scenes from the simulator's own runs, map rasters, and the spawner baseline.

A scene is taken at sim time t of a run (after a warm-up, so traffic has organised itself): the
agents whose centre lies in the window around an ego (the real ego, plus up to
``pseudo_egos`` random vehicles used as extra viewpoints), with their -2 s / +2 s centres.
Everything is seeded: the same arguments give the same scenes.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from prescient.models.scenario_diffusion import grid as G
from prescient.sim_sensors import (
    layout as SIM,  # SIM.A_*: simulator snapshot columns; G.A_*: scene table columns
)
from prescient.sim_sensors.config import EGO_CENTER_FROM_REAR_AXLE_M, SimConfig
from prescient.sim_sensors.maps import SCENARIOS
from prescient.sim_sensors.scenario_file import TRAJ_DT_S, Scene
from prescient.sim_sensors.simulation import Simulation

log = logging.getLogger(__name__)

MAP_CHANNELS = (
    "drivable_area",
    "lane_area",
    "lane_centerline",
    "lane_heading_cos",
    "lane_heading_sin",
    "bike_lane",
    "crossing",
    "sidewalk",
    "intersection",
)
N_MAP = len(MAP_CHANNELS)
_ALL_OFF = ("camera", "lidar", "radar", "lwir")
_VEHICLES = (SIM.CLS_CAR, SIM.CLS_TRUCK, SIM.CLS_BUS)


class MapRaster:
    """Static map channels (N_MAP, H, W) around an ego pose, one pre-render per map (cached)."""

    def __init__(self) -> None:
        """Empty cache; rasterizers are built on first use of each map."""
        self._r: dict[str, tuple[object, np.ndarray]] = {}

    def __call__(self, map_name: str, ego_pose: np.ndarray) -> np.ndarray:
        """(N_MAP, H, W) float32 map raster of ``map_name`` around the world ego pose (3,)."""
        if map_name not in self._r:
            from prescient.service.raster import RasterConfig, Rasterizer
            from prescient.sim_sensors.maps import build_map

            r = Rasterizer(
                RasterConfig(extent_m=G.EXTENT_M, resolution_m=G.RES_M, history_frames=1), build_map(map_name)
            )
            idx = np.array([r.channel(c) for c in MAP_CHANNELS])
            self._r[map_name] = (r, idx)
        r, idx = self._r[map_name]
        return r.render(None, np.asarray(ego_pose, np.float64))[idx].copy()  # type: ignore[attr-defined]


def agent_table(scene: Scene) -> np.ndarray:
    """(N, AGENT_COLS) ego-frame agent table of a scene (trajectory deltas relative to now)."""
    xy, yaw = scene.to_ego_frame()
    c, s = math.cos(scene.ego_pose[2]), math.sin(scene.ego_pose[2])
    rot = np.array([[c, s], [-s, c]])
    t = np.zeros((scene.n_agents, G.AGENT_COLS))
    t[:, G.A_CLS] = scene.cls
    t[:, G.A_X : G.A_Y + 1] = xy
    t[:, G.A_YAW] = yaw
    t[:, G.A_L : G.A_W + 1] = scene.size_lw_m
    t[:, G.A_SPEED] = scene.speed_mps
    t[:, G.A_PDX : G.A_PDY + 1] = (scene.past_xy_m - scene.xy_m) @ rot.T
    t[:, G.A_FDX : G.A_FDY + 1] = (scene.future_xy_m - scene.xy_m) @ rot.T
    return t


def scene_from_table(map_name: str, ego_pose: np.ndarray, ego_speed_mps: float, table: np.ndarray,
                     score: np.ndarray | None = None, pinned: np.ndarray | None = None,
                     meta: dict | None = None) -> Scene:  # fmt: skip
    """Inverse of :func:`agent_table`: an ego-frame table (N, AGENT_COLS) to a world-frame Scene."""
    x0, y0, yaw0 = (float(v) for v in ego_pose)
    c, s = math.cos(yaw0), math.sin(yaw0)
    rot = np.array([[c, -s], [s, c]])  # world_from_ego rotation
    xy = table[:, G.A_X : G.A_Y + 1] @ rot.T + np.array([x0, y0])
    past = xy + table[:, G.A_PDX : G.A_PDY + 1] @ rot.T
    fut = xy + table[:, G.A_FDX : G.A_FDY + 1] @ rot.T
    yaw = (table[:, G.A_YAW] + yaw0 + np.pi) % (2 * np.pi) - np.pi
    return Scene.from_arrays(map_name, ego_pose, ego_speed_mps, table[:, G.A_CLS].astype(np.int64), xy, yaw,
                             table[:, G.A_L : G.A_W + 1], table[:, G.A_SPEED], past, fut, score, pinned, meta)  # fmt: skip


def _scene_at(map_name: str, snaps: list[np.ndarray], ego_row: np.ndarray, ego_id: int, meta: dict) -> Scene:
    """Scene around ``ego_row`` (a packed snapshot row) from snapshots at t-2, t, t+2 s."""
    past, now, fut = snaps
    yaw = float(ego_row[SIM.A_YAW])
    off = EGO_CENTER_FROM_REAR_AXLE_M
    pose = np.array([ego_row[SIM.A_X] - off * math.cos(yaw), ego_row[SIM.A_Y] - off * math.sin(yaw), yaw])
    speed_e = float(math.hypot(ego_row[SIM.A_VX], ego_row[SIM.A_VY]))
    # A pseudo ego sees the real ego (last row, id 0) as an ordinary car.
    rows = now[now[:, SIM.A_ID] != ego_id] if ego_id >= 0 else now[:-1]
    d = rows[:, SIM.A_X : SIM.A_Y + 1] - pose[:2]
    c, s = math.cos(yaw), math.sin(yaw)
    ex, ey = c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]
    rows = rows[(np.abs(ex) < G.EXTENT_M) & (np.abs(ey) < G.EXTENT_M)]
    xy = rows[:, SIM.A_X : SIM.A_Y + 1]
    v = rows[:, SIM.A_VX : SIM.A_VY + 1]

    def lookup(snap: np.ndarray, sign: float) -> np.ndarray:
        ids = {int(i): j for j, i in enumerate(snap[:, SIM.A_ID])}
        out = xy + sign * TRAJ_DT_S * v
        for j, i in enumerate(rows[:, SIM.A_ID]):
            m = ids.get(int(i))
            if m is not None and snap[m, SIM.A_FLAGS] == rows[j, SIM.A_FLAGS]:
                out[j] = snap[m, SIM.A_X : SIM.A_Y + 1]
        return out

    cls = rows[:, SIM.A_CLS].astype(np.int64)
    return Scene.from_arrays(map_name, pose, speed_e, cls, xy, rows[:, SIM.A_YAW], rows[:, SIM.A_L : SIM.A_W + 1],
                             np.hypot(v[:, 0], v[:, 1]), lookup(past, -1.0), lookup(fut, 1.0), meta=meta)  # fmt: skip


@dataclass(frozen=True)
class RunSpec:
    """One simulator run of the dataset."""

    map_name: str
    seed: int
    n_agents: int
    warmup_s: float
    n_times: int
    pseudo_egos: int


def simulate_scenes(spec: RunSpec, dt_s: float = 0.05, gap_s: float = 4.0) -> list[Scene]:
    """Scenes of one simulator run (sensors off): ``n_times`` instants ``gap_s`` apart, each seen
    from the real ego and up to ``pseudo_egos`` random vehicles.
    """
    cfg = SimConfig(scenario=spec.map_name, seed=spec.seed, n_agents=spec.n_agents, disabled_modalities=_ALL_OFF, dt_s=dt_s)  # fmt: skip
    sim = Simulation(cfg)
    rng = np.random.default_rng(spec.seed * 7919 + 17)
    snaps: dict[int, np.ndarray] = {}
    t_first = spec.warmup_s - TRAJ_DT_S
    t_last = spec.warmup_s + (spec.n_times - 1) * gap_s + TRAJ_DT_S
    wanted = sorted(
        {round(t_first + j * TRAJ_DT_S, 3) for j in range(int(round((t_last - t_first) / TRAJ_DT_S)) + 1)}
    )
    for t in wanted:
        while sim.time_ns < round(t * 1e9) - sim.dt_ns // 2:
            sim.step()
        snaps[int(round(t * 1000))] = sim.snapshot()
    out = []
    for j in range(spec.n_times):
        t = spec.warmup_s + j * gap_s
        key = [int(round((t + d) * 1000)) for d in (-TRAJ_DT_S, 0.0, TRAJ_DT_S)]
        trio = [snaps[q] for q in key]
        now = trio[1]
        meta = {"source": "sim", "seed": spec.seed, "n_agents_cfg": spec.n_agents, "t_s": t}
        out.append(_scene_at(spec.map_name, trio, now[-1], -1, dict(meta, ego="ego")))
        veh = np.nonzero(np.isin(now[:-1, SIM.A_CLS], _VEHICLES))[0]
        for i in rng.permutation(veh)[: spec.pseudo_egos]:
            out.append(
                _scene_at(
                    spec.map_name, trio, now[i], int(now[i, SIM.A_ID]), dict(meta, ego=int(now[i, SIM.A_ID]))
                )
            )
    return out


def run_specs(n_runs_per_map: int, seed0: int, n_times: int = 4, pseudo_egos: int = 2) -> list[RunSpec]:
    """Seeded run list over all maps: agent targets 10..90, warm-ups 10..25 s."""
    rng = np.random.default_rng(seed0)
    out = []
    for m in SCENARIOS:
        for i in range(n_runs_per_map):
            out.append(
                RunSpec(
                    m, seed0 + i, int(rng.integers(10, 91)), float(rng.integers(10, 26)), n_times, pseudo_egos
                )
            )
    return out


def spawner_scene(map_name: str, seed: int, n_agents: int) -> Scene:
    """Baseline: the simulator's own initial spawn (t = 0, no warm-up) around its ego."""
    cfg = SimConfig(scenario=map_name, seed=seed, n_agents=n_agents, disabled_modalities=_ALL_OFF, dt_s=0.05)
    sim = Simulation(cfg)
    now = sim.snapshot()
    past = now.copy()
    past[:, SIM.A_X : SIM.A_Y + 1] -= TRAJ_DT_S * now[:, SIM.A_VX : SIM.A_VY + 1]
    fut = now.copy()
    fut[:, SIM.A_X : SIM.A_Y + 1] += TRAJ_DT_S * now[:, SIM.A_VX : SIM.A_VY + 1]
    return _scene_at(map_name, [past, now, fut], now[-1], -1, {"source": "spawner", "seed": seed})


def scenes_to_arrays(scenes: list[Scene]) -> dict[str, np.ndarray]:
    """Pack scenes as CSR arrays (for ``np.savez``): agents (sum N, AGENT_COLS), offsets, poses, maps."""
    tables = [agent_table(s) for s in scenes]
    off = np.zeros(len(scenes) + 1, np.int64)
    off[1:] = np.cumsum([len(t) for t in tables])
    return {
        "agents": np.concatenate(tables) if tables else np.zeros((0, G.AGENT_COLS)),
        "offsets": off,
        "ego_pose": np.array([s.ego_pose for s in scenes]).reshape(-1, 3),
        "ego_speed_mps": np.array([s.ego_speed_mps for s in scenes]),
        "map_index": np.array([SCENARIOS.index(s.map_name) for s in scenes], np.int64),
    }


def arrays_to_scenes(d: dict[str, np.ndarray]) -> list[Scene]:
    """Inverse of :func:`scenes_to_arrays`."""
    off = d["offsets"]
    return [
        scene_from_table(
            SCENARIOS[int(d["map_index"][i])],
            d["ego_pose"][i],
            float(d["ego_speed_mps"][i]),
            d["agents"][off[i] : off[i + 1]],
        )  # fmt: skip
        for i in range(len(off) - 1)
    ]


def build_dataset(n_runs_per_map: int, seed0: int, n_times: int = 4, pseudo_egos: int = 2) -> list[Scene]:
    """All scenes of :func:`run_specs` (seeded; runs are independent, so splits by ``seed0`` never overlap
    when their seed ranges do not)."""
    out: list[Scene] = []
    for i, spec in enumerate(run_specs(n_runs_per_map, seed0, n_times, pseudo_egos)):
        out += simulate_scenes(spec)
        if i % 50 == 0:
            log.info("dataset: run %d, %d scenes", i, len(out))
    return out


if __name__ == "__main__":
    import argparse

    logging.basicConfig(level=logging.INFO)
    ap = argparse.ArgumentParser(description="simulate training / held-out scenes into an .npz")
    ap.add_argument("--runs-per-map", type=int, default=100)
    ap.add_argument("--seed0", type=int, default=0)
    ap.add_argument("--pseudo-egos", type=int, default=2)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    scenes = build_dataset(a.runs_per_map, a.seed0, pseudo_egos=a.pseudo_egos)
    np.savez_compressed(a.out, **scenes_to_arrays(scenes))
    log.info("wrote %d scenes to %s", len(scenes), a.out)
