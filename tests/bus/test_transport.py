"""Pub/sub through the proxy, request/reply, gap counting and CurveZMQ over real sockets."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import pytest
import zmq
import zmq.auth

from prescient.bus import codec
from prescient.bus import messages as m
from prescient.bus.config import BusConfig, CurveConfig
from prescient.bus.errors import RequestTimeout, TransportError
from prescient.bus.proxy import Proxy
from prescient.bus.reqrep import Replier, Requester
from prescient.bus.rxstats import SEQ_CONFIRM
from prescient.bus.transport import Publisher, RxStats, Subscriber
from tests.bus.samples import assert_msg_equal, sample_message


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


@pytest.fixture
def cfg(ipc_endpoints) -> BusConfig:
    return BusConfig(
        pub_endpoint=ipc_endpoints("pub"),
        sub_endpoint=ipc_endpoints("sub"),
        map_endpoint=ipc_endpoints("map"),
        conditional_endpoint=ipc_endpoints("cond"),
        poll_ms=20,
    )


def _recv_until(sub: Subscriber, n: int, timeout_s: float = 3.0) -> list:
    got, deadline = [], time.monotonic() + timeout_s
    while len(got) < n and time.monotonic() < deadline:
        msg = sub.recv(timeout_ms=50)
        if msg is not None:
            got.append(msg)
    return got


def test_pubsub_through_proxy_waits_for_subscriber_and_loses_nothing(ctx, cfg) -> None:
    """A publisher that waits for the subscription delivers every message, in order, no gaps."""
    with Proxy(cfg, ctx):
        sub = Subscriber(cfg, [m.TOPIC_TRACKS], ctx)
        pub = Publisher(cfg, ctx)
        assert pub.wait_for_subscribers([m.TOPIC_TRACKS], timeout_s=3.0)
        msg = sample_message(m.Tracks)
        for _ in range(50):
            pub.publish(msg)
        got = _recv_until(sub, 50)
        assert [g.header.seq for g in got] == list(range(50))
        assert sub.stats.gaps == {} and sub.stats.total_rejected() == 0
        assert got[0].header.sent_mono_ns > 0
        assert_msg_equal(dataclasses.replace(msg, header=got[7].header), got[7])
        pub.close()
        sub.close()


def test_wait_for_subscribers_times_out_without_one(ctx, cfg) -> None:
    with Proxy(cfg, ctx):
        pub = Publisher(cfg, ctx)
        t0 = time.monotonic()
        assert not pub.wait_for_subscribers([m.TOPIC_TRACKS], timeout_s=0.2)
        assert time.monotonic() - t0 < 1.0
        pub.close()


def test_subscriber_prefix_filter(ctx, cfg) -> None:
    with Proxy(cfg, ctx):
        sub = Subscriber(cfg, ["sensor.lidar"], ctx)
        pub = Publisher(cfg, ctx)
        assert pub.wait_for_subscribers(["sensor.lidar.fl"], 3.0)
        pub.publish(sample_message(m.CameraFrame))
        lidar = sample_message(m.LidarFrame)
        pub.publish(lidar)
        got = _recv_until(sub, 1)
        assert len(got) == 1 and isinstance(got[0], m.LidarFrame)
        assert sub.recv(timeout_ms=100) is None
        pub.close()
        sub.close()


def test_direct_bind_without_proxy(ctx, ipc_endpoints, cfg) -> None:
    ep = ipc_endpoints("direct")
    pub = Publisher(cfg, ctx, endpoint=ep, bind=True)
    sub = Subscriber(cfg, [""], ctx, endpoint=ep)
    assert pub.wait_for_subscribers([m.TOPIC_EGO], 3.0)
    pub.publish(sample_message(m.EgoState))
    assert isinstance(_recv_until(sub, 1)[0], m.EgoState)
    pub.close()
    sub.close()


def test_close_with_linger_delivers_the_last_large_messages(ctx, ipc_endpoints, cfg) -> None:
    ep = ipc_endpoints("linger")
    pub = Publisher(cfg, ctx, endpoint=ep, bind=True)
    sub = Subscriber(cfg, [""], ctx, endpoint=ep)
    assert pub.wait_for_subscribers([m.TOPIC_PREDICTIONS], 3.0)
    payload = b"x" * (1 << 20)
    for _ in range(8):  # 8 MB queued, then closed at once: linger lets the queue drain
        pub.publish_raw(m.TOPIC_PREDICTIONS, payload)
    pub.close(linger_ms=3000)
    got, deadline = 0, time.monotonic() + 5.0
    while got < 8 and time.monotonic() < deadline:
        if sub._sock.poll(100):
            sub._sock.recv_multipart()
            got += 1
    sub.close()
    assert got == 8


def test_malformed_messages_counted_and_stream_continues(ctx, cfg) -> None:
    """Garbage, wrong type and NaN payloads are rejected by reason; good ones still arrive."""
    with Proxy(cfg, ctx):
        sub = Subscriber(cfg, [""], ctx)
        pub = Publisher(cfg, ctx)
        assert pub.wait_for_subscribers([m.TOPIC_TRACKS], 3.0)
        good = sample_message(m.Tracks)
        pub.publish(good)
        pub.publish_raw(m.TOPIC_TRACKS, b"\xc1garbage")
        pub.publish_raw(m.TOPIC_TRACKS, codec.encode(sample_message(m.EgoState)))
        pub.publish(good)
        got = _recv_until(sub, 2)
        assert [g.header.seq for g in got] == [0, 1]
        assert sub.stats.rejected == {
            f"{m.TOPIC_TRACKS}:not_msgpack": 1,
            f"{m.TOPIC_TRACKS}:wrong_type_for_topic": 1,
        }
        assert len(sub.stats.rejected_payloads) == 2  # kept for post-mortem, nothing lost
        pub.close()
        sub.close()


def test_seq_gaps_duplicates_and_restarts_are_counted() -> None:
    s = RxStats()
    for seq in (0, 1, 2, 5, 5, 4, 6):
        reason = s.check_seq("t", seq)
        if reason:
            s.reject("t", reason)
    assert s.gaps == {"t": 2}
    assert s.rejected == {"t:duplicate_seq": 1, "t:seq_discontinuity": 1}
    # A publisher restart is a new stream once SEQ_CONFIRM numbers continue it.
    assert [s.check_seq("t", q) for q in range(SEQ_CONFIRM)] == ["seq_discontinuity"] * (SEQ_CONFIRM - 1) + [
        ""
    ]
    assert s.restarts == {"t": 1} and s.check_seq("t", SEQ_CONFIRM) == ""


def test_one_forged_seq_cannot_silence_a_topic_or_add_gaps() -> None:
    """seq = 2**62 used to become the topic's last seq, so every real message was a duplicate."""
    s = RxStats()
    for seq in range(10):
        assert s.check_seq("t", seq) == ""
    assert s.check_seq("t", 2**62) == "seq_discontinuity"
    assert s.check_seq("t", 0) == "seq_discontinuity"  # a forged "restart"
    assert [s.check_seq("t", seq) for seq in range(10, 20)] == [""] * 10
    assert s.gaps == {} and s.restarts == {}


