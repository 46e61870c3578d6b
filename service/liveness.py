"""Liveness of the prediction service: is it producing, on time, from fresh inputs?

Counters say what went wrong in the past; liveness says whether the service is useful *now*. The
node feeds it receive times of accepted inputs and the outcome of every tick, on its monotonic
clock (passed in: this module reads no clock, so it is tested with made-up times), and asks for a
verdict whenever it publishes health:

* ``failed``: no tick for ``failed_after_s``, or no accepted input of a required group for as long
  (nothing the planner gets is current).
* ``degraded``: a required input older than ``max_input_age_s``; a tick rate under
  ``min_tick_rate_hz`` over the last ``window_s``; more than ``max_fallback_share`` of those ticks
  on the constant-velocity fallback; or no model at all.
* ``ok`` otherwise.

Input groups: ``ego`` (``ego.state``) and ``sensors`` (any ``sensor.*`` frame), or ``tracks``
when the service runs on tracks from a log.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from prescient.bus import messages as m

NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class LivenessConfig:
    """Bounds of a healthy service (the 10 Hz contract with the planner)."""

    max_input_age_s: float = 0.5
    min_tick_rate_hz: float = 9.0
    max_fallback_share: float = 0.05
    failed_after_s: float = 2.0
    window_s: float = 2.0


@dataclass
class Verdict:
    """``state`` (ok | degraded | failed), a one-line ``reason`` and integer figures for health."""

    state: str
    reason: str
    live: dict[str, int] = field(default_factory=dict)

    @property
    def degraded(self) -> bool:
        return self.state != "ok"


class Liveness:
    """Tracks input ages and the tick record over a sliding window.

    Args:
        groups: the input groups that must stay fresh (see the module docstring).
        cfg: bounds.
        start_ns: monotonic time the service went live (ages count from here before any input).
    """

    def __init__(self, groups: tuple[str, ...], cfg: LivenessConfig | None = None, start_ns: int = 0) -> None:
        self.cfg = cfg or LivenessConfig()
        self._start_ns = start_ns
        self._last_input_ns: dict[str, int] = {g: 0 for g in groups}
        self._ticks: deque[tuple[int, bool]] = deque()  # (publish time, degraded)
        self._last_tick_ns = 0

    def note_input(self, group: str, now_ns: int) -> None:
        """An accepted input of ``group`` (unknown groups are ignored: the set is fixed)."""
        if group in self._last_input_ns:
            self._last_input_ns[group] = now_ns

    def note_tick(self, now_ns: int, degraded: bool) -> None:
        """A prediction was published at ``now_ns``; ``degraded``: it came from the fallback."""
        self._ticks.append((now_ns, degraded))
        self._last_tick_ns = now_ns
        self._trim(now_ns)

    def _trim(self, now_ns: int) -> None:
        horizon = now_ns - int(self.cfg.window_s * NS_PER_S)
        while self._ticks and self._ticks[0][0] < horizon:
            self._ticks.popleft()

    def verdict(self, now_ns: int, model_loaded: bool = True) -> Verdict:
        """The state at ``now_ns`` with the figures that decided it."""
        c = self.cfg
        self._trim(now_ns)
        since_start_s = (now_ns - self._start_ns) / NS_PER_S
        window_s = min(c.window_s, max(since_start_s, 1e-9))
        ages_s = {g: (now_ns - (t or self._start_ns)) / NS_PER_S for g, t in self._last_input_ns.items()}
        tick_age_s = (now_ns - (self._last_tick_ns or self._start_ns)) / NS_PER_S
        rate_hz = len(self._ticks) / window_s
        fallback = sum(d for _, d in self._ticks)
        share = fallback / len(self._ticks) if self._ticks else 0.0
        # Ages round up: an input judged older than 2 s never shows as 2000 ms.
        live = {f"input_age_ms:{g}": math.ceil(a * 1000) for g, a in ages_s.items()}
        live |= {
            "prediction_age_ms": math.ceil(tick_age_s * 1000),
            "tick_rate_mhz": int(rate_hz * 1000),
            "model_share_permille": int(round((1.0 - share) * 1000)) if self._ticks else 0,
        }
        stale = sorted(g for g, a in ages_s.items() if a > c.max_input_age_s)
        dead = [g for g in stale if ages_s[g] > c.failed_after_s]
        if tick_age_s > c.failed_after_s or dead:
            what = f"no input on {', '.join(dead)}" if dead else "no input"
            return Verdict("failed", f"no prediction for {tick_age_s:.1f} s ({what})", live)
        reasons = [f"{g} input {ages_s[g]:.1f} s old" for g in stale]
        # Before a full window has passed the rate is not yet meaningful.
        if since_start_s >= c.window_s and rate_hz < c.min_tick_rate_hz:
            reasons.append(f"tick rate {rate_hz:.1f} Hz < {c.min_tick_rate_hz:g} Hz")
        if not model_loaded:
            reasons.append("no model")
        elif self._ticks and share > c.max_fallback_share:
            reasons.append(f"{share:.0%} of ticks on the fallback")
        return Verdict("degraded" if reasons else "ok", "; ".join(reasons), live)


def health_message(
    node: str,
    now_ns: int,
    provider: str,
    verdict: Verdict,
    *,
    ticks: int,
    deadline_misses: int,
    rejected: Mapping[str, int],
    seq_gaps: Mapping[str, int],
    precision: str = "",
) -> m.Health:
    """The one builder of :class:`~prescient.bus.messages.Health` (the service node and ``prescient track``).

    Args:
        node: the publishing node's name (sets the topic). now_ns: sensor-clock stamp.
        provider: where the model runs (``cpu`` for a node without one).
        verdict: state, reason and live figures. ticks / deadline_misses: totals so far.
        rejected: counts by ``stage:topic:reason`` key. seq_gaps: lost messages by topic.
        precision: the model's precision (``OnnxPredictor.precision``); "" for a node without one.
    """
    return m.Health(
        header=m.Header(topic=m.health_topic(node), stamp_ns=int(now_ns)),
        node=node,
        provider=provider,
        degraded=verdict.degraded,
        reason=verdict.reason,
        ticks=int(ticks),
        deadline_misses=int(deadline_misses),
        rejected={k: int(v) for k, v in rejected.items()},
        seq_gaps={k: int(v) for k, v in seq_gaps.items()},
        state=verdict.state,
        live=dict(verdict.live),
        precision=str(precision),
    )
