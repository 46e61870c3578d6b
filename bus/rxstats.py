"""Receive-side accounting that hostile input cannot poison or bloat.

Everything here is keyed by values a sender chooses (topics, sequence numbers), so every map is
bounded and every key is normalised:

* :class:`CounterMap` holds at most ``max_keys`` keys; later new keys are folded into
  ``other:<reason>``. Health messages built from these maps therefore stay small whatever arrives.
* :func:`topic_key` keeps a topic as a counter key only if it is short and printable; the rest
  count as ``?``.
* :class:`SeqTracker` counts gaps, duplicates and publisher restarts per topic. A single message
  cannot move its topic's stream: a sequence number that jumps far ahead, or goes back, starts a
  *candidate* stream that replaces the current one only after ``confirm`` consecutive numbers
  (a real restart); until then its messages are rejected and counted. One forged ``seq = 2**62``
  therefore costs one rejected message, not the topic, and a forged ``seq = 0`` adds no gaps.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from typing import Final

MAX_TOPIC_KEY_CHARS: Final = 96
MAX_SEQ_JUMP: Final = 1000  # a forward jump up to this is loss (counted as gaps), beyond it suspect
SEQ_CONFIRM: Final = 3  # consecutive numbers that make a new stream (publisher restart) real


def topic_key(topic: str) -> str:
    """``topic`` if it can serve as a counter key (short, printable), else ``"?"``."""
    if len(topic) > MAX_TOPIC_KEY_CHARS or not topic.isprintable() or ":" in topic:
        return "?"
    return topic


class CounterMap(dict[str, int]):
    """A ``dict`` of counts with at most ``max_keys`` keys.

    Args:
        max_keys: once reached, a new key ``"<a>:<reason>"`` is counted as ``"other:<reason>"``
            (and a key without ``:`` as ``"other"``), so the map never grows past
            ``max_keys`` plus the few ``other`` keys.
    """

    def __init__(self, max_keys: int = 256) -> None:
        super().__init__()
        self.max_keys = max_keys

    def add(self, key: str, n: int = 1) -> None:
        if key not in self and len(self) >= self.max_keys:
            key = "other:" + key.rsplit(":", 1)[1] if ":" in key else "other"
        self[key] = self.get(key, 0) + n


@dataclasses.dataclass
class _Stream:
    last: int
    candidate: int = -1  # last number of a stream that may replace this one
    candidate_run: int = 0  # how many consecutive numbers it has shown


class SeqTracker:
    """Per-topic sequence accounting (see the module docstring).

    Attributes:
        gaps: topic -> sequence numbers missed (forward jumps of at most ``MAX_SEQ_JUMP``).
        restarts: topic -> confirmed new streams (publisher restarts).
    """

    def __init__(self, max_topics: int = 256) -> None:
        self.gaps = CounterMap(max_topics)
        self.restarts = CounterMap(max_topics)
        self._streams: dict[str, _Stream] = {}
        self._max_topics = max_topics

    def check(self, topic: str, seq: int) -> str:
        """Account for ``seq`` on ``topic``; ``""`` to accept, else the rejection reason."""
        s = self._streams.get(topic)
        if s is None:
            if len(self._streams) >= self._max_topics:
                return ""  # untracked: accepted without sequence accounting (bounded memory)
            self._streams[topic] = _Stream(seq)
            return ""
        if s.last < seq <= s.last + MAX_SEQ_JUMP:
            if seq > s.last + 1:
                self.gaps.add(topic, seq - s.last - 1)
            s.last, s.candidate_run = seq, 0
            return ""
        if seq == s.last:
            return "duplicate_seq"
        # Far ahead or behind: a restart (or a log replayed again) only if the numbers continue.
        if s.candidate_run and seq == s.candidate + 1:
            s.candidate_run += 1
        else:
            s.candidate_run = 1
        s.candidate = seq
        if s.candidate_run >= SEQ_CONFIRM:
            self.restarts.add(topic)
            s.last, s.candidate_run = seq, 0
            return ""
        return "seq_discontinuity"


@dataclasses.dataclass
class RxStats:
    """Receive-side counters: per topic received, seq gaps, restarts, rejections by reason.

    ``rejected`` keys are ``topic_key(topic):reason`` with ``reason`` from a fixed set (decode
    codes of :class:`~prescient.bus.errors.DecodeError`, ``duplicate_seq``, ``seq_discontinuity``,
    ``rate_limited``, ...). ``rejected_payloads`` keeps the first bytes of the last few rejected
    payloads for post-mortems.
    """

    received: CounterMap = dataclasses.field(default_factory=CounterMap)
    rejected: CounterMap = dataclasses.field(default_factory=CounterMap)
    seq: SeqTracker = dataclasses.field(default_factory=SeqTracker)
    rejected_payloads: deque = dataclasses.field(default_factory=lambda: deque(maxlen=16))

    @property
    def gaps(self) -> CounterMap:
        return self.seq.gaps

    @property
    def restarts(self) -> CounterMap:
        return self.seq.restarts

    def reject(self, topic: str, reason: str, payload: bytes | None = None) -> None:
        self.rejected.add(f"{topic_key(topic)}:{reason}")
        if payload is not None:
            self.rejected_payloads.append((topic_key(topic), reason, bytes(payload[:4096])))

    def check_seq(self, topic: str, seq: int) -> str:
        """Account for ``seq``; ``""`` to accept, or the rejection reason."""
        reason = self.seq.check(topic, seq)
        if not reason:
            self.received.add(topic_key(topic))
        return reason

    def total_rejected(self) -> int:
        return sum(self.rejected.values())
