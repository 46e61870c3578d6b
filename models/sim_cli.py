"""``prescient data generate | train-sim | eval-sim | eval-av2``: simulation training and evaluation.

Registered by :mod:`prescient.service.app.cli`. Torch is imported inside the handlers only.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from prescient.bus.cli import (
    ProgressBar,
    fraction,
    non_negative_float,
    non_negative_int,
    output_dir,
    output_path,
    positive_float,
    positive_int,
    progress_bar,
    require_file,
)
from prescient.bus.errors import StartupError

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_AV2 = REPO.parent / "shared" / "data" / "av2_sensor_tracks"
DEFAULT_MODEL = REPO / "models" / "shipped" / "prescient.onnx"
# In a checkout the documented commands rebuild the shipped files in place; an installed package
# is never written to (site-packages), so there the outputs default to ./runs.
IN_CHECKOUT = (REPO / "pyproject.toml").is_file()
DEFAULT_EXPORT = DEFAULT_MODEL if IN_CHECKOUT else Path("runs/sim/prescient.onnx")
DEFAULT_CONDITIONAL_PNG = (
    REPO / "models" / "shipped" / "conditional.png" if IN_CHECKOUT else Path("runs/conditional.png")
)


def _run_generate(args: argparse.Namespace) -> int:
    from prescient.models.sim_branches import parse_branches
    from prescient.models.sim_data import GenConfig, SimDataError, generate, parse_seeds, plan_runs

    if args.duration <= 10.0:
        raise StartupError(f"--duration must exceed 10 s (2 s warm-up + 8 s future), got {args.duration}")
    maps = [name for value in args.maps for name in value.split(",") if name]
    try:
        seeds = parse_seeds(args.seeds)
        runs = plan_runs(maps, seeds, args.duration, args.agents, args.night_fraction)
        gen = GenConfig(
            stride_ticks=args.stride,
            use_lidar=not args.no_lidar,
            branches=parse_branches(args.branches),
            branch_every=args.branch_every,
        )
        index = generate(args.out, runs, gen, workers=args.workers, night_fraction=args.night_fraction)
    except SimDataError as e:
        raise StartupError(str(e)) from e
    branches = ", ".join(f"{k} {v}" for k, v in index["branch_samples"].items()) or "none"
    print(
        f"{args.out} ({index['split']}): {len(index['shards'])} shards, {index['samples']} samples "
        f"({len(index['night_runs'])} night runs), branch samples: {branches}; manifest index.json"
    )
    return 0


def _run_train(args: argparse.Namespace) -> int:
    import torch

    from prescient.models.sim_data import SimDataError
    from prescient.models.train_sim import TrainConfig, train
    from prescient.models.train_state import TrainStateError

    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise StartupError("--device cuda: this torch build sees no CUDA device")
    cfg = TrainConfig(
        seed=args.seed,
        minutes=args.minutes,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        lr=args.lr,
        n_max=args.n_max,
        val_fraction=args.val_fraction,
        route_plan_fraction=args.route_plan_fraction,
        model_size=args.model_size,
        shards_in_memory=args.shards_in_memory,
        decoder=args.decoder,
        plan_attention=args.plan_attention,
        velocity_step=args.velocity_step,
        mixture_weight=args.mixture_weight,
        soft_target_m=args.soft_target_m,
        pair_fraction=args.pair_fraction,
        shift_weight=args.shift_weight,
        moved_weight=args.moved_weight,
        accel_weight=args.accel_weight,
        route_pair_fraction=args.route_pair_fraction,
        init_from=None if args.init_from is None else str(args.init_from),
        mode_scorer=args.mode_scorer,
        train_only=args.train_only,
        device=args.device,
        val_every=args.val_every,
        val_max_samples=args.val_max_samples,
    )
    try:
        res = train(args.data, args.out, cfg, resume=not args.fresh)
    except (SimDataError, TrainStateError) as e:
        raise StartupError(str(e)) from e
    print(
        json.dumps(
            {
                k: res[k]
                for k in ("best_checkpoint", "best_val", "steps", "complete", "train_samples", "val_samples")
            },
            indent=2,
        )
    )
    if not res["complete"]:
        print(
            f"stopped at step {res['steps']} of {cfg.max_steps} (--minutes): run the same command again "
            f"to resume{'; not exported' if args.export is not None else ''}"
        )
        return 3
    if args.export is not None:
        from prescient.models.train_sim import export_best

        manifest = export_best(Path(res["best_checkpoint"]), args.export)
        print(
            f"exported {args.export} ({manifest['size_bytes'] / 1e6:.2f} MB, spec {manifest['raster_spec_version']})"
        )
    return 0


def _run_export_sim(args: argparse.Namespace) -> int:
    from prescient.models.train_sim import EXPORT_N_MAX, export_best

    if not args.checkpoint.is_file():
        raise StartupError(f"checkpoint not found: {args.checkpoint}")
    manifest = export_best(args.checkpoint, args.out, n_max=args.n_max or EXPORT_N_MAX)
    print(
        f"exported {args.out} ({manifest['size_bytes'] / 1e6:.2f} MB, n_max {manifest['n_max']}, "
        f"spec {manifest['raster_spec_version']}, parity {manifest['parity_max_abs']:.1e})"
    )
    return 0


def _run_recover(args: argparse.Namespace) -> int:
    from prescient.models.recover import RecoverError, recover_checkpoint
    from prescient.models.sim_data import SimDataError

    require_file(args.model, "model")
    if args.out.exists() and not args.force:
        raise StartupError(f"{args.out} exists (--force replaces it)")
    try:
        meta = recover_checkpoint(args.model, args.out, args.data, samples=args.samples)
    except (RecoverError, SimDataError) as e:
        raise StartupError(str(e)) from e
    print(
        f"wrote {args.out} (+ .json) from {meta['recovered_from']['model_id']}: parity "
        f"{meta['parity_max_abs']:.1e}, BatchNorm statistics from {meta['batchnorm_rasters']} rasters"
    )
    return 0


def _run_eval_sim(args: argparse.Namespace) -> int:
    from prescient.models.eval_sim import evaluate_sim, format_report
    from prescient.models.sim_data import SimDataError

    require_file(args.model, "model")
    try:
        report = evaluate_sim(args.model, args.data, threads=args.threads, max_samples=args.max_samples)
    except SimDataError as e:
        raise StartupError(str(e)) from e
    _report(format_report(report), report, args.out)
    return 0


def _report(text: str, report: dict, out: Path | None) -> None:
    """Print an evaluation's tables; write its JSON to ``out`` when given."""
    print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {out}")


