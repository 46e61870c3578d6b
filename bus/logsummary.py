"""Per-topic summary of a log (``prescient log info``): counts, rates, time span, seq gaps, damage."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from prescient.bus.logreader import LogReader, ReadStats


@dataclasses.dataclass
class TopicSummary:
    """Per-topic counts of a log. ``gaps`` counts missing ``seq`` values between recorded ones."""

    topic: str
    type_name: str
    encoding: str
    count: int = 0
    bytes: int = 0
    first_ns: int = 0
    last_ns: int = 0
    gaps: int = 0
    restarts: int = 0
    _last_seq: int = -1

    @property
    def rate_hz(self) -> float:
        span = (self.last_ns - self.first_ns) / 1e9
        return (self.count - 1) / span if self.count > 1 and span > 0 else 0.0


@dataclasses.dataclass
class LogSummary:
    """Topics, counts, time span and gaps of a log, plus what the reader found wrong."""

    path: str
    topics: dict[str, TopicSummary]
    stats: ReadStats

    @property
    def count(self) -> int:
        return sum(t.count for t in self.topics.values())

    @property
    def start_ns(self) -> int:
        return min((t.first_ns for t in self.topics.values()), default=0)

    @property
    def end_ns(self) -> int:
        return max((t.last_ns for t in self.topics.values()), default=0)

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    @property
    def gaps(self) -> int:
        return sum(t.gaps for t in self.topics.values())


def summarize_log(path: str | Path) -> LogSummary:
    """One pass over a log: per-topic counts, bytes, rates, time span and seq gaps.

    Gaps come from the recorded MCAP ``sequence`` field (``header.seq`` mod 2**32): a jump of
    more than one counts the missing values; a return to 0 counts as a publisher restart. Damage
    is in ``stats.problems`` and ``stats.skipped_ranges``; every readable message is counted.

    Raises:
        LogError: missing, empty or non-MCAP file.
    """
    stats = ReadStats()
    topics: dict[str, TopicSummary] = {}
    for ch, rec in LogReader(path, stats).records():
        t = topics.get(ch.topic)
        if t is None:
            t = topics[ch.topic] = TopicSummary(ch.topic, ch.type_name, ch.encoding, first_ns=rec.log_time)
        t.count += 1
        t.bytes += len(rec.data)
        t.first_ns = min(t.first_ns, rec.log_time)
        t.last_ns = max(t.last_ns, rec.log_time)
        seq = rec.sequence
        if t._last_seq >= 0:
            if seq == 0 and t._last_seq > 0:
                t.restarts += 1
            elif seq > t._last_seq + 1:
                t.gaps += seq - t._last_seq - 1
        t._last_seq = seq
        stats.yielded += 1
    return LogSummary(str(path), dict(sorted(topics.items())), stats)
