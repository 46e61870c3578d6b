"""The reliability benchmark's attack generators make what they claim; one short live run survives."""

from __future__ import annotations

import socket
from pathlib import Path

import msgpack
import numpy as np
import pytest

from prescient.benchmarks.reliability import attacks as a
from prescient.benchmarks.reliability.observe import describe_delta, rate_hz, recovery_s, rejected_delta
from prescient.benchmarks.reliability.stackproc import Restart, unexplained_restarts
from prescient.bus import codec
from prescient.bus import messages as m
from prescient.bus.config import BusConfig, RequestLimits
from prescient.bus.errors import DecodeError


@pytest.fixture
def templates(rng: np.random.Generator) -> dict[str, bytes]:
    return {t: a.valid_frame(t, 3, 10**9, rng).payload for t in a.SUBSCRIBED_TOPICS}


@pytest.mark.parametrize("topic", a.SUBSCRIBED_TOPICS)
def test_valid_frame_decodes_as_its_topic_type(topic: str, rng: np.random.Generator) -> None:
    """The valid templates decode on their topic, with the seq and stamp asked for."""
    msg = codec.decode(topic, a.valid_frame(topic, 7, 123, rng).payload)
    assert type(msg) is m.topic_type(topic)
    assert (msg.header.seq, msg.header.stamp_ns) == (7, 123)


@pytest.mark.parametrize("kind", a.MALFORMED_KINDS)
def test_malformed_frames_are_refused_with_decode_error(
    kind: str, rng: np.random.Generator, templates: dict[str, bytes]
) -> None:
    """Every malformed kind, on every input topic, raises DecodeError (and nothing else)."""
    for topic in a.SUBSCRIBED_TOPICS:
        frame = a.malformed_frame(kind, topic, rng, templates[topic])
        assert frame.topic == topic.encode() and frame.kind == kind
        with pytest.raises(DecodeError):
            codec.decode(topic, frame.payload)


def test_shape_overflow_frame_carries_the_overflowing_shape_header(templates: dict[str, bytes]) -> None:
    """The first array's shape header is [2**64 - 1, 2] on the wire and the codec says "shape"."""
    topic = "sensor.lidar.fl"
    frame = a.malformed_frame("shape_overflow", topic, np.random.default_rng(0), templates[topic])
    wire = msgpack.unpackb(frame.payload, raw=False)
    assert wire["ego_from_sensor"]["shape"] == [2**64 - 1, 2]
    with pytest.raises(DecodeError) as ei:
        codec.decode(topic, frame.payload)
    assert ei.value.code == "shape"


def test_schema_true_and_huge_int_mutate_only_the_header(templates: dict[str, bytes]) -> None:
    """schema becomes the bool True (not 1); seq becomes 2**64 - 1; the rest is untouched."""
    rng = np.random.default_rng(0)
    topic = m.TOPIC_EGO
    base = msgpack.unpackb(templates[topic], raw=False)
    schema = msgpack.unpackb(
        a.malformed_frame("schema_true", topic, rng, templates[topic]).payload, raw=False
    )
    huge = msgpack.unpackb(a.malformed_frame("huge_int", topic, rng, templates[topic]).payload, raw=False)
    assert schema["header"]["schema"] is True and schema["pose"] == base["pose"]
    assert huge["header"]["seq"] == 2**64 - 1


def test_huge_topic_frame_has_a_1_1_mb_topic_in_frame_and_header(templates: dict[str, bytes]) -> None:
    frame = a.huge_topic_frame(templates["sensor.lidar.fl"])
    assert len(frame.topic) == a.HUGE_TOPIC_BYTES
    assert msgpack.unpackb(frame.payload, raw=False)["header"]["topic"].encode() == frame.topic


def test_random_topic_frames_are_distinct_and_half_decode(
    rng: np.random.Generator, templates: dict[str, bytes]
) -> None:
    """Every frame has its own topic; the valid-looking ones decode there, the rest are refused."""
    frames = list(a.random_topic_frames(rng, templates, 200))
    assert len(frames) == 200 and len({f.topic for f in frames}) == 200
    decoded = refused = 0
    for f in frames:
        try:
            codec.decode(f.topic.decode(), f.payload)
            decoded += 1
        except (UnicodeDecodeError, DecodeError):
            refused += 1
    assert decoded > 50 and refused > 50


