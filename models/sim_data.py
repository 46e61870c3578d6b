"""Simulation training data: the onboard pipeline's own rasters and inputs, with ground-truth futures.

Each run (map, seed, day/night; :mod:`prescient.models.sim_runs`) is simulated twice with the same
config (the simulator is a pure function of it). Pass 1 records every 100 ms ``GroundTruth`` and
``EgoState``. Pass 2 feeds every message into the real onboard
:class:`prescient.service.pipeline.Pipeline` (no model, deadline guard off), so tracker and
rasterizer are exactly the onboard ones. Every ``stride_ticks``-th tick whose 8 s future lies
inside the run becomes a sample:

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
* counterfactual branches (``GenConfig.branches``, default keep / slow / stop / route): at the
  sample tick pass 2's simulation is branched into one world per ego plan and put back
  (:mod:`prescient.models.sim_branches`); each branch keeps its ego plan and the same slots'
  futures in that world.

Shards (:mod:`prescient.models.shards`): one ``<scenario>_s<seed>.npz`` per run, sparse rasters,
reproducible bytes, atomic writes. :func:`generate` skips shards already complete and writes the
dataset manifest ``index.json``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

from prescient.bus import messages as m
from prescient.models.shards import (
    FORMAT_VERSION,
    STORE_N_MAX,
    Float32Array,
    Shard,
    SimDataError,
    concat,
    csr_offsets,
    iter_shards,
    list_shards,
    load_shard,
    read_meta,
    sparse,
    targets_in_agent_frame,
    write_shard,
)
from prescient.models.sim_branches import BranchCutter
from prescient.models.sim_runs import (
    HELD_OUT_MIN_SEED,
    GenConfig,
    RunSpec,
    is_held_out,
    parse_seeds,
    plan_runs,
)
from prescient.service.model_io.config import ModelConfig
from prescient.service.model_io.features import agent_inputs_from_tracks

if TYPE_CHECKING:
    from prescient.service.pipeline import Pipeline
    from prescient.service.pipeline_types import TickResult

__all__ = [
    "FORMAT_VERSION",
    "FUTURE_STEPS",
    "HELD_OUT_MIN_SEED",
    "STORE_N_MAX",
    "Float32Array",
    "GenConfig",
    "RunSpec",
    "Shard",
    "SimDataError",
    "generate",
    "generate_run",
    "is_held_out",
    "iter_shards",
    "list_shards",
    "load_shard",
    "match_tracks_to_truth",
    "parse_seeds",
    "plan_runs",
    "read_meta",
    "targets_in_agent_frame",
    "write_shard",
]

log = logging.getLogger(__name__)

NS_PER_S = 1_000_000_000
STATE_PERIOD_NS = 100_000_000
FUTURE_STEPS = m.PRED_HORIZON_STEPS  # 80 at 0.1 s
INDEX_NAME = "index.json"
_SEED_IN_NAME = re.compile(r"_s(\d+)$")  # RunSpec.name


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


def _follow_truth(
    gts: dict[int, m.GroundTruth], gt_id: np.ndarray, stamps: np.ndarray
) -> tuple[Float32Array, npt.NDArray[np.bool_]]:
    """Targets (N, T, 2) float32 world and validity (N, T) of ground-truth ids ``gt_id`` (-1: none)."""
    target = np.zeros((STORE_N_MAX, FUTURE_STEPS, 2), np.float32)
    tvalid = np.zeros((STORE_N_MAX, FUTURE_STEPS), bool)
    for j, s in enumerate(stamps):
        g = gts.get(int(s))
        if g is None or len(g.agent_id) == 0:
            continue
        order = np.argsort(g.agent_id, kind="stable")
        ids_sorted = g.agent_id[order]
        pos = np.minimum(np.searchsorted(ids_sorted, gt_id), len(ids_sorted) - 1)
        hit = (gt_id >= 0) & (ids_sorted[pos] == gt_id)
        target[hit, j] = g.position_m[order[pos[hit]]]
        tvalid[hit, j] = True
    return target, tvalid


class _RunCutter:
    """Pass 2 of one run: cuts the samples from the pipeline's ticks (fields of the module docstring)."""

    def __init__(self, run: RunSpec, gen: GenConfig, pipe: Pipeline, plan_ch: int) -> None:
        self.run, self.gen, self.pipe, self.plan_ch = run, gen, pipe, plan_ch
        self.cfg = ModelConfig(n_max=STORE_N_MAX)
        self.cols: dict[str, list[np.ndarray]] = {}
        self.rasters: list[tuple[np.ndarray, np.ndarray]] = []
        self.routes: list[tuple[np.ndarray, np.ndarray]] = []
        self.branches = BranchCutter(gen.branches, plan_ch, self.cfg, FUTURE_STEPS)

    def add(self, key: str, value: np.ndarray) -> None:
        self.cols.setdefault(key, []).append(value)

    def sample(
        self,
        res: TickResult,
        tick_ns: int,
        gts: dict[int, m.GroundTruth],
        ego_by_stamp: dict[int, np.ndarray],
    ) -> None:
        """Cut the sample of the tick at ``tick_ns`` whose 8 s future is in ``ego_by_stamp``."""
        pipe, cfg, add = self.pipe, self.cfg, self.add
        stamps = tick_ns + STATE_PERIOD_NS * np.arange(1, FUTURE_STEPS + 1)
        ego = pipe.ego  # the EgoState this tick used (same object the pipeline rendered with)
        if ego is None:  # a tick runs only after an ego state; a sample needs the one it used
            raise SimDataError(f"tick {tick_ns} has no ego state")
        tracks = res.tracks
        self.routes.append(sparse(res.raster[self.plan_ch]))
        ego_future = np.stack([ego_by_stamp[int(s)][:2] for s in stamps]).astype(np.float32)
        # Same call Pipeline.conditional makes for a candidate plan.
        self.rasters.append(sparse(pipe.render(tracks, ego, ego_future)))
        inp = agent_inputs_from_tracks(cfg, tracks, ego.velocity_mps, ego.size_lwh_m, ego_future)
        inp_route = agent_inputs_from_tracks(cfg, tracks, ego.velocity_mps, ego.size_lwh_m, ego.plan_xy_m)
        slot = inp.agent_index
        valid_slots = slot >= 0
        gt_now = gts[tick_ns]
        track_xy = np.asarray(tracks.position_m, np.float64)
        match = match_tracks_to_truth(
            track_xy, np.asarray(gt_now.position_m, np.float64), self.gen.match_radius_m
        )
        gt_id = np.full(STORE_N_MAX, -1, np.int64)
        sel = slot[valid_slots]
        gt_id[valid_slots] = np.where(match[sel] >= 0, gt_now.agent_id[np.maximum(match[sel], 0)], -1)
        target, tvalid = _follow_truth(gts, gt_id, stamps)
        self.branches.add_sample(tick_ns, pipe, tracks, ego, gt_id, (ego_future, target, tvalid))

        add("tick_ns", np.asarray(tick_ns, np.int64))
        for key in ("agent_hist", "agent_state", "agent_valid", "agent_pose_world", "ego_state", "ego_plan"):
            add(key, getattr(inp, key))
        add("ego_state_route", inp_route.ego_state)
        add("ego_plan_route", inp_route.ego_plan)
        add("ego_pose", np.asarray(ego.pose, np.float64))
        add("ego_velocity_mps", np.asarray(ego.velocity_mps, np.float32))
        add("ego_future_xy_m", ego_future)
        add("track_id", _per_slot(np.asarray(tracks.track_id, np.int64), valid_slots, sel, -1))
        add("class_id", _per_slot(np.asarray(tracks.class_id, np.int32), valid_slots, sel, 0))
        add("velocity_mps", _per_slot(np.asarray(tracks.velocity_mps, np.float32), valid_slots, sel, 0.0))
        add("yaw_rate_radps", _per_slot(np.asarray(tracks.yaw_rate_radps, np.float32), valid_slots, sel, 0.0))
        add("gt_id", gt_id)
        add("target_xy_m", target)
        add("target_valid", tvalid)

    def arrays(self, meta: dict[str, Any]) -> dict[str, np.ndarray]:
        """All shard fields, ``meta`` completed with the sample and branch counts."""
        out = {key: np.stack(vals) for key, vals in self.cols.items()}
        for prefix, rows in (("raster", self.rasters), ("route", self.routes)):
            out[prefix + "_off"] = csr_offsets([r[0] for r in rows])
            out[prefix + "_idx"] = concat([r[0] for r in rows], np.zeros(0, np.int32))
            out[prefix + "_val"] = concat([r[1] for r in rows], np.zeros(0, np.float16))
        out.update(self.branches.arrays())
        meta["samples"] = len(self.rasters)
        meta["branch_samples"] = self.branches.counts()
        out["meta_json"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8)
        return out


