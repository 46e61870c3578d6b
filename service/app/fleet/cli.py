"""``prescient fleet replay | generate``: many logs or seeds at once, one Ray task each.

Exit status of ``fleet replay``: 0 every log replayed and scored; 1 the run cannot start (one
line: no logs, a model that does not match the raster spec, an unreachable ``--address``;
nothing is written to ``--out``); 2 a bad argument or Ray not installed (the ``fleet`` extra);
100 + n when n logs failed or were damaged (at most 125), each named on one line of stderr and
in ``report.md``; the others' results are written as usual. 130: Ctrl-C (the records of the
logs already done stay, and the same command resumes).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from prescient.bus.cli import output_dir
from prescient.bus.errors import StartupError

log = logging.getLogger(__name__)

EXIT_FAILED_BASE = 100
EXIT_FAILED_MAX = 125


def failed_exit_code(n_failed: int) -> int:
    """0 when nothing failed, else 100 + n capped at 125."""
    return 0 if n_failed <= 0 else min(EXIT_FAILED_BASE + n_failed, EXIT_FAILED_MAX)


def positive_int(text: str) -> int:
    """An int >= 1 (argparse type)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v} must be >= 1")
    return v


def check_model(model: Path | None) -> None:
    """Load the model once here, so a model that disagrees with the raster spec stops the run
    before any Ray task (StartupError, one line) instead of failing every log."""
    from prescient.service.predictor import load_service_predictor

    if model is not None and model.is_file():
        load_service_predictor(model, threads=1, providers=("CPUExecutionProvider",))


def _replay(args: argparse.Namespace) -> int:
    from prescient.bus.cli import progress_bar
    from prescient.service.app.fleet.logs import expand_logs
    from prescient.service.app.fleet.ray_session import check_reachable, import_ray, resolve_address
    from prescient.service.app.fleet.report import write_outputs
    from prescient.service.app.fleet.run import ReplayJob, run_replay
    from prescient.service.app.fleet.store import read_results
    from prescient.service.app.fleet.task import STATUS_OK
    from prescient.service.app.stack_cli import model_from_args

    import_ray()  # a missing extra is exit 2 before anything else
    logs = expand_logs(args.logs)
    model = model_from_args(args)
    check_model(model)
    baseline = None
    if args.baseline is not None:
        try:
            baseline = read_results(args.baseline)
        except (OSError, ValueError) as e:
            raise StartupError(f"--baseline {args.baseline}: no readable results.jsonl ({e})") from e
    address = resolve_address(args.address)
    if address is not None:
        check_reachable(address)
    job = ReplayJob(tuple(logs), model, args.out, address, args.workers)
    with progress_bar("fleet replay", len(logs), "logs") as bar:
        records = run_replay(job, on_done=lambda _rec: bar.advance())
    summary = write_outputs(records, args.out, baseline, str(args.baseline or ""))
    bad = [r for r in records if r.get("status") != STATUS_OK]
    for r in bad:
        print(f"prescient fleet replay: {r['status']} log {r['log']}: {r.get('error', '')}", file=sys.stderr)
    _print_summary(records, summary, args.out)
    return failed_exit_code(len(bad))


def _print_summary(records: list[dict[str, Any]], summary: dict[str, Any], out: Path) -> None:
    from prescient.service.app.fleet.task import STATUS_OK

    n_ok = sum(1 for r in records if r.get("status") == STATUS_OK)
    cell = summary["pooled"].get("all", {})
    longest = max(cell, key=lambda h: float(h[:-1])) if cell else None
    fde = ""
    if longest:
        c = cell[longest]
        fde = f"; minFDE6 at {longest}: model {c['model']['min_fde']:.2f} m, cv {c['cv']['min_fde']:.2f} m"
    print(f"{n_ok}/{len(records)} logs ok{fde}; report: {out / 'report.md'}")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--model", type=Path, default=None, help="ONNX model, manifest next to it (default: shipped)"
    )
    group.add_argument(
        "--no-model", action="store_true", help="the constant-velocity fallback only (degraded)"
    )


def _add_cluster_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--address", default=None, help="Ray cluster HOST:PORT (default: $RAY_ADDRESS, else a local instance)"
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="local instance: CPUs = parallel tasks (default: all)",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``prescient fleet replay``, ``fleet generate`` and ``fleet scenarios``."""
    fleet = subparsers.add_parser("fleet", help="many logs or seeds as Ray tasks (the fleet extra)", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = fleet.add_subparsers(dest="fleet_command", metavar="SUBCOMMAND", required=True)
    p = sub.add_parser("replay", help="replay and score many logs; report, regression diff", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("logs", nargs="+", help="log files, folders (every *.mcap below) or globs")
    p.add_argument("--out", type=output_dir, required=True, help="results folder (re-running resumes)")
    p.add_argument("--baseline", type=Path, default=None, help="an earlier --out: regression diff against it")
    _add_model_args(p)
    _add_cluster_args(p)
    p.set_defaults(func=_replay)
    _register_generate(sub)
    from prescient.service.app.fleet.scenarios import register_scenarios

    register_scenarios(sub, _add_model_args, _add_cluster_args)


def _register_generate(sub: argparse._SubParsersAction) -> None:
    """``fleet generate`` lives in :mod:`.generate`; absent there, the subcommand is absent."""
    from prescient.service.app.fleet.generate import register_generate

    register_generate(sub, _add_cluster_args)