def test_counters_stay_bounded_under_random_topics() -> None:
    s = RxStats()
    for i in range(100_000):
        s.reject(f"sensor.x{i}", "not_msgpack")
        s.check_seq(f"t{i}", 5)
    s.reject("x" * 1_100_000, "not_msgpack")  # a 1.1 MB topic name is not a key
    assert len(s.rejected) <= s.rejected.max_keys + 2
    assert len(s.received) <= s.received.max_keys + 2
    assert max(len(k) for k in s.rejected) < 200
    assert s.total_rejected() == 100_001


def test_rate_limit_rejects_flood_before_decoding(ctx, ipc_endpoints, cfg) -> None:
    ep = ipc_endpoints("rate")
    sub = Subscriber(cfg, [""], ctx, endpoint=ep, max_rate_hz=50.0)
    payloads = [
        codec.encode(
            dataclasses.replace(
                msg := sample_message(m.Tracks), header=dataclasses.replace(msg.header, seq=i)
            )
        )
        for i in range(500)
    ]
    accepted = sum(sub.accept(m.TOPIC_TRACKS, p) is not None for p in payloads)
    assert 1 <= accepted <= 60  # one second's burst (plus what refilled meanwhile)
    assert sub.stats.rejected == {f"{m.TOPIC_TRACKS}:rate_limited": 500 - accepted}
    sub.close()