def run_meta(run: RunSpec, gen: GenConfig) -> dict[str, Any]:
    """What identifies a run's shard: format, run spec and cutting settings (compared on resume)."""
    return {
        "format_version": FORMAT_VERSION,
        "scenario": run.scenario,
        "seed": run.seed,
        "night": run.night,
        "duration_s": run.duration_s,
        "n_agents": run.n_agents,
        "stride_ticks": gen.stride_ticks,
        "branches": list(gen.branches),
        "gen_config": gen.as_meta(),
    }


def generate_run(run: RunSpec, gen: GenConfig | None = None) -> dict[str, np.ndarray]:
    """Simulate one run and cut its samples (see the module docstring).

    Returns:
        Arrays keyed by shard field name (S samples). Empty runs give S = 0.

    Raises:
        SimDataError: if pass 2 diverges from pass 1 (the simulator was not deterministic), or a
            ``keep`` branch does not reproduce the run.
    """
    from prescient.service.pipeline import Pipeline, PipelineConfig
    from prescient.service.raster import RasterConfig, build_spec
    from prescient.sim_sensors import SimConfig, Simulation

    gen = gen or GenConfig()
    gts, ego_by_stamp = _record_truth(run)
    sim = Simulation(SimConfig(scenario=run.scenario, seed=run.seed, n_agents=run.n_agents, night=run.night))
    raster_cfg = RasterConfig()
    spec = build_spec(raster_cfg)
    plan_ch = spec.channel_names.index("ego_plan")
    pipe = Pipeline(
        sim.map, None, PipelineConfig(deadline_guard=False, use_lidar=gen.use_lidar), raster_cfg=raster_cfg
    )
    cutter = _RunCutter(run, gen, pipe, plan_ch)
    end_ns = max(ego_by_stamp) if ego_by_stamp else 0
    horizon_ns = FUTURE_STEPS * STATE_PERIOD_NS

    def in_range(t_ns: int, every_ticks: int) -> bool:
        """A sample tick (every ``every_ticks`` ticks) after warm-up whose 8 s future is in the run."""
        return (
            t_ns % (every_ticks * STATE_PERIOD_NS) == 0
            and t_ns >= gen.warmup_s * NS_PER_S
            and t_ns + horizon_ns <= end_ns
            and t_ns in gts
        )

    for msgs in sim.run(run.duration_s):
        # The step just taken ended at sim.time_ns: the world is at that instant, before any
        # message of it reaches the pipeline (which ticks later, when its inputs are in).
        if gen.branches and in_range(sim.time_ns, gen.stride_ticks * gen.branch_every):
            cutter.branches.branch_now(sim)
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
            if res is None or not in_range(tick_ns, gen.stride_ticks):
                continue
            stamps = tick_ns + STATE_PERIOD_NS * np.arange(1, FUTURE_STEPS + 1)
            if all(int(s) in ego_by_stamp for s in stamps):
                cutter.sample(res, tick_ns, gts, ego_by_stamp)

    meta = run_meta(run, gen)
    meta.update(
        raster_shape=list(spec.shape),
        raster_spec=spec.fingerprint(),
        plan_channel=plan_ch,
        channel_names=list(spec.channel_names),
        tracker_rejected={k: int(v) for k, v in pipe.tracker.stats.rejected.items()},
    )
    return cutter.arrays(meta)