def test_oversized_frame_is_over_the_bus_limit() -> None:
    """The default size is over max_bytes; a small one shows the frame really is that big."""
    assert a.OVERSIZED_BYTES > BusConfig().max_bytes
    frame = a.oversized_frame(n_bytes=200_000)
    assert len(frame.payload) > 200_000
    with pytest.raises(DecodeError) as ei:
        codec.decode("sensor.lidar.fl", frame.payload, max_bytes=100_000)
    assert ei.value.code == "too_large"


def test_out_of_order_goes_back_in_time_with_consecutive_seqs(rng: np.random.Generator) -> None:
    captured = [a.valid_frame("sensor.lidar.fl", i, i * 10**8, rng).payload for i in range(5)]
    frames = a.out_of_order("sensor.lidar.fl", captured, first_seq=40)
    headers = [a.header_of(f.payload) for f in frames]
    assert [h["seq"] for h in headers] == [40, 41, 42, 43, 44]
    assert [h["stamp_ns"] for h in headers] == [4e8, 3e8, 2e8, 1e8, 0]
    assert all(h["sent_mono_ns"] == 0 for h in headers)  # marked as ours
    for f in frames:
        codec.decode("sensor.lidar.fl", f.payload)  # valid-looking: only the order is wrong


def test_seq_injections_are_valid_messages_with_forged_seqs(rng: np.random.Generator) -> None:
    p = a.valid_frame("sensor.lidar.fl", 9, 5, rng).payload
    seqs = [
        codec.decode("sensor.lidar.fl", f.payload).header.seq
        for f in a.seq_injections("sensor.lidar.fl", p, 77)
    ]
    assert seqs == [2**62, 0]


def test_conditional_attacks_hit_the_limits_they_name(rng: np.random.Generator) -> None:
    """1000 x 80 plans are over the byte cap; 1000 x 8 pass it and are over the plan cap."""
    limits = RequestLimits()
    big = a.conditional_attack("plans_1000x80", 1, rng)
    assert len(big[1]) > limits.max_request_bytes
    many = a.conditional_attack("plans_1000x8", 1, rng)
    assert len(many[1]) < limits.max_request_bytes
    req = codec.decode(m.TOPIC_CONDITIONAL_REQUEST, many[1], max_bytes=limits.max_request_bytes)
    assert req.plans_xy_m.shape[0] == 1000 > limits.max_plans
    for kind in ("shape_overflow", "nan_plans", "random_bytes", "wrong_type"):
        with pytest.raises(DecodeError):
            codec.decode(m.TOPIC_CONDITIONAL_REQUEST, a.conditional_attack(kind, 1, rng)[1])
    assert len(a.conditional_attack("one_frame", 1, rng)) == 1
    assert len(a.conditional_attack("three_frames", 1, rng)) == 3


def test_map_attacks_cover_every_kind(rng: np.random.Generator) -> None:
    for kind in a.MAP_KINDS:
        frames = a.map_attack(kind, 1, rng)
        assert 1 <= len(frames) <= 2
    req = codec.decode(m.TOPIC_MAP_REQUEST, a.map_attack("unknown_map", 1, rng)[1])
    assert req.map_id.startswith("no-such-map-")


def test_rate_and_recovery_arithmetic() -> None:
    """10 Hz before t=10, a 1 s silence, then 10 Hz again: recovery ~1 s after the attack end."""
    times = [i / 10 for i in range(100)] + [11 + i / 10 for i in range(60)]
    assert rate_hz(times, 5.0, 7.0) == pytest.approx(10.0)
    assert rate_hz(times, 10.0, 11.0) == 0.0
    assert recovery_s(times, 10.0, target_hz=10.0) == pytest.approx(1.0, abs=0.06)
    assert 0.8 <= recovery_s(times, 10.0, target_hz=9.5) <= 1.0  # 19 of 20 in the window suffice
    assert recovery_s(times, 12.0) == 0.0
    assert recovery_s(times[:100], 10.0) is None  # nothing after the attack: not recovered