def _run_eval_counterfactual(args: argparse.Namespace) -> int:
    from prescient.models.eval_counterfactual import evaluate_counterfactual, format_report
    from prescient.models.eval_sim import load_eval_predictor
    from prescient.models.sim_data import SimDataError

    require_file(args.model, "model")
    predictor = load_eval_predictor(args.model, None, None, args.threads)
    try:
        report = evaluate_counterfactual(predictor, args.data, max_samples=args.max_samples)
    except SimDataError as e:
        raise StartupError(str(e)) from e
    report["model"] = str(args.model)
    _report(format_report(report), report, args.out)
    return 0


def _run_eval_floor(args: argparse.Namespace) -> int:
    from prescient.models.eval_floor import evaluate_floor, format_floor, summarize
    from prescient.models.sim_data import SimDataError

    if args.model is not None:
        require_file(args.model, "model")
    try:
        scores = evaluate_floor(args.data, args.model, rollouts=args.rollouts, every=args.every)
    except SimDataError as e:
        raise StartupError(str(e)) from e
    summary = summarize(scores)
    report = {"data": str(args.data), "model": None if args.model is None else str(args.model),
              "rollouts": args.rollouts, "every": args.every, "summary": summary}  # fmt: skip
    _report(format_floor(summary, args.rollouts), report, args.out)
    return 0


class _LogsDone(logging.Handler):
    """Advances a progress bar when ``evaluate_av2`` logs that it finished one of ``names``."""

    def __init__(self, bar: ProgressBar, names: set[str]) -> None:
        super().__init__(logging.INFO)
        self.bar, self.names = bar, names

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        if args and args[0] in self.names:
            self.bar.advance()


def _run_eval_av2(args: argparse.Namespace) -> int:
    if not args.data.is_dir():
        raise StartupError(
            f"Argoverse 2 data not found: {args.data} is not a folder (--data DIR, one folder per log)"
        )
    require_file(args.model, "model")
    names = {p.name for p in args.data.iterdir() if p.is_dir()}
    if not names:
        raise StartupError(f"no Argoverse 2 log folders in {args.data}")
    from prescient.models.eval_sim import evaluate_av2, format_report
    from prescient.models.sim_data import SimDataError

    eval_log = logging.getLogger("prescient.models.eval_sim")
    with progress_bar(f"eval-av2 {args.data.name}", len(names), "logs") as bar:
        handler = _LogsDone(bar, names)
        eval_log.addHandler(handler)
        try:
            report = evaluate_av2(args.model, args.data, threads=args.threads, work_dir=args.work_dir)
        except SimDataError as e:
            raise StartupError(str(e)) from e
        finally:
            eval_log.removeHandler(handler)
    _report(format_report(report), report, args.out)
    return 0


