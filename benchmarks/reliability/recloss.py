"""Messages a killed recorder did not log: the bus as our subscriber saw it vs the log files.

A restarted recorder may write a new part next to the old one (``log.mcap``, ``log.1.mcap``...),
so every ``*.mcap`` in the run directory is read (with the tolerant reader: a part cut by
``kill -9`` has no footer). Messages are matched by a hash of their payload, which is unique on
this bus (every header carries a per-topic seq and a publish time).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from prescient.bus.logfile import LogError
from prescient.bus.logreader import ReadStats, iter_log


def _key(topic: str) -> str:
    return topic if len(topic) <= 64 else "?"


def recorder_loss(
    run_dir: Path,
    window: list[tuple[int, str, int]],
    t_kill_s: float,
    lead_s: float,
    fill_parts: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """Compare what the bus carried around a recorder kill with what the logs hold.

    Args:
        run_dir: the stack's run directory (``*.mcap`` parts).
        window: ``(receive monotonic ns, topic, hash(payload))`` of every frame our full
            subscriber saw, from ``lead_s`` before the kill until after the restart.
        t_kill_s: when the recorder was killed (monotonic s; the recorder logs monotonic ns).
        fill_parts: names of parts the launcher wrote from its own copy of the bus (frames the
            recorder missed); the loss is also reported without them (``*_recorder_only``).

    Returns:
        ``missing`` (count), ``loss_s`` (missing / the bus rate before the kill, seconds of
        traffic), ``missing_before_kill`` / ``missing_after_kill``, ``pre_kill_log_kept`` (some
        part still holds messages older than the window: False when a restart overwrote the
        log), ``parts`` and ``problems`` (damage the reader reported).
    """
    if not window:
        window = [(int(t_kill_s * 1e9), "?", 0)]  # nothing seen: report nan rates, never raise
    w0, w1 = window[0][0], window[-1][0]
    logged: Counter[int] = Counter()
    by_recorder: Counter[int] = Counter()
    parts = sorted(run_dir.glob("*.mcap"))
    problems: list[str] = []
    earliest: int | None = None
    for part in parts:
        stats = ReadStats()
        try:
            first = next(iter_log(part), None)
            if first is not None:
                earliest = first.log_time_ns if earliest is None else min(earliest, first.log_time_ns)
            for rec in iter_log(part, start_ns=w0 - 2_000_000_000, end_ns=w1 + 2_000_000_000, stats=stats):
                logged[hash(rec.payload)] += 1
                if part.name not in fill_parts:
                    by_recorder[hash(rec.payload)] += 1
        except LogError as e:
            problems.append(str(e))
        problems += stats.problems[:3]
    t_kill_ns = int(t_kill_s * 1e9)
    missing: list[tuple[int, str]] = []
    missing_recorder = 0
    for t_ns, topic, h in window:
        if logged[h] > 0:
            logged[h] -= 1
        else:
            missing.append((t_ns, _key(topic)))
        if by_recorder[h] > 0:
            by_recorder[h] -= 1
        else:
            missing_recorder += 1
    before = sum(1 for t, _, _ in window if t_kill_ns - lead_s * 1e9 <= t < t_kill_ns)
    rate_hz = before / lead_s if before else float("nan")
    by_topic = Counter(tp for _, tp in missing)
    ok_rate = rate_hz == rate_hz and rate_hz > 0
    return {
        "seen": len(window),
        "missing": len(missing),
        "loss_s": len(missing) / rate_hz if ok_rate else float("nan"),
        "missing_recorder_only": missing_recorder,
        "loss_s_recorder_only": missing_recorder / rate_hz if ok_rate else float("nan"),
        "fill_parts": sorted(fill_parts),
        "bus_rate_hz": rate_hz,
        "missing_before_kill": sum(1 for t, _ in missing if t < t_kill_ns),
        "missing_after_kill": sum(1 for t, _ in missing if t >= t_kill_ns),
        "missing_by_topic": dict(by_topic.most_common(8)),
        "pre_kill_log_kept": earliest is not None and earliest < w0,
        "parts": [p.name for p in parts],
        "problems": problems[:6],
    }
