"""Simulation training data: the onboard pipeline's own rasters and inputs, with ground-truth futures.

Each run (scenario, seed, day/night) is simulated twice with the same config (the simulator is a
pure function of it). Pass 1 records every 100 ms ``GroundTruth`` and ``EgoState``. Pass 2 feeds
every message into the real onboard :class:`prescient.service.pipeline.Pipeline` (no model, deadline guard
off), so tracker and rasterizer are exactly the onboard ones. Every ``stride_ticks``-th tick whose
8 s future lies inside the run becomes a sample:

* ``raster``: the pipeline's raster, with the ``ego_plan`` channel drawn from the ego's *actual*
  future positions (80 points, 0.1 s apart, world frame) through the same ``Pipeline._render``
  call that :meth:`Pipeline.conditional` uses. The ``ego_plan`` channel as drawn from the
  simulator's route (``EgoState.plan_xy_m``, what a plain tick renders) is kept separately
  (``route_*``), so training can mix both plan kinds (see :mod:`prescient.models.train_sim`).
* agent inputs: :func:`prescient.service.model_io.features.agent_inputs_from_tracks` with the default
  :class:`prescient.service.model_io.config.ModelConfig` (``n_max`` 128, ``hist_steps`` 20, ``plan_points`` 16),
  exactly what :meth:`prescient.service.predictor.OnnxPredictor.predict` builds; slots are nearest first,
  so truncating to a smaller ``n_max`` equals building with it.
* targets: each input track is matched to the nearest ground-truth agent within
  ``match_radius_m`` at the tick (one-to-one, Hungarian); that agent id is then followed through
  the future ground truth: ``target_xy_m`` (N, 80, 2) world frame with ``target_valid`` (False
  where the agent left the simulation or the track matched nobody).

Shards: one ``<scenario>_s<seed>.npz`` per run (written with ``np.savez_compressed``, read with
``allow_pickle=False``). Rasters are stored sparse: flat indices (int32) and float16 values of the
non-zero pixels, CSR offsets per sample (rasters are ~98 % zeros). ``FORMAT_VERSION`` is stored in
each shard; bump it when the layout changes.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

from prescient.bus import messages as m
from prescient.service.model_io.config import ModelConfig
from prescient.service.model_io.features import agent_inputs_from_tracks

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
NS_PER_S = 1_000_000_000
STATE_PERIOD_NS = 100_000_000
FUTURE_STEPS = m.PRED_HORIZON_STEPS  # 80 at 0.1 s
STORE_N_MAX = 128  # slots stored per sample (nearest first)

Float32Array = npt.NDArray[np.float32]


class SimDataError(ValueError):
    """A data directory or shard is missing, malformed or of another format version."""


@dataclass(frozen=True)
class RunSpec:
    """One simulated run.

    Attributes:
        scenario: one of :data:`prescient.sim_sensors.SCENARIOS`.
        seed: simulator seed.
        night: darkness on.
        duration_s: simulated seconds.
        n_agents: target agent count.
    """

    scenario: str
    seed: int
    night: bool
    duration_s: float
    n_agents: int

    @property
    def name(self) -> str:
        """Shard stem, e.g. ``intersection_s0007``."""
        return f"{self.scenario}_s{self.seed:04d}"


@dataclass(frozen=True)
class GenConfig:
    """How samples are cut from a run.

    Attributes:
        stride_ticks: keep every ``stride_ticks``-th 100 ms tick (decorrelation).
        warmup_s: skip ticks before this sim time (tracks need history).
        match_radius_m: max track-to-ground-truth distance at the tick.
        use_lidar: render LiDAR splats (as onboard).
    """

    stride_ticks: int = 10
    warmup_s: float = 2.0
    match_radius_m: float = 2.0
    use_lidar: bool = True


def parse_seeds(text: str) -> list[int]:
    """``"0-29"`` / ``"0,3,5-7"`` -> sorted unique seeds.

    Raises:
        SimDataError: on a malformed range, naming it.
    """
    out: set[int] = set()
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        try:
            if "-" in part:
                a, b = part.split("-", 1)
                lo, hi = int(a), int(b)
                if hi < lo:
                    raise ValueError
                out.update(range(lo, hi + 1))
            else:
                out.add(int(part))
        except ValueError as e:
            raise SimDataError(f"bad seed range {part!r}; expected e.g. 0-29 or 1,4,7") from e
    if not out:
        raise SimDataError(f"no seeds in {text!r}")
    return sorted(out)


def plan_runs(
    scenarios: Sequence[str],
    seeds: Sequence[int],
    duration_s: float,
    n_agents: int,
    night_fraction: float,
) -> list[RunSpec]:
    """The runs to simulate, seed-major; night is drawn per (scenario, seed) from a seeded generator."""
    from prescient.sim_sensors import SCENARIOS

    bad = [s for s in scenarios if s not in SCENARIOS]
    if bad:
        raise SimDataError(f"unknown scenarios {bad}; expected some of {list(SCENARIOS)}")
    if not 0.0 <= night_fraction <= 1.0:
        raise SimDataError(f"night fraction must be in [0, 1], got {night_fraction}")
    runs = []
    # Seed-major: a partial generation still covers every scenario.
    for seed in seeds:
        for scenario in scenarios:
            s_idx = list(SCENARIOS).index(scenario)
            night = bool(np.random.default_rng([seed, s_idx, 7]).random() < night_fraction)
            runs.append(RunSpec(scenario, int(seed), night, float(duration_s), int(n_agents)))
    return runs


def _sparse(dense: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    flat = dense.reshape(-1)
    idx = np.flatnonzero(flat).astype(np.int32)
    return idx, flat[idx].astype(np.float16)


def match_tracks_to_truth(
    track_xy_m: np.ndarray, gt_xy_m: np.ndarray, radius_m: float
) -> npt.NDArray[np.int64]:
    """One-to-one nearest matching within ``radius_m`` (Hungarian on distances).

    Args:
        track_xy_m: (N, 2) world. gt_xy_m: (G, 2) world. radius_m: gate.

    Returns:
        (N,) index into ``gt_xy_m`` or -1.
    """
    out = np.full(track_xy_m.shape[0], -1, np.int64)
    if track_xy_m.shape[0] == 0 or gt_xy_m.shape[0] == 0:
        return out
    d = np.linalg.norm(track_xy_m[:, None, :] - gt_xy_m[None, :, :], axis=-1)
    cost = np.where(d <= radius_m, d, 1e6)
    rows, cols = linear_sum_assignment(cost)
    ok = d[rows, cols] <= radius_m
    out[rows[ok]] = cols[ok]
    return out


def _per_slot(arr: np.ndarray, valid_slots: np.ndarray, sel: np.ndarray, fill: float) -> np.ndarray:
    """(STORE_N_MAX, ...) array: the caller's rows ``sel`` in the valid slots, ``fill`` elsewhere."""
    out = np.full((STORE_N_MAX, *arr.shape[1:]), fill, arr.dtype)
    out[valid_slots] = arr[sel]
    return out


