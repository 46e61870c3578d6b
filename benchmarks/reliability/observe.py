"""What the reliability benchmark sees of the bus: two subscriber threads and rate arithmetic.

* The *light* subscriber takes ``pred.trajectories``, ``planner.status`` and ``health.*`` only, on
  its own socket, so a flood on other topics cannot delay the receive times it stamps.
* The *full* subscriber takes every topic: it keeps the newest real frames of the service's input
  topics (templates for the time and sequence attacks, captures for replays) and, while a
  window is open, a hash of every payload (to find what a killed recorder did not log).

Neither decodes with :mod:`prescient.bus.codec`: they must keep working whatever arrives, so they read
the few header and health fields they need from the raw msgpack map.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np
import zmq

from prescient.bus import messages as m
from prescient.bus.config import BusConfig
from prescient.bus.logfile import peek_header

CAPTURE_DEPTH = 100  # newest frames kept per input topic
REAL_FRAME_MAX_AGE_NS = 1_000_000_000
POLL_MS = 50


def _unpack(payload: bytes) -> dict[str, Any] | None:
    try:
        raw = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except Exception:  # whatever msgpack raises on bad input: not ours to judge here
        return None
    return raw if isinstance(raw, dict) else None


@dataclass
class HealthSample:
    """One ``health.<node>`` message: receive time (monotonic s) and its ``rejected`` counters."""

    t_s: float
    node: str
    rejected: dict[str, int]
    state: str


@dataclass
class BusObserver:
    """Subscriber threads on ``cfg.sub_endpoint``; start with :meth:`start`, end with :meth:`stop`.

    Attributes:
        pred_t: receive times (``time.monotonic()`` s) of every ``pred.trajectories`` frame.
        status: ``(t_s, status)`` of every planner status.
        health: every health message.
        capture: input topic -> newest ``(t_s, payload)`` pairs.
        seen: frames the full subscriber received.
    """

    cfg: BusConfig
    capture_topics: tuple[str, ...]
    pred_t: list[float] = field(default_factory=list)
    status: list[tuple[float, str]] = field(default_factory=list)
    health: list[HealthSample] = field(default_factory=list)
    capture: dict[str, deque] = field(default_factory=dict)
    seen: int = 0
    oversized: int = 0  # frames over cfg.max_bytes that reached us (the proxy should stop them)
    window: list[tuple[int, str, int]] | None = None  # (recv monotonic ns, topic, payload hash)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> BusObserver:
        self.capture = {t: deque(maxlen=CAPTURE_DEPTH) for t in self.capture_topics}
        for target in (self._run_light, self._run_full):
            th = threading.Thread(target=target, daemon=True, name=target.__name__)
            th.start()
            self._threads.append(th)
        return self

    def stop(self) -> None:
        self._stop.set()
        for th in self._threads:
            th.join(2)

    def _socket(self, prefixes: tuple[str, ...]) -> zmq.Socket:
        s = zmq.Context.instance().socket(zmq.SUB)
        s.linger = 0
        s.rcvhwm = 0  # no limit here: what is dropped, the proxy drops
        for p in prefixes:
            s.setsockopt(zmq.SUBSCRIBE, p.encode())
        s.connect(self.cfg.sub_endpoint)
        return s

    def _run_light(self) -> None:
        s = self._socket((m.TOPIC_PREDICTIONS, m.TOPIC_PLANNER_STATUS, m.TOPIC_HEALTH_PREFIX))
        try:
            while not self._stop.is_set():
                if not s.poll(POLL_MS, zmq.POLLIN):
                    continue
                frames = s.recv_multipart()
                t = time.monotonic()
                if len(frames) != 2:
                    continue
                topic = frames[0].decode(errors="replace")
                if topic == m.TOPIC_PREDICTIONS:
                    self.pred_t.append(t)
                    continue
                raw = _unpack(frames[1])
                if raw is None:
                    continue
                if topic == m.TOPIC_PLANNER_STATUS:
                    self.status.append((t, str(raw.get("status", ""))))
                elif topic.startswith(m.TOPIC_HEALTH_PREFIX):
                    rej = raw.get("rejected")
                    rej = (
                        {str(k): int(v) for k, v in rej.items() if isinstance(v, int)}
                        if isinstance(rej, dict)
                        else {}
                    )
                    state = raw.get("state") or ("degraded" if raw.get("degraded") else "ok")
                    self.health.append(HealthSample(t, str(raw.get("node", "")), rej, str(state)))
        finally:
            s.close(linger=0)

    def _run_full(self) -> None:
        s = self._socket(("",))
        try:
            while not self._stop.is_set():
                if not s.poll(POLL_MS, zmq.POLLIN):
                    continue
                for _ in range(10_000):
                    try:
                        frames = s.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self._take_full(frames)
        finally:
            s.close(linger=0)

    def _take_full(self, frames: list[bytes]) -> None:
        t_ns = time.monotonic_ns()
        if len(frames) != 2:
            return
        topic_b, payload = frames
        self.seen += 1
        if len(payload) > self.cfg.max_bytes:
            self.oversized += 1
        topic = topic_b.decode(errors="replace") if len(topic_b) <= 64 else "?"
        q = self.capture.get(topic)
        if q is not None:
            # Only frames the stack itself published just now (ours carry sent_mono_ns 0 or an
            # old one): they give the current sensor clock and sequence numbers.
            hdr = peek_header(payload)
            if hdr is not None and abs(t_ns - hdr[1]) < REAL_FRAME_MAX_AGE_NS:
                q.append((t_ns / 1e9, payload))
        with self._lock:
            if self.window is not None:
                self.window.append((t_ns, topic, hash(payload)))

    # ------------------------------------------------------------------------------------------
    def open_window(self) -> None:
        """Start hashing every frame seen (for the recorder-loss comparison)."""
        with self._lock:
            self.window = []

    def close_window(self) -> list[tuple[int, str, int]]:
        with self._lock:
            w, self.window = self.window or [], None
        return w

    def newest(self, topic: str) -> tuple[float, bytes] | None:
        """The newest captured ``(t_s, payload)`` on ``topic``."""
        q = self.capture.get(topic)
        return q[-1] if q else None

    def captured(self, topic: str, since_s: float = 0.0) -> list[bytes]:
        """Payloads captured on ``topic`` at or after ``since_s`` (monotonic s), oldest first."""
        return [p for t, p in list(self.capture.get(topic, ())) if t >= since_s]

    def health_at(self, t_s: float, node: str = "predictor") -> dict[str, int]:
        """The ``rejected`` counters of the newest health from ``node`` received before ``t_s``."""
        best: dict[str, int] = {}
        for h in list(self.health):
            if h.node == node and h.t_s <= t_s:
                best = h.rejected
        return best


# ----------------------------------------------------------------------------------------------
# Rate arithmetic (pure).
# ----------------------------------------------------------------------------------------------
def rate_hz(times: list[float], t0: float, t1: float) -> float:
    """Events per second in ``[t0, t1)`` (times in seconds, sorted)."""
    if t1 <= t0:
        return float("nan")
    a = np.asarray(times)
    return float(np.count_nonzero((a >= t0) & (a < t1)) / (t1 - t0))


def recovery_s(
    times: list[float], t_end: float, target_hz: float = 9.5, window_s: float = 2.0, limit_s: float = 10.0
) -> float | None:
    """Seconds after ``t_end`` until a ``window_s`` window first holds ``target_hz`` on average.

    The window slides in 50 ms steps from ``t_end``; 0.0 means the rate never dropped below
    target after the attack. None: not within ``limit_s`` (or not enough data after ``t_end``).
    """
    a = np.asarray(times)
    need = target_hz * window_s - 1e-9
    for d in np.arange(0.0, limit_s + 1e-9, 0.05):
        t0 = t_end + d
        if a.size == 0 or a[-1] < t0 + window_s - 0.2:
            return None  # the data ends before this window does
        if np.count_nonzero((a >= t0) & (a < t0 + window_s)) >= need:
            return float(d)
    return None


def rejected_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Counters that grew from ``before`` to ``after`` (a restarted node starts from 0 again)."""
    out = {}
    for k, v in after.items():
        d = v - before.get(k, 0) if v >= before.get(k, 0) else v
        if d > 0:
            out[k] = d
    return out


