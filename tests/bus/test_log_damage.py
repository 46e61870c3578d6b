"""Log-damage corpus: one real log damaged systematically, and a fuzz test of the reader.

For every damaged copy: no exception escapes the reader, it invents no message, every chunk the
damage did not touch comes back, and the damage is reported (problems, and skipped byte ranges
wherever bytes could not be used). The layout of the clean file is read with the mcap package's
own parsers, independent of the reader under test.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import io
import json
import random
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcap.data_stream import ReadDataStream
from mcap.opcode import Opcode
from mcap.records import Chunk, Message
from mcap.stream_reader import breakup_chunk

from prescient.bus import log_cli
from prescient.bus.errors import StartupError
from prescient.bus.logfile import LogError, LogWriter
from prescient.bus.logreader import EXIT_DAMAGED, LogReader, ReadStats, iter_log
from tests.bus._log_helpers import write_sample_log

_HDR = 9
_MAGIC_LEN = 8
Msg = tuple[str, int, bytes]  # topic, log_time_ns, payload


@dataclasses.dataclass(frozen=True)
class _Chunk:
    start: int  # offset of the chunk record's opcode
    end: int  # just after the chunk record
    unit_end: int  # just after the message index records that follow it
    data_lo: int  # compressed records
    messages: frozenset[Msg]


@dataclasses.dataclass(frozen=True)
class _Layout:
    data: bytes
    records: list[tuple[int, int, int]]  # (offset, opcode, length) of every top-level record
    data_end: int  # offset of the DATA_END record
    chunks: list[_Chunk]
    messages: frozenset[Msg]


def _layout(data: bytes) -> _Layout:
    records, pos = [], _MAGIC_LEN
    while pos < len(data) - _MAGIC_LEN:
        op, length = struct.unpack_from("<BQ", data, pos)
        records.append((pos, op, length))
        pos += _HDR + length
    topics: dict[int, str] = {}
    chunks: list[_Chunk] = []
    for i, (pos, op, length) in enumerate(records):
        if op != Opcode.CHUNK:
            continue
        chunk = Chunk.read(ReadDataStream(io.BytesIO(data[pos + _HDR : pos + _HDR + length])))
        msgs = set()
        for r in breakup_chunk(chunk, validate_crc=True):
            if isinstance(r, Message):
                msgs.add((topics[r.channel_id], r.log_time, r.data))
            elif hasattr(r, "topic"):
                topics[r.id] = r.topic
        unit_end = next((p for p, o, _ in records[i + 1 :] if o != Opcode.MESSAGE_INDEX), len(data))
        data_lo = pos + _HDR + 28 + 4 + len(chunk.compression) + 8
        chunks.append(_Chunk(pos, pos + _HDR + length, unit_end, data_lo, frozenset(msgs)))
    data_end = next(p for p, o, _ in records if o == Opcode.DATA_END)
    return _Layout(data, records, data_end, chunks, frozenset().union(*(c.messages for c in chunks)))


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> _Layout:
    path = tmp_path_factory.mktemp("damage") / "clean.mcap"
    write_sample_log(path, n_rounds=2, chunk_bytes=2048)
    lay = _layout(path.read_bytes())
    assert len(lay.chunks) >= 8 and len(lay.messages) == 24  # several chunks, every message in one
    return lay


@pytest.fixture
def read(tmp_path: Path) -> Callable[[bytes], tuple[set[Msg], ReadStats]]:
    path = tmp_path / "damaged.mcap"

    def _read(data: bytes) -> tuple[set[Msg], ReadStats]:
        path.write_bytes(data)
        stats = ReadStats()
        got = {(r.topic, r.log_time_ns, r.payload) for r in iter_log(path, stats=stats)}
        return got, stats

    return _read


def _check(
    lay: _Layout,
    read: Callable[[bytes], tuple[set[Msg], ReadStats]],
    damaged: bytes,
    touched: Callable[[_Chunk], bool],
    *,
    ranges: bool = True,
    loss_needs_range: bool = True,
) -> str | None:
    """Read ``damaged``; None if it behaves, else what went wrong (for one failure list).

    ``ranges``: a skipped byte range must be reported. ``loss_needs_range``: if any message is
    missing, a skipped byte range must be reported (False only where the file merely stops).
    """
    try:
        got, stats = read(damaged)
    except Exception as e:  # the point of the test: report any escape, not stop at the first
        return f"raised {type(e).__name__}: {e}"
    if not got <= lay.messages:
        return f"invented {len(got - lay.messages)} messages"
    lost = [c.start for c in lay.chunks if not touched(c) and not c.messages <= got]
    if lost:
        return f"lost untouched chunks at {lost}; problems {stats.problems}"
    if not stats.problems:
        return "no problem reported"
    if (ranges or (loss_needs_range and got != lay.messages)) and not stats.skipped_ranges:
        return f"no skipped range reported; problems {stats.problems}"
    return None


def _sampled_records(lay: _Layout) -> list[tuple[int, int, int]]:
    """Every record of the data section; of the summary (one CRC covers it all) the first of each kind."""
    out, kinds = [], set()
    for pos, op, length in lay.records:
        if pos <= lay.data_end or op not in kinds:
            out.append((pos, op, length))
        if pos > lay.data_end:
            kinds.add(op)
    return out


def _hits(lo: int, hi: int) -> Callable[[_Chunk], bool]:
    return lambda c: c.start < hi and lo < c.end


def _assert_none_failed(failures: dict[str, str | None]) -> None:
    bad = {k: v for k, v in failures.items() if v is not None}
    assert not bad, f"{len(bad)} of {len(failures)} damaged copies misread, e.g. {list(bad.items())[:5]}"


# ----------------------------------------------------------------------------------------------
def test_clean_log_reads_complete_with_no_problem(layout: _Layout, read) -> None:
    """Baseline: the undamaged file gives every message, finished, with nothing reported."""
    got, stats = read(layout.data)
    assert got == layout.messages
    assert stats.complete and not stats.problems and not stats.skipped_ranges


def test_truncation_at_any_offset_keeps_every_complete_chunk(layout: _Layout, read) -> None:
    """Cut at every record start, inside every record header and on a stride: chunks before survive."""
    size = len(layout.data)
    data_starts = {p for p, _, _ in layout.records if p <= layout.data_end}
    cuts = {p + d for p, _, _ in _sampled_records(layout) for d in (0, 1, 8, 9, 20)} | set(
        range(8, size, 211)
    )
    failures = {}
    for cut in sorted(c for c in cuts if _MAGIC_LEN <= c < size):
        at_boundary = cut in data_starts  # the file just stops: nothing in it to skip
        failures[f"cut@{cut}"] = _check(
            layout,
            read,
            layout.data[:cut],
            lambda c, cut=cut: c.end > cut,
            ranges=not at_boundary,
            loss_needs_range=not at_boundary,
        )
    _assert_none_failed(failures)


@pytest.mark.parametrize("cut", [0, 1, 7])
def test_truncation_inside_the_magic_is_a_clear_log_error(layout: _Layout, tmp_path: Path, cut: int) -> None:
    """Less than the magic left: LogError at open, naming the file."""
    path = tmp_path / "cut.mcap"
    path.write_bytes(layout.data[:cut])
    with pytest.raises(LogError, match="empty file|bad magic"):
        LogReader(path)


def test_opcode_flipped_to_every_opcode_at_every_record_start(layout: _Layout, read) -> None:
    """Each record's opcode set to every MCAP opcode and to bytes that are none."""
    values = [int(o) for o in Opcode] + [0x00, 0x10, 0x80, 0xEE, 0xFF]
    failures = {}
    for pos, op, _ in _sampled_records(layout):
        for v in values:
            if v != op:
                damaged = layout.data[:pos] + bytes([v]) + layout.data[pos + 1 :]
                failures[f"{pos}:{op:#x}->{v:#x}"] = _check(layout, read, damaged, _hits(pos, pos + 1))
    _assert_none_failed(failures)


