"""Record every bus topic into an MCAP log (raw msgpack payloads, bit-exact).

The recorder subscribes to ``""`` (every topic) on the proxy's ``sub_endpoint``. Each payload is
written *before* it is decoded, so nothing the bus delivered is lost, not even a payload the codec
rejects. It is then checked with :meth:`prescient.bus.transport.Subscriber.accept` only to count sequence
gaps, restarts and rejections per topic (``Subscriber.stats``).

Times: ``log_time`` = ``time.monotonic_ns()`` at receive on this host; ``publish_time`` =
``header.sent_mono_ns`` of the sender (same clock on one host), or the receive time when the
payload did not decode. A ``prescient.clock`` metadata record, written when the file is opened,
anchors that clock in wall time (:func:`clock_anchor`). Receive times, not capture stamps: a
replay paced by them sends every frame as late as it arrived, so a replayed run sees the sensor
latencies of the recorded one.

Crash safety: chunks go to the OS as soon as they are complete, and at least every
``chunk_interval_s`` the chunk in progress is written out, so ``kill -9`` loses at most that much.
SIGINT/SIGTERM end the loop and finish the file (summary, footer), with the gap counts in a
``prescient.recorder`` metadata record.

Restarts never destroy a recording. When ``--out`` already holds data (a supervisor restarting a
crashed recorder with the same arguments, a container restart), the recorder leaves that file
byte for byte as it is and writes the next *part* of the recording beside it, logging one line
that says so. Parts of ``DIR/NAME.EXT`` are ``DIR/NAME.1.EXT``, ``DIR/NAME.2.EXT``, ... (``run.mcap``,
``run.1.mcap``, ``run.2.mcap``; a name without a suffix gets ``NAME.1``): always one above the
highest part present, so the numbers follow the order of the restarts. An existing *empty* file
(a recorder killed before its first write) is reused. :func:`log_parts` lists every part in
order; reading them one after the other gives the whole recording.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import re
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import zmq

from prescient.bus.config import BusConfig
from prescient.bus.logfile import LogExistsError, LogWriter, peek_header
from prescient.bus.transport import RxStats, Subscriber

log = logging.getLogger(__name__)

METADATA_NAME = "prescient.recorder"
CLOCK_METADATA = "prescient.clock"


def clock_anchor(log_time: str) -> dict[str, str]:
    """The ``prescient.clock`` metadata: what ``log_time`` is and where it sits in wall time.

    Args:
        log_time: ``receive`` (this host's monotonic clock when the message arrived: live
            recordings) or ``capture`` (each message's ``header.stamp_ns``: replays, imports).

    ``wall_minus_monotonic_ns`` is ``time.time_ns() - time.monotonic_ns()`` when the log was
    opened: ``log_time + wall_minus_monotonic_ns`` is the wall-clock (UTC) time of a receive time.
    """
    return {
        "log_time": log_time,
        "wall_minus_monotonic_ns": str(time.time_ns() - time.monotonic_ns()),
        "opened_wall_ns": str(time.time_ns()),
    }


def _part_pattern(path: Path) -> re.Pattern[str]:
    return re.compile(
        re.escape(path.stem if path.suffix else path.name) + r"\.([1-9][0-9]*)" + re.escape(path.suffix)
    )


def log_parts(path: str | Path) -> list[Path]:
    """Every existing part of the recording started at ``path``, in recording order.

    Args:
        path: the ``--out`` given to the recorder, e.g. ``runs/x/log.mcap``.

    Returns:
        ``path`` itself (when it exists), then ``log.1.mcap``, ``log.2.mcap``, ... by number.
        Empty when nothing was recorded.
    """
    path = Path(path)
    pattern = _part_pattern(path)
    numbered = []
    if path.parent.is_dir():
        for p in path.parent.iterdir():
            hit = pattern.fullmatch(p.name)
            if hit and p.is_file():
                numbered.append((int(hit.group(1)), p))
    return ([path] if path.is_file() else []) + [p for _, p in sorted(numbered)]


def next_part(path: str | Path) -> Path:
    """Where a recorder asked to write ``path`` writes: ``path`` if it is absent or empty,
    else the part numbered one above the highest present (its last part, if that is empty)."""
    path = Path(path)
    parts = log_parts(path)
    if not parts or parts[-1].stat().st_size == 0:
        return parts[-1] if parts else path
    hit = _part_pattern(path).fullmatch(parts[-1].name)
    n = int(hit.group(1)) + 1 if hit and parts[-1] != path else 1
    stem = path.stem if path.suffix else path.name
    return path.with_name(f"{stem}.{n}{path.suffix}")


def _open_part(out: Path, **kwargs: Any) -> LogWriter:
    """A writer on the next free part of ``out``; never on a file that holds data."""
    for _ in range(100):  # another process may take a part between the choice and the open
        part = next_part(out)
        try:
            writer = LogWriter(part, **kwargs)
        except LogExistsError:
            continue
        if part != out:
            log.warning("%s holds an earlier recording: left untouched, recording to %s", out, part)
        return writer
    raise LogExistsError(out, "no free part to record to")


@dataclasses.dataclass
class RecordSummary:
    """What a recording saw: per-topic received counts, seq gaps, restarts and rejections."""

    path: str
    messages: int
    bytes: int
    duration_s: float
    received: dict[str, int]
    gaps: dict[str, int]
    restarts: dict[str, int]
    rejected: dict[str, int]

    @property
    def total_gaps(self) -> int:
        return sum(self.gaps.values())

    def metadata(self) -> dict[str, str]:
        """String map for the MCAP metadata record."""
        return {
            "messages": str(self.messages),
            "bytes": str(self.bytes),
            "duration_s": f"{self.duration_s:.3f}",
            "total_gaps": str(self.total_gaps),
            "received": json.dumps(self.received, sort_keys=True),
            "gaps": json.dumps(self.gaps, sort_keys=True),
            "restarts": json.dumps(self.restarts, sort_keys=True),
            "rejected": json.dumps(self.rejected, sort_keys=True),
        }


class Recorder:
    """Subscribes to topic prefixes and writes everything received into an MCAP log.

    Args:
        cfg: bus configuration (subscribes at ``cfg.sub_endpoint``).
        out: output log path. If it holds data, the next part is written instead (module
            docstring); :attr:`out` is the file actually written, :attr:`requested_out` this path.
        prefixes: topic prefixes ("" = every topic).
        compression: ``zstd``, ``lz4`` or ``none``.
        chunk_bytes: uncompressed chunk size.
        chunk_interval_s: the longest a received message waits in memory before its chunk is
            written out (what ``kill -9`` can lose).
        ctx, endpoint: passed to :class:`~prescient.bus.transport.Subscriber`.
        latency_samples: how many per-message write latencies to keep (for benchmarks).
    """

    def __init__(
        self,
        cfg: BusConfig,
        out: str | Path,
        *,
        prefixes: Iterable[str] = ("",),
        compression: str = "zstd",
        chunk_bytes: int = 1024 * 1024,
        chunk_interval_s: float = 1.0,
        ctx: zmq.Context | None = None,
        endpoint: str | None = None,
        latency_samples: int = 200_000,
    ) -> None:
        self.requested_out = Path(out)
        self._sub = Subscriber(cfg, prefixes, ctx=ctx, endpoint=endpoint)
        try:
            self._writer = _open_part(
                self.requested_out, compression=compression, chunk_bytes=chunk_bytes, stamp_seq=False
            )
        except BaseException:
            self._sub.close()
            raise
        self.out = self._writer.path
        # Written first, so a recording cut by kill -9 still says what its times mean.
        self._writer.add_metadata(CLOCK_METADATA, clock_anchor("receive"))
        self._chunk_interval_ns = int(chunk_interval_s * 1e9)
        self._last_flush_ns = time.monotonic_ns()
        self._pending = 0
        self._t_first: int | None = None
        self._t_last = 0
        self.messages = 0
        self.write_latency_ns: collections.deque[int] = collections.deque(maxlen=latency_samples)
        self.summary: RecordSummary | None = None

    @property
    def stats(self) -> RxStats:
        """Receive-side counters of the underlying subscriber (gaps, restarts, rejections)."""
        return self._sub.stats

    def step(self, timeout_ms: int = 100) -> int:
        """Receive and write every message available (waiting up to ``timeout_ms`` for the first).

        Returns:
            number of messages written.
        """
        n = 0
        wait = timeout_ms
        while True:
            got = self._sub.recv_raw(wait)
            if got is None:
                break
            wait = 0
            self._record(*got)
            n += 1
            if n >= 10_000:  # let the caller check its stop flag under a flood
                break
        now = time.monotonic_ns()
        if self._pending and now - self._last_flush_ns >= self._chunk_interval_ns:
            self._writer.flush_chunk()
            self._pending = 0
            self._last_flush_ns = now
        return n

    def _record(self, topic: str, payload: bytes) -> None:
        t_rx = time.monotonic_ns()
        hdr = peek_header(payload)
        seq, sent_ns = hdr if hdr is not None else (0, 0)
        t0 = time.perf_counter_ns()
        self._writer.write_raw(topic, payload, t_rx, sent_ns or t_rx, seq=seq)
        self.write_latency_ns.append(time.perf_counter_ns() - t0)
        self._pending += 1
        self.messages += 1
        if self._t_first is None:
            self._t_first = t_rx
        self._t_last = t_rx
        self._sub.accept(topic, payload)  # only for the gap / rejection counters

    def run(self, *, duration_s: float | None = None, stop: threading.Event | None = None) -> RecordSummary:
        """Record until ``stop`` is set or ``duration_s`` elapsed, then finish the file."""
        stop = stop or threading.Event()
        deadline = None if duration_s is None else time.monotonic() + duration_s
        try:
            while not stop.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    break
                self.step(100)
        finally:
            summary = self.close()
        return summary

    def close(self) -> RecordSummary:
        """Drain nothing more; write the gap metadata, finish the log, close the socket."""
        if self.summary is not None:
            return self.summary
        s = self._sub.stats
        self.summary = RecordSummary(
            path=str(self.out),
            messages=self.messages,
            bytes=self._writer.bytes_written,
            duration_s=((self._t_last - self._t_first) / 1e9) if self._t_first is not None else 0.0,
            received=dict(sorted(self._writer.counts.items())),
            gaps=dict(sorted(s.gaps.items())),
            restarts=dict(sorted(s.restarts.items())),
            rejected=dict(sorted(s.rejected.items())),
        )
        try:
            self._writer.add_metadata(METADATA_NAME, self.summary.metadata())
            self._writer.close()
        finally:
            self._sub.close()
        return self.summary


def summary_lines(summary: RecordSummary) -> list[str]:
    """Human-readable end-of-recording report."""
    lines = [
        f"recorded {summary.messages} messages ({summary.bytes / 1e6:.1f} MB payload) "
        f"over {summary.duration_s:.1f} s to {summary.path}",
        f"seq gaps: {summary.total_gaps} in total" + ("" if summary.total_gaps else " (nothing lost)"),
    ]
    for topic, n in summary.received.items():
        extra: list[Any] = []
        if summary.gaps.get(topic):
            extra.append(f"gaps {summary.gaps[topic]}")
        if summary.restarts.get(topic):
            extra.append(f"restarts {summary.restarts[topic]}")
        lines.append(f"  {topic:32s} {n:8d}" + (f"  ({', '.join(extra)})" if extra else ""))
    if summary.rejected:
        lines.append(f"rejected by the codec (still recorded raw): {summary.rejected}")
    return lines