def _shard_is_current(path: Path, run: RunSpec, gen: GenConfig) -> bool:
    """True when ``path`` is a complete shard of exactly this run and config; False when absent
    or unreadable (it is then regenerated).

    Raises:
        SimDataError: a complete shard of the same name made with other settings (mixing them in
            one dataset would go unnoticed).
    """
    if not path.is_file():
        return False
    try:
        meta = read_meta(path)
    except SimDataError as e:
        log.warning("regenerating %s: %s", path.name, e)
        return False
    want = run_meta(run, gen)
    diff = sorted(k for k, v in want.items() if meta.get(k) != v)
    if diff:
        raise SimDataError(
            f"{path} exists with other settings ({', '.join(diff)}): use another --out or delete it"
        )
    return True


def _gen_worker(args: tuple[RunSpec, GenConfig, str]) -> tuple[str, bool]:
    """Generate one run's shard unless it is already there; (name, generated now)."""
    run, gen, out_dir = args
    path = Path(out_dir) / f"{run.name}.npz"
    if _shard_is_current(path, run, gen):
        return run.name, False
    write_shard(path, generate_run(run, gen))
    return run.name, True


def _check_split(seeds: Sequence[int], out_dir: Path) -> str:
    """``"train"`` or ``"eval"`` (held-out seeds): one dataset never mixes them.

    Raises:
        SimDataError: training and held-out seeds together.
    """
    held = sorted({s for s in seeds if is_held_out(s)})
    if held and len(held) != len(set(seeds)):
        raise SimDataError(
            f"{out_dir}: seeds {held[:3]}... are held-out evaluation seeds (>= {HELD_OUT_MIN_SEED}) and "
            "may not share a dataset with training seeds; generate them into another --out"
        )
    return "eval" if held else "train"


