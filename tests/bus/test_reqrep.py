"""Request/reply: bounded queue, refusals that never stop the server, CurveZMQ on every endpoint."""

from __future__ import annotations

import contextlib
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import zmq
import zmq.auth

from prescient.bus import codec
from prescient.bus import messages as m
from prescient.bus.cli import bus_config_from_args, write_keys
from prescient.bus.config import BusConfig, CurveConfig, RequestLimits
from prescient.bus.errors import RequestTimeout, StartupError
from prescient.bus.map_server import MapServer
from prescient.bus.reqrep import Replier, Requester, ServerError
from prescient.service.app.cli import build_parser, main
from tests.bus.samples import sample_message

MAP_REQUEST = m.MapRequest(header=m.Header(topic=m.TOPIC_MAP_REQUEST))


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


@pytest.fixture
def cfg(ipc_endpoints) -> BusConfig:
    return BusConfig(
        map_endpoint=ipc_endpoints("map"),
        conditional_endpoint=ipc_endpoints("cond"),
        poll_ms=20,
        requests=RequestLimits(max_request_bytes=4096, queue_depth=2),
    )


def _raw(ctx: zmq.Context, kind: int, endpoint: str) -> zmq.Socket:
    s = ctx.socket(kind)
    s.linger = 0
    s.connect(endpoint)
    return s


def _reply(sock: zmq.Socket, timeout_ms: int = 2000) -> list[bytes] | None:
    return sock.recv_multipart() if sock.poll(timeout_ms) else None


class _Serving:
    """``serve_once`` in a thread until the context exits."""

    def __init__(self, srv: Replier, handler: Callable) -> None:
        self.srv, self._stop = srv, threading.Event()
        self._th = threading.Thread(target=self._run, args=(handler,), daemon=True)

    def _run(self, handler: Callable) -> None:
        while not self._stop.is_set():
            self.srv.serve_once(handler, timeout_ms=20)

    def __enter__(self) -> Replier:
        self._th.start()
        return self.srv

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._th.join(2)
        self.srv.close()


# ----------------------------------------------------------------------------------------------
# Refusals and the bounded queue.
# ----------------------------------------------------------------------------------------------
def test_replier_oversized_request_gets_error_naming_cap_and_server_keeps_serving(ctx, cfg) -> None:
    """Over max_request_bytes: an error reply naming the cap, counted; the next request is served."""
    vmap = sample_message(m.VectorMap)
    with _Serving(Replier(cfg, cfg.map_endpoint, ctx), lambda req: vmap) as srv:
        raw = _raw(ctx, zmq.REQ, cfg.map_endpoint)
        raw.send_multipart([m.TOPIC_MAP_REQUEST.encode(), b"\x00" * 5000])
        got = _reply(raw)
        assert got is not None and got[0] == b"error"
        assert got[1].startswith(b"over_max_request_bytes: max_request_bytes=4096")
        cli = Requester(cfg, cfg.map_endpoint, ctx)
        assert isinstance(cli.request(MAP_REQUEST, timeout_ms=2000), m.VectorMap)
        assert srv.stats.rejected == {"?:over_max_request_bytes": 1}
        raw.close()
        cli.close()


def test_replier_frame_over_socket_limit_drops_only_that_peer(ctx, cfg) -> None:
    """A frame over the socket's MAXMSGSIZE: libzmq cuts that peer off (no reply); others are served."""
    vmap = sample_message(m.VectorMap)
    with _Serving(Replier(cfg, cfg.map_endpoint, ctx), lambda req: vmap):
        raw = _raw(ctx, zmq.REQ, cfg.map_endpoint)
        raw.send_multipart([m.TOPIC_MAP_REQUEST.encode(), b"\x00" * (20 * 4096)])
        assert _reply(raw, 300) is None
        cli = Requester(cfg, cfg.map_endpoint, ctx)
        assert isinstance(cli.request(MAP_REQUEST, timeout_ms=2000), m.VectorMap)
        raw.close()
        cli.close()


