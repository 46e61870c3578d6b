"""What a recorder restart would lose, recovered from the launcher's own view of the bus.

``prescient up`` restarts a recorder that died (``kill -9``, OOM). Two things are lost then: the
chunk the dead recorder had not written out yet (at most its ``chunk_interval_s``, 1 s) and
everything published while no recorder was subscribed (start-up of the new process, about a
second). The launcher's monitor subscribes to every topic anyway, so it keeps the last few seconds
of raw frames in a :class:`FrameRing`; at a recorder restart it starts a capture (the ring's
content plus what arrives during ``hold_s``), and when the run ends :func:`fill_gaps` writes every
captured frame that no log part holds into one more part. A frame is identified by
``(topic, header.seq, header.sent_mono_ns)``, which is unique per publish, so nothing is written
twice and the receive times of the two subscribers never need to agree.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from prescient.bus.logfile import LogWriter, peek_header
from prescient.bus.logreader import iter_log

log = logging.getLogger(__name__)


class Frame(NamedTuple):
    topic: str
    payload: bytes
    recv_ns: int  # monotonic receive time in the launcher


class FrameRing:
    """The last ``seconds`` of raw frames, at most ``max_bytes`` of payload.

    Args:
        seconds: how far back a capture reaches (covers the dead recorder's unwritten chunk).
        max_bytes: memory bound of the ring; the oldest frames go first.
        max_capture_bytes: memory bound of all captures of a run (they are written at its end);
            what does not fit is counted in ``dropped_bytes``.
    """

    def __init__(
        self, seconds: float = 3.0, max_bytes: int = 256 << 20, max_capture_bytes: int = 1 << 30
    ) -> None:
        self._window_ns = int(seconds * 1e9)
        self._max_bytes = max_bytes
        self._frames: deque[Frame] = deque()
        self._bytes = 0
        self._captures: list[list[Frame]] = []
        self._capture_until_ns = 0
        self._capture_bytes = 0
        self._max_capture_bytes = max_capture_bytes
        self.dropped_bytes = 0  # captured frames not kept (max_capture_bytes over the run)

    def add(self, topic: str, payload: bytes, recv_ns: int) -> None:
        frame = Frame(topic, bytes(payload), recv_ns)
        if self._captures and recv_ns <= self._capture_until_ns:
            self._keep(self._captures[-1], frame)
        self._frames.append(frame)
        self._bytes += len(frame.payload)
        while self._frames and (
            self._frames[0].recv_ns < recv_ns - self._window_ns or self._bytes > self._max_bytes
        ):
            self._bytes -= len(self._frames.popleft().payload)

    def start_capture(self, now_ns: int, hold_s: float = 5.0) -> None:
        """Keep the ring's content and everything until ``now + hold_s`` (a recorder restart)."""
        if self._captures and now_ns <= self._capture_until_ns:
            self._capture_until_ns = now_ns + int(hold_s * 1e9)  # one capture covers both
            return
        capture: list[Frame] = []
        for frame in self._frames:
            self._keep(capture, frame)
        self._captures.append(capture)
        self._capture_until_ns = now_ns + int(hold_s * 1e9)

    def _keep(self, capture: list[Frame], frame: Frame) -> None:
        """Add ``frame`` to ``capture`` unless the run's captures hold ``max_capture_bytes``."""
        if self._capture_bytes + len(frame.payload) > self._max_capture_bytes:
            self.dropped_bytes += len(frame.payload)
            return
        capture.append(frame)
        self._capture_bytes += len(frame.payload)

    @property
    def captures(self) -> list[list[Frame]]:
        return self._captures


def _key(topic: str, payload: bytes) -> tuple[str, int, int] | None:
    hdr = peek_header(payload)
    return None if hdr is None else (topic, hdr[0], hdr[1])


def fill_gaps(parts: Iterable[Path], captures: list[list[Frame]], out: Path) -> int:
    """Write the captured frames that no part of the log holds into ``out``.

    Args:
        parts: every part of the recording (readable or damaged; damage is tolerated).
        captures: from :attr:`FrameRing.captures`.
        out: the new part (must not exist).

    Returns:
        frames written (0: nothing was missing, and no file is created).
    """
    if not captures:
        return 0
    # Only the records around the captures (same host, same monotonic clock; 5 s of slack).
    t0 = min((f.recv_ns for cap in captures for f in cap), default=0) - 5_000_000_000
    t1 = max((f.recv_ns for cap in captures for f in cap), default=0) + 5_000_000_000
    recorded: set[tuple[str, int, int]] = set()
    for part in parts:
        for rec in iter_log(part, start_ns=t0, end_ns=t1):
            key = _key(rec.topic, rec.payload)
            if key is not None:
                recorded.add(key)
    missing: dict[tuple[str, int, int], Frame] = {}
    for frame in (f for cap in captures for f in cap):
        key = _key(frame.topic, frame.payload)
        if key is not None and key not in recorded:
            missing.setdefault(key, frame)  # a frame is in two captures when they overlap
    if not missing:
        return 0
    with LogWriter(out, stamp_seq=False) as w:
        for (_, seq, sent_ns), f in sorted(missing.items(), key=lambda kv: kv[1].recv_ns):
            w.write_raw(f.topic, f.payload, f.recv_ns, sent_ns or f.recv_ns, seq=seq)
    log.info("%d frames the recorder missed around its restarts written to %s", len(missing), out)
    return len(missing)
