"""``prescient train | eval | export | quantize | calibrate | factor-edges``: training, evaluation, ONNX export,
int8, graph rewrites.

Registered by :mod:`prescient.service.app.cli`. Torch is imported inside the handlers only, so ``prescient --help``
stays fast and works without the ``train`` extra.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from prescient.bus.cli import non_negative_int, output_dir, output_path, positive_int
from prescient.bus.errors import StartupError
from prescient.models.eth_ucy_train import SELECT_CRITERIA, EthTrainConfig
from prescient.service.model_io.config import DECODERS

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ETH_UCY = REPO.parent / "shared" / "data" / "eth_ucy"


def _eth_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data", type=Path, default=DEFAULT_ETH_UCY, help="root with SCENE/{train,val,test}/*.txt"
    )
    p.add_argument("--scenes", default="", help="comma-separated scene names (default: all found)")
    d = EthTrainConfig()  # the measured recipe (models/README.md); flags override one part of it
    p.add_argument("--epochs", type=positive_int, default=d.epochs, help="training passes per left-out scene")
    p.add_argument("--seed", type=non_negative_int, default=d.seed)
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate")
    p.add_argument(
        "--mixture-weight", type=float, default=d.mixture_weight, help="mixture NLL weight beside WTA"
    )
    p.add_argument(
        "--soft-target",
        type=float,
        default=d.soft_target_m,
        help="soft mode-classification target temperature, m (0: the winning mode)",
    )
    p.add_argument(
        "--scale-aug",
        type=float,
        default=d.scale_aug,
        help="random scale of training windows, max factor (1: off)",
    )
    p.add_argument(
        "--flip-aug",
        action=argparse.BooleanOptionalAction,
        default=d.flip_aug,
        help="mirror half the training windows",
    )
    p.add_argument("--decoder", choices=list(DECODERS), default=d.decoder, help="trajectory head")
    p.add_argument(
        "--cosine",
        action=argparse.BooleanOptionalAction,
        default=d.cosine,
        help="warm-up then cosine decay of the learning rate",
    )
    p.add_argument("--select", choices=list(SELECT_CRITERIA), default=d.select, help="epoch kept, by val")
    p.add_argument(
        "--max-windows", type=positive_int, default=None, help="cap windows per split (quick runs)"
    )
    p.add_argument("--threads", type=positive_int, default=2, help="torch intra-op threads")
    p.add_argument("--out", type=output_path, default=None, help="write results JSON here")
    p.add_argument(
        "--checkpoints", type=output_dir, default=None, help="save each scene's best checkpoint here"
    )


def _run_eth_ucy(args: argparse.Namespace) -> int:
    import torch

    from prescient.models.eth_ucy import EthUcyError, list_scenes
    from prescient.models.eth_ucy_table import format_table
    from prescient.models.eth_ucy_train import train_scene

    torch.set_num_threads(args.threads)
    try:
        scenes = list_scenes(args.data)
    except EthUcyError as e:
        raise StartupError(str(e)) from e
    if args.scenes:
        wanted = [s.strip() for s in args.scenes.split(",") if s.strip()]
        missing = sorted(set(wanted) - {s.name for s in scenes})
        if missing:
            raise StartupError(f"scenes {missing} not found under {args.data}")
        scenes = [s for s in scenes if s.name in wanted]
    try:
        tc = EthTrainConfig(
            epochs=args.epochs,
            seed=args.seed,
            batch_size=args.batch_size,
            lr=args.lr,
            mixture_weight=args.mixture_weight,
            soft_target_m=args.soft_target,
            scale_aug=args.scale_aug,
            flip_aug=args.flip_aug,
            decoder=args.decoder,
            cosine=args.cosine,
            select=args.select,
            max_windows=args.max_windows,
        )
    except EthUcyError as e:
        raise StartupError(str(e)) from e
    results = []
    for scene in scenes:
        try:
            res = train_scene(scene, tc, out_dir=args.checkpoints)
        except EthUcyError as e:
            raise StartupError(str(e)) from e
        results.append(res)
        log.info("%s: %s", scene.name, json.dumps({k: res[k] for k in ("model", "cv")}))
    print(f"ETH/UCY leave-one-scene-out (obs 8, pred 12, dt 0.4 s), {args.epochs} training epochs per scene")
    print(format_table(results))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {"args": {k: str(v) for k, v in vars(args).items() if k != "func"}, "results": results},
                indent=2,
            )
        )
        print(f"wrote {args.out}")
    return 0


def _run_export(args: argparse.Namespace) -> int:
    from prescient.models.export import export_onnx, load_checkpoint, onnx_parity
    from prescient.models.export_tiny import build_tiny_model

    if args.tiny:
        model, meta = build_tiny_model(args.seed), {"note": "random weights, tests only"}
    else:
        if args.checkpoint is None or not Path(args.checkpoint).is_file():
            raise StartupError(f"checkpoint not found: {args.checkpoint} (or pass --tiny)")
        model, meta = load_checkpoint(args.checkpoint)
    manifest = export_onnx(
        model, args.out, opset=args.opset, dynamic_batch=args.dynamic_batch, training_meta=meta
    )
    diff = onnx_parity(model, args.out) if not args.dynamic_batch else None
    print(f"wrote {args.out} ({manifest['size_bytes'] / 1e6:.2f} MB, sha256 {manifest['sha256'][:16]}...)")
    if diff is not None:
        print(f"parity vs PyTorch on random inputs: max abs diff {diff:.2e}")
        if diff > 1e-4:
            print("FAIL: parity above 1e-4")
            return 1
    return 0


def _run_quantize(args: argparse.Namespace) -> int:
    from prescient.models.quantize import QuantizeError, QuantizeOptions, quantize_model

    if not Path(args.model).is_file():
        raise StartupError(f"model not found: {args.model}")
    opts = QuantizeOptions(
        num_samples=args.samples,
        seed=args.seed,
        per_channel=not args.per_tensor,
        op_types=tuple(args.op_types),
        exclude=tuple(args.exclude),
        calibrate_method=args.calibrate_method,
        preprocess=not args.no_preprocess,
    )
    try:
        manifest = quantize_model(args.model, args.out, args.calib, opts)
    except QuantizeError as e:
        raise StartupError(str(e)) from e
    q = manifest["quantization"]
    print(
        f"wrote {args.out} ({manifest['size_bytes'] / 1e6:.2f} MB, {manifest['precision']}, "
        f"sha256 {manifest['sha256'][:16]}..., {q['calibration_samples']} calibration samples "
        f"from {len(q['calibration_runs'])} runs, {q['excluded_nodes']} nodes kept in float)"
    )
    return 0


def _run_factor(args: argparse.Namespace) -> int:
    from prescient.models.onnx_passes import PassError, factor_file

    if not Path(args.model).is_file():
        raise StartupError(f"model not found: {args.model}")
    try:
        manifest = factor_file(Path(args.model), args.out)
    except PassError as e:
        raise StartupError(str(e)) from e
    print(
        f"wrote {args.out} ({manifest['model_id']}, outputs within {manifest['pass_parity_max_abs']:.1e} "
        f"of {Path(args.model).name})"
    )
    return 0


def _run_calibrate(args: argparse.Namespace) -> int:
    from prescient.models.calibrate import calibrate_model
    from prescient.models.sim_data import SimDataError
    from prescient.service.predictor import ModelLoadError

    if not Path(args.model).is_file():
        raise StartupError(f"model not found: {args.model}")
    try:
        entry = calibrate_model(args.model, args.data, args.max_scenes)
    except (SimDataError, ModelLoadError) as e:
        raise StartupError(str(e)) from e
    print(
        f"calibrated {args.model} on {len(entry['runs'])} validation runs (closest mode at {entry['horizon_s']:g} s):"
    )
    for name, g in entry["groups"].items():
        if g:
            print(
                f"  {name:10s} T {g['temperature']:.3f}  agents {g['agents']:6d}  NLL {g['nll_before']:.3f} -> "
                f"{g['nll_after']:.3f}  ECE {g['ece_before']:.3f} -> {g['ece_after']:.3f}"
                + (
                    f" -> {g['ece_after_top_map']:.3f} ({g['top_map']} top-label map)"
                    if "ece_after_top_map" in g
                    else ""
                )
            )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train``, ``eval``, ``export``, ``quantize`` and ``factor-edges`` to the ``prescient`` CLI."""
    train = subparsers.add_parser("train", help="train prediction models")
    tsub = train.add_subparsers(dest="train_target", metavar="TARGET")
    t_eth = tsub.add_parser("eth-ucy", help="train per scene on ETH/UCY, save checkpoints, score test")
    _eth_args(t_eth)
    t_eth.set_defaults(func=_run_eth_ucy)
    train.set_defaults(func=lambda a: (train.print_help(), 2)[1])

    ev = subparsers.add_parser("eval", help="evaluate prediction models next to physics baselines")
    esub = ev.add_subparsers(dest="eval_target", metavar="TARGET")
    e_eth = esub.add_parser(
        "eth-ucy",
        help="leave-one-scene-out ETH/UCY: train on each scene's train split, print the per-scene table",
    )
    _eth_args(e_eth)
    e_eth.set_defaults(func=_run_eth_ucy)
    ev.set_defaults(func=lambda a: (ev.print_help(), 2)[1])

    ex = subparsers.add_parser("export", help="export a checkpoint to ONNX with its manifest")
    ex.add_argument("--checkpoint", type=Path, default=None, help="checkpoint written by save_checkpoint")
    ex.add_argument("--tiny", action="store_true", help="export a tiny random-weight model (tests)")
    ex.add_argument("--out", type=output_path, required=True, help="destination .onnx")
    ex.add_argument("--opset", type=positive_int, default=17)
    ex.add_argument("--dynamic-batch", action="store_true")
    ex.add_argument("--seed", type=non_negative_int, default=0)
    ex.set_defaults(func=_run_export)

    qz = subparsers.add_parser(
        "quantize", help="int8 static quantisation (QDQ) of an exported model, calibrated on sim shards"
    )
    qz.add_argument("--model", type=Path, required=True, help="float .onnx (manifest beside it)")
    qz.add_argument(
        "--calib", type=Path, required=True, help="shards of `prescient data generate` (training seeds)"
    )
    qz.add_argument("--out", type=output_path, required=True, help="destination .onnx (manifest beside it)")
    qz.add_argument("--samples", type=positive_int, default=64, help="calibration scenes")
    qz.add_argument("--seed", type=non_negative_int, default=0, help="seed of the calibration sample choice")
    qz.add_argument(
        "--per-tensor", action="store_true", help="one weight scale per tensor (default: per channel)"
    )
    qz.add_argument(
        "--op-types", nargs="*", default=[], help="operator types to quantise (default: all supported)"
    )
    qz.add_argument("--exclude", nargs="*", default=[], help="glob patterns of node names kept in float")
    qz.add_argument("--calibrate-method", choices=["minmax", "entropy", "percentile"], default="minmax")
    qz.add_argument("--no-preprocess", action="store_true", help="skip quant_pre_process")
    qz.set_defaults(func=_run_quantize)

    cal = subparsers.add_parser(
        "calibrate",
        help="fit per-class temperatures of the mode probabilities on the model's validation runs",
    )
    cal.add_argument("--model", type=Path, required=True, help=".onnx whose manifest gets the temperatures")
    cal.add_argument(
        "--data", type=Path, required=True, help="shards holding the manifest's training.val_runs"
    )
    cal.add_argument("--max-scenes", type=positive_int, default=None, help="cap (spread over all scenes)")
    cal.set_defaults(func=_run_calibrate)

    fe = subparsers.add_parser(
        "factor-edges",
        help="rewrite an older export's attention edge values (exact, parity-checked; faster inference)",
    )
    fe.add_argument("--model", type=Path, required=True, help="exported .onnx (manifest beside it)")
    fe.add_argument("--out", type=output_path, required=True, help="destination .onnx (manifest beside it)")
    fe.set_defaults(func=_run_factor)