def test_chunk_opcode_flipped_to_footer_or_data_end_does_not_end_the_read(layout: _Layout, read) -> None:
    """The first chunk claiming to be the footer or the data end: every message still comes back."""
    pos = layout.chunks[0].start
    for v in (Opcode.FOOTER, Opcode.DATA_END):
        got, stats = read(layout.data[:pos] + bytes([v]) + layout.data[pos + 1 :])
        assert got == layout.messages  # the chunk itself is read by its framing and CRC
        assert stats.complete and any(f"byte {pos}" in p for p in stats.problems)
        assert stats.skipped_ranges == [(pos, pos + 1, stats.skipped_ranges[0][2])]


@pytest.mark.parametrize("delta", [1, -1, 1000, 10**6, 2**40, 2**63, -(2**20)])
def test_record_length_changed_at_every_record(layout: _Layout, read, delta: int) -> None:
    """Grown, shrunk, past-the-end and absurd lengths: no intact chunk is swallowed or lost."""
    failures = {}
    for pos, op, length in _sampled_records(layout):
        new = (length + delta) % 2**64
        damaged = layout.data[: pos + 1] + struct.pack("<Q", new) + layout.data[pos + _HDR :]
        failures[f"{pos}:{op:#x} {length}->{new}"] = _check(layout, read, damaged, _hits(pos, pos + _HDR))
    _assert_none_failed(failures)