def test_oversized_publish_cuts_off_only_its_sender(ctx, cfg) -> None:
    """Through the proxy, a frame over max_bytes must not end any subscriber's session."""
    small = cfg.model_copy(update={"max_bytes": 4096})
    with Proxy(small, ctx):
        sub = Subscriber(small, [""], ctx)
        good = Publisher(small, ctx)
        rogue = ctx.socket(zmq.PUB)
        rogue.connect(small.pub_endpoint)
        assert good.wait_for_subscribers([m.TOPIC_EGO], 3.0)
        time.sleep(0.2)
        rogue.send_multipart([m.TOPIC_EGO.encode(), b"x" * 100_000])
        time.sleep(0.2)
        assert good.publish_raw(m.TOPIC_EGO, b"y" * 100_000) is None and good.oversize == 1
        for i in range(5):
            good.publish(
                dataclasses.replace(
                    sample_message(m.EgoState), header=m.Header(topic=m.TOPIC_EGO, stamp_ns=i)
                )
            )
        got = _recv_until(sub, 5)
        assert len(got) == 5
        rogue.close(linger=0)
        good.close()
        sub.close()


def test_request_reply_roundtrip_and_bad_request(ctx, cfg) -> None:
    srv = Replier(cfg, cfg.map_endpoint, ctx)
    stop = threading.Event()
    vmap = sample_message(m.VectorMap)

    def serve() -> None:
        while not stop.is_set():
            srv.serve_once(lambda req: vmap, timeout_ms=20)

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    try:
        cli = Requester(cfg, cfg.map_endpoint, ctx)
        reply = cli.request(m.MapRequest(header=m.Header(topic=m.TOPIC_MAP_REQUEST)), timeout_ms=2000)
        assert_msg_equal(vmap, dataclasses.replace(reply, header=vmap.header))
        # A request the server cannot decode gets an error reply, not a hang.
        raw = ctx.socket(zmq.REQ)
        raw.linger = 0
        raw.connect(cfg.map_endpoint)
        raw.send_multipart([m.TOPIC_MAP_REQUEST.encode(), b"\xc1"])
        assert raw.poll(2000)
        assert raw.recv_multipart()[0] == b"error"
        raw.close()
        assert srv.stats.total_rejected() == 1
        cli.close()
    finally:
        stop.set()
        th.join(2)
        srv.close()


def test_request_times_out_and_recovers(ctx, cfg) -> None:
    cli = Requester(cfg, cfg.conditional_endpoint, ctx)
    req = m.MapRequest(header=m.Header(topic=m.TOPIC_MAP_REQUEST))
    t0 = time.monotonic()
    with pytest.raises(RequestTimeout):
        cli.request(req, timeout_ms=100)
    assert time.monotonic() - t0 < 1.0
    with pytest.raises(RequestTimeout):  # the rebuilt socket works (no EFSM state error)
        cli.request(req, timeout_ms=50)
    cli.close()


def test_bind_conflict_is_a_clear_transport_error(ctx, cfg) -> None:
    """A TCP port already in use gives a TransportError naming the endpoint."""
    holder = ctx.socket(zmq.PUB)
    port = holder.bind_to_random_port("tcp://127.0.0.1")
    try:
        busy = cfg.model_copy(update={"pub_endpoint": f"tcp://127.0.0.1:{port}"})
        with pytest.raises(TransportError, match=f"cannot bind tcp://127.0.0.1:{port}"):
            Proxy(busy, ctx)
    finally:
        holder.close(linger=0)


