"""ZeroMQ request/reply: a bounded, never-raising server (ROUTER) and a client with a timeout (REQ).

Used by the conditional-prediction endpoint (service) and the map endpoint (simulator, log
replayer). Sockets follow the same rules as :mod:`prescient.bus.transport`: ``linger=0``, bounded HWMs,
polled receives, CurveZMQ when keys are configured (both sides: a plaintext or unauthorised
client never completes the handshake, so it gets no reply at all).

The server is a ROUTER rather than a REP socket so that it can hold several requests (a bounded
queue, ``RequestLimits.queue_depth``) and answer each one when its owner has time: the service
answers in the slack before its next 10 Hz tick. REQ clients cannot tell the difference.
Every failure while serving (framing, size, topic, decode, queue full, handler, reply encoding)
becomes an error reply ``[b"error", b"<reason>: <detail>"]`` and a counter ``<topic>:<reason>``
with a bounded reason; nothing raises out of :meth:`Replier.accept`, :meth:`Replier.answer` or
:meth:`Replier.serve_once`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final

import zmq

from prescient.bus import codec
from prescient.bus import messages as m
from prescient.bus.config import BusConfig, RequestLimitExceeded
from prescient.bus.errors import DecodeError, RequestTimeout, TransportError
from prescient.bus.transport import (
    RxStats,
    _connect_or_bind,
    _socket,
    acquire_authenticator,
    apply_curve_client,
    apply_curve_server,
    release_authenticator,
)

log = logging.getLogger(__name__)

ERROR_FRAME: Final = b"error"
SOCKET_SIZE_FACTOR: Final = 16  # socket MAXMSGSIZE = this x max_request_bytes (see RequestLimits)
MAX_READS_PER_ACCEPT: Final = 64  # requests taken per accept() call, so a flood cannot hold the caller
MAX_SERVE_ROUNDS: Final = 16  # accept/answer rounds per serve_once() call
MAX_DETAIL_CHARS: Final = 300  # error replies echo sender-chosen text: keep them short
# Counter keys carry the topic only when it is one a server expects: the sender chooses it.
_REQUEST_TOPICS: Final = frozenset({m.TOPIC_MAP_REQUEST, m.TOPIC_CONDITIONAL_REQUEST})


class ServerError(TransportError):
    """The server answered with an error reply; ``reason`` is its short key (``busy``, ``over_max_plans``)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"server error: {reason}: {detail}")
        self.reason, self.detail = reason, detail


# ----------------------------------------------------------------------------------------------
# One ZAP authenticator per context: a second one in the same context cannot bind its endpoint.
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class _Pending:
    envelope: list[bytes]  # ROUTER identity (+ the REQ delimiter): where the reply goes
    topic: str
    msg: Any
    accepted_mono_ns: int


