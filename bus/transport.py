"""ZeroMQ transport: publish/subscribe through an XSUB/XPUB proxy (request/reply: :mod:`prescient.bus.reqrep`).

Every socket has ``linger=0`` and bounded high-water marks; every receive polls with a timeout,
so SIGINT/SIGTERM always reach a clean shutdown. Publishers are XPUB sockets so that they *see*
subscriptions arrive and can wait for them before sending (the slow-joiner loss). Subscribers
count sequence gaps and rejected payloads per topic; nothing rejected is silently dropped.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from prescient.bus import codec
from prescient.bus import messages as m
from prescient.bus.config import BusConfig, CurveConfig
from prescient.bus.errors import DecodeError, TransportError
from prescient.bus.rxstats import RxStats, topic_key

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# CurveZMQ helpers.
# ----------------------------------------------------------------------------------------------
def apply_curve_server(sock: zmq.Socket, curve: CurveConfig | None) -> None:
    """Make ``sock`` a CurveZMQ server if keys are configured."""
    if curve is None or curve.server_secret is None:
        return
    public, secret = zmq.auth.load_certificate(str(curve.server_secret))
    sock.curve_secretkey, sock.curve_publickey, sock.curve_server = secret, public, True


def apply_curve_client(sock: zmq.Socket, curve: CurveConfig | None) -> None:
    """Make ``sock`` a CurveZMQ client if keys are configured."""
    if curve is None or curve.server_public is None:
        return
    if curve.client_secret is None:
        raise TransportError("curve.server_public is set but curve.client_secret is not")
    server_public, _ = zmq.auth.load_certificate(str(curve.server_public))
    public, secret = zmq.auth.load_certificate(str(curve.client_secret))
    sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = server_public, public, secret


_auth_lock = threading.Lock()
_auths: dict[int, tuple[ThreadAuthenticator, str, int]] = {}  # id(ctx) -> (auth, dir, users)


def acquire_authenticator(ctx: zmq.Context, curve: CurveConfig | None) -> ThreadAuthenticator | None:
    """Start (or share) the authenticator of ``ctx`` allowing the keys in ``curve.authorized_dir``.

    Returns None when ``curve`` has no server key. Release with :func:`release_authenticator`.

    Raises:
        TransportError: no ``authorized_dir``, or another one than the running authenticator's.
    """
    if curve is None or curve.server_secret is None:
        return None
    if curve.authorized_dir is None:
        raise TransportError("curve.server_secret is set but curve.authorized_dir is not")
    location = str(curve.authorized_dir)
    with _auth_lock:
        held = _auths.get(id(ctx))
        if held is not None:
            auth, running_dir, users = held
            if running_dir != location:
                raise TransportError(f"authorised keys {location} differ from {running_dir} in this context")
            _auths[id(ctx)] = (auth, running_dir, users + 1)
            return auth
        auth = ThreadAuthenticator(ctx)
        auth.start()
        auth.configure_curve(domain="*", location=location)
        _auths[id(ctx)] = (auth, location, 1)
        return auth


def release_authenticator(ctx: zmq.Context, auth: ThreadAuthenticator | None) -> None:
    """Drop one user of ``ctx``'s authenticator; the last one stops it."""
    if auth is None:
        return
    with _auth_lock:
        held = _auths.get(id(ctx))
        if held is None or held[0] is not auth:
            return
        if held[2] > 1:
            _auths[id(ctx)] = (held[0], held[1], held[2] - 1)
            return
        del _auths[id(ctx)]
    auth.stop()


def _socket(ctx: zmq.Context, kind: int, cfg: BusConfig) -> zmq.Socket:
    s = ctx.socket(kind)
    s.linger = 0
    s.sndhwm, s.rcvhwm = cfg.sndhwm, cfg.rcvhwm
    return s


def _connect_or_bind(sock: zmq.Socket, endpoint: str, bind: bool) -> None:
    try:
        sock.bind(endpoint) if bind else sock.connect(endpoint)
    except zmq.ZMQError as e:
        raise TransportError(f"cannot {'bind' if bind else 'connect'} {endpoint}: {e}") from e