# ----------------------------------------------------------------------------------------------
# CurveZMQ.
# ----------------------------------------------------------------------------------------------
def _keys(tmp_path: Path) -> dict[str, Path]:
    keys, allowed = tmp_path / "keys", tmp_path / "authorized"
    keys.mkdir()
    allowed.mkdir()
    out = {}
    for name in ("server", "good", "bad"):
        pub, sec = zmq.auth.create_certificates(str(keys), name)
        out[name], out[name + "_public"] = Path(sec), Path(pub)
    (allowed / "good.key").write_bytes(out["good_public"].read_bytes())
    out["authorized"] = allowed
    return out


def test_curve_authorized_publisher_delivers_unauthorized_cannot_inject(ctx, cfg, tmp_path) -> None:
    """With keys configured, only publishers whose public key is authorised get through."""
    k = _keys(tmp_path)
    server_cfg = cfg.model_copy(
        update={"curve": CurveConfig(server_secret=k["server"], authorized_dir=k["authorized"])}
    )
    good_cfg = cfg.model_copy(
        update={"curve": CurveConfig(server_public=k["server_public"], client_secret=k["good"])}
    )
    bad_cfg = cfg.model_copy(
        update={"curve": CurveConfig(server_public=k["server_public"], client_secret=k["bad"])}
    )
    plain_cfg = cfg  # no curve at all
    with Proxy(server_cfg, ctx):
        sub = Subscriber(good_cfg, [""], ctx)
        bad_pub = Publisher(bad_cfg, ctx)
        plain_pub = Publisher(plain_cfg, ctx)
        good_pub = Publisher(good_cfg, ctx)
        assert good_pub.wait_for_subscribers([m.TOPIC_EGO], 3.0)
        # The rejected publishers never complete the handshake, so they never see the subscriber.
        assert not bad_pub.wait_for_subscribers([m.TOPIC_EGO], 0.3)
        for p in (bad_pub, plain_pub):
            for _ in range(5):
                p.publish(sample_message(m.Tracks))
        good_pub.publish(sample_message(m.EgoState))
        got = _recv_until(sub, 1)
        time.sleep(0.2)
        more = _recv_until(sub, 10, timeout_s=0.3)
        assert len(got) == 1 and isinstance(got[0], m.EgoState)
        assert more == []
        for s in (sub, bad_pub, plain_pub, good_pub):
            s.close()


def test_curve_client_without_secret_is_a_clear_error(ctx, cfg, tmp_path) -> None:
    k = _keys(tmp_path)
    with pytest.raises(TransportError, match="client_secret"):
        Subscriber(cfg.model_copy(update={"curve": CurveConfig(server_public=k["server_public"])}), [""], ctx)


def test_known_topics_only_rejects_look_alike_topics(ctx, ipc_endpoints, cfg) -> None:
    sub = Subscriber(cfg, [m.TOPIC_EGO], ctx, endpoint=ipc_endpoints("known"), known_topics_only=True)
    ego = sample_message(m.EgoState)
    forged = dataclasses.replace(ego, header=dataclasses.replace(ego.header, topic="ego.state.forged"))
    assert sub.accept("ego.state.forged", codec.encode(forged)) is None
    assert sub.accept(m.TOPIC_EGO, codec.encode(ego)) is not None
    assert sub.stats.rejected == {"?:unknown_topic": 1}
    sub.close()


def test_check_seq_off_takes_a_restarted_numbering(ctx, ipc_endpoints, cfg) -> None:
    """A sparse topic whose numbering restarts (a map per replayed log) is delivered when the
    consumer confirms it another way; with the check on, the restart is held back."""

    def at(seq: int) -> bytes:
        msg = sample_message(m.VectorMap)
        return codec.encode(dataclasses.replace(msg, header=dataclasses.replace(msg.header, seq=seq)))

    for check, delivered in ((True, 2), (False, 4)):
        sub = Subscriber(cfg, [m.TOPIC_MAP], ctx, endpoint=ipc_endpoints("seq"), check_seq=check)
        got = [sub.accept(m.TOPIC_MAP, at(s)) for s in (5, 6, 0, 1)]  # the next log starts at 0
        assert sum(x is not None for x in got) == delivered, check
        sub.close()