class Replier:
    """Server side of a request/reply endpoint (ROUTER, REQ-compatible). Binds ``endpoint``.

    Use :meth:`serve_once` (wait, accept, answer everything queued), or split the work like the
    service: :meth:`accept` when the socket is readable (cheap: refusals and "busy" are answered at
    once) and :meth:`answer` when there is time. Limits come from ``cfg.requests``.
    """

    def __init__(self, cfg: BusConfig, endpoint: str, ctx: zmq.Context | None = None) -> None:
        self._ctx = ctx or zmq.Context.instance()
        self._cfg, self._limits = cfg, cfg.requests
        self._sock = _socket(self._ctx, zmq.ROUTER, cfg)
        # A REQ client has one request in flight; a deep receive queue would only hold memory.
        self._sock.rcvhwm = 4 * self._limits.queue_depth
        self._sock.setsockopt(zmq.MAXMSGSIZE, SOCKET_SIZE_FACTOR * self._limits.max_request_bytes)
        self._auth = None
        try:
            apply_curve_server(self._sock, cfg.curve)
            self._auth = acquire_authenticator(self._ctx, cfg.curve)
            _connect_or_bind(self._sock, endpoint, True)
        except Exception:
            self._sock.close(linger=0)
            release_authenticator(self._ctx, self._auth)
            raise
        self._queue: deque[_Pending] = deque()
        self._last_log_s: dict[str, float] = {}
        self.stats = RxStats()
        self.answered = 0  # replies that carried a handler's answer

    @property
    def socket(self) -> zmq.Socket:
        return self._sock

    @property
    def pending(self) -> int:
        """Requests accepted and not answered yet."""
        return len(self._queue)

    # ------------------------------------------------------------------------------------------
    def serve_once(self, handler: Callable[[Any], Any], timeout_ms: int | None = None) -> bool:
        """Wait up to ``timeout_ms`` for requests, take them in, answer all queued with ``handler``.

        ``handler(msg) -> reply message``. Never raises for anything a client sends or the
        handler does. Returns True if any request was answered (with a reply or an error).
        """
        if not self._queue:
            timeout = self._cfg.poll_ms if timeout_ms is None else timeout_ms
            try:
                if not self._sock.poll(timeout, zmq.POLLIN):
                    return False
            except zmq.ZMQError as e:
                self._count("?", "socket_error", f"poll: {e}")
                return False
        handled = 0
        for _ in range(MAX_SERVE_ROUNDS):
            # Here the caller answers at once, so a burst waits in the socket instead of "busy".
            handled += self.accept(stop_when_full=True)
            answered = self.answer(handler)
            handled += answered
            if not answered:
                break
        return handled > 0

    def accept(self, stop_when_full: bool = False) -> int:
        """Take in what the socket holds (at most ``MAX_READS_PER_ACCEPT``); never blocks.

        Valid requests are queued; the rest are answered with an error at once, and while the
        queue is full that includes every valid request ("busy"), unless ``stop_when_full``
        leaves them in the socket. Returns the number of requests answered here.
        """
        refused = 0
        for _ in range(MAX_READS_PER_ACCEPT):
            if stop_when_full and len(self._queue) >= self._limits.queue_depth:
                break
            try:
                frames = self._sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            except zmq.ZMQError as e:
                self._count("?", "socket_error", f"recv: {e}")
                break
            refused += int(not self._take(frames))
        return refused

    def answer(self, handler: Callable[[Any], Any], deadline_ns: int | None = None) -> int:
        """Answer queued requests in order with ``handler(msg) -> reply``; returns how many.

        Args:
            handler: computes the reply. ``RequestLimitExceeded`` becomes the error reply
                ``over_<limit>``; any other exception ``handler_failed``.
            deadline_ns: ``perf_counter_ns`` time after which no further request is started
                (the first one always is, so every request is answered eventually; a handler
                given the remaining budget answers it cheaply). None: answer all.
        """
        n = 0
        while self._queue:
            if n and deadline_ns is not None and time.perf_counter_ns() >= deadline_ns:
                break
            self._answer_one(self._queue.popleft(), handler)
            n += 1
        return n

    def close(self) -> None:
        self._sock.close(linger=0)
        release_authenticator(self._ctx, self._auth)
        self._auth = None

    # ------------------------------------------------------------------------------------------
    def _take(self, frames: list[bytes]) -> bool:
        """Queue one request, or refuse it with an error reply. True if queued."""
        # [identity, b"", topic, payload] from REQ; without the delimiter (DEALER) the envelope
        # is the identity alone.
        delim = next((i for i in range(1, len(frames)) if frames[i] == b""), None)
        split = 1 if delim is None else delim + 1
        envelope, body = frames[:split], frames[split:]
        n_bytes = sum(len(f) for f in body)
        try:
            self._limits.check_bytes(n_bytes)
        except RequestLimitExceeded as e:
            return self._refuse(envelope, "?", f"over_{e.limit}", str(e))
        if len(body) != 2:
            return self._refuse(
                envelope, "?", "bad_framing", f"expected [topic, payload], got {len(body)} frames"
            )
        if len(self._queue) >= self._limits.queue_depth:
            return self._refuse(envelope, "?", "busy", f"{len(self._queue)} requests queued; retry later")
        try:
            topic = body[0].decode()
        except UnicodeDecodeError:
            return self._refuse(envelope, "?", "topic_not_utf8", "topic is not UTF-8", body[1])
        try:
            msg = codec.decode(
                topic, body[1], max_bytes=min(self._cfg.max_bytes, self._limits.max_request_bytes)
            )
        except DecodeError as e:
            reason = f"decode_{getattr(e, 'code', '') or 'invalid'}"
            return self._refuse(envelope, topic, reason, str(e), body[1])
        self._queue.append(_Pending(envelope, topic, msg, time.monotonic_ns()))
        return True

    def _answer_one(self, p: _Pending, handler: Callable[[Any], Any]) -> None:
        try:
            reply = handler(p.msg)
        except RequestLimitExceeded as e:
            self._refuse(p.envelope, p.topic, f"over_{e.limit}", str(e))
            return
        except Exception as e:  # the server must answer and keep serving whatever the handler does
            self._refuse(p.envelope, p.topic, "handler_failed", f"{type(e).__name__}: {e}")
            return
        try:
            reply = dataclasses.replace(
                reply, header=dataclasses.replace(reply.header, sent_mono_ns=time.monotonic_ns())
            )
            frames = [reply.header.topic.encode(), codec.encode(reply)]
        except Exception as e:  # a reply that cannot be encoded is the handler's bug, not the client's
            self._refuse(p.envelope, p.topic, "reply_invalid", f"{type(e).__name__}: {e}")
            return
        if self._send([*p.envelope, *frames], p.topic):
            self.answered += 1

    def _refuse(
        self, envelope: list[bytes], topic: str, reason: str, detail: str, payload: bytes | None = None
    ) -> bool:
        """Error reply plus counter; returns False (nothing queued)."""
        key_topic = self._count(topic, reason, detail, payload)
        self._send([*envelope, ERROR_FRAME, f"{reason}: {detail[:MAX_DETAIL_CHARS]}".encode()], key_topic)
        return False

    def _count(self, topic: str, reason: str, detail: str, payload: bytes | None = None) -> str:
        key_topic = topic if topic in _REQUEST_TOPICS else "?"
        self.stats.reject(key_topic, reason, payload)
        now = time.monotonic()
        if now - self._last_log_s.get(reason, -1e9) >= 1.0:  # at most once a second per reason
            self._last_log_s[reason] = now
            log.warning("request refused (%s): %s", reason, detail[:MAX_DETAIL_CHARS])
        return key_topic

    def _send(self, frames: list[bytes], topic: str) -> bool:
        try:
            # ROUTER never blocks: at the HWM, or to a peer that is gone, the reply is dropped.
            self._sock.send_multipart(frames, flags=zmq.NOBLOCK)
            return True
        except zmq.ZMQError as e:
            self._count(topic, "reply_dropped", str(e))
            return False


