"""Recorder: records through a real proxy, counts gaps, finishes on SIGINT, survives kill -9,
and never overwrites an earlier recording (restarts write the next part)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mcap.reader import make_reader

from prescient.bus import log_cli
from prescient.bus import messages as m
from prescient.bus.config import BusConfig
from prescient.bus.logfile import LogExistsError, LogWriter
from prescient.bus.logreader import ReadStats, iter_log
from prescient.bus.logsummary import summarize_log
from prescient.bus.proxy import Proxy
from prescient.bus.recorder import METADATA_NAME, Recorder, log_parts, next_part
from prescient.bus.transport import Publisher
from tests.bus import _log_helpers
from tests.bus._log_helpers import sample_stream, write_sample_log

ctx, cfg = _log_helpers.ctx, _log_helpers.cfg  # pytest fixtures
REPO = Path(__file__).resolve().parents[2]


def _publish_all(pub: Publisher, msgs: list, spacing_s: float = 0.0) -> list[tuple[str, bytes]]:
    sent = []
    for msg in msgs:
        sent.append((msg.header.topic, pub.publish(msg)))
        if spacing_s:
            time.sleep(spacing_s)
    return sent


def test_recorder_records_everything_bit_exact_with_zero_gaps(ctx, cfg, tmp_path: Path) -> None:
    """In-process recorder behind a proxy: every payload stored unchanged, gaps 0, metadata written."""
    out = tmp_path / "rec.mcap"
    with Proxy(cfg, ctx):
        rec = Recorder(cfg, out, ctx=ctx)
        pub = Publisher(cfg, ctx=ctx)
        assert pub.wait_for_subscribers([m.TOPIC_EGO], 5.0)
        stop = threading.Event()
        t = threading.Thread(target=rec.run, kwargs={"stop": stop})
        t.start()
        sent = _publish_all(pub, sample_stream(4))
        deadline = time.monotonic() + 5
        while rec.messages < len(sent) and time.monotonic() < deadline:
            time.sleep(0.02)
        stop.set()
        t.join(5)
        pub.close()
    summary = rec.summary
    assert summary is not None and summary.messages == len(sent) and summary.total_gaps == 0
    got = list(iter_log(out))
    assert [(r.topic, r.payload) for r in got] == sent
    assert all(r.publish_time_ns > 0 and r.log_time_ns >= r.publish_time_ns for r in got)
    s = summarize_log(out)
    assert s.stats.complete and s.gaps == 0
    meta = s.stats.metadata[METADATA_NAME]
    assert json.loads(meta["gaps"]) == {} and int(meta["messages"]) == len(sent)


def test_recorder_counts_seq_gaps_and_stores_them(ctx, cfg, tmp_path: Path) -> None:
    """Messages missing upstream (seq jumps) are counted per topic, at the end and in the file."""
    out = tmp_path / "rec.mcap"
    with Proxy(cfg, ctx):
        rec = Recorder(cfg, out, ctx=ctx)
        pub = Publisher(cfg, ctx=ctx)
        assert pub.wait_for_subscribers([m.TOPIC_EGO], 5.0)
        base = m.empty(m.EgoState, m.TOPIC_EGO)
        for i in range(10):
            if i in (3, 4, 8):
                pub._seq[m.TOPIC_EGO] = pub.next_seq(m.TOPIC_EGO) + 1  # simulate a loss upstream
            pub.publish(dataclasses.replace(base, header=dataclasses.replace(base.header, stamp_ns=i)))
        deadline = time.monotonic() + 5
        while rec.messages < 10 and time.monotonic() < deadline:
            rec.step(50)
        summary = rec.close()
        pub.close()
    assert summary.gaps == {m.TOPIC_EGO: 3}
    s = summarize_log(out)
    assert s.topics[m.TOPIC_EGO].gaps == 3
    assert json.loads(s.stats.metadata[METADATA_NAME]["gaps"]) == {m.TOPIC_EGO: 3}


def _start_recorder_process(cfg: BusConfig, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prescient.service",
            "record",
            "--out",
            str(out),
            "--sub-endpoint",
            cfg.sub_endpoint,
            *extra,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def _feed_process(
    ctx, cfg, proc: subprocess.Popen, n_rounds: int, spacing_s: float
) -> list[tuple[str, bytes]]:
    pub = Publisher(cfg, ctx=ctx)
    try:
        return _feed_with(pub, proc, n_rounds, spacing_s)
    finally:
        pub.close()


def _feed_with(
    pub: Publisher, proc: subprocess.Popen, n_rounds: int, spacing_s: float
) -> list[tuple[str, bytes]]:
    if not pub.wait_for_subscribers([m.TOPIC_EGO], 20.0):
        proc.kill()
        pytest.fail(f"recorder process never subscribed: {proc.communicate()[0].decode()}")
    return _publish_all(pub, sample_stream(n_rounds), spacing_s)


@pytest.mark.slow
def test_recorder_process_finishes_file_on_sigint(ctx, cfg, tmp_path: Path) -> None:
    """SIGINT to `prescient record`: exit 0, a finished file (summary, footer), nothing lost."""
    out = tmp_path / "rec.mcap"
    with Proxy(cfg, ctx):
        proc = _start_recorder_process(cfg, out)
        sent = _feed_process(ctx, cfg, proc, 3, 0.002)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=20)[0].decode()
    assert proc.returncode == 0, output
    assert "seq gaps: 0" in output
    with open(out, "rb") as f:
        summary = make_reader(f).get_summary()  # needs the finished summary section
    assert summary is not None and summary.statistics.message_count == len(sent)
    assert [(r.topic, r.payload) for r in iter_log(out)] == sent


@pytest.mark.slow
def test_recorder_killed_with_sigkill_keeps_written_chunks(ctx, cfg, tmp_path: Path) -> None:
    """kill -9 mid-recording: the tolerant reader yields every chunk already flushed, in order."""
    out = tmp_path / "rec.mcap"
    with Proxy(cfg, ctx):
        proc = _start_recorder_process(cfg, out, "--chunk-interval", "0.05")
        sent = _feed_process(ctx, cfg, proc, 6, 0.01)  # ~0.7 s of publishing: many chunks
        time.sleep(0.4)  # > chunk interval: everything received is on disk
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=20)
    assert proc.returncode == -signal.SIGKILL
    stats = ReadStats()
    got = [(r.topic, r.payload) for r in iter_log(out, stats=stats)]
    assert got == sent  # all flushed chunks readable, bit-exact
    assert not stats.complete
    assert stats.problems  # the unfinished file is reported, not silently accepted


def test_log_writer_refuses_a_path_that_holds_data_and_leaves_it_untouched(tmp_path: Path) -> None:
    """LogWriter on an existing log: LogExistsError, file byte-identical; overwrite=True replaces it."""
    path = tmp_path / "a.mcap"
    write_sample_log(path, n_rounds=1)
    before = path.read_bytes()
    with pytest.raises(LogExistsError, match="refusing to overwrite"):
        LogWriter(path)
    assert path.read_bytes() == before
    with LogWriter(path, overwrite=True) as w:
        w.write(sample_stream(1)[0])
    assert len(list(iter_log(path))) == 1


def test_log_writer_reuses_an_empty_file(tmp_path: Path) -> None:
    """A 0-byte file (a writer killed before its first byte) holds nothing to protect: it is written."""
    path = tmp_path / "a.mcap"
    path.touch()
    with LogWriter(path) as w:
        w.write(sample_stream(1)[0])
    assert len(list(iter_log(path))) == 1


def test_log_parts_lists_parts_in_numeric_order_and_next_part_follows(tmp_path: Path) -> None:
    """run.mcap, run.1.mcap, run.2.mcap, run.10.mcap in order; others ignored; next is one above."""
    base = tmp_path / "run.mcap"
    for name in (
        "run.mcap",
        "run.10.mcap",
        "run.2.mcap",
        "run.1.mcap",
        "run.x.mcap",
        "other.1.mcap",
        "run.1.txt",
    ):
        (tmp_path / name).write_bytes(b"data")
    assert [p.name for p in log_parts(base)] == ["run.mcap", "run.1.mcap", "run.2.mcap", "run.10.mcap"]
    assert next_part(base) == tmp_path / "run.11.mcap"
    (tmp_path / "run.11.mcap").touch()  # an empty last part is reused
    assert next_part(base) == tmp_path / "run.11.mcap"
    assert next_part(tmp_path / "new.mcap") == tmp_path / "new.mcap"
    assert log_parts(tmp_path / "new.mcap") == []
    (tmp_path / "plain").write_bytes(b"x")
    assert next_part(tmp_path / "plain") == tmp_path / "plain.1"


def _record_in_process(ctx, cfg, out: Path, n_rounds: int) -> tuple[Recorder, list[tuple[str, bytes]]]:
    rec = Recorder(cfg, out, ctx=ctx)
    pub = Publisher(cfg, ctx=ctx)
    try:
        assert pub.wait_for_subscribers([m.TOPIC_EGO], 5.0)
        sent = _publish_all(pub, sample_stream(n_rounds))
        deadline = time.monotonic() + 5
        while rec.messages < len(sent) and time.monotonic() < deadline:
            rec.step(50)
        rec.close()
    finally:
        pub.close()
    return rec, sent


def test_recorder_on_existing_log_writes_next_part_and_keeps_the_old_bytes(
    ctx, cfg, tmp_path: Path, capsys
) -> None:
    """Recorder given a path that holds a log: old file byte-identical, new part complete and readable;
    `log info` of the first part names the later ones."""
    out = tmp_path / "rec.mcap"
    old = write_sample_log(out, n_rounds=1)
    before = out.read_bytes()
    with Proxy(cfg, ctx):
        rec1, sent1 = _record_in_process(ctx, cfg, out, 2)
        rec2, sent2 = _record_in_process(ctx, cfg, out, 1)
    assert out.read_bytes() == before
    assert (rec1.out, rec2.out) == (tmp_path / "rec.1.mcap", tmp_path / "rec.2.mcap")
    assert rec1.summary is not None and rec1.summary.path == str(rec1.out)
    assert log_parts(out) == [out, rec1.out, rec2.out]
    for part, want in zip(log_parts(out), (old, sent1, sent2)):
        stats = ReadStats()
        assert [(r.topic, r.payload) for r in iter_log(part, stats=stats)] == want
        assert stats.complete and not stats.problems
    assert log_cli.cmd_info(argparse.Namespace(log=out, json=True)) == 0
    assert json.loads(capsys.readouterr().out)["later_parts"] == [str(rec1.out), str(rec2.out)]


@pytest.mark.slow
def test_recorder_killed_then_restarted_on_same_out_loses_nothing(ctx, cfg, tmp_path: Path) -> None:
    """kill -9, then a restart with the same --out (what `prescient up` does): the first part stays
    byte-identical, the restart writes part 1, and the parts together hold every message sent."""
    out = tmp_path / "rec.mcap"
    with Proxy(cfg, ctx):
        # One publisher for both recorders: it sees the first one's subscription go away, so the
        # second feed cannot start on that stale subscription while the restart is still importing.
        pub = Publisher(cfg, ctx=ctx)
        try:
            first = _start_recorder_process(cfg, out, "--chunk-interval", "0.05")
            sent = _feed_with(pub, first, 3, 0.005)
            time.sleep(0.4)  # > chunk interval: everything received is on disk
            first.send_signal(signal.SIGKILL)
            first.communicate(timeout=20)
            killed = out.read_bytes()
            deadline = time.monotonic() + 20
            while pub.has_subscriber(m.TOPIC_EGO) and time.monotonic() < deadline:
                time.sleep(0.02)
            assert not pub.has_subscriber(m.TOPIC_EGO), "the killed recorder's subscription stayed"
            second = _start_recorder_process(cfg, out, "--chunk-interval", "0.05")
            sent += _feed_with(pub, second, 2, 0.005)
        finally:
            pub.close()
        time.sleep(0.4)
        second.send_signal(signal.SIGINT)
        output = second.communicate(timeout=20)[0].decode()
    assert second.returncode == 0, output
    assert out.read_bytes() == killed
    assert log_parts(out) == [out, tmp_path / "rec.1.mcap"]
    assert "recording to" in output and "rec.1.mcap" in output
    got = [(r.topic, r.payload) for part in log_parts(out) for r in iter_log(part)]
    assert got == sent


def test_log_writer_survives_a_flood_of_topics_and_keeps_every_payload(tmp_path) -> None:
    """100,000 made-up topics used to overflow MCAP's 16-bit channel ids and crash the recorder."""
    from prescient.bus.logfile import MAX_CHANNELS, OVERFLOW_TOPIC, LogWriter
    from prescient.bus.logreader import iter_log

    path = tmp_path / "flood.mcap"
    n = MAX_CHANNELS + 3000
    with LogWriter(path, chunk_bytes=1 << 16) as w:
        for i in range(n):
            w.write_raw(f"junk.{i}", b"x%d" % i, i, i)
        w.write_raw("t" * (1 << 20), b"huge topic", n, n)
    got = list(iter_log(path))
    assert len(got) == n + 1 and {r.payload for r in got} == {b"x%d" % i for i in range(n)} | {b"huge topic"}
    assert sum(r.topic == OVERFLOW_TOPIC for r in got) == 3000 + 1
    assert len(w.counts) == MAX_CHANNELS + 1
