"""``prescient fleet scenarios``: a validation campaign on generated scenes, one Ray task per batch / scene.

1. Generate ``--n`` scenes with the shipped Scenario Diffusion model (``prescient scenarios
   generate``'s API, :meth:`ScenarioGenerator.generate`): scene ``i`` is on map
   ``maps[i % len(maps)]``; each map's scenes are cut into batches of ``--batch``, one Ray task
   each, seeded by (``--seed``, map, batch), so the same command gives the same scenes. They are
   written to ``DIR/scenes.json`` (the scene-file format ``--from-scenario`` reads).
2. Run each scene (one Ray task) through the whole stack offline for ``--seconds``: the
   simulator started from the scene (``Simulation.from_scenario``, seed 0, as ``prescient
   sim|up --from-scenario`` do) written to a log in a temporary folder, then replayed by
   ``prescient replay``'s pipeline (sensors -> tracker -> model), with the planner stub's
   ``judge`` on every tick's predictions. No bus, no wall clock: deterministic.
3. Score it (:mod:`.scenario_score`): collision / near miss / minimum gap, minimum TTC, hard
   braking of the ego, minFDE6 at the longest horizon against the simulator's truth (constant
   velocity beside it), degraded ticks, the planner's verdicts.
4. ``DIR/scenes.jsonl`` (one row per scene, with its ``rank``) and ``DIR/report.md`` (worst
   first, a picture of each of the top 3 at its worst moment, the command replaying each scene),
   written atomically. Resumable: each scene's record is written to ``DIR/records/`` when its
   task returns; a re-run with the same arguments skips the scenes done (and the generation).

Exit status: 0 every scene ran; 1 the campaign cannot start (one line: an unknown map, a bad
token spec, an unreachable ``--address``, missing diffusion weights); 2 a bad argument or no Ray;
100 + n when n scenes failed (at most 125). Collisions are findings, not failures.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import sys
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from prescient.bus.errors import StartupError
from prescient.service.app.fleet.scenario_report import (
    RECORDS_DIR,
    SIM_SEED,
    campaign_command,
    write_report,
)
from prescient.service.app.fleet.scenario_score import (
    HARD_BRAKE_MPS2,
    NEAR_MISS_M,
    box_corners,
    box_gaps,
    finite_or_none,
    max_decel_mps2,
    severity_key,
    ttc_s,
)
from prescient.service.app.fleet.store import read_record, write_atomic, write_json_atomic


@dataclass(frozen=True)
class CampaignJob:
    """What ``fleet scenarios`` was asked (see the module docstring)."""

    n: int
    maps: tuple[str, ...]
    seconds: float
    out_dir: Path
    model: Path | None
    tokens: Path | None = None
    seed: int = 0
    steps: int = 25
    batch: int = 8
    weights: Path | None = None
    address: str | None = None
    workers: int | None = None


def _scenario_diffusion(name: str) -> Any:
    """``prescient.models.scenario_diffusion.<name>``, imported by name: the package is outside
    mypy's ``files`` and not clean under it, so a static import would pull it into the check."""
    import importlib

    return importlib.import_module(f"prescient.models.scenario_diffusion.{name}")