def generate(
    out_dir: Path,
    runs: Sequence[RunSpec],
    gen: GenConfig | None = None,
    workers: int = 1,
    night_fraction: float | None = None,
) -> dict[str, Any]:
    """Generate every run's shard under ``out_dir``, then write the manifest ``index.json``.

    Resumable: a shard already there with the same run and settings is kept (shards are written
    atomically, so one that exists is complete); each shard's bytes depend on its run and ``gen``
    only, whatever ``workers``.

    Args:
        night_fraction: recorded in the manifest (the runs already carry day/night).

    Returns:
        The manifest (see :func:`build_index`).

    Raises:
        SimDataError: held-out and training seeds in one folder, or a shard of the same name
            made with other settings.
    """
    from tqdm import tqdm

    gen = gen or GenConfig()
    out_dir.mkdir(parents=True, exist_ok=True)
    existing = [int(m_.group(1)) for p in _shards_in(out_dir) if (m_ := _SEED_IN_NAME.search(p.stem))]
    _check_split([r.seed for r in runs] + existing, out_dir)
    jobs = [(r, gen, str(out_dir)) for r in runs]
    made = 0
    if workers <= 1:
        for job in tqdm(jobs, desc="runs", unit="run"):
            made += _gen_worker(job)[1]
    else:
        import multiprocessing as mp

        # Spawned workers: no state inherited from the parent; each run is a pure function of its spec.
        with mp.get_context("spawn").Pool(workers) as pool:
            for res in tqdm(pool.imap_unordered(_gen_worker, jobs), total=len(jobs), desc="runs", unit="run"):
                made += res[1]
    log.info("%d shards generated, %d already there", made, len(jobs) - made)
    config = {**gen.as_meta(), "night_fraction": night_fraction}
    if runs:
        config.update(
            duration_s=sorted({r.duration_s for r in runs}), n_agents=sorted({r.n_agents for r in runs})
        )
    return build_index(out_dir, config)


def _shards_in(out_dir: Path) -> list[Path]:
    return sorted(p for p in out_dir.glob("*.npz") if not p.name.endswith(".tmp.npz"))


def build_index(out_dir: Path, generation: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``out_dir/index.json``: the manifest of every shard in ``out_dir`` (read from their metas).

    Fields: ``format_version``; ``split`` (``train`` / ``eval``: held-out seeds >=
    ``held_out_min_seed``); ``samples`` (scenes), ``branch_samples`` (per plan kind), ``branches``;
    ``maps``, ``seeds``, ``night_runs`` (names), ``night_samples``; ``shards`` (file names);
    ``runs`` (per shard: name, map, seed, night, duration, samples, branch samples, format);
    ``generation`` (settings of the last :func:`generate` call, None when only re-indexed).
    Deterministic: sorted, independent of the order the shards were made in.
    """
    metas = [(p.name, read_meta(p)) for p in _shards_in(out_dir)]
    runs = []
    branch_samples: dict[str, int] = {}
    for name, mt in metas:
        bs = {str(k): int(v) for k, v in dict(mt.get("branch_samples", {})).items()}
        for k, v in bs.items():
            branch_samples[k] = branch_samples.get(k, 0) + v
        runs.append(
            {
                "name": Path(name).stem,
                "map": mt["scenario"],
                "seed": int(mt["seed"]),
                "night": bool(mt["night"]),
                "duration_s": mt["duration_s"],
                "samples": int(mt["samples"]),
                "branch_samples": bs,
                "format_version": int(mt["format_version"]),
            }
        )
    seeds = sorted({r["seed"] for r in runs})
    index = {
        "format_version": FORMAT_VERSION,
        "split": _check_split(seeds, out_dir) if seeds else "train",
        "held_out_min_seed": HELD_OUT_MIN_SEED,
        "samples": sum(r["samples"] for r in runs),
        "branches": sorted({b for _, mt in metas for b in mt.get("branches", [])}),
        "branch_samples": dict(sorted(branch_samples.items())),
        "maps": sorted({r["map"] for r in runs}),
        "seeds": seeds,
        "night_runs": [r["name"] for r in runs if r["night"]],
        "night_samples": sum(r["samples"] for r in runs if r["night"]),
        "shards": [name for name, _ in metas],
        "runs": runs,
        "generation": generation,
        "stride_ticks": generation.get("stride_ticks") if generation else None,
    }
    (out_dir / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")
    return index