def test_replier_full_queue_answers_busy_at_once_then_answers_queued(ctx, cfg) -> None:
    """queue_depth=2: the third request gets "busy" on accept; the two queued get their replies later."""
    srv = Replier(cfg, cfg.map_endpoint, ctx)
    clients = [_raw(ctx, zmq.REQ, cfg.map_endpoint) for _ in range(3)]
    try:
        payload = codec.encode(MAP_REQUEST)
        for c in clients:
            c.send_multipart([m.TOPIC_MAP_REQUEST.encode(), payload])
        deadline = time.monotonic() + 3.0
        while srv.pending + srv.stats.total_rejected() < 3 and time.monotonic() < deadline:
            srv.socket.poll(50)
            srv.accept()
        assert srv.pending == 2 and srv.stats.rejected == {"?:busy": 1}
        replies = [_reply(c, 0 if i else 500) for i, c in enumerate(clients)]
        busy = [r for r in replies if r is not None]
        assert len(busy) == 1 and busy[0][0] == b"error" and busy[0][1].startswith(b"busy")
        vmap = sample_message(m.VectorMap)
        assert srv.answer(lambda req: vmap) == 2 and srv.pending == 0
        waiting = [c for c, r in zip(clients, replies) if r is None]
        for c in waiting:
            got = _reply(c)
            assert got is not None and got[0] == m.TOPIC_MAP.encode()
    finally:
        for c in clients:
            c.close()
        srv.close()


def test_replier_answer_stops_at_deadline_but_always_answers_one(ctx, cfg) -> None:
    """answer(deadline_ns in the past) answers the head request only; the rest wait."""
    srv = Replier(cfg, cfg.map_endpoint, ctx)
    clients = [_raw(ctx, zmq.REQ, cfg.map_endpoint) for _ in range(2)]
    try:
        for c in clients:
            c.send_multipart([m.TOPIC_MAP_REQUEST.encode(), codec.encode(MAP_REQUEST)])
        deadline = time.monotonic() + 3.0
        while srv.pending < 2 and time.monotonic() < deadline:
            srv.socket.poll(50)
            srv.accept()
        vmap = sample_message(m.VectorMap)
        assert srv.answer(lambda req: vmap, deadline_ns=time.perf_counter_ns() - 1) == 1
        assert srv.pending == 1
    finally:
        for c in clients:
            c.close()
        srv.close()


def test_requester_error_reply_is_server_error_with_reason(ctx, cfg) -> None:
    """A handler that raises gives the client a ServerError (reason handler_failed); serving goes on."""
    calls = []

    def handler(req: object) -> object:
        calls.append(req)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return sample_message(m.VectorMap)

    with _Serving(Replier(cfg, cfg.map_endpoint, ctx), handler) as srv:
        cli = Requester(cfg, cfg.map_endpoint, ctx)
        with pytest.raises(ServerError, match="boom") as e:
            cli.request(MAP_REQUEST, timeout_ms=2000)
        assert e.value.reason == "handler_failed"
        assert isinstance(cli.request(MAP_REQUEST, timeout_ms=2000), m.VectorMap)
        assert srv.stats.rejected == {"map.request:handler_failed": 1}
        cli.close()


def _malformed(rng: np.random.Generator, i: int) -> list[bytes]:
    """One of several kinds of bad request (as a DEALER sends it: the REQ delimiter included)."""
    kind = i % 7
    junk = rng.bytes(int(rng.integers(0, 200)))
    if kind == 0:  # random payload
        return [b"", m.TOPIC_MAP_REQUEST.encode(), junk]
    if kind == 1:  # one frame only
        return [b"", junk or b"x"]
    if kind == 2:  # three frames
        return [b"", m.TOPIC_MAP_REQUEST.encode(), junk, b"more"]
    if kind == 3:  # topic not UTF-8
        return [b"", b"\xff\xfe" + junk, codec.encode(MAP_REQUEST)]
    if kind == 4:  # wrong message type for the endpoint (decodes, then the handler refuses it)
        req = m.ConditionalRequest(
            header=m.Header(topic=m.TOPIC_CONDITIONAL_REQUEST),
            request_id=i,
            plans_xy_m=np.zeros((1, 3, 2), np.float32),
        )
        return [b"", m.TOPIC_CONDITIONAL_REQUEST.encode(), codec.encode(req)]
    if kind == 5:  # a MapRequest payload on a topic that requires another type
        return [b"", m.TOPIC_CONDITIONAL_REQUEST.encode(), codec.encode(MAP_REQUEST)]
    return [junk or b"y", b"z"]  # no REQ delimiter at all


