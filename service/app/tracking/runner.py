"""Drive a :class:`Tracker` from a message stream on the sensor clock (no sockets, no wall clock).

The same driver serves the live node, log replay, the in-process simulator and the benchmark, so
all four tick identically: every ``PRED_DT_S`` of ego-state time one :class:`~prescient.bus.messages.Tracks`
is produced at the tick time. If the stream jumps ahead by more than ``max_catch_up_ticks`` ticks,
the driver skips to the newest tick instead of building a backlog.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from prescient.bus import messages as m
from prescient.service.tracker.tracker import Tracker

TICK_NS = int(round(m.PRED_DT_S * 1e9))


@dataclass
class TickTimings:
    """Per-tick processing cost: messages processed since the last tick plus the
    :meth:`Tracker.tracks` call. ``tick_ns`` is wall time (``perf_counter_ns``); ``tick_cpu_ns`` is
    this thread's CPU time (``thread_time_ns``), which other processes on a shared host do not
    inflate."""

    tick_ns: list[int] = field(default_factory=list)
    tick_cpu_ns: list[int] = field(default_factory=list)

    def percentiles_ms(self, skip: int = 0, cpu: bool = False) -> dict[str, float]:
        """p50/p95/p99/max in milliseconds, ignoring the first ``skip`` ticks (warm-up)."""
        a = np.asarray((self.tick_cpu_ns if cpu else self.tick_ns)[skip:], np.float64) / 1e6
        if a.size == 0:
            return {
                "p50": float("nan"),
                "p95": float("nan"),
                "p99": float("nan"),
                "max": float("nan"),
                "n": 0,
            }
        p50, p95, p99 = np.percentile(a, [50, 95, 99])
        return {
            "p50": float(p50),
            "p95": float(p95),
            "p99": float(p99),
            "max": float(a.max()),
            "n": int(a.size),
        }


class TickDriver:
    """Feeds messages to a tracker and emits tracks on the 100 ms grid of ego-state time.

    Args:
        tracker: the tracker to drive.
        max_catch_up_ticks: at most this many ticks are emitted for one ego state.
    """

    def __init__(self, tracker: Tracker, max_catch_up_ticks: int = 10) -> None:
        self.tracker = tracker
        self.timings = TickTimings()
        self.ticks = 0
        self.skipped_ticks = 0
        self._next_tick_ns: int | None = None
        self._max_catch_up = max_catch_up_ticks
        self._pending_ns = 0
        self._pending_cpu_ns = 0

    def feed(self, msg: Any) -> list[m.Tracks]:
        """Process one message; return the tracks of every tick its time completes (often none)."""
        t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        self.tracker.process(msg)
        self._pending_ns += time.perf_counter_ns() - t0
        self._pending_cpu_ns += time.thread_time_ns() - c0
        if not isinstance(msg, m.EgoState):
            return []
        stamp = msg.header.stamp_ns
        if self._next_tick_ns is None:
            self._next_tick_ns = -(-stamp // TICK_NS) * TICK_NS
        behind = (stamp - self._next_tick_ns) // TICK_NS
        if behind >= self._max_catch_up:
            self.skipped_ticks += int(behind)
            self._next_tick_ns += int(behind) * TICK_NS
        out = []
        while stamp >= self._next_tick_ns:
            t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
            out.append(self.tracker.tracks(self._next_tick_ns))
            self.timings.tick_ns.append(self._pending_ns + time.perf_counter_ns() - t0)
            self.timings.tick_cpu_ns.append(self._pending_cpu_ns + time.thread_time_ns() - c0)
            self._pending_ns = 0
            self._pending_cpu_ns = 0
            self.ticks += 1
            self._next_tick_ns += TICK_NS
        return out

    def run(self, msgs: Iterable[Any]) -> Iterator[m.Tracks]:
        """Feed every message and yield the tracks as ticks complete."""
        for msg in msgs:
            yield from self.feed(msg)