def test_grown_chunk_length_does_not_swallow_the_next_chunk(layout: _Layout, read) -> None:
    """A length grown over the next chunk: both chunks come back; the header bytes are reported."""
    first, second = layout.chunks[1], layout.chunks[2]
    grown = second.end - first.start - _HDR
    damaged = layout.data[: first.start + 1] + struct.pack("<Q", grown) + layout.data[first.start + _HDR :]
    got, stats = read(damaged)
    assert got == layout.messages
    assert stats.skipped_ranges[0][:2] == (first.start + 1, first.start + _HDR)
    assert "length field" in stats.problems[0]


def test_byte_flips_in_chunk_bodies(layout: _Layout, read) -> None:
    """Bytes flipped inside each chunk's compressed records: that chunk is reported, others survive."""
    rng = random.Random(14)
    failures = {}
    for c in layout.chunks:
        for _ in range(4):
            off = rng.randrange(c.data_lo, c.end)
            damaged = bytearray(layout.data)
            damaged[off] ^= rng.randrange(1, 256)
            failures[f"{off}"] = _check(layout, read, bytes(damaged), _hits(off, off + 1))
    _assert_none_failed(failures)


def test_changed_chunk_times_are_reported_by_the_data_crc(layout: _Layout, read) -> None:
    """A chunk's time fields carry no message: all messages survive, the data CRC names the change."""
    c = layout.chunks[3]
    damaged = bytearray(layout.data)
    damaged[c.start + _HDR + 3] ^= 0x40
    got, stats = read(bytes(damaged))
    assert got == layout.messages
    assert len(stats.problems) == 1 and "data section CRC mismatch" in stats.problems[0]


def test_zeroed_ranges(layout: _Layout, read) -> None:
    """Runs of zero bytes anywhere (seeded): intact chunks survive, any loss has a skipped range."""
    rng = random.Random(7)
    failures = {}
    for _ in range(120):
        n = rng.choice([1, 4, 16, 100, 1000, 5000])
        lo = rng.randrange(_MAGIC_LEN, len(layout.data) - 1)
        hi = min(lo + n, len(layout.data))
        damaged = layout.data[:lo] + bytes(hi - lo) + layout.data[hi:]
        if damaged != layout.data:
            failures[f"{lo}..{hi}"] = _check(layout, read, damaged, _hits(lo, hi), ranges=False)
    _assert_none_failed(failures)


def test_duplicated_chunks_are_reported_and_skipped(layout: _Layout, read) -> None:
    """A chunk copied again (alone or with its indexes): no message twice, the copy is a skipped range."""
    failures = {}
    for c in layout.chunks:
        for copy_end in (c.end, c.unit_end):
            copy = layout.data[c.start : copy_end]
            damaged = layout.data[: c.unit_end] + copy + layout.data[c.unit_end :]
            problem = _check(layout, read, damaged, lambda _c: False)
            _, stats = read(damaged)
            if problem is None and not any("duplicate chunk" in p for p in stats.problems):
                problem = f"duplicate not named: {stats.problems}"
            failures[f"{c.start}..{copy_end}"] = problem
    _assert_none_failed(failures)