def test_map_server_survives_1000_malformed_requests_and_still_serves(ipc_endpoints, rng) -> None:
    """Every bad request gets an error reply and a counter; the thread lives and serves a MapRequest."""
    from prescient.sim_sensors import build_map

    cfg = BusConfig(map_endpoint=ipc_endpoints("map"), poll_ms=20)
    vm = build_map("t_junction")
    server = MapServer(cfg, vm).start()
    ctx = zmq.Context.instance()
    dealer = _raw(ctx, zmq.DEALER, cfg.map_endpoint)
    try:
        errors = 0
        for i in range(1000):
            dealer.send_multipart(_malformed(rng, i))
            got = _reply(dealer)
            assert got is not None, f"no reply to malformed request {i}"
            errors += int(b"error" in got[:2])
        assert errors == 1000
        assert server.stats.total_rejected() == 1000 and server.loop_errors == 0
        req = Requester(cfg, cfg.map_endpoint)
        got = req.request(MAP_REQUEST, timeout_ms=3000)
        req.close()
        assert got.map_id == vm.map_id and server.served == 1
        assert server._thread.is_alive()
    finally:
        dealer.close()
        server.stop()


def test_map_server_loop_survives_an_exception_out_of_serving(ipc_endpoints, monkeypatch) -> None:
    """An unexpected exception in the serving loop is counted and logged; the thread goes on."""
    from prescient.sim_sensors import build_map

    cfg = BusConfig(map_endpoint=ipc_endpoints("map"), poll_ms=20)
    vm = build_map("t_junction")
    server = MapServer(cfg, vm)
    real = server._rep.serve_once
    calls = iter(range(10**9))

    def flaky(handler: Callable, timeout_ms: int | None = None) -> bool:
        if next(calls) < 3:
            raise RuntimeError("bug in serving")
        return real(handler, timeout_ms)

    monkeypatch.setattr(server._rep, "serve_once", flaky)
    server.start()
    try:
        req = Requester(cfg, cfg.map_endpoint)
        assert req.request(MAP_REQUEST, timeout_ms=3000).map_id == vm.map_id
        req.close()
        assert server.loop_errors == 3
    finally:
        server.stop()


# ----------------------------------------------------------------------------------------------
# CurveZMQ on every endpoint.
# ----------------------------------------------------------------------------------------------
@pytest.fixture
def keys(tmp_path: Path) -> Path:
    d = tmp_path / "keys"
    write_keys(d, ["node", "other"])
    (d / "authorized" / "other.key").unlink()  # "other" has a key pair but is not authorised
    return d


def _conditional_reply(req: object) -> m.ConditionalReply:
    return m.empty(m.ConditionalReply, m.TOPIC_CONDITIONAL_REPLY)


@pytest.mark.parametrize("endpoint", ["map", "conditional"])
def test_curve_request_reply_only_authorised_clients_get_replies(ctx, cfg, keys, endpoint) -> None:
    """Plaintext and unauthorised clients time out; the authorised client gets its reply."""
    secure = cfg.model_copy(update={"curve": CurveConfig.from_dir(keys)})
    other = cfg.model_copy(update={"curve": CurveConfig.from_dir(keys, client="other")})
    with contextlib.ExitStack() as stack:
        if endpoint == "map":
            ep, req, topic = secure.map_endpoint, MAP_REQUEST, m.TOPIC_MAP
            stack.enter_context(MapServer(secure, sample_message(m.VectorMap)))
        else:
            ep, topic = secure.conditional_endpoint, m.TOPIC_CONDITIONAL_REPLY
            req = m.ConditionalRequest(
                header=m.Header(topic=m.TOPIC_CONDITIONAL_REQUEST),
                request_id=1,
                plans_xy_m=np.zeros((1, 4, 2), np.float32),
            )
            stack.enter_context(_Serving(Replier(secure, ep, ctx), _conditional_reply))
        for client_cfg in (cfg, other):  # plaintext, then a key pair that is not authorised
            cli = Requester(client_cfg, ep, ctx)
            with pytest.raises(RequestTimeout):
                cli.request(req, timeout_ms=300)
            cli.close()
        cli = Requester(secure, ep, ctx)
        assert cli.request(req, timeout_ms=3000).header.topic == topic
        cli.close()


