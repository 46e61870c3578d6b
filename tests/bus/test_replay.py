"""Log files: bit-exact round trip, filters, damaged files, offline replay, replay through a proxy."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path

import pytest
from mcap.reader import make_reader

from prescient.bus import messages as m
from prescient.bus.logfile import LogError, LogWriter
from prescient.bus.logreader import ReadStats, iter_log
from prescient.bus.logsummary import summarize_log
from prescient.bus.proxy import Proxy
from prescient.bus.replayer import BusReplayer, iter_messages
from prescient.bus.transport import Subscriber
from tests.bus import _log_helpers
from tests.bus._log_helpers import sample_stream, write_sample_log
from tests.bus.samples import assert_msg_equal

ctx, cfg = _log_helpers.ctx, _log_helpers.cfg  # pytest fixtures


def test_log_roundtrip_is_bit_exact_and_in_order(tmp_path: Path) -> None:
    """Every payload comes back byte for byte, in write order, with its times."""
    path = tmp_path / "a.mcap"
    written = write_sample_log(path)
    got = list(iter_log(path))
    assert [(r.topic, r.payload) for r in got] == written
    stamps = [r.log_time_ns for r in got]
    assert stamps == sorted(stamps)


def test_log_is_standard_mcap_with_msgpack_channels(tmp_path: Path) -> None:
    """The official mcap reader reads it; channels are msgpack with prescient schemas."""
    path = tmp_path / "a.mcap"
    written = write_sample_log(path, n_rounds=2)
    with open(path, "rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        assert summary is not None and summary.statistics.message_count == len(written)
        assert summary.statistics.chunk_count > 1
        for ch in summary.channels.values():
            assert ch.message_encoding == "msgpack"
            assert summary.schemas[ch.schema_id].name == f"prescient.{m.topic_type(ch.topic).__name__}"
            json.loads(summary.schemas[ch.schema_id].data)
        assert [msg.data for _, _, msg in reader.iter_messages()] == [p for _, p in written]


def test_iter_messages_decodes_deterministically_and_equal_to_source(tmp_path: Path) -> None:
    """Two offline replays give identical decoded streams equal to what was written."""
    path = tmp_path / "a.mcap"
    write_sample_log(path)
    a, b = list(iter_messages(path)), list(iter_messages(path))
    src = sample_stream()
    assert len(a) == len(b) == len(src)
    for x, y, s in zip(a, b, src):
        assert x.topic == y.topic == s.header.topic
        assert_msg_equal(x.msg, y.msg)
        assert_msg_equal(x.msg, s)


def test_topic_prefix_filter_and_time_window(tmp_path: Path) -> None:
    """Topic prefixes and a [start, end) log-time window select exactly the expected records."""
    path = tmp_path / "a.mcap"
    write_sample_log(path)
    src = sample_stream()
    sensors = list(iter_log(path, topics=["sensor."]))
    assert len(sensors) == sum(1 for s in src if s.header.topic.startswith("sensor."))
    assert all(r.topic.startswith("sensor.") for r in sensors)
    t0, t1 = src[10].header.stamp_ns, src[20].header.stamp_ns
    window = list(iter_log(path, start_ns=t0, end_ns=t1))
    assert [r.log_time_ns for r in window] == [s.header.stamp_ns for s in src[10:20]]
    both = list(iter_messages(path, topics=[m.TOPIC_TRACKS, m.TOPIC_EGO], start_ns=t0, end_ns=t1 + 10**8))
    assert {x.topic for x in both} == {m.TOPIC_TRACKS, m.TOPIC_EGO}


def test_unknown_topics_and_bad_payloads_are_skipped_and_counted(tmp_path: Path) -> None:
    """Unknown topics and undecodable payloads are counted; every good message still comes out."""
    path = tmp_path / "a.mcap"
    good = sample_stream(1)
    with LogWriter(path, stamp_seq=False) as w:
        for i, msg in enumerate(good):
            w.write(msg)
            w.write_raw("debug.custom", b"\x80", msg.header.stamp_ns, 0)
            if i % 3 == 0:
                w.write_raw(m.TOPIC_TRACKS, b"not msgpack at all", msg.header.stamp_ns, 0)
    stats = ReadStats()
    got = list(iter_messages(path, stats=stats))
    assert len(got) == len(good)
    assert stats.skipped["unknown_topic:debug.custom"] == len(good)
    assert stats.skipped[f"decode:{m.TOPIC_TRACKS}"] == (len(good) + 2) // 3
    assert not stats.problems


def test_truncated_log_yields_every_complete_chunk_and_names_the_problem(tmp_path: Path) -> None:
    """A file cut short (crash, partial copy) keeps every complete chunk and says where it ends."""
    path = tmp_path / "a.mcap"
    written = write_sample_log(path, n_rounds=8, chunk_bytes=4096)
    data = path.read_bytes()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    stats = ReadStats()
    got = list(iter_log(cut, stats=stats))
    assert 0 < len(got) < len(written)
    assert [(r.topic, r.payload) for r in got] == written[: len(got)]
    assert stats.problems and "truncated at byte" in stats.problems[0]
    assert not stats.complete
    with pytest.raises(LogError, match="truncated"):
        list(iter_log(cut, strict=True))


def test_corrupted_chunk_is_reported_and_later_chunks_still_read(tmp_path: Path) -> None:
    """Flipped bytes inside one chunk: that chunk is reported (CRC), the rest is yielded."""
    path = tmp_path / "a.mcap"
    written = write_sample_log(path, n_rounds=8, chunk_bytes=4096)
    with open(path, "rb") as f:
        chunks = make_reader(f).get_summary().chunk_indexes
    assert len(chunks) >= 3
    bad = bytearray(path.read_bytes())
    mid = chunks[1].chunk_start_offset + chunks[1].chunk_length // 2
    bad[mid : mid + 16] = bytes(16)
    damaged = tmp_path / "bad.mcap"
    damaged.write_bytes(bytes(bad))
    stats = ReadStats()
    got = list(iter_log(damaged, stats=stats))
    assert len(stats.problems) == 1 and "corrupted CHUNK" in stats.problems[0]
    payloads = {p for _, p in written}
    assert all(r.payload in payloads for r in got)
    assert len(written) - 2 * len(written) // len(chunks) < len(got) < len(written)
    assert got[-1].payload == written[-1][1]  # the last chunk survived


def test_broken_framing_resyncs_on_next_chunk(tmp_path: Path) -> None:
    """A garbage opcode between records is reported; reading resumes at the next valid chunk."""
    path = tmp_path / "a.mcap"
    written = write_sample_log(path, n_rounds=8, chunk_bytes=4096)
    with open(path, "rb") as f:
        chunks = make_reader(f).get_summary().chunk_indexes
    bad = bytearray(path.read_bytes())
    bad[chunks[2].chunk_start_offset] = 0xEE  # the opcode of chunk 2
    damaged = tmp_path / "bad.mcap"
    damaged.write_bytes(bytes(bad))
    stats = ReadStats()
    got = list(iter_log(damaged, stats=stats))
    assert any("corrupted record framing" in p and "resynchronised" in p for p in stats.problems)
    assert got[-1].payload == written[-1][1]


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"", "empty file"), (b"hello world, not mcap", "bad magic"), (None, "no such file")],
)
def test_unreadable_files_raise_clear_log_error(tmp_path: Path, content: bytes | None, reason: str) -> None:
    """Missing, empty and non-MCAP files raise LogError naming the file and the reason."""
    path = tmp_path / "x.mcap"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(LogError, match=reason) as e:
        list(iter_log(path))
    assert str(path) in str(e.value)


def test_summarize_counts_rates_and_seq_gaps(tmp_path: Path) -> None:
    """`log info` data: per-topic counts, rate, duration and seq gaps from the recorded seqs."""
    path = tmp_path / "a.mcap"
    with LogWriter(path, stamp_seq=False) as w:
        for i in range(21):
            if i in (5, 6, 7):  # three lost messages
                continue
            msg = m.empty(m.EgoState, m.TOPIC_EGO, stamp_ns=i * 100_000_000)
            w.write(dataclasses.replace(msg, header=dataclasses.replace(msg.header, seq=i)))
    s = summarize_log(path)
    ego = s.topics[m.TOPIC_EGO]
    assert (ego.count, ego.gaps, s.gaps) == (18, 3, 3)
    assert s.duration_s == pytest.approx(2.0)
    assert ego.rate_hz == pytest.approx(17 / 2.0)
    assert s.stats.complete and not s.stats.problems


def test_export_foxglove_writes_scene_and_every_message_as_json(tmp_path: Path) -> None:
    """`log export-foxglove`: the foxglove.* scene plus every logged message as JSON on
    /prescient/<topic> (JSON Schemas, arrays as lists, same count), all at wall-clock log times."""
    pytest.importorskip("foxglove")
    from prescient.service.app.foxglove.export import RAW_PREFIX, export_scene

    path, out = tmp_path / "a.mcap", tmp_path / "fox.mcap"
    src = sample_stream(2)
    write_sample_log(path, n_rounds=2)
    counts = export_scene(path, out, raw_messages=True)
    assert sum(n for k, n in counts.items() if k.startswith(RAW_PREFIX)) == len(src)
    assert counts.get("/scene", 0) > 0 and counts.get("/tf", 0) > 0
    with open(out, "rb") as f:
        msgs = list(make_reader(f).iter_messages())
    assert all(rec.log_time > 1_500_000_000 * 10**9 for _, _, rec in msgs)  # UNIX time, not 1970
    raw = [(sc, ch, rec) for sc, ch, rec in msgs if ch.topic.startswith(RAW_PREFIX)]
    assert len(raw) == len(src)
    for (schema, channel, rec), s in zip(raw, src):
        assert channel.topic == RAW_PREFIX + s.header.topic
        assert channel.message_encoding == "json" and schema.encoding == "jsonschema"
        doc = json.loads(rec.data)
        props = json.loads(schema.data)["properties"]
        assert set(doc) == set(props)
        assert doc["header"]["stamp_ns"] == s.header.stamp_ns
        for name in m.array_specs(type(s)):
            assert doc[name] == getattr(s, name).tolist()
    scene = [(sc, ch) for sc, ch, _ in msgs if ch.topic == "/scene"]
    assert scene[0][0].name == "foxglove.SceneUpdate" and scene[0][1].message_encoding == "protobuf"


def test_replay_through_proxy_is_bit_exact_and_keeps_timing(ctx, cfg, tmp_path: Path) -> None:
    """Through a real proxy: waits for the subscriber, sends every payload unchanged, paced."""
    path = tmp_path / "a.mcap"
    written = write_sample_log(path, n_rounds=3)  # 36 messages 10 ms apart: 0.35 s of log
    got: list[tuple[str, bytes]] = []
    with Proxy(cfg, ctx):
        sub = Subscriber(cfg, ("",), ctx=ctx)
        rp = BusReplayer(cfg, path, rate=2.0, ctx=ctx)
        t = threading.Thread(target=lambda: rp.run(wait_s=5.0))
        t0 = time.monotonic()
        t.start()
        deadline = time.monotonic() + 10
        while len(got) < len(written) and time.monotonic() < deadline:
            r = sub.recv_raw(50)
            if r is not None:
                got.append(r)
        t.join(5)
        elapsed = time.monotonic() - t0
        rp.close()
        sub.close()
    assert got == written
    assert rp.stats.waited_for_subscribers and rp.stats.sent == len(written) and rp.stats.dropped == 0
    assert elapsed >= 0.35 / 2.0 * 0.9  # paced at 2x: at least half the log's span


def test_replay_stop_event_interrupts(ctx, cfg, tmp_path: Path) -> None:
    """A stop request (SIGINT in the CLI) ends a slow replay promptly."""
    path = tmp_path / "a.mcap"
    write_sample_log(path, n_rounds=3)
    with Proxy(cfg, ctx):
        sub = Subscriber(cfg, ("",), ctx=ctx)
        rp = BusReplayer(cfg, path, rate=0.01, ctx=ctx)  # would take ~35 s
        stop = threading.Event()
        threading.Timer(0.5, stop.set).start()
        t0 = time.monotonic()
        st = rp.run(stop=stop, wait_s=5.0)
        assert time.monotonic() - t0 < 3.0
        assert st.interrupted and st.sent < 36
        rp.close()
        sub.close()