def _record_truth(run: RunSpec) -> tuple[dict[int, m.GroundTruth], dict[int, np.ndarray]]:
    """Pass 1: GroundTruth and ego pose by stamp."""
    from prescient.sim_sensors import SimConfig, Simulation

    sim = Simulation(SimConfig(scenario=run.scenario, seed=run.seed, n_agents=run.n_agents, night=run.night))
    gts: dict[int, m.GroundTruth] = {}
    ego: dict[int, np.ndarray] = {}
    for msgs in sim.run(run.duration_s):
        for msg in msgs:
            if isinstance(msg, m.GroundTruth):
                gts[msg.header.stamp_ns] = msg
            elif isinstance(msg, m.EgoState):
                ego[msg.header.stamp_ns] = np.asarray(msg.pose, np.float64)
    return gts, ego


def generate_run(run: RunSpec, gen: GenConfig | None = None) -> dict[str, np.ndarray]:
    """Simulate one run and cut its samples (see the module docstring).

    Returns:
        Arrays keyed by shard field name (S samples). Empty runs give S = 0.

    Raises:
        SimDataError: if pass 2 diverges from pass 1 (the simulator was not deterministic).
    """
    from prescient.service.pipeline import Pipeline, PipelineConfig
    from prescient.service.raster import RasterConfig, build_spec
    from prescient.sim_sensors import SimConfig, Simulation

    gen = gen or GenConfig()
    cfg = ModelConfig(n_max=STORE_N_MAX)
    gts, ego_by_stamp = _record_truth(run)
    sim = Simulation(SimConfig(scenario=run.scenario, seed=run.seed, n_agents=run.n_agents, night=run.night))
    raster_cfg = RasterConfig()
    spec = build_spec(raster_cfg)
    plan_ch = spec.channel_names.index("ego_plan")
    pipe = Pipeline(
        sim.map,
        None,
        PipelineConfig(deadline_guard=False, use_lidar=gen.use_lidar),
        raster_cfg=raster_cfg,
    )
    end_ns = max(ego_by_stamp) if ego_by_stamp else 0
    horizon_ns = FUTURE_STEPS * STATE_PERIOD_NS
    cols: dict[str, list[np.ndarray]] = {}
    r_idx: list[np.ndarray] = []
    r_val: list[np.ndarray] = []
    p_idx: list[np.ndarray] = []
    p_val: list[np.ndarray] = []

    def add(key: str, value: np.ndarray) -> None:
        cols.setdefault(key, []).append(value)

    for msgs in sim.run(run.duration_s):
        for msg in msgs:
            if isinstance(msg, m.GroundTruth):
                continue
            if isinstance(msg, m.EgoState):
                want = ego_by_stamp.get(msg.header.stamp_ns)
                if want is None or not np.array_equal(want, msg.pose):
                    raise SimDataError(
                        f"{run.name}: simulation diverged between passes at {msg.header.stamp_ns}"
                    )
            pipe.feed(msg)
            tick_ns = pipe.due_tick()
            if tick_ns is None:
                continue
            res = pipe.tick(tick_ns)
            k_tick = tick_ns // STATE_PERIOD_NS
            if (
                res is None
                or k_tick % gen.stride_ticks
                or tick_ns < gen.warmup_s * NS_PER_S
                or tick_ns + horizon_ns > end_ns
                or tick_ns not in gts
            ):
                continue
            stamps = tick_ns + STATE_PERIOD_NS * np.arange(1, FUTURE_STEPS + 1)
            if any(int(s) not in ego_by_stamp for s in stamps):
                continue
            ego = pipe.ego  # the EgoState this tick used (same object the pipeline rendered with)
            tracks = res.tracks
            route_idx, route_val = _sparse(res.raster[plan_ch])
            ego_future = np.stack([ego_by_stamp[int(s)][:2] for s in stamps]).astype(np.float32)
            # Same call Pipeline.conditional makes for a candidate plan.
            raster = pipe.render(tracks, ego, ego_future)
            idx, val = _sparse(raster)
            r_idx.append(idx)
            r_val.append(val)
            p_idx.append(route_idx)
            p_val.append(route_val)

            inp = agent_inputs_from_tracks(cfg, tracks, ego.velocity_mps, ego.size_lwh_m, ego_future)
            inp_route = agent_inputs_from_tracks(cfg, tracks, ego.velocity_mps, ego.size_lwh_m, ego.plan_xy_m)
            slot = inp.agent_index
            valid_slots = slot >= 0
            gt_now = gts[tick_ns]
            track_xy = np.asarray(tracks.position_m, np.float64)
            match = match_tracks_to_truth(
                track_xy, np.asarray(gt_now.position_m, np.float64), gen.match_radius_m
            )
            gt_id = np.full(STORE_N_MAX, -1, np.int64)
            sel = slot[valid_slots]
            gt_id[valid_slots] = np.where(match[sel] >= 0, gt_now.agent_id[np.maximum(match[sel], 0)], -1)
            target = np.zeros((STORE_N_MAX, FUTURE_STEPS, 2), np.float32)
            tvalid = np.zeros((STORE_N_MAX, FUTURE_STEPS), bool)
            for j, s in enumerate(stamps):
                g = gts.get(int(s))
                if g is None:
                    continue
                order = np.argsort(g.agent_id, kind="stable")
                ids_sorted = g.agent_id[order]
                pos = np.searchsorted(ids_sorted, gt_id)
                pos = np.minimum(pos, max(len(ids_sorted) - 1, 0))
                hit = (gt_id >= 0) & (len(ids_sorted) > 0)
                if len(ids_sorted):
                    hit &= ids_sorted[pos] == gt_id
                target[hit, j] = g.position_m[order[pos[hit]]]
                tvalid[hit, j] = True

            add("tick_ns", np.int64(tick_ns))
            add("agent_hist", inp.agent_hist)
            add("agent_state", inp.agent_state)
            add("agent_valid", inp.agent_valid)
            add("agent_pose_world", inp.agent_pose_world)
            add("ego_state", inp.ego_state)
            add("ego_plan", inp.ego_plan)
            add("ego_state_route", inp_route.ego_state)
            add("ego_plan_route", inp_route.ego_plan)
            add("ego_pose", np.asarray(ego.pose, np.float64))
            add("ego_velocity_mps", np.asarray(ego.velocity_mps, np.float32))
            add("ego_future_xy_m", ego_future)
            add("track_id", _per_slot(np.asarray(tracks.track_id, np.int64), valid_slots, sel, -1))
            add("class_id", _per_slot(np.asarray(tracks.class_id, np.int32), valid_slots, sel, 0))
            add("velocity_mps", _per_slot(np.asarray(tracks.velocity_mps, np.float32), valid_slots, sel, 0.0))
            add(
                "yaw_rate_radps",
                _per_slot(np.asarray(tracks.yaw_rate_radps, np.float32), valid_slots, sel, 0.0),
            )
            add("gt_id", gt_id)
            add("target_xy_m", target)
            add("target_valid", tvalid)

    out: dict[str, np.ndarray] = {}
    n = len(r_idx)
    for key, vals in cols.items():
        out[key] = np.stack(vals)
    out["raster_off"] = np.concatenate([[0], np.cumsum([len(a) for a in r_idx])]).astype(np.int64)
    out["raster_idx"] = np.concatenate(r_idx) if n else np.zeros(0, np.int32)
    out["raster_val"] = np.concatenate(r_val) if n else np.zeros(0, np.float16)
    out["route_off"] = np.concatenate([[0], np.cumsum([len(a) for a in p_idx])]).astype(np.int64)
    out["route_idx"] = np.concatenate(p_idx) if n else np.zeros(0, np.int32)
    out["route_val"] = np.concatenate(p_val) if n else np.zeros(0, np.float16)
    meta = {
        "format_version": FORMAT_VERSION,
        "scenario": run.scenario,
        "seed": run.seed,
        "night": run.night,
        "duration_s": run.duration_s,
        "n_agents": run.n_agents,
        "stride_ticks": gen.stride_ticks,
        "samples": n,
        "raster_shape": list(spec.shape),
        "raster_spec": spec.fingerprint(),
        "plan_channel": plan_ch,
        "channel_names": list(spec.channel_names),
        "tracker_rejected": {k: int(v) for k, v in pipe.tracker.stats.rejected.items()},
    }
    out["meta_json"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    return out


def write_shard(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Atomically write one shard (``.tmp`` then rename)."""
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


def _gen_worker(args: tuple[RunSpec, GenConfig, str]) -> tuple[str, int, bool]:
    run, gen, out_dir = args
    path = Path(out_dir) / f"{run.name}.npz"
    if path.is_file():
        return run.name, -1, run.night
    arrays = generate_run(run, gen)
    write_shard(path, arrays)
    return run.name, int(arrays["raster_off"].shape[0] - 1), run.night


def generate(
    out_dir: Path, runs: Sequence[RunSpec], gen: GenConfig | None = None, workers: int = 1
) -> dict[str, object]:
    """Generate every run's shard under ``out_dir`` (existing shards are kept: resumable).

    Returns:
        Summary dict (runs, samples, night runs) also written to ``out_dir/index.json``.
    """
    from tqdm import tqdm

    gen = gen or GenConfig()
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(r, gen, str(out_dir)) for r in runs]
    done: list[tuple[str, int, bool]] = []
    if workers <= 1:
        for job in tqdm(jobs, desc="runs", unit="run"):
            done.append(_gen_worker(job))
    else:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers) as pool:
            for res in tqdm(pool.imap(_gen_worker, jobs), total=len(jobs), desc="runs", unit="run"):
                done.append(res)
    shards = sorted(p.name for p in out_dir.glob("*.npz") if not p.name.endswith(".tmp.npz"))
    total = 0
    for name in shards:
        total += int(read_meta(out_dir / name)["samples"])
    index = {
        "format_version": FORMAT_VERSION,
        "shards": shards,
        "samples": total,
        "runs": [{"name": r.name, "night": r.night, "duration_s": r.duration_s} for r in runs],
        "stride_ticks": gen.stride_ticks,
    }
    (out_dir / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    return index


def read_meta(path: Path) -> dict[str, object]:
    """The ``meta_json`` of a shard.

    Raises:
        SimDataError: unreadable shard or another format version.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta_json"]).decode())
    except (OSError, ValueError, KeyError) as e:
        raise SimDataError(f"{path}: not a sim-data shard: {e}") from e
    if meta.get("format_version") != FORMAT_VERSION:
        raise SimDataError(
            f"{path}: format version {meta.get('format_version')}, this code reads {FORMAT_VERSION}"
        )
    return meta


def list_shards(data_dir: Path) -> list[Path]:
    """Shards in ``data_dir``, sorted by name.

    Raises:
        SimDataError: when the folder is missing or holds no shard.
    """
    if not data_dir.is_dir():
        raise SimDataError(f"data folder not found: {data_dir}")
    shards = sorted(p for p in data_dir.glob("*.npz") if not p.name.endswith(".tmp.npz"))
    if not shards:
        raise SimDataError(f"no .npz shards in {data_dir}; run `prescient data generate --out {data_dir}`")
    return shards


@dataclass
class Shard:
    """One loaded shard: arrays in memory, rasters still sparse."""

    path: Path
    meta: dict[str, object]
    arrays: dict[str, np.ndarray]

    @property
    def num_samples(self) -> int:
        """S."""
        return int(self.arrays["raster_off"].shape[0] - 1)

    def raster(self, i: int, out: np.ndarray | None = None, route_plan: bool = False) -> Float32Array:
        """Dense (C, H, W) float32 raster of sample ``i``.

        Args:
            i: sample index.
            out: optional (C, H, W) float32 buffer to fill (zeroed here).
            route_plan: draw the ``ego_plan`` channel from the simulator's route instead of the
                ego's actual future.
        """
        shape = tuple(int(v) for v in self.meta["raster_shape"])  # type: ignore[union-attr]
        if out is None:
            out = np.zeros(shape, np.float32)
        else:
            out[...] = 0.0
        a = self.arrays
        lo, hi = a["raster_off"][i], a["raster_off"][i + 1]
        flat = out.reshape(-1)
        flat[a["raster_idx"][lo:hi]] = a["raster_val"][lo:hi]
        if route_plan:
            ch = int(self.meta["plan_channel"])  # type: ignore[arg-type]
            plane = out[ch].reshape(-1)
            plane[:] = 0.0
            lo, hi = a["route_off"][i], a["route_off"][i + 1]
            plane[a["route_idx"][lo:hi]] = a["route_val"][lo:hi]
        return out


def load_shard(path: Path) -> Shard:
    """Read a whole shard into memory (``allow_pickle=False``)."""
    meta = read_meta(path)
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != "meta_json"}
    return Shard(path, meta, arrays)


def iter_shards(data_dir: Path) -> Iterator[Shard]:
    """Load every shard of ``data_dir`` in name order."""
    for p in list_shards(data_dir):
        yield load_shard(p)


def targets_in_agent_frame(
    target_xy_m: np.ndarray, target_valid: np.ndarray, agent_pose_world: np.ndarray
) -> Float32Array:
    """World-frame targets (..., N, T, 2) to each agent's frame (origin at the agent, x along yaw).

    Args:
        target_xy_m: (..., N, T, 2) world. target_valid: (..., N, T). agent_pose_world: (..., N, 3).

    Returns:
        (..., N, T, 2) float32, zeros where invalid.
    """
    yaw = agent_pose_world[..., 2]
    c, s = np.cos(yaw)[..., None], np.sin(yaw)[..., None]
    d = target_xy_m.astype(np.float64) - agent_pose_world[..., None, :2]
    x = c * d[..., 0] + s * d[..., 1]
    y = -s * d[..., 0] + c * d[..., 1]
    out = np.stack([x, y], -1) * target_valid[..., None]
    return out.astype(np.float32)
