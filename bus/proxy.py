"""The bus: an XSUB/XPUB forwarder (publishers -> ``pub_endpoint``, subscribers -> ``sub_endpoint``).

Why a proxy rather than direct connects: sixteen sensors, the simulator, the service, the planner
and the recorder all publish and subscribe; with two well-known endpoints nobody needs to know
anybody else's address, processes can restart independently, and subscriptions travel upstream
so publishers (XPUB) can wait for subscribers before sending.
"""

from __future__ import annotations

import threading
import uuid

import zmq

from prescient.bus.config import BusConfig
from prescient.bus.transport import (
    _connect_or_bind,
    _socket,
    acquire_authenticator,
    apply_curve_server,
    release_authenticator,
)


class Proxy:
    """Runs ``zmq.proxy_steerable`` in a background thread; ``stop()`` terminates it cleanly."""

    def __init__(self, cfg: BusConfig, ctx: zmq.Context | None = None) -> None:
        self._ctx = ctx or zmq.Context.instance()
        self._cfg = cfg
        # Shared: a map or conditional server in the same context (tests) uses the same one.
        self._auth = acquire_authenticator(self._ctx, cfg.curve)
        self._front = _socket(self._ctx, zmq.XSUB, cfg)
        self._back = _socket(self._ctx, zmq.XPUB, cfg)
        for s in (self._front, self._back):
            apply_curve_server(s, cfg.curve)
        # Subscribers that join late must still be announced to every publisher.
        self._back.setsockopt(zmq.XPUB_VERBOSE, 1)
        # The size limit sits on the publishers' side: libzmq ends the session of a peer whose
        # frame is larger, so an oversized publish cuts off its sender, never a subscriber.
        self._front.setsockopt(zmq.MAXMSGSIZE, cfg.max_bytes + 4096)
        try:
            _connect_or_bind(self._front, cfg.pub_endpoint, True)
            _connect_or_bind(self._back, cfg.sub_endpoint, True)
        except Exception:
            self._front.close(linger=0)
            self._back.close(linger=0)
            release_authenticator(self._ctx, self._auth)
            raise
        self._ctrl_addr = f"inproc://proxy-ctrl-{uuid.uuid4().hex}"
        self._ctrl = self._ctx.socket(zmq.PAIR)
        self._ctrl.bind(self._ctrl_addr)
        self._thread = threading.Thread(target=self._run, name="bus-proxy", daemon=True)

    def _run(self) -> None:
        peer = self._ctx.socket(zmq.PAIR)
        peer.connect(self._ctrl_addr)
        try:
            zmq.proxy_steerable(self._front, self._back, None, peer)
        except zmq.ContextTerminated:
            pass
        finally:
            peer.close(linger=0)

    def start(self) -> Proxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._ctrl.send(b"TERMINATE")
            self._thread.join(timeout=5)
        for s in (self._ctrl, self._front, self._back):
            s.close(linger=0)
        release_authenticator(self._ctx, self._auth)
        self._auth = None

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