def test_bus_keys_secret_files_0600_dir_0700_and_no_overwrite_without_force(tmp_path, capsys) -> None:
    d = tmp_path / "k"
    assert main(["bus", "keys", str(d), "--clients", "node", "planner"]) == 0
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    secrets = sorted(d.glob("*.key_secret"))
    assert [p.name for p in secrets] == ["node.key_secret", "planner.key_secret", "server.key_secret"]
    for p in secrets:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
        public, secret = zmq.auth.load_certificate(str(p))
        assert len(public) == len(secret) == 40
    assert sorted(p.name for p in (d / "authorized").iterdir()) == ["node.key", "planner.key"]
    before = (d / "server.key_secret").read_bytes()
    assert main(["bus", "keys", str(d)]) == 1
    assert "--force" in capsys.readouterr().err
    assert (d / "server.key_secret").read_bytes() == before
    assert main(["bus", "keys", str(d), "--force"]) == 0
    assert (d / "server.key_secret").read_bytes() != before
    assert stat.S_IMODE((d / "server.key_secret").stat().st_mode) == 0o600


@pytest.mark.parametrize(
    "argv",
    [
        ["serve"],
        ["planner"],
        ["sim", "--offline"],
        ["record", "--out", "x.mcap"],
        ["log", "replay", "x.mcap"],
        ["health"],
    ],
)
def test_curve_dir_configures_client_and_server_sides(keys, argv) -> None:
    """One --curve-dir gives a process both its client key and the servers' key."""
    args = build_parser().parse_args([*argv, "--curve-dir", str(keys)])
    curve = bus_config_from_args(args).curve
    assert curve == CurveConfig.from_dir(keys)
    assert None not in (curve.server_secret, curve.server_public, curve.client_secret, curve.authorized_dir)


def test_curve_dir_missing_or_env_default(tmp_path, keys, monkeypatch) -> None:
    args = build_parser().parse_args(["serve", "--curve-dir", str(tmp_path / "nope")])
    with pytest.raises(StartupError, match="prescient bus keys"):
        bus_config_from_args(args)
    proxy = bus_config_from_args(build_parser().parse_args(["bus", "--curve-dir", str(keys)]), server=True)
    assert proxy.curve.client_secret is None and proxy.curve.server_secret is not None
    monkeypatch.setenv("PRESCIENT_CURVE_DIR", str(keys))
    assert BusConfig().curve == CurveConfig.from_dir(keys)
    monkeypatch.setenv("PRESCIENT_CURVE_DIR", "")
    assert BusConfig().curve is None


@pytest.mark.parametrize("record", [True, False])
def test_up_passes_curve_dir_to_every_child(tmp_path, keys, record) -> None:
    """Every child argv of `prescient up` carries --curve-dir, and parses to a CurveZMQ config."""
    from prescient.service.app.stack import StackOptions, build_children

    opts = StackOptions(out_dir=tmp_path, curve_dir=keys, record=record)
    children = build_children(opts, tmp_path / "log.mcap")
    assert {c.name for c in children} == {"bus", "service", "planner", "sim"} | (
        {"recorder"} if record else set()
    )
    parser = build_parser()
    for c in children:
        i = c.argv.index("--curve-dir")
        assert Path(c.argv[i + 1]) == keys.resolve(), c.argv
        args = parser.parse_args(c.argv)
        assert bus_config_from_args(args, server=c.name == "bus").curve is not None, c.name
    plain = build_children(StackOptions(out_dir=tmp_path), tmp_path / "log.mcap")
    assert all("--curve-dir" not in c.argv for c in plain)


def test_up_cli_reaches_stack_options(keys, monkeypatch) -> None:
    """`prescient up --curve-dir DIR` hands DIR to run_stack."""
    import prescient.service.app.stack as stack

    seen = {}

    def fake_run_stack(opts: stack.StackOptions) -> object:
        seen["curve_dir"] = opts.curve_dir
        return type("R", (), {"ok": True})()

    monkeypatch.setattr(stack, "run_stack", fake_run_stack)
    assert main(["up", "--curve-dir", str(keys), "--no-live"]) == 0
    assert seen["curve_dir"] == keys
