"""Compile every ``cache=True`` numba kernel once, into the on-disk cache: ``python -m prescient.service.app.warmup``.

The container image runs this at build time (as its runtime user, with ``NUMBA_CACHE_DIR`` at its
final path), so a container's processes load machine code from the cache instead of compiling for
20-30 s (two cores) on their first start. What it runs is what the processes run before going
live: the service's stages (:func:`prescient.service.node.warm_up_stages`: tracker and raster
kernels) and a short simulation of every scenario, by day and by night (behaviour, lane, RNG and
all four sensor kinds). numba only reads a cache folder it can also write (it probes with a
temporary file and otherwise compiles afresh into another folder), so the runtime user must own it.

``--expect-cached`` fails (exit 1) when anything had to be compiled: the image build runs it in a
second, fresh process to prove the cache is used as it will be at run time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

SIM_SECONDS = 0.3  # enough steps for every sensor kind to fire at least once
SIM_AGENTS = 8


class _CompileCounter:
    """numba's ``numba:compile`` event fires only when a kernel is not found in the cache."""

    def __init__(self) -> None:
        self.compiled: list[str] = []

    def on_start(self, event: Any) -> None:
        dispatcher = event.data.get("dispatcher")
        func = getattr(dispatcher, "py_func", None)
        name = f"{func.__module__}.{func.__qualname__}" if func is not None else repr(dispatcher)
        self.compiled.append(f"{name}{tuple(event.data.get('args', ()))}")

    def on_end(self, event: Any) -> None:
        pass


def _listen(counter: _CompileCounter) -> None:
    from numba.core import event as ev

    class _Listener(ev.Listener):
        def on_start(self, event: Any) -> None:
            counter.on_start(event)

        def on_end(self, event: Any) -> None:
            counter.on_end(event)

    ev.register("numba:compile", _Listener())


def _service_stages() -> None:
    from prescient.service.node import warm_up_stages

    warm_up_stages()


def _simulator(scenarios: Sequence[str]) -> Callable[[], None]:
    def run() -> None:
        from prescient.sim_sensors import SimConfig, Simulation

        for scenario in scenarios:
            for night in (False, True):
                cfg = SimConfig(scenario=scenario, n_agents=SIM_AGENTS, night=night)
                for _ in Simulation(cfg).run(SIM_SECONDS):
                    pass

    return run


def warm_up(scenarios: Sequence[str] | None = None) -> dict[str, Any]:
    """Run every kernel once; returns the cache folder, seconds per part and what was compiled."""
    from prescient.bus import jit_cache

    folder = jit_cache.configure()  # before numba: the folder depends on the kernel sources
    counter = _CompileCounter()
    _listen(counter)
    if scenarios is None:
        from prescient.sim_sensors import SCENARIOS

        scenarios = list(SCENARIOS)
    seconds: dict[str, float] = {}
    for name, part in (("service", _service_stages), ("simulator", _simulator(scenarios))):
        t0 = time.perf_counter()
        part()
        seconds[name] = round(time.perf_counter() - t0, 2)
    files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
    return {
        "cache_dir": str(folder),
        "cache_files": len(files),
        "cache_bytes": sum(p.stat().st_size for p in files),
        "seconds": seconds,
        "compiled": len(counter.compiled),
        "compiled_kernels": counter.compiled,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m prescient.service.app.warmup",
        description="Compile every numba kernel into the on-disk cache ($NUMBA_CACHE_DIR).",
    )
    parser.add_argument(
        "--expect-cached",
        action="store_true",
        help="fail when any kernel had to be compiled (the cache was not used)",
    )
    parser.add_argument("--scenario", action="append", help="only these scenarios (default: all)")
    parser.add_argument("--json", action="store_true", help="print the full report as JSON")
    args = parser.parse_args(argv)
    report = warm_up(args.scenario)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        secs = ", ".join(f"{k} {v:.1f} s" for k, v in report["seconds"].items())
        print(
            f"numba warm-up: {secs}; {report['compiled']} kernels compiled; cache {report['cache_dir']} "
            f"({report['cache_files']} files, {report['cache_bytes'] / 1e6:.1f} MB, uid {os.getuid()})"
        )
    if args.expect_cached and report["compiled"]:
        print(
            f"warm-up: {report['compiled']} kernels were compiled, expected all from the cache "
            f"(unwritable or foreign cache folder? numba only reads a folder it may write): "
            + ", ".join(report["compiled_kernels"][:5]),
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
