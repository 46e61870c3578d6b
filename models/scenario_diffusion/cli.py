"""``prescient scenarios generate`` and ``prescient scenarios eval``."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from prescient.bus.cli import fraction, non_negative_int, output_path, positive_int
from prescient.bus.errors import StartupError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``scenarios`` command with its ``generate`` and ``eval`` subcommands."""
    from prescient.sim_sensors.maps import SCENARIOS

    p = subparsers.add_parser(
        "scenarios", help="generate controllable scenes (latent diffusion) and evaluate them"
    )
    sub = p.add_subparsers(dest="scenarios_cmd", required=True)
    g = sub.add_parser("generate", help="generate scenes on a map from a token spec into a scene file")
    g.add_argument("--map", required=True, choices=SCENARIOS)
    g.add_argument(
        "--tokens", metavar="SPEC.yaml", help="token spec (see models/scenario_diffusion/tokens.py)"
    )
    g.add_argument("--n", type=positive_int, default=10, help="number of scenes")
    g.add_argument("--out", type=output_path, default="scenes.json", help="scene file to write")
    g.add_argument("--seed", type=non_negative_int, default=0)
    g.add_argument("--steps", type=int, default=25, help="DDIM steps (20-50)")
    g.add_argument(
        "--guidance", type=float, default=None, help="classifier-free guidance (overrides the spec)"
    )
    g.add_argument("--density", type=float, default=None, help="global density token (overrides the spec)")
    g.add_argument("--threshold", type=fraction, default=0.5, help="agent probability threshold")
    g.add_argument("--weights", default=None, help="weights file (default: the shipped one)")
    g.add_argument(
        "--enforce-pins",
        action="store_true",
        help="insert pinned agents the model did not produce (counted apart; overlapping agents removed)",
    )
    g.add_argument(
        "--no-inpaint",
        action="store_true",
        help="learned pin conditioning only: do not paste the pins' latent at every DDIM step",
    )
    g.add_argument(
        "--picture",
        metavar="PNG",
        type=output_path,
        help="also draw the first scene whose pins were all found",
    )
    g.set_defaults(func=run_generate)
    e = sub.add_parser("eval", help="realism / compliance against held-out simulated scenes and the spawner")
    e.add_argument(
        "--runs-per-map", type=positive_int, default=3, help="held-out simulator runs per map (2 scenes each)"
    )
    e.add_argument("--steps", type=positive_int, default=25)
    e.add_argument("--guidance", type=float, default=1.0)
    e.add_argument("--seed", type=non_negative_int, default=0)
    e.add_argument("--weights", default=None)
    e.add_argument("--no-inpaint", action="store_true", help="pinned rows without latent inpainting")
    e.add_argument("--json", metavar="FILE", type=output_path, help="write the full result here")
    e.set_defaults(func=run_eval)


def _generator(path: str | None):
    import torch

    from prescient.models.scenario_diffusion.generate import WEIGHTS_PATH, ScenarioGenerator, WeightsError

    torch.set_num_threads(1)
    try:
        return ScenarioGenerator.load(path or WEIGHTS_PATH)
    except WeightsError as e:
        raise StartupError(str(e)) from e


def run_generate(args: argparse.Namespace) -> int:
    """Handler of ``prescient scenarios generate``."""
    from prescient.models.scenario_diffusion.tokens import TokenSpec, TokenSpecError, load_spec
    from prescient.sim_sensors.scenario_file import save_scenes

    if args.n < 1:
        raise StartupError(f"--n must be >= 1, got {args.n}")
    if not 1 <= args.steps <= 1000:
        raise StartupError(f"--steps must be in 1..1000, got {args.steps}")
    try:
        spec = load_spec(args.tokens) if args.tokens else TokenSpec()
    except TokenSpecError as e:
        raise StartupError(f"--tokens: {e}") from e
    if args.guidance is not None:
        spec.guidance = args.guidance
    if args.density is not None:
        spec.density = args.density
    gen = _generator(args.weights)
    t0 = time.perf_counter()
    try:
        scenes = gen.generate(
            args.map,
            spec,
            n=args.n,
            seed=args.seed,
            n_steps=args.steps,
            threshold=args.threshold,
            enforce_pins=args.enforce_pins,
            inpaint_pins=not args.no_inpaint,
        )
    except TokenSpecError as e:
        raise StartupError(str(e)) from e
    wall = time.perf_counter() - t0
    meta = {"map": args.map, "tokens": args.tokens, "seed": args.seed, "ddim_steps": args.steps}
    out = save_scenes(args.out, scenes, meta)
    n_pins = len(spec.agents) * len(scenes)
    found = sum(s.meta["pins_found"] for s in scenes)
    counts = [s.n_agents for s in scenes]
    print(
        f"prescient scenarios: {len(scenes)} scenes on {args.map} in {wall:.2f} s ({wall / len(scenes) * 1e3:.1f} ms/scene)"
    )
    print(f"agents per scene: mean {sum(counts) / len(counts):.1f}, min {min(counts)}, max {max(counts)}")
    if n_pins:
        print(
            f"pinned agents produced by the model (2.2 m, 0.2 rad): {found}/{n_pins} ({found / n_pins:.0%})"
        )
        inserted = sum(s.meta["pins_inserted"] for s in scenes)
        if inserted:
            print(f"pinned agents inserted (--enforce-pins): {inserted}/{n_pins}")
    print(f"written to {out}  (run it: prescient up --from-scenario {out}#0)")
    if args.picture:
        from prescient.models.scenario_diffusion.picture import draw_scene

        full = [
            i
            for i, s in enumerate(scenes)
            if s.meta["pins_found"] + s.meta["pins_inserted"] == s.meta["pins_requested"]
        ]
        i = full[0] if full else 0
        print(f"picture of scene {i} written to {draw_scene(scenes[i], args.picture)}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    """Handler of ``prescient scenarios eval``."""
    from prescient.models.scenario_diffusion.evaluate import evaluate, format_report

    if args.runs_per_map < 1:
        raise StartupError(f"--runs-per-map must be >= 1, got {args.runs_per_map}")
    gen = _generator(args.weights)
    r = evaluate(
        gen,
        runs_per_map=args.runs_per_map,
        n_steps=args.steps,
        guidance=args.guidance,
        seed=args.seed,
        inpaint_pins=not args.no_inpaint,
    )
    print(format_report(r))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(r, indent=1))
        print(f"written to {args.json}")
    return 0