def _sha256(path: Path | None) -> str:
    if path is None:
        return "none"
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------------
# Generation: one task per batch.
# ------------------------------------------------------------------------------------------------
def plan_batches(n: int, maps: tuple[str, ...], batch: int, seed: int) -> list[tuple[str, list[int], int]]:
    """``(map, scene indices, noise seed)`` per batch: scene i on ``maps[i % len(maps)]``."""
    out = []
    for j, name in enumerate(maps):
        idx = list(range(j, n, len(maps)))
        for k in range(0, len(idx), batch):
            s = int(np.random.SeedSequence([seed, j, k // batch]).generate_state(1)[0])
            out.append((name, idx[k : k + batch], s))
    return out


def generate_batch(
    map_name: str, count: int, seed: int, spec: Any, steps: int, weights: str | None
) -> list[dict]:
    """``count`` scenes on ``map_name`` as scene-file JSON objects (runs inside a Ray task)."""
    import torch

    sd = _scenario_diffusion("generate")
    torch.set_num_threads(1)
    gen = sd.ScenarioGenerator.load(weights or sd.WEIGHTS_PATH)
    scenes = gen.generate(map_name, spec, n=count, seed=seed, n_steps=steps)
    return [s.to_json() for s in scenes]


def _scenes_doc(scenes: list[dict], meta: dict[str, Any]) -> dict[str, Any]:
    from prescient.sim_sensors.scenario_file import FORMAT, FORMAT_VERSION

    return {"format": FORMAT, "version": FORMAT_VERSION, "meta": meta, "scenes": scenes}


# ------------------------------------------------------------------------------------------------
# One scene: simulate, replay, score (a plain function; the driver wraps it with ray.remote).
# ------------------------------------------------------------------------------------------------
def _ego_gaps(e: Any, g: Any) -> tuple[np.ndarray, np.ndarray]:
    """The ego's box centre (1, 2) and its box gap (m) to every ground-truth agent (N,)."""
    from prescient.sim_sensors.config import EGO_CENTER_FROM_REAR_AXLE_M

    x, y, yaw = (float(v) for v in e.pose)
    ctr = np.array(
        [[x + EGO_CENTER_FROM_REAR_AXLE_M * math.cos(yaw), y + EGO_CENTER_FROM_REAR_AXLE_M * math.sin(yaw)]]
    )
    ego_box = box_corners(
        ctr, np.array([yaw]), e.size_lwh_m[:1].astype(np.float64), e.size_lwh_m[1:2].astype(np.float64)
    )[0]
    if not len(g.agent_id):
        return ctr, np.zeros(0)
    boxes = box_corners(g.position_m.astype(np.float64), g.yaw_rad.astype(np.float64),
                        g.size_lwh_m[:, 0].astype(np.float64), g.size_lwh_m[:, 1].astype(np.float64))  # fmt: skip
    return ctr, box_gaps(ego_box, boxes)


WARMUP_S = 1.0  # seconds at the start of a scene left out of the safety scores


def _truth(path: Path) -> dict[str, Any]:
    """Gap, TTC and braking of the ego against the log's ground truth from :data:`WARMUP_S` on;
    the worst moment's time (seconds from the first ground truth)."""
    from prescient.bus import messages as m
    from prescient.bus.replayer import iter_messages

    egos: dict[int, m.EgoState] = {}
    gts: dict[int, m.GroundTruth] = {}
    for lm in iter_messages(path, topics=[m.TOPIC_EGO, m.TOPIC_GROUND_TRUTH]):
        (egos if isinstance(lm.msg, m.EgoState) else gts)[lm.msg.header.stamp_ns] = lm.msg
    both = sorted(set(egos) & set(gts))
    # The first WARMUP_S seconds are not scored: a generated scene can place an agent touching the
    # ego, and the ego's driver settles from its initial speed; neither is something the stack did.
    t_first = both[0] if both else 0
    stamps = [t for t in both if t - t_first >= WARMUP_S * 1e9]
    min_gap, worst_ns, worst_agent, min_ttc = (
        math.inf,
        stamps[len(stamps) // 2] if stamps else 0,
        -1,
        math.inf,
    )
    # Agents the generator placed touching the ego are not the stack's doing: reported, not scored.
    placed: set[int] = set()
    if both:
        _, gaps0 = _ego_gaps(egos[t_first], gts[t_first])
        placed = {int(i) for i in gts[t_first].agent_id[gaps0 <= 0.0]}
    for t in stamps:
        e, g = egos[t], gts[t]
        keep = ~np.isin(g.agent_id, list(placed))
        if not keep.any():
            continue
        ctr, gaps = _ego_gaps(e, g)
        gaps = np.where(keep, gaps, np.inf)
        k = int(np.argmin(gaps))
        if gaps[k] < min_gap:
            min_gap, worst_ns, worst_agent = float(gaps[k]), t, int(g.agent_id[k])
        ttc = ttc_s(g.position_m[keep] - ctr, g.velocity_mps[keep] - e.velocity_mps[None])
        min_ttc = min(min_ttc, float(ttc.min()))
    scored_egos = [t for t in sorted(egos) if t - t_first >= WARMUP_S * 1e9]
    ego_t = np.array(scored_egos, np.float64) / 1e9
    speed = np.array([float(np.hypot(*egos[t].velocity_mps)) for t in scored_egos])
    decel, hard_s = max_decel_mps2(ego_t, speed)
    return {
        "collision": min_gap <= 0.0,
        "near_miss": 0.0 < min_gap < NEAR_MISS_M,
        "min_gap_m": finite_or_none(min_gap),
        "min_ttc_s": finite_or_none(min_ttc),
        "max_decel_mps2": round(decel, 3),
        "hard_brake_s": round(hard_s, 3),
        "hard_braking": decel > HARD_BRAKE_MPS2,
        "worst_t_s": round((worst_ns - t_first) / 1e9, 3),
        "worst_agent_id": worst_agent,
        "placed_overlaps": len(placed),
        "_worst_ns": worst_ns,
        "_egos": egos,
        "_gts": gts,
    }


class _TickPlanner:
    """``on_tick``: scores predictions (LogScorer), runs the planner stub, keeps the worst moment's tick."""

    def __init__(self, scorer: Any, egos: dict[int, Any], worst_ns: int) -> None:
        self.scorer, self.worst_ns = scorer, worst_ns
        self.ego_stamps = np.array(sorted(egos), np.int64)
        self.egos = egos
        self.min_ttc, self.plan_counts = math.inf, [0, 0, 0]
        self.moment: Any = None

    def __call__(self, res: Any) -> None:
        from prescient.service.planner_stub import candidate_plans, judge

        self.scorer(res)
        pred = res.predictions
        i = int(np.searchsorted(self.ego_stamps, pred.header.stamp_ns, side="right")) - 1
        if i < 0:
            return
        ego = self.egos[int(self.ego_stamps[i])]
        plans = candidate_plans(ego)
        v = judge(plans, pred.trajectories_m, pred.mode_probs, pred.degraded)
        self.plan_counts[min(v.chosen_plan, 2)] += 1
        if v.min_ttc_s < 1e6:
            self.min_ttc = min(self.min_ttc, v.min_ttc_s)
        if self.moment is None or pred.header.stamp_ns <= self.worst_ns:
            self.moment = (pred, ego, plans, v.chosen_plan)


def _moment_arrays(truth: dict[str, Any], tp: _TickPlanner) -> dict[str, np.ndarray]:
    """The arrays a picture of the worst moment needs (saved as .npz, no pickle)."""
    g = truth["_gts"].get(truth["_worst_ns"])
    out: dict[str, np.ndarray] = {"t_s": np.array(truth["worst_t_s"])}
    if g is not None:
        out.update(gt_xy=g.position_m, gt_yaw=g.yaw_rad, gt_size=g.size_lwh_m, gt_id=g.agent_id)
    e = truth["_egos"].get(truth["_worst_ns"])
    if e is not None:
        out.update(ego_pose=e.pose, ego_size=e.size_lwh_m)
    if tp.moment is not None:
        pred, ego, plans, chosen = tp.moment
        out.update(pred_traj=pred.trajectories_m, pred_probs=pred.mode_probs, plans=plans,
                   chosen=np.array(chosen), pred_degraded=np.array(pred.degraded))  # fmt: skip
        out.setdefault("ego_pose", ego.pose)
        out.setdefault("ego_size", ego.size_lwh_m)
    return out


def run_scene(scene_obj: dict, index: int, seconds: float, model: str | None) -> tuple[dict[str, Any], bytes]:
    """Simulate, replay and score one scene; never raises.

    Returns:
        (record, .npz bytes of the worst moment, empty when the scene failed).
    """
    try:
        return _run_scene(scene_obj, index, seconds, Path(model) if model else None)
    except Exception as e:  # noqa: BLE001 - one scene's crash is recorded; the campaign goes on
        last = traceback.extract_tb(e.__traceback__)[-1]
        err = f"{type(e).__name__}: {e} ({Path(last.filename).name}:{last.lineno})"
        return {"index": index, "status": "failed", "error": err}, b""


def _run_scene(
    scene_obj: dict, index: int, seconds: float, model: Path | None
) -> tuple[dict[str, Any], bytes]:
    from prescient.bus.logfile import LogWriter
    from prescient.service.app.fleet.scoring import LogScorer, TruthIndex
    from prescient.service.offline import replay_log
    from prescient.sim_sensors.config import SimConfig
    from prescient.sim_sensors.scenario_file import Scene
    from prescient.sim_sensors.simulation import Simulation

    scene = Scene.from_json(scene_obj, where=f"scene {index}")
    sim = Simulation.from_scenario(scene, SimConfig(seed=SIM_SEED, n_agents=scene.n_agents))
    placed = len(sim.placement.index) if sim.placement is not None else 0
    with tempfile.TemporaryDirectory(prefix="fleet_scn") as tmp:
        path = Path(tmp) / f"scene_{index}.mcap"
        with LogWriter(path) as w:
            w.write(sim.map)
            for msgs in sim.run(seconds):
                for msg in msgs:
                    w.write(msg)
        truth = _truth(path)
        scorer = LogScorer(TruthIndex.from_log(path, tracks_from_log=False), same_ids=False)
        tp = _TickPlanner(scorer, truth["_egos"], truth["_worst_ns"])
        out = replay_log(path, model, on_tick=tp, threads=1)
    summary = scorer.summary().get("all", {})
    longest = max(summary, key=lambda h: float(h[:-1])) if summary else None
    pred: dict[str, Any] = {"horizon": longest}
    if longest is not None:
        c = summary[longest]
        pred.update(
            agents=c["agents"],
            model_min_fde=round(c["model"]["min_fde"], 3),
            cv_min_fde=round(c["cv"]["min_fde"], 3),
        )
    buf = io.BytesIO()
    cast(Any, np.savez_compressed)(buf, **_moment_arrays(truth, tp))  # kwargs: array names
    rec = {
        "index": index,
        "status": "ok" if not out["exit_code"] else "damaged",
        "map": scene.map_name,
        "agents": scene.n_agents,
        "agents_placed": placed,
        "ticks": out["ticks"],
        "degraded_ticks": out["degraded_ticks"],
        "model": out["model"],
        "safety": {k: v for k, v in truth.items() if not k.startswith("_")},
        "prediction": pred,
        "planner": {
            "min_ttc_s": finite_or_none(tp.min_ttc),
            "keep_speed": tp.plan_counts[0],
            "slow_down": tp.plan_counts[1],
            "stop": tp.plan_counts[2],
        },  # fmt: skip
    }
    return rec, buf.getvalue()


# ------------------------------------------------------------------------------------------------
# Driver.
# ------------------------------------------------------------------------------------------------
def _gen_meta(job: CampaignJob) -> dict[str, Any]:
    return {"source": "prescient fleet scenarios", "n": job.n, "maps": list(job.maps), "seed": job.seed,
            "ddim_steps": job.steps, "batch": job.batch, "tokens": str(job.tokens) if job.tokens else None,
            "tokens_sha256": _sha256(job.tokens), "weights_sha256": _sha256(job.weights)}  # fmt: skip


def _record_key(scene_obj: dict, job: CampaignJob, model_sha: str) -> str:
    blob = json.dumps([scene_obj, job.seconds, SIM_SEED, model_sha], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def run_campaign(
    job: CampaignJob, spec: Any, on_done: Callable[[], None] | None = None
) -> list[dict[str, Any]]:
    """Generate (or reuse) the scenes and run every scene not done yet; returns the records by index.

    Raises:
        StartupError: Ray cannot start or the cluster is unreachable.
    """
    from prescient.service.app.fleet.ray_session import ray_session
    from prescient.service.app.fleet.run import model_sha256

    scenes_path = job.out_dir / "scenes.json"
    meta = _gen_meta(job)
    scenes: list[dict] | None = None
    if scenes_path.is_file():
        old = read_record(scenes_path)
        if old is not None and old.get("meta") == meta:
            scenes = old["scenes"]
    msha = model_sha256(job.model)
    records: dict[int, dict[str, Any]] = {}
    todo: list[int] = []
    if scenes is not None:
        for i, s in enumerate(scenes):
            rec = read_record(job.out_dir / RECORDS_DIR / f"scene_{i:04d}.json")
            if (
                rec is not None
                and rec.get("key") == _record_key(s, job, msha)
                and rec.get("status") != "failed"
            ):
                records[i] = rec
                if on_done is not None:
                    on_done()
            else:
                todo.append(i)
    if scenes is not None and not todo:
        return [records[i] for i in range(len(scenes))]
    model = str(job.model.absolute()) if job.model is not None else None
    with ray_session(job.address, job.workers) as ray:
        if scenes is None:
            gen = ray.remote(num_cpus=1, max_retries=1)(generate_batch)
            batches = plan_batches(job.n, job.maps, job.batch, job.seed)
            weights = str(job.weights.absolute()) if job.weights else None
            refs = [gen.remote(name, len(idx), s, spec, job.steps, weights) for name, idx, s in batches]
            got: dict[int, dict] = {}
            for (_name, idx, _s), objs in zip(batches, ray.get(refs)):
                for i, obj in zip(idx, objs):
                    obj.setdefault("meta", {})["campaign_index"] = i
                    got[i] = obj
            scenes = [got[i] for i in range(job.n)]
            write_atomic(scenes_path, json.dumps(_scenes_doc(scenes, meta), separators=(",", ":")).encode())
            todo = list(range(job.n))
        remote = ray.remote(num_cpus=1, max_retries=1)(run_scene)
        pending = {remote.remote(scenes[i], i, job.seconds, model): i for i in todo}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            i = pending.pop(ready[0])
            try:
                rec, moment = ray.get(ready[0])
            except ray.exceptions.RayError as e:
                rec, moment = (
                    {"index": i, "status": "failed", "error": f"Ray task failed: {str(e).splitlines()[0]}"},
                    b"",
                )
            rec["key"] = _record_key(scenes[i], job, msha)
            if moment:
                write_atomic(job.out_dir / RECORDS_DIR / f"scene_{i:04d}.npz", moment)
            write_json_atomic(job.out_dir / RECORDS_DIR / f"scene_{i:04d}.json", rec)
            records[i] = rec
            if on_done is not None:
                on_done()
    return [records[i] for i in range(len(scenes))]


def rank(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The scored records worst first (:func:`severity_key`), each with its 1-based ``rank``; failed last."""
    ok = sorted(
        (r for r in records if r.get("status") != "failed"), key=lambda r: (severity_key(r), r["index"])
    )
    bad = [r for r in records if r.get("status") == "failed"]
    return [{**r, "rank": k + 1} for k, r in enumerate(ok + bad)]


def _run(args: argparse.Namespace) -> int:
    from prescient.bus.cli import progress_bar

    WEIGHTS_PATH = _scenario_diffusion("generate").WEIGHTS_PATH
    tokens = _scenario_diffusion("tokens")
    TokenSpec, TokenSpecError, load_spec = tokens.TokenSpec, tokens.TokenSpecError, tokens.load_spec
    from prescient.service.app.fleet.cli import check_model, failed_exit_code
    from prescient.service.app.fleet.ray_session import check_reachable, import_ray, resolve_address
    from prescient.service.app.stack_cli import model_from_args
    from prescient.sim_sensors.maps import SCENARIOS

    import_ray()
    maps = tuple(name for value in args.maps for name in value.split(",") if name)
    bad = [name for name in maps if name not in SCENARIOS]
    if bad or not maps:
        raise StartupError(
            f"--maps: unknown map {', '.join(map(repr, bad)) or '(none)'}; expected some of {', '.join(SCENARIOS)}"
        )
    try:
        spec = load_spec(args.tokens) if args.tokens else TokenSpec()
    except TokenSpecError as e:
        raise StartupError(f"--tokens: {e}") from e
    if spec.map_name is not None and set(maps) != {spec.map_name}:
        raise StartupError(f"--tokens is for map {spec.map_name!r}; pass --maps {spec.map_name}")
    weights = Path(args.weights) if args.weights else WEIGHTS_PATH
    if not weights.is_file():
        raise StartupError(f"scenario weights not found: {weights}")
    model = model_from_args(args)
    check_model(model)
    address = resolve_address(args.address)
    if address is not None:
        check_reachable(address)
    job = CampaignJob(args.n, maps, args.seconds, args.out, model, Path(args.tokens) if args.tokens else None,
                      args.seed, args.steps, args.batch, weights, address, args.workers)  # fmt: skip
    with progress_bar("fleet scenarios", args.n, "scenes") as bar:
        records = run_campaign(job, spec, on_done=bar.advance)
    ranked = rank(records)
    write_report(ranked, job, campaign_command(job, args.no_model))
    failed = [r for r in ranked if r.get("status") == "failed"]
    for r in failed:
        print(f"prescient fleet scenarios: failed scene {r['index']}: {r.get('error', '')}", file=sys.stderr)
    ok = [r for r in ranked if r.get("status") != "failed"]
    n_col = sum(r["safety"]["collision"] for r in ok)
    print(f"{len(ok)}/{len(ranked)} scenes ran, {n_col} collisions; report: {args.out / 'report.md'}")
    return failed_exit_code(len(failed))


def register_scenarios(
    sub: argparse._SubParsersAction,
    add_model_args: Callable[[argparse.ArgumentParser], None],
    add_cluster_args: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Add ``fleet scenarios``."""
    from prescient.bus.cli import non_negative_int, output_dir, positive_float, positive_int

    p = sub.add_parser("scenarios", help="generate scenes, run each through the stack, rank the worst",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--n", type=positive_int, default=12, help="number of scenes")
    p.add_argument("--maps", nargs="+", default=["intersection,t_junction,arterial,roundabout"],
                   help="maps, comma- or space-separated; scene i is on map i mod len(maps)")  # fmt: skip
    p.add_argument(
        "--tokens", metavar="SPEC.yaml", default=None, help="token spec (prescient scenarios generate)"
    )
    p.add_argument("--seconds", type=positive_float, default=10.0, help="simulated seconds per scene")
    p.add_argument("--out", type=output_dir, required=True, help="campaign folder (re-running resumes)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="generation seed")
    p.add_argument("--steps", type=positive_int, default=25, help="DDIM steps")
    p.add_argument("--batch", type=positive_int, default=8, help="scenes per generation task")
    p.add_argument("--weights", default=None, help="diffusion weights (default: the shipped ones)")
    add_model_args(p)
    add_cluster_args(p)
    p.set_defaults(func=_run)
