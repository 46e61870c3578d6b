"""Replay a recorded log: offline into the pipeline, or through the bus with the original timing.

Offline (:func:`iter_messages`): decode every record with :mod:`prescient.bus.codec`, in file order, with
no sockets and no wall clock, as fast as the machine allows. Two replays of the same log give
identical message streams; undecodable payloads and topics with no known type are skipped and
counted in :class:`~prescient.bus.logreader.ReadStats`.

Through the bus (:class:`BusReplayer`): raw payloads are re-sent bit-exactly with
``Publisher.publish_raw``, so ``header.seq`` and ``header.sent_mono_ns`` stay as recorded. Message
``i`` is sent at ``t_start + (log_time_i - log_time_0) / rate`` on the monotonic clock; the replay
first waits for subscribers so that nothing is lost to the ZeroMQ slow-joiner problem.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import zmq

from prescient.bus import codec
from prescient.bus import messages as m
from prescient.bus.config import BusConfig
from prescient.bus.errors import DecodeError
from prescient.bus.logreader import LogRecord, ReadStats, iter_log
from prescient.bus.logsummary import summarize_log
from prescient.bus.transport import Publisher

log = logging.getLogger(__name__)


class LogMessage(NamedTuple):
    """One decoded log message with its recorded times (ns)."""

    topic: str
    log_time_ns: int
    publish_time_ns: int
    msg: Any


def iter_messages(
    path: str | Path,
    topics: Iterable[str] | None = None,
    start_ns: int | None = None,
    end_ns: int | None = None,
    *,
    stats: ReadStats | None = None,
    strict: bool = False,
) -> Iterator[LogMessage]:
    """Decoded messages of a log, deterministic and in file order.

    Args are those of :func:`prescient.bus.logreader.iter_log`. A payload rejected by the codec is skipped
    and counted as ``decode:<topic>``; a topic with no known message type as
    ``unknown_topic:<topic>``; a channel not encoded as msgpack as ``encoding:<topic>``.
    ``stats.yielded`` counts raw records read; use ``stats.skipped`` for what was dropped.
    """
    stats = stats if stats is not None else ReadStats()
    for rec in iter_log(path, topics, start_ns, end_ns, stats=stats, strict=strict):
        if m.topic_type(rec.topic) is None:
            stats.skip(f"unknown_topic:{rec.topic}")
            continue
        try:
            msg = codec.decode(rec.topic, rec.payload)
        except DecodeError as e:
            stats.skip(f"decode:{rec.topic}")
            log.debug("skipped undecodable record: %s", e)
            continue
        yield LogMessage(rec.topic, rec.log_time_ns, rec.publish_time_ns, msg)


@dataclasses.dataclass
class ReplayStats:
    """What a bus replay did. ``late_ns`` lists how late each send was against its schedule."""

    sent: int = 0
    dropped: int = 0
    waited_for_subscribers: bool = False
    interrupted: bool = False
    wall_s: float = 0.0
    late_ns: list[int] = dataclasses.field(default_factory=list)
    read: ReadStats = dataclasses.field(default_factory=ReadStats)


class BusReplayer:
    """Publishes a log's raw payloads through the bus proxy with the original spacing.

    Args:
        cfg: bus configuration (publishers connect to ``cfg.pub_endpoint``).
        path: the log.
        rate: time scale, e.g. 0.5 (half speed), 1.0 (real time), 4.0; 0 = as fast as possible.
        topics: topic prefixes to replay (None: all).
        start_ns, end_ns: absolute log-time window (ns).
        ctx: ZeroMQ context (the global instance if None).
        endpoint, bind: passed to :class:`~prescient.bus.transport.Publisher` (e.g. a test binding directly).
    """

    def __init__(
        self,
        cfg: BusConfig,
        path: str | Path,
        *,
        rate: float = 1.0,
        topics: Iterable[str] | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
        ctx: zmq.Context | None = None,
        endpoint: str | None = None,
        bind: bool = False,
    ) -> None:
        if not rate >= 0:
            raise ValueError(f"rate must be >= 0 (0 = as fast as possible), got {rate}")
        self.path = Path(path)
        self.rate = rate
        self.topics = None if topics is None else tuple(topics)
        self.start_ns, self.end_ns = start_ns, end_ns
        self._pub = Publisher(cfg, ctx=ctx, endpoint=endpoint, bind=bind)
        self.stats = ReplayStats()

    def wait_for_subscribers(self, topics: Iterable[str], timeout_s: float, stop: threading.Event) -> bool:
        """Wait until some subscriber matches any of ``topics`` (or timeout / stop)."""
        topics = list(topics)
        deadline = time.monotonic() + timeout_s
        while not stop.is_set():
            if any(self._pub.has_subscriber(t) for t in topics):
                return True
            if time.monotonic() >= deadline:
                return False
            stop.wait(0.02)
        return False

    def run(
        self,
        *,
        stop: threading.Event | None = None,
        wait_topics: Iterable[str] | None = None,
        wait_s: float = 10.0,
        lead: Iterable[Any] = (),
    ) -> ReplayStats:
        """Replay the log once. Returns when done, or early when ``stop`` is set.

        Args:
            stop: set it (e.g. from a signal handler) to end the replay early.
            wait_topics: topics of which one must have a subscriber before the first send
                (default: any topic of the log but the map). The replay starts anyway after ``wait_s``.
            wait_s: how long to wait for subscribers.
            lead: messages published just before the first record (e.g. the empty map of a log
                that holds none, so a running service leaves the previous log's map).
        """
        stop = stop or threading.Event()
        st = self.stats
        records: Iterator[LogRecord] = iter_log(
            self.path, self.topics, self.start_ns, self.end_ns, stats=st.read
        )
        first = next(records, None)
        if first is None:
            return st
        if wait_topics is None:
            # Any consumer of the log's data will do; the map is served on request, so nobody
            # needs to subscribe to it.
            wait_topics = [t for t in summarize_log(self.path).topics if t != m.TOPIC_MAP] or [first.topic]
        wanted = list(wait_topics)
        st.waited_for_subscribers = self.wait_for_subscribers(wanted, wait_s, stop)
        if not st.waited_for_subscribers and not stop.is_set():
            log.warning("no subscriber for %s after %.1f s; replaying anyway", wanted, wait_s)
        for msg in lead:
            self._pub.publish(msg)
        t0_log = first.log_time_ns
        t0_wall = time.monotonic_ns()
        for rec in _chain(first, records):
            if stop.is_set():
                st.interrupted = True
                break
            if self.rate > 0:
                due = t0_wall + int((rec.log_time_ns - t0_log) / self.rate)
                delay = due - time.monotonic_ns()
                if delay > 0 and stop.wait(delay / 1e9):
                    st.interrupted = True
                    break
                st.late_ns.append(max(0, time.monotonic_ns() - due))
            before = self._pub.sent
            self._pub.publish_raw(rec.topic, rec.payload)
            if self._pub.sent == before:
                st.dropped += 1
            else:
                st.sent += 1
        st.wall_s = (time.monotonic_ns() - t0_wall) / 1e9
        return st

    def close(self, linger_ms: int = 1000) -> None:
        """Close the publisher; queued messages (the end of the log) may still go out for ``linger_ms``."""
        self._pub.close(linger_ms)

    def __enter__(self) -> BusReplayer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _chain(first: LogRecord, rest: Iterator[LogRecord]) -> Iterator[LogRecord]:
    yield first
    yield from rest