# ----------------------------------------------------------------------------------------------
# Publish / subscribe.
# ----------------------------------------------------------------------------------------------
class Publisher:
    """Publishes messages with per-topic sequence numbers and a monotonic send time.

    Args:
        cfg: bus configuration. By default connects to the proxy's ``pub_endpoint``.
        endpoint / bind: override, e.g. bind directly for a proxy-less setup or a test.
    """

    def __init__(
        self, cfg: BusConfig, ctx: zmq.Context | None = None, endpoint: str | None = None, bind: bool = False
    ) -> None:
        self._ctx = ctx or zmq.Context.instance()
        self._cfg = cfg
        self._sock = _socket(self._ctx, zmq.XPUB, cfg)
        self._sock.setsockopt(zmq.XPUB_VERBOSE, 1)  # see every subscription, not only the first
        self._auth = None
        if bind:
            apply_curve_server(self._sock, cfg.curve)
            self._auth = acquire_authenticator(self._ctx, cfg.curve)
        else:
            apply_curve_client(self._sock, cfg.curve)
        _connect_or_bind(self._sock, endpoint or cfg.pub_endpoint, bind)
        self._seq: dict[str, int] = {}
        self.subscriptions: set[bytes] = set()
        self.sent = 0
        self.oversize = 0  # payloads over max_bytes, not sent
        self.hwm_drops = 0  # payloads dropped at this socket's send high-water mark

    def _drain_subscriptions(self) -> None:
        while self._sock.poll(0, zmq.POLLIN):
            frame = self._sock.recv()
            if frame[:1] == b"\x01":
                self.subscriptions.add(frame[1:])
            elif frame[:1] == b"\x00":
                self.subscriptions.discard(frame[1:])

    def has_subscriber(self, topic: str) -> bool:
        """True when some subscriber's prefix matches ``topic`` (as far as this socket knows)."""
        self._drain_subscriptions()
        t = topic.encode()
        return any(t.startswith(p) for p in self.subscriptions)

    def wait_for_subscribers(self, topics: Iterable[str], timeout_s: float) -> bool:
        """Block (polling) until every topic has a subscriber, or the timeout expires."""
        topics = list(topics)
        deadline = time.monotonic() + timeout_s
        while True:
            if all(self.has_subscriber(t) for t in topics):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._sock.poll(min(50, max(1, int(remaining * 1000))), zmq.POLLIN)

    def next_seq(self, topic: str) -> int:
        return self._seq.get(topic, 0)

    def publish(self, msg: Any, *, check: bool = True) -> bytes:
        """Stamp seq and ``sent_mono_ns`` into the header, encode, send. Returns the payload."""
        topic = msg.header.topic
        seq = self._seq.get(topic, 0)
        self._seq[topic] = seq + 1
        header = dataclasses.replace(msg.header, seq=seq, sent_mono_ns=time.monotonic_ns())
        payload = codec.encode(dataclasses.replace(msg, header=header), check=check)
        self.publish_raw(topic, payload)
        return payload

    def publish_raw(self, topic: str, payload: bytes) -> None:
        """Send an already-encoded payload (replayer). Drops at the HWM rather than blocking.

        A payload over ``max_bytes`` is not sent (counted in ``oversize``): the proxy would cut
        this publisher off the bus for good (its ``MAXMSGSIZE``), and no subscriber accepts it.
        """
        if len(payload) > self._cfg.max_bytes:
            self.oversize += 1
            log.warning(
                "not sent: %s payload of %d bytes over max_bytes %d", topic, len(payload), self._cfg.max_bytes
            )
            return
        try:
            self._sock.send_multipart([topic.encode(), payload], flags=zmq.NOBLOCK, copy=False)
            self.sent += 1
        except zmq.Again:
            self.hwm_drops += 1
            log.warning("publisher HWM reached; dropped %s", topic)
        self._drain_subscriptions()

    def close(self, linger_ms: int = 0) -> None:
        """Close the socket.

        Args:
            linger_ms: how long messages still queued may be sent. 0 drops them (shutdown on a
                signal or an error); at the normal end of a stream pass > 0, or its last messages
                are lost (a 1 MB message takes milliseconds to leave the queue: the bus benchmark
                lost its last pong this way).
        """
        self._sock.close(linger=linger_ms)
        release_authenticator(self._ctx, self._auth)


