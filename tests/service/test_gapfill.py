"""A recorder restart under `prescient up`: the launcher's capture fills exactly what no part holds."""

from __future__ import annotations

from pathlib import Path

from prescient.bus import codec
from prescient.bus import messages as m
from prescient.bus.logfile import LogWriter, peek_header
from prescient.bus.logreader import iter_log
from prescient.service.app.gapfill import FrameRing, fill_gaps

MS = 1_000_000


def _payload(topic: str, seq: int) -> bytes:
    msg = m.empty(m.EgoState if topic == m.TOPIC_EGO else m.Tracks, topic, stamp_ns=seq * 100 * MS)
    return codec.encode(
        type(msg)(
            **{
                **{f: getattr(msg, f) for f in msg.__dataclass_fields__},
                "header": m.Header(
                    topic=topic, seq=seq, stamp_ns=seq * 100 * MS, sent_mono_ns=10**9 + seq * 100 * MS
                ),
            }
        )
    )


def _part(path: Path, frames: list[tuple[str, int]]) -> None:
    with LogWriter(path, stamp_seq=False) as w:
        for topic, seq in frames:
            p = _payload(topic, seq)
            w.write_raw(topic, p, 10**9 + seq * 100 * MS, 10**9 + seq * 100 * MS, seq=seq)


def test_fill_writes_only_what_no_part_holds(tmp_path: Path) -> None:
    topics = (m.TOPIC_EGO, m.TOPIC_TRACKS)
    ring = FrameRing(seconds=3.0)
    # The old recorder wrote seq 0..49 and died; its last second (40..49) never reached disk;
    # the new one records from seq 70. The launcher saw everything.
    _part(tmp_path / "log.mcap", [(t, s) for s in range(40) for t in topics])
    _part(tmp_path / "log.1.mcap", [(t, s) for s in range(70, 100) for t in topics])
    for s in range(100):
        if s == 50:
            ring.start_capture(10**9 + s * 100 * MS, hold_s=2.5)
        for t in topics:
            ring.add(t, _payload(t, s), 10**9 + s * 100 * MS)
    n = fill_gaps([tmp_path / "log.mcap", tmp_path / "log.1.mcap"], ring.captures, tmp_path / "gap.mcap")
    assert n == 2 * 30  # seq 40..69 on both topics: 3 s before the restart, 2.5 s after
    got = sorted((r.topic, peek_header(r.payload)[0]) for r in iter_log(tmp_path / "gap.mcap"))
    assert got == sorted((t, s) for s in range(40, 70) for t in topics)


def test_nothing_missing_writes_nothing(tmp_path: Path) -> None:
    ring = FrameRing(seconds=3.0)
    _part(tmp_path / "log.mcap", [(m.TOPIC_EGO, s) for s in range(30)])
    ring.start_capture(10**9, hold_s=10.0)
    for s in range(30):
        ring.add(m.TOPIC_EGO, _payload(m.TOPIC_EGO, s), 10**9 + s * 100 * MS)
    assert fill_gaps([tmp_path / "log.mcap"], ring.captures, tmp_path / "gap.mcap") == 0
    assert not (tmp_path / "gap.mcap").exists()


def test_ring_is_bounded_by_time_and_bytes() -> None:
    ring = FrameRing(seconds=1.0, max_bytes=10_000)
    for s in range(1000):
        ring.add(m.TOPIC_EGO, b"x" * 100, s * 10 * MS)
    ring.start_capture(1000 * 10 * MS, hold_s=0.0)
    cap = ring.captures[0]
    assert len(cap) <= 100 and sum(len(f.payload) for f in cap) <= 10_000


def test_captures_are_bounded_over_a_run() -> None:
    ring = FrameRing(seconds=10.0, max_capture_bytes=5_000)
    ring.start_capture(0, hold_s=100.0)
    for s in range(100):
        ring.add(m.TOPIC_EGO, b"x" * 100, s * MS)
    assert sum(len(f.payload) for cap in ring.captures for f in cap) == 5_000
    assert ring.dropped_bytes == 5_000