def test_reordered_chunks_are_read_and_reported(layout: _Layout, read) -> None:
    """Two neighbouring chunks swapped: every message read, the change reported (data CRC)."""
    failures = {}
    for a, b in zip(layout.chunks, layout.chunks[1:]):
        d = layout.data
        damaged = d[: a.start] + d[b.start : b.unit_end] + d[a.start : a.unit_end] + d[b.unit_end :]
        failures[f"{a.start}<->{b.start}"] = _check(layout, read, damaged, lambda _c: False, ranges=False)
    _assert_none_failed(failures)


def test_damaged_first_chunk_of_unfinished_log_keeps_later_topics(layout: _Layout, read) -> None:
    """No summary and the chunk defining the channels broken: later messages keep their topics."""
    first = layout.chunks[0]
    damaged = bytearray(layout.data[: layout.data_end])  # unfinished: no data end, no summary
    damaged[first.data_lo + 5] ^= 0xFF
    got, stats = read(bytes(damaged))
    later = frozenset().union(*(c.messages for c in layout.chunks[1:]))
    assert got == later
    assert any("taken from each payload's header" in p for p in stats.problems)


# ----------------------------------------------------------------------------------------------
def _prescient(argv: list[str]) -> int:
    """``prescient ARGV`` for the log commands, as ``prescient.service.app.cli.main`` runs them (StartupError: 1)."""
    parser = argparse.ArgumentParser(prog="prescient")
    sub = parser.add_subparsers(dest="command")
    log_cli.register(sub)
    if importlib.util.find_spec("foxglove") is not None:  # adds `log export-foxglove`
        from prescient.service.app.foxglove import cli as foxglove_cli

        foxglove_cli.register(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except StartupError:
        return 1


@pytest.fixture
def damaged_log(layout: _Layout, tmp_path: Path) -> tuple[Path, set[Msg], list[tuple[int, int]]]:
    """The log with one chunk's records flipped and its summary cut off: (path, readable, damage)."""
    c = layout.chunks[2]
    data = bytearray(layout.data[: layout.data_end + 20])
    data[c.data_lo + 3] ^= 0x55
    path = tmp_path / "damaged.mcap"
    path.write_bytes(bytes(data))
    return (
        path,
        set(layout.messages - c.messages),
        [(c.start, layout.chunks[3].start), (layout.data_end, len(data))],
    )


def test_log_info_on_damaged_log_prints_every_skipped_range_and_exits_3(damaged_log, capsys) -> None:
    """`prescient log info`: counts what is readable, prints each skipped range, exit 3."""
    path, readable, ranges = damaged_log
    assert _prescient(["log", "info", str(path)]) == EXIT_DAMAGED
    out = capsys.readouterr().out
    assert f"{len(readable)} messages" in out and "NOT FINISHED" in out
    for a, b in ranges:
        assert f"skipped bytes {a}..{b}" in out
    assert _prescient(["log", "info", str(path), "--json"]) == EXIT_DAMAGED
    doc = json.loads(capsys.readouterr().out)
    assert [(r["start"], r["end"]) for r in doc["skipped_ranges"]] == ranges
    assert doc["messages"] == len(readable) and len(doc["problems"]) >= len(ranges)


def test_offline_log_replay_of_damaged_log_decodes_the_rest_and_exits_3(damaged_log, capsys) -> None:
    """`prescient log replay --offline`: every readable message decoded, ranges printed, exit 3."""
    path, readable, ranges = damaged_log
    assert _prescient(["log", "replay", str(path), "--offline"]) == EXIT_DAMAGED
    out = capsys.readouterr().out
    assert f"offline replay: {len(readable)} messages decoded, 0 skipped" in out
    assert all(f"skipped bytes {a}..{b}" in out for a, b in ranges)


def test_bus_log_replay_of_damaged_log_sends_the_rest_and_exits_3(
    damaged_log, capsys, tmp_path, monkeypatch
) -> None:
    """`prescient log replay` through the bus (no listener): sends every readable message, exit 3."""
    path, readable, ranges = damaged_log
    monkeypatch.setenv("PRESCIENT_BUS", f"ipc://{tmp_path}/bus")
    assert _prescient(["log", "replay", str(path), "--max-speed", "--wait-s", "0.1"]) == EXIT_DAMAGED
    out = capsys.readouterr().out
    assert f"replayed {len(readable)} messages" in out
    assert all(f"skipped bytes {a}..{b}" in out for a, b in ranges)


def test_export_foxglove_of_damaged_log_copies_the_rest_and_exits_3(damaged_log, capsys, tmp_path) -> None:
    """`prescient log export-foxglove`: the copy holds every readable message; exit 3; no overwrite."""
    pytest.importorskip("foxglove")
    path, readable, ranges = damaged_log
    out = tmp_path / "fox.mcap"
    assert _prescient(["log", "export-foxglove", str(path), str(out)]) == EXIT_DAMAGED
    printed = capsys.readouterr().out
    assert all(f"skipped bytes {a}..{b}" in printed for a, b in ranges)
    stats = ReadStats()
    copied = [r for r in iter_log(out, stats=stats) if r.topic.startswith("/prescient/")]
    assert len(copied) == len(readable) and not stats.problems
    before = out.read_bytes()
    assert _prescient(["log", "export-foxglove", str(path), str(out)]) == 1  # exists: refused
    assert _prescient(["log", "export-foxglove", str(path), str(path)]) == 1  # onto its own log
    assert out.read_bytes() == before and path.stat().st_size > 0
    assert _prescient(["log", "export-foxglove", str(path), str(out), "--force"]) == EXIT_DAMAGED


@pytest.mark.parametrize(
    "content", [b"", b"\x89MCAP0\r", b"not an mcap file at all" * 10, bytes(range(256)) * 40]
)
@pytest.mark.parametrize("command", [["info"], ["replay", "--offline"], ["export-foxglove"]])
def test_log_commands_on_unreadable_files_fail_clearly(
    tmp_path: Path, content: bytes, command: list[str]
) -> None:
    """Empty, cut-in-the-magic and non-MCAP files: exit 1 with a clear error, no traceback, no output file."""
    path = tmp_path / "bad.mcap"
    path.write_bytes(content)
    extra = [str(tmp_path / "out.mcap")] if command[0] == "export-foxglove" else []
    assert _prescient(["log", command[0], str(path), *command[1:], *extra]) == 1
    assert not (tmp_path / "out.mcap").exists()


def test_offline_service_replay_of_damaged_log_reports_damage(damaged_log) -> None:
    """`prescient replay` (prescient.service.offline.replay_log): runs on what is readable, exit_code 3 and ranges."""
    from prescient.service.offline import replay_log

    path, _, ranges = damaged_log
    summary = replay_log(path, None)
    assert summary["exit_code"] == EXIT_DAMAGED and not summary["complete"]
    assert [tuple(r[:2]) for r in summary["skipped_ranges"]] == ranges
    assert all(any(f"skipped bytes {a}..{b}" in p for p in summary["problems"]) for a, b in ranges)


def test_offline_service_replay_never_writes_over_its_log_or_an_existing_file(damaged_log, tmp_path) -> None:
    """replay_log --out: the log itself and an existing file are refused before any work."""
    from prescient.service.offline import replay_log

    path, _, _ = damaged_log
    before = path.read_bytes()
    with pytest.raises(StartupError, match="is the log being replayed"):
        replay_log(path, None, out=path, overwrite=True)
    other = tmp_path / "other.mcap"
    other.write_bytes(b"keep me")
    with pytest.raises(StartupError, match="already exists"):
        replay_log(path, None, out=other)
    assert path.read_bytes() == before and other.read_bytes() == b"keep me"


# ----------------------------------------------------------------------------------------------
_MUTATION = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 2**20), st.integers(1, 255)),
    st.tuples(st.just("zero"), st.integers(0, 2**20), st.integers(1, 3000)),
    st.tuples(st.just("cut"), st.integers(0, 2**20), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 2**20), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("delete"), st.integers(0, 2**20), st.integers(1, 3000)),
)