class Subscriber:
    """Subscribes to topic prefixes; decodes strictly and counts gaps and rejections.

    ``recv()`` never blocks longer than its timeout, so callers can honour shutdown signals.

    Args:
        max_rate_hz: per-topic admission rate (a token bucket of one second's burst) checked
            before decoding: under a flood on one topic the excess costs a dictionary lookup,
            not a msgpack decode, and is counted as ``rate_limited``. None: no limit.
        known_topics_only: reject topics with no fixed message type (``prescient.bus.messages.topic_type``)
            as ``?:unknown_topic`` before decoding. A prefix subscription (``ego.state``) also
            matches look-alikes (``ego.state.forged``); a consumer that acts on what it receives
            sets this.
        check_seq: reject messages whose sequence number does not continue the topic's stream
            (a restarted sender is followed after 3 consecutive numbers). Off for a sparse topic
            whose messages are confirmed some other way (the service's map hints: every replayed
            log restarts the map's numbering with only a message or two per log).

    No ``MAXMSGSIZE`` here: libzmq ends a session that delivers a larger frame and never
    reconnects it, which would cut this subscriber off the bus for good. The proxy's publisher
    side carries the limit instead (it cuts off the sender), and oversized payloads that arrive
    anyway (a proxy-less setup) are rejected by the codec and counted.
    """

    def __init__(
        self,
        cfg: BusConfig,
        prefixes: Iterable[str] = ("",),
        ctx: zmq.Context | None = None,
        endpoint: str | None = None,
        bind: bool = False,
        max_rate_hz: float | None = None,
        known_topics_only: bool = False,
        check_seq: bool = True,
    ) -> None:
        self._ctx = ctx or zmq.Context.instance()
        self._cfg = cfg
        self._sock = _socket(self._ctx, zmq.SUB, cfg)
        apply_curve_client(self._sock, cfg.curve)
        for p in prefixes:
            self._sock.setsockopt(zmq.SUBSCRIBE, p.encode())
        _connect_or_bind(self._sock, endpoint or cfg.sub_endpoint, bind)
        self.stats = RxStats()
        self._rate_hz = max_rate_hz
        self._known_only = known_topics_only
        self._check_seq = check_seq
        self._buckets: dict[str, tuple[float, float]] = {}  # topic key -> (tokens, monotonic s)

    @property
    def socket(self) -> zmq.Socket:
        return self._sock

    def recv_raw(self, timeout_ms: int | None = None) -> tuple[str, bytes] | None:
        """One ``(topic, payload)`` or None on timeout. Malformed framing is counted and skipped."""
        if not self._sock.poll(self._cfg.poll_ms if timeout_ms is None else timeout_ms, zmq.POLLIN):
            return None
        frames = self._sock.recv_multipart()
        if len(frames) != 2:
            self.stats.reject("?", "bad_framing")
            return None
        try:
            topic = frames[0].decode()
        except UnicodeDecodeError:
            self.stats.reject("?", "topic_not_utf8", frames[1])
            return None
        return topic, frames[1]

    def recv(self, timeout_ms: int | None = None) -> Any | None:
        """One decoded, accepted message, or None (timeout, or the message was rejected)."""
        got = self.recv_raw(timeout_ms)
        if got is None:
            return None
        return self.accept(*got)

    def _admit(self, topic: str) -> bool:
        """Token bucket per topic key (bounded: unknown topics share the ``?`` bucket)."""
        if self._rate_hz is None:
            return True
        key = topic_key(topic)
        if key not in self._buckets and len(self._buckets) >= 256:
            key = "?"
        now = time.monotonic()
        tokens, t_last = self._buckets.get(key, (self._rate_hz, now))
        tokens = min(self._rate_hz, tokens + (now - t_last) * self._rate_hz)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1.0, now)
        return True

    def accept(self, topic: str, payload: bytes) -> Any | None:
        """Decode and sequence-check one payload; return the message or None if rejected."""
        if self._known_only and m.topic_type(topic) is None:
            self.stats.reject("?", "unknown_topic")
            return None
        if not self._admit(topic):
            self.stats.reject(topic, "rate_limited")
            return None
        try:
            msg = codec.decode(topic, payload, max_bytes=self._cfg.max_bytes)
        except DecodeError as e:
            self.stats.reject(topic, e.code, payload)
            log.debug("rejected %s", e)
            return None
        reason = self.stats.check_seq(topic, msg.header.seq) if self._check_seq else ""
        if reason:
            self.stats.reject(topic, reason, payload)
            return None
        return msg

    def close(self) -> None:
        self._sock.close(linger=0)