def test_rejected_delta_counts_growth_and_restarts() -> None:
    assert rejected_delta({"a": 5, "b": 9}, {"a": 7, "b": 2, "c": 1}) == {"a": 2, "b": 2, "c": 1}
    assert describe_delta({"sensor.lidar.fl:shape": 3, "ego.state:shape": 2, "skipped_ticks": 9}) == (
        "shape +5, skipped_ticks +9"
    )


def test_unexplained_restarts_are_the_crashes() -> None:
    """A kill of a child accounts for its next restart only; the rest are crashes."""
    restarts = [Restart(2.0, "recorder", "-9"), Restart(5.0, "service", "1"), Restart(9.0, "service", "-9")]
    kills = [(1.5, "recorder"), (8.5, "service")]
    assert [r.t_s for r in unexplained_restarts(restarts, kills)] == [5.0]


def _free_port_base() -> int:
    """A base port whose four ports (pub, sub, map, conditional) are free on loopback."""
    for base in range(5700, 5790, 4):
        try:
            held = []
            for p in range(base, base + 4):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    pytest.skip("no four free ports in 5700-5790")


@pytest.mark.slow
def test_live_quick_run_no_crash_and_predictions_flow(tmp_path: Path) -> None:
    """A short attack run on a private bus: nothing crashes, every process is up, predictions flow."""
    from prescient.benchmarks.bench_reliability import BenchOptions, run_bench

    opts = BenchOptions(
        quick=True,
        attacks=("malformed", "conditional", "kill:planner"),
        bus=f"tcp://127.0.0.1:{_free_port_base()}",
        out_dir=tmp_path / "run",
        model=None,
        agents=10,
    )
    rep = run_bench(opts)
    assert [r.attack for r in rep.rows] == list(opts.attacks), rep.failures
    assert rep.hostile > 0
    assert not rep.crash_logs, "\n".join(rep.crash_logs)
    for r in rep.rows:
        assert not r.crashes, (r.attack, r.crashes)
        assert r.up[0] == r.up[1], (r.attack, r.up)
        assert r.rates[2] > 0, f"no predictions after {r.attack}"


def test_recorder_loss_counts_frames_no_part_holds(tmp_path: Path, rng: np.random.Generator) -> None:
    """Two parts (a killed recorder's and a gap-fill part) against what the bus carried."""
    from prescient.benchmarks.reliability.recloss import recorder_loss
    from prescient.bus.logfile import LogWriter

    topic = "sensor.radar.fl"
    payloads = [a.valid_frame(topic, i, i * 10**8, rng).payload for i in range(30)]
    t_ns = [10**10 + i * 10**8 for i in range(30)]  # 10 Hz from t = 10 s
    with LogWriter(tmp_path / "log.mcap") as w:  # recorded up to frame 15, then killed
        for p, t in zip(payloads[:15], t_ns[:15]):
            w.write_raw(topic, p, t, t)
    with LogWriter(tmp_path / "log.1.mcap") as w:  # the restarted recorder, from frame 25
        for p, t in zip(payloads[25:], t_ns[25:]):
            w.write_raw(topic, p, t, t)
    with LogWriter(tmp_path / "log.2.mcap") as w:  # the launcher's gap fill: frames 20-24
        for p, t in zip(payloads[20:25], t_ns[20:25]):
            w.write_raw(topic, p, t, t)
    window = [(t, topic, hash(p)) for p, t in zip(payloads[5:], t_ns[5:])]
    loss = recorder_loss(tmp_path, window, t_kill_s=11.5, lead_s=1.0, fill_parts=frozenset({"log.2.mcap"}))
    assert loss["missing"] == 5  # frames 15-19
    assert loss["missing_recorder_only"] == 10  # frames 15-24
    assert loss["loss_s"] == pytest.approx(0.5)  # 5 frames at 10 Hz
    assert loss["pre_kill_log_kept"]  # frames 0-4 are older than the window