def _mutate(data: bytes, mutations: list[tuple]) -> bytes:
    out = bytearray(data)
    for kind, at, arg in mutations:
        at %= len(out) + 1
        if kind == "flip" and at < len(out):
            out[at] ^= arg
        elif kind == "zero":
            out[at : at + arg] = bytes(len(out[at : at + arg]))
        elif kind == "cut":
            del out[at:]
        elif kind == "insert":
            out[at:at] = arg
        elif kind == "delete":
            del out[at : at + arg]
    return bytes(out)


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(mutations=st.lists(_MUTATION, min_size=1, max_size=4))
def test_fuzz_reader_on_mutated_log(layout: _Layout, read, mutations: list[tuple]) -> None:
    """Arbitrary mutations: LogError at open or a full read; nothing invented; no silent loss."""
    damaged = _mutate(layout.data, mutations)
    try:
        got, stats = read(damaged)
    except LogError:
        assert damaged[:_MAGIC_LEN] != layout.data[:_MAGIC_LEN]  # only an unreadable start refuses
        return
    assert got <= layout.messages
    if got != layout.messages:  # a loss is reported: skipped bytes, or a file that stops short
        assert stats.problems and (stats.skipped_ranges or not stats.complete)


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(body=st.binary(max_size=4000))
def test_fuzz_reader_on_arbitrary_bytes_after_the_magic(layout: _Layout, read, body: bytes) -> None:
    """Random bytes behind a valid magic: read to the end, nothing yielded, the damage reported."""
    got, stats = read(layout.data[:_MAGIC_LEN] + body)
    assert not got
    assert stats.problems and not stats.complete


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(changes=st.lists(st.tuples(st.integers(0, 2**20), st.integers(1, 255)), min_size=1, max_size=6))
def test_fuzz_in_place_damage_spares_untouched_chunks(
    layout: _Layout, read, changes: list[tuple[int, int]]
) -> None:
    """Bytes changed in place anywhere after the magic: every chunk holding none of them survives."""
    damaged = bytearray(layout.data)
    offsets = [_MAGIC_LEN + at % (len(damaged) - _MAGIC_LEN) for at, _ in changes]
    for off, (_, xor) in zip(offsets, changes):
        damaged[off] ^= xor
    if bytes(damaged) == layout.data:
        return  # two changes of one byte cancelled out
    problem = _check(
        layout, read, bytes(damaged), lambda c: any(c.start <= o < c.end for o in offsets), ranges=False
    )
    assert problem is None, problem


