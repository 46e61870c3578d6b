"""``prescient`` command line: one entry point, subcommands registered by their own modules.

Each module in ``COMMAND_MODULES`` exposes ``register(subparsers)``, which adds one or more
subcommands whose handler is stored as ``func`` and returns an exit code. A module that does not
exist in this checkout is simply absent from ``--help``: no placeholder commands.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from bus.errors import StartupError

COMMAND_MODULES = (
    "bus.cli",  # prescient bus, prescient bus-bench
    "bus.log_cli",  # prescient log ..., prescient import ...
    "sim_sensors.cli",  # prescient sim
    "service.app.tracking.cli",  # prescient track
    "service.app.raster_cli",  # prescient raster
    "models.cli",  # prescient data / train / eval / export
    "models.sim_cli",  # prescient data generate / train-sim / eval-sim / eval-av2
    "service.app.stack_cli",  # prescient up / replay / serve / planner
    "benchmarks.cli",  # prescient bench
    "models.scenario_diffusion.cli",  # prescient scenarios
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prescient", description="Real-time onboard trajectory prediction.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
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
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname).1s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except StartupError as e:
        print(f"prescient {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
