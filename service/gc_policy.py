"""Garbage-collector policy of the live service: freeze the startup heap, time every collection.

A full (generation 2) collection walks every container object the process holds. After start-up
the service holds ~155,000 of them (numba, onnxruntime bindings, the map, the rasterizer), and on a
2-core VM one full collection in the middle of a 400-agent run took 67-90 ms: the tick it landed
in took up to 115 ms (benchmarks/README.md, "Garbage collection"). :func:`frozen_startup_heap` moves everything allocated
before going live into the permanent generation (``gc.freeze``), so a full collection walks only
what was allocated since. Automatic collection stays on: reference cycles made while live are
still freed.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

GENERATIONS = 3


@contextlib.contextmanager
def frozen_startup_heap() -> Iterator[int]:
    """Collect, then freeze every object alive now until the block ends; yields how many were frozen.

    On exit the frozen objects return to the oldest generation (``gc.unfreeze``), so a service
    run inside another process (tests, tools) leaves that process's collector as it found it.
    """
    gc.collect()
    gc.freeze()
    try:
        yield gc.get_freeze_count()
    finally:
        gc.unfreeze()


@dataclass
class GcPauses:
    """Collections and their pauses per generation while installed (:meth:`install`).

    Fixed-size counters: ``count[g]``, ``total_ns[g]``, ``max_ns[g]`` for generations 0-2.
    """

    count: list[int] = field(default_factory=lambda: [0] * GENERATIONS)
    total_ns: list[int] = field(default_factory=lambda: [0] * GENERATIONS)
    max_ns: list[int] = field(default_factory=lambda: [0] * GENERATIONS)
    _start_ns: int = 0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start_ns = time.perf_counter_ns()
            return
        g = int(info.get("generation", GENERATIONS - 1))
        if not 0 <= g < GENERATIONS:
            return
        pause_ns = time.perf_counter_ns() - self._start_ns
        self.count[g] += 1
        self.total_ns[g] += pause_ns
        self.max_ns[g] = max(self.max_ns[g], pause_ns)

    @contextlib.contextmanager
    def install(self) -> Iterator[GcPauses]:
        """Time every collection until the block ends."""
        gc.callbacks.append(self._callback)
        try:
            yield self
        finally:
            gc.callbacks.remove(self._callback)

    def summary(self) -> str:
        """One line for the log, e.g. ``gen0 120 (max 0.3 ms), gen1 11 (max 1.0 ms), gen2 1 (max 2.1 ms)``."""
        return ", ".join(
            f"gen{g} {self.count[g]} (max {self.max_ns[g] / 1e6:.1f} ms)" for g in range(GENERATIONS)
        )