def reason_of(key: str) -> str:
    """A counter key without its topic: ``sensor.lidar.fl:not_msgpack`` -> ``not_msgpack``,
    ``conditional:?:busy`` -> ``conditional:busy``, ``tracker:ego.state:duplicate`` ->
    ``tracker:duplicate`` (keys without ``:`` stay as they are)."""
    parts = key.split(":")
    if len(parts) == 1:
        return key
    if parts[0] in ("conditional", "tracker", "degraded") and len(parts) > 2:
        return f"{parts[0]}:{parts[-1]}"
    return key if parts[0] in ("conditional", "tracker", "degraded") else parts[-1]


def describe_delta(delta: dict[str, int], top: int = 3) -> str:
    """``"reason +n, ..."`` for the ``top`` largest counters summed over topics.

    Tracker resets (``clock_resets``) come first whatever their count (each one loses every
    track); skipped ticks come last.
    """
    if not delta:
        return "-"
    by_reason: dict[str, int] = {}
    for k, v in delta.items():
        r = reason_of(k)
        by_reason[r] = by_reason.get(r, 0) + v
    items = sorted(
        by_reason.items(), key=lambda kv: (kv[0] != "clock_resets", kv[0] == "skipped_ticks", -kv[1])
    )
    text = ", ".join(f"{k} +{v}" for k, v in items[:top])
    return text + (f" (+{len(items) - top} more)" if len(items) > top else "")
