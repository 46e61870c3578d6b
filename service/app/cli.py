"""``prescient`` command line: one entry point, subcommands registered by their own modules.

Each module in ``COMMAND_MODULES`` exposes ``register(subparsers)``, which adds one or more
subcommands whose handler is stored as ``func`` and returns an exit code. A module that does not
exist in this checkout is simply absent from ``--help``: no placeholder commands.

Errors end in one line on stderr, ``prescient COMMAND: error: ...``, and an exit status:
1 for a command that cannot do its job (:class:`~prescient.bus.errors.StartupError`, a file it cannot
read or write), 2 for bad arguments and for a missing optional package (the line names the extra
to install), 130 for Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from typing import NoReturn

from prescient.bus.errors import MissingExtraError, StartupError, missing_extra

COMMAND_MODULES = (
    "prescient.bus.cli",  # prescient bus, prescient bus-bench
    "prescient.bus.log_cli",  # prescient log ..., prescient import ...
    "prescient.sim_sensors.cli",  # prescient sim
    "prescient.service.app.tracking.cli",  # prescient track
    "prescient.service.app.raster_cli",  # prescient raster
    "prescient.models.cli",  # prescient data / train / eval / export
    "prescient.models.sim_cli",  # prescient data generate / train-sim / eval-sim / eval-av2
    "prescient.service.app.stack_cli",  # prescient up / replay / serve / planner
    "prescient.benchmarks.cli",  # prescient bench
    "prescient.models.scenario_diffusion.cli",  # prescient scenarios
    "prescient.service.app.fleet.cli",  # prescient fleet replay / generate (Ray)
    "prescient.service.app.foxglove.cli",  # prescient view / export-scene (Foxglove)
)


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block) and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Version(argparse.Action):
    """``--version``: one unwrapped line, computed only when asked (it reads the model manifest)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help=str(kwargs.get("help", "")))

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(version_line())
        parser.exit(0)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="prescient", description="Real-time onboard trajectory prediction.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action=_Version, help="version, shipped model sha256, raster spec")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name is not None and name.startswith(e.name):
                continue  # that part of the product is not in this checkout
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()  # imports every command's module: a second or more when cold
    except KeyboardInterrupt:
        print("prescient: interrupted while starting", file=sys.stderr)
        return 130
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname).1s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return run_command(args)


def run_command(args: argparse.Namespace) -> int:
    """Run the chosen command's handler; every expected failure becomes one line and a status."""
    where = f"prescient {args.command}"
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"{where}: interrupted", file=sys.stderr)
        return 130
    except MissingExtraError as e:
        print(f"{where}: error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        extra = missing_extra(e)
        if extra is None:
            raise  # a module of ours is missing: a broken install, worth a traceback
        print(f"{where}: error: {extra}", file=sys.stderr)
        return 2
    except StartupError as e:
        print(f"{where}: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a path the user gave that cannot be read or written
        name = f" {e.filename}" if e.filename else ""
        print(f"{where}: error: cannot use{name}: {e.strerror or e}", file=sys.stderr)
        return 1


def version_line() -> str:
    """``prescient X.Y.Z`` plus the shipped model's sha256 prefix and the raster spec version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version("prescient")
    except PackageNotFoundError:
        ver = "(not installed)"
    return f"prescient {ver}; {_model_line()}"


def _model_line() -> str:
    from prescient.service.app.paths import default_model_path
    from prescient.service.raster import RasterConfig, build_spec

    model = default_model_path()
    manifest = model.with_name(model.stem + ".manifest.json")
    try:
        sha = json.loads(manifest.read_text())["sha256"][:12]
    except (OSError, ValueError, KeyError, TypeError):
        sha = "none (no shipped model)"
    return f"model {model.name} sha256 {sha}; raster spec {build_spec(RasterConfig()).fingerprint()}"


if __name__ == "__main__":
    sys.exit(main())