def test_hostile_payloads_inside_an_intact_log_are_counted_not_raised(tmp_path: Path) -> None:
    """A log that recorded the shape-overflow and bool-schema payloads (the recorder writes what
    the bus delivered) used to crash `log replay`, `replay` and `export-foxglove`."""
    import msgpack

    from prescient.bus import codec
    from prescient.bus import messages as m
    from prescient.bus.replayer import iter_messages
    from tests.bus._log_helpers import sample_stream

    good = sample_stream(3)
    tracks = next(msg for msg in good if isinstance(msg, m.Tracks))
    wire = msgpack.unpackb(codec.encode(tracks), raw=False)
    wire["position_m"]["shape"] = [2**64 - 1, 2]
    overflow = msgpack.packb(wire, use_bin_type=True)
    wire = msgpack.unpackb(codec.encode(tracks), raw=False)
    wire["header"]["schema"] = True
    bool_schema = msgpack.packb(wire, use_bin_type=True)
    path = tmp_path / "hostile.mcap"
    with LogWriter(path, stamp_seq=False) as w:
        for i, msg in enumerate(good):
            w.write(msg)
            if i == 3:
                w.write_raw(m.TOPIC_TRACKS, overflow, msg.header.stamp_ns, msg.header.stamp_ns)
                w.write_raw(m.TOPIC_TRACKS, bool_schema, msg.header.stamp_ns, msg.header.stamp_ns)
    stats = ReadStats()
    assert len(list(iter_messages(path, stats=stats))) == len(good)
    assert stats.skipped == {f"decode:{m.TOPIC_TRACKS}": 2}
    if importlib.util.find_spec("foxglove") is None:
        return  # the rest needs the foxglove extra
    from prescient.service.app.foxglove.export import RAW_PREFIX, export_scene

    counts = export_scene(path, tmp_path / "fox.mcap", raw_messages=True)
    assert sum(n for k, n in counts.items() if k.startswith(RAW_PREFIX)) == len(good)
