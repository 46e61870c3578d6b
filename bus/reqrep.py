"""ZeroMQ request/reply: the server side (REP) and a client with a timeout (REQ, lazy pirate).

Used by the conditional-prediction endpoint (service) and the map endpoint (simulator, log
replayer). Sockets follow the same rules as :mod:`bus.transport`: ``linger=0``, bounded HWMs,
polled receives, CurveZMQ when keys are configured.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import zmq

from bus import codec
from bus.config import BusConfig
from bus.errors import DecodeError, RequestTimeout, TransportError
from bus.transport import (
    RxStats,
    _connect_or_bind,
    _socket,
    apply_curve_client,
    apply_curve_server,
    start_authenticator,
)

log = logging.getLogger(__name__)


class Replier:
    """Server side of a request/reply endpoint (REP). Binds ``endpoint``."""

    def __init__(self, cfg: BusConfig, endpoint: str, ctx: zmq.Context | None = None) -> None:
        self._ctx = ctx or zmq.Context.instance()
        self._cfg = cfg
        self._sock = _socket(self._ctx, zmq.REP, cfg)
        apply_curve_server(self._sock, cfg.curve)
        self._auth = start_authenticator(self._ctx, cfg.curve)
        self._sock.setsockopt(zmq.MAXMSGSIZE, cfg.max_bytes + 4096)
        _connect_or_bind(self._sock, endpoint, True)
        self.stats = RxStats()

    @property
    def socket(self) -> zmq.Socket:
        return self._sock

    def serve_once(self, handler: Any, timeout_ms: int | None = None) -> bool:
        """Wait up to ``timeout_ms`` for one request, call ``handler(msg) -> reply msg``, reply.

        A request that fails to decode gets an empty reply frame pair ``[b"error", reason]`` so
        the client never hangs. Returns True if a request was handled.
        """
        if not self._sock.poll(self._cfg.poll_ms if timeout_ms is None else timeout_ms, zmq.POLLIN):
            return False
        frames = self._sock.recv_multipart()
        if len(frames) != 2:
            self.stats.reject("?", "bad_framing")
            self._sock.send_multipart([b"error", b"expected [topic, payload]"])
            return True
        topic = frames[0].decode(errors="replace")
        try:
            req = codec.decode(topic, frames[1], max_bytes=self._cfg.max_bytes)
        except DecodeError as e:
            self.stats.reject(topic, e.field or "payload", frames[1])
            self._sock.send_multipart([b"error", str(e).encode()])
            return True
        try:
            reply = handler(req)
        except Exception as e:  # the server must answer and keep serving whatever the handler does
            log.exception("request handler failed")
            self._sock.send_multipart([b"error", f"handler failed: {e}".encode()])
            return True
        reply = dataclasses.replace(
            reply, header=dataclasses.replace(reply.header, sent_mono_ns=time.monotonic_ns())
        )
        self._sock.send_multipart([reply.header.topic.encode(), codec.encode(reply)])
        return True

    def close(self) -> None:
        self._sock.close(linger=0)
        if self._auth is not None:
            self._auth.stop()


class Requester:
    """Client side (REQ) with a timeout; on timeout the socket is rebuilt (lazy pirate)."""

    def __init__(self, cfg: BusConfig, endpoint: str, ctx: zmq.Context | None = None) -> None:
        self._ctx = ctx or zmq.Context.instance()
        self._cfg, self._endpoint = cfg, endpoint
        self._seq = 0
        self._sock = self._make()

    def _make(self) -> zmq.Socket:
        s = _socket(self._ctx, zmq.REQ, self._cfg)
        apply_curve_client(s, self._cfg.curve)
        _connect_or_bind(s, self._endpoint, False)
        return s

    def request(self, msg: Any, timeout_ms: int) -> Any:
        """Send ``msg`` and return the decoded reply.

        Raises:
            RequestTimeout: no reply in ``timeout_ms`` (the socket is rebuilt for the next call).
            TransportError: the server answered with an error.
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
        if frames[0] == b"error":
            raise TransportError(f"server error: {frames[1].decode(errors='replace')}")
        return codec.decode(frames[0].decode(errors="replace"), frames[1], max_bytes=self._cfg.max_bytes)

    def close(self) -> None:
        self._sock.close(linger=0)
