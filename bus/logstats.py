"""What a log read reports: the records it yields and the damage it found.

Re-exported by :mod:`prescient.bus.logreader`, where readers of logs import them from.
"""

from __future__ import annotations

import dataclasses
from typing import Final, NamedTuple

# Exit status of the log commands (``prescient log info|replay|export-foxglove``, ``prescient
# replay``) when the log is damaged or unfinished; every readable message was still processed.
EXIT_DAMAGED: Final = 3


class LogRecord(NamedTuple):
    """One recorded bus message: topic, times (ns) and the raw msgpack payload."""

    topic: str
    log_time_ns: int
    publish_time_ns: int
    payload: bytes


@dataclasses.dataclass
class ReadStats:
    """What a read saw: messages yielded, skipped (by reason) and damage found.

    Attributes:
        yielded: records handed to the caller.
        skipped: message counts keyed by reason (``unknown_topic:<topic>``, ``decode:<topic>``, ...).
        problems: human-readable damage reports, each naming the byte offsets.
        skipped_ranges: ``(start, end, reason)`` for every byte range of the file not used
            (file offsets, end exclusive), in file order.
        metadata: ``prescient.*`` metadata records found (name -> string map).
        complete: True when the data end and footer were read (the file was finished).
    """

    yielded: int = 0
    skipped: dict[str, int] = dataclasses.field(default_factory=dict)
    problems: list[str] = dataclasses.field(default_factory=list)
    skipped_ranges: list[tuple[int, int, str]] = dataclasses.field(default_factory=list)
    metadata: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    complete: bool = False

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + n

    @property
    def total_skipped(self) -> int:
        return sum(self.skipped.values())

    def damage_lines(self) -> list[str]:
        """Lines for a command's output: every problem, then every skipped byte range."""
        lines = [f"DAMAGE: {p}" for p in self.problems]
        lines += [f"skipped bytes {a}..{b} ({b - a} bytes): {why}" for a, b, why in self.skipped_ranges]
        return lines