class Requester:
    """Client side (REQ) with a timeout; on timeout the socket is rebuilt (lazy pirate)."""

    def __init__(self, cfg: BusConfig, endpoint: str, ctx: zmq.Context | None = None) -> None:
        self._ctx = ctx or zmq.Context.instance()
        self._cfg, self._endpoint = cfg, endpoint
        self._seq = 0
        self._sock = self._make()

    def _make(self) -> zmq.Socket:
        s = _socket(self._ctx, zmq.REQ, self._cfg)
        try:
            apply_curve_client(s, self._cfg.curve)
            _connect_or_bind(s, self._endpoint, False)
        except Exception:
            s.close(linger=0)
            raise
        return s

    def request(self, msg: Any, timeout_ms: int) -> Any:
        """Send ``msg`` and return the decoded reply.

        Raises:
            RequestTimeout: no reply in ``timeout_ms`` (the socket is rebuilt for the next call).
                Also what a client without the server's CurveZMQ keys sees.
            ServerError: the server answered with an error (``reason``: ``busy``, ``over_...``).
            TransportError: the reply is not two frames.
            DecodeError: the reply is malformed.
        """
        header = dataclasses.replace(msg.header, seq=self._seq, sent_mono_ns=time.monotonic_ns())
        self._seq += 1
        self._sock.send_multipart(
            [header.topic.encode(), codec.encode(dataclasses.replace(msg, header=header))]
        )
        if not self._sock.poll(timeout_ms, zmq.POLLIN):
            self._sock.close(linger=0)
            self._sock = self._make()
            raise RequestTimeout(f"no reply from {self._endpoint} within {timeout_ms} ms")
        frames = self._sock.recv_multipart()
        if len(frames) != 2:
            raise TransportError(f"reply from {self._endpoint} has {len(frames)} frames")
        if frames[0] == ERROR_FRAME:
            reason, _, detail = frames[1].decode(errors="replace").partition(": ")
            raise ServerError(reason, detail)
        return codec.decode(frames[0].decode(errors="replace"), frames[1], max_bytes=self._cfg.max_bytes)

    def close(self) -> None:
        self._sock.close(linger=0)