def _run_conditional(args: argparse.Namespace) -> int:
    from prescient.models.eval_conditional import conditional_scene, plot_conditional, scene_report

    require_file(args.model, "model")
    scene = conditional_scene(args.model, args.scenario, args.seed, args.time)
    out = plot_conditional(scene, args.out)
    print(f"wrote {out} (degraded={scene['reply'].degraded})\n{scene_report(scene)}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``data``, ``train-sim``, ``export-sim``, ``recover-checkpoint``, ``eval-sim`` and
    ``eval-av2`` to the ``prescient`` CLI."""
    data = subparsers.add_parser("data", help="training data")
    dsub = data.add_subparsers(dest="data_cmd", metavar="CMD")
    g = dsub.add_parser("generate", help="simulate runs through the onboard pipeline and write shards")
    g.add_argument("--out", type=output_dir, required=True, help="output folder of .npz shards")
    g.add_argument(
        "--maps", "--scenarios", dest="maps", nargs="+", default=["intersection,t_junction,arterial,roundabout"],
        help="maps, comma- or space-separated (one run per map and seed, by day or night)",
    )  # fmt: skip
    g.add_argument(
        "--seeds", default="0-29",
        help="e.g. 0-29 or 1,4,7; 100 and above are held-out evaluation seeds (their own --out)",
    )  # fmt: skip
    g.add_argument("--duration", type=positive_float, default=60.0, help="simulated seconds per run (> 10)")
    g.add_argument("--night-fraction", type=fraction, default=0.3)
    g.add_argument("--agents", type=non_negative_int, default=40)
    g.add_argument("--stride", type=positive_int, default=10, help="keep every Nth 100 ms tick")
    g.add_argument("--workers", type=positive_int, default=max(1, min(2, os.cpu_count() or 1)))
    g.add_argument("--no-lidar", action="store_true", help="do not splat LiDAR (onboard default: on)")
    g.add_argument(
        "--branches", default="keep,slow,stop,route",
        help="counterfactual ego plans per sample (keep,slow,stop,route; 'none': no branches)",
    )  # fmt: skip
    g.add_argument("--branch-every", type=positive_int, default=1, help="branch every Nth sample")
    g.set_defaults(func=_run_generate)
    data.set_defaults(func=lambda a: (data.print_help(), 2)[1])

    t = subparsers.add_parser("train-sim", help="train TrajectoryNet on generated simulation shards")
    t.add_argument("--data", type=Path, required=True)
    t.add_argument("--out", type=output_dir, default=Path("runs/sim"))
    t.add_argument("--seed", type=non_negative_int, default=0)
    t.add_argument("--max-steps", type=positive_int, default=420, help="the schedule: optimiser steps")
    t.add_argument(
        "--minutes", type=positive_float, default=None,
        help="wall-clock stop; the state is saved and a rerun with the same --out resumes",
    )  # fmt: skip
    t.add_argument("--fresh", action="store_true", help="ignore a saved state in --out and start over")
    t.add_argument(
        "--decoder", choices=["direct", "basis"], default="direct", help="basis: smooth by construction"
    )
    t.add_argument("--plan-attention", action="store_true", help="agents attend to the ego plan's points")
    t.add_argument(
        "--no-velocity-step", dest="velocity_step", action="store_false",
        help="basis decoder: every mode starts at the agent's current velocity (no jump at t=0)",
    )  # fmt: skip
    t.add_argument("--mixture-weight", type=non_negative_float, default=0.0, help="full-mixture NLL weight")
    t.add_argument(
        "--soft-target-m", type=non_negative_float, default=0.0,
        help="mode-classification target softmax(-ADE_k / this, metres) instead of the winner (0: winner)",
    )  # fmt: skip
    t.add_argument(
        "--pair-fraction", type=fraction, default=0.0,
        help="share of steps on counterfactual pairs (shards generated with --branches)",
    )  # fmt: skip
    t.add_argument(
        "--shift-weight", type=non_negative_float, default=1.0, help="weight of the pair shift loss"
    )
    t.add_argument(
        "--moved-weight", type=positive_float, default=1.0,
        help="weight in the shift loss of agents the plan moves (> 0.5 m), against unmoved ones",
    )  # fmt: skip
    t.add_argument(
        "--accel-weight", type=non_negative_float, default=0.0,
        help="weight of the closest mode's acceleration error against the truth's (m/s^2; smoothness)",
    )  # fmt: skip
    t.add_argument(
        "--route-pair-fraction", type=fraction, default=0.0,
        help="pair steps: share of scenes with a route branch paired as (actual future, route)",
    )  # fmt: skip
    t.add_argument(
        "--init-from", type=Path, default=None, help="start from this checkpoint's weights (fine-tune)"
    )
    t.add_argument(
        "--mode-scorer", action="store_true",
        help="each mode's probability also sees its own path and the raster features under it",
    )  # fmt: skip
    t.add_argument(
        "--train-only", choices=["scorer"], default=None,
        help="train the mode scorer alone (with --init-from); the rest stays as loaded",
    )  # fmt: skip
    t.add_argument(
        "--shards-in-memory", type=non_negative_int, default=0,
        help="0: load every shard; N: read shards on demand, at most N in memory (large datasets)",
    )  # fmt: skip
    t.add_argument("--batch-size", type=positive_int, default=8)
    t.add_argument("--lr", type=positive_float, default=1e-3)
    t.add_argument(
        "--n-max", type=positive_int, default=48, help="agent slots while training (export uses 128)"
    )
    t.add_argument("--val-fraction", type=fraction, default=0.1, help="fraction of runs held for validation")
    t.add_argument("--route-plan-fraction", type=fraction, default=0.3)
    t.add_argument("--model-size", choices=["small", "tiny"], default="small")
    t.add_argument("--threads", type=positive_int, default=2)
    t.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where to train (cuda: one GPU)")
    t.add_argument("--val-every", type=positive_int, default=200, help="validate every N steps")
    t.add_argument("--val-max-samples", type=positive_int, default=160, help="validation samples (spread)")
    t.add_argument(
        "--export", type=output_path, default=None, help="export the best checkpoint to this .onnx"
    )
    t.set_defaults(func=_run_train)

    x = subparsers.add_parser(
        "export-sim", help="export a train-sim checkpoint to ONNX with 128 agent slots (+ parity check)"
    )
    x.add_argument("--checkpoint", type=Path, default=Path("runs/sim/best.pt"))
    x.add_argument("--out", type=output_path, default=DEFAULT_EXPORT)
    x.add_argument("--n-max", type=positive_int, default=None, help="agent slots of the export (default 128)")
    x.set_defaults(func=_run_export_sim)

    r = subparsers.add_parser(
        "recover-checkpoint",
        help="a train-sim checkpoint (for --init-from) from a float ONNX export (+ parity check)",
    )
    r.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="float .onnx with its manifest")
    r.add_argument("--out", type=output_path, required=True, help="checkpoint to write (.pt; + .pt.json)")
    r.add_argument(
        "--data", type=Path, default=None,
        help="training shards: BatchNorm statistics from their rasters (needed to fine-tune)",
    )  # fmt: skip
    r.add_argument("--samples", type=positive_int, default=64, help="rasters for the BatchNorm statistics")
    r.add_argument("--force", action="store_true", help="replace an existing --out")
    r.set_defaults(func=_run_recover)

    for name, fn, helptext in (
        ("eval-sim", _run_eval_sim, "minADE/minFDE/miss/NLL on held-out sim shards vs CV and CTRV"),
        ("eval-av2", _run_eval_av2, "8 s vehicle forecasts on Argoverse 2 sensor logs vs CV and CTRV"),
        (
            "eval-counterfactual",
            _run_eval_counterfactual,
            "reaction capture: predicted vs true shift between two ego plans (held-out branched shards)",
        ),
    ):
        e = subparsers.add_parser(name, help=helptext)
        e.add_argument("--model", type=Path, default=DEFAULT_MODEL)
        e.add_argument("--threads", type=positive_int, default=2)
        e.add_argument("--out", type=output_path, default=None, help="write the report JSON here")
        if name in ("eval-sim", "eval-counterfactual"):
            e.add_argument("--data", type=Path, required=True)
            e.add_argument("--max-samples", type=positive_int, default=None)
        else:
            e.add_argument("--data", type=Path, default=DEFAULT_AV2)
            e.add_argument("--work-dir", type=output_dir, default=None, help="keep imported MCAP logs here")
        e.set_defaults(func=fn)

    f = subparsers.add_parser(
        "eval-floor",
        help="how predictable the held-out sim futures are: the simulator's own resampled futures vs the model and CV",
    )
    f.add_argument("--data", type=Path, required=True, help="held-out shards (prescient data generate)")
    f.add_argument("--model", type=Path, default=None, help="also score this model on the same agents")
    f.add_argument("--rollouts", type=positive_int, default=32, help="resampled futures per sample")
    f.add_argument("--every", type=positive_int, default=4, help="use every N-th sample of each run")
    f.add_argument("--out", type=output_path, default=None, help="write the report JSON here")
    f.set_defaults(func=_run_eval_floor)

    c = subparsers.add_parser(
        "eval-conditional",
        help="picture: predictions under the simulator's 'keep' and 'stop' ego plans next to the simulated truth",
    )
    c.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    # Default: of the 20 held-out runs (seeds 100-104, 4 maps) at 15 s, the one where the
    # simulated stop moves the most agents by more than 1 m (5), chosen from the truth alone.
    c.add_argument("--scenario", default="roundabout")
    c.add_argument("--seed", type=non_negative_int, default=102)
    c.add_argument("--time", type=non_negative_float, default=15.0, help="sim seconds before the request")
    c.add_argument("--out", type=output_path, default=DEFAULT_CONDITIONAL_PNG)
    c.set_defaults(func=_run_conditional)
