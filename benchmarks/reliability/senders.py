"""Sockets that deliver the attacks: a raw ``zmq.PUB`` on the bus, ``DEALER`` clients on the
request/reply endpoints, and probes that ask an endpoint one valid question.

DEALER sockets send ``[b"", *frames]``, exactly what a REQ socket puts on the wire, so the server
cannot tell them from REQ clients; unlike REQ they may send any number of frames and never get
stuck waiting for a reply that does not come. Each client keeps one request in flight, so every
reply is matched to its request and timed.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import zmq

from prescient.benchmarks.reliability.attacks import Frame

REPLY_TIMEOUT_S = 2.0


def pub_socket(endpoint: str) -> zmq.Socket:
    """A plain PUB connected to the proxy's publisher side, with room for a burst."""
    s = zmq.Context.instance().socket(zmq.PUB)
    s.linger = 0
    s.sndhwm = 200_000  # the attack is counted as sent: do not drop it in our own queue
    s.connect(endpoint)
    return s


def send_paced(sock: zmq.Socket, frames: Iterable[Frame], duration_s: float, rate_hz: float) -> int:
    """Send ``frames`` at ``rate_hz`` for ``duration_s`` (or until they run out); returns the count.

    The schedule is absolute (frame i at ``t0 + i / rate_hz``) so a slow send does not stretch
    the attack; a burst is sent when behind.
    """
    t0 = time.monotonic()
    n = 0
    for f in frames:
        due = t0 + n / rate_hz
        if due >= t0 + duration_s:
            break
        wait = due - time.monotonic()
        if wait > 0.0005:
            time.sleep(wait)
        try:
            sock.send_multipart([f.topic, f.payload], flags=zmq.NOBLOCK, copy=len(f.payload) < 65536)
        except zmq.Again:
            continue  # only at our own HWM of 200,000: not sent, not counted
        n += 1
    return n


@dataclass
class RequestResult:
    """Outcome of a request/reply attack.

    Attributes:
        sent: requests sent (``hostile`` of them hostile, the rest valid).
        replies: by reply kind: the error reason (``over_max_plans``...) or ``reply`` for an answer.
        latency_ns: send-to-reply time of every answered request.
        unanswered: requests with no reply within ``REPLY_TIMEOUT_S`` (a hung or dropping server).
    """

    sent: int = 0
    hostile: int = 0
    replies: Counter = field(default_factory=Counter)
    latency_ns: list[int] = field(default_factory=list)
    unanswered: int = 0


class _Client:
    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.sock = self._make()
        self.sent_ns = 0  # 0: free

    def _make(self) -> zmq.Socket:
        s = zmq.Context.instance().socket(zmq.DEALER)
        s.linger = 0
        s.connect(self.endpoint)
        return s

    def rebuild(self) -> None:
        self.sock.close(linger=0)
        self.sock = self._make()
        self.sent_ns = 0


def _reply_kind(frames: list[bytes]) -> str:
    body = frames[1:] if frames and frames[0] == b"" else frames
    if len(body) == 2 and body[0] == b"error":
        return body[1].split(b":", 1)[0].decode(errors="replace")[:40]
    return "reply" if len(body) == 2 else f"bad_reply_{len(body)}_frames"


def request_flood(
    endpoint: str,
    make: Callable[[int], tuple[list[bytes], bool]],
    duration_s: float,
    rate_hz: float,
    clients: int = 16,
) -> RequestResult:
    """Send ``make(i) -> (frames, hostile)`` at ``rate_hz`` for ``duration_s`` from a client pool.

    A request is due every ``1 / rate_hz`` s and goes out on a free client; when every client
    still waits for its reply the request is sent late (the server sets the pace then).
    """
    res = RequestResult()
    pool = [_Client(endpoint) for _ in range(clients)]
    poller = zmq.Poller()
    for c in pool:
        poller.register(c.sock, zmq.POLLIN)
    t0 = time.monotonic()
    t_stop = t0 + duration_s
    i = 0
    try:
        while True:
            now = time.monotonic()
            busy = [c for c in pool if c.sent_ns]
            if now >= t_stop and not busy:
                break
            if now < t_stop and now >= t0 + i / rate_hz:
                free = next((c for c in pool if not c.sent_ns), None)
                if free is not None:
                    frames, hostile = make(i)
                    free.sock.send_multipart([b"", *frames], flags=zmq.NOBLOCK)
                    free.sent_ns = time.monotonic_ns()
                    res.sent += 1
                    res.hostile += int(hostile)
                    i += 1
                    continue
            for sock, _ in poller.poll(5):
                c = next(c for c in pool if c.sock is sock)
                reply = sock.recv_multipart()
                if c.sent_ns:
                    res.latency_ns.append(time.monotonic_ns() - c.sent_ns)
                    c.sent_ns = 0
                res.replies[_reply_kind(reply)] += 1
            for c in pool:
                if c.sent_ns and time.monotonic_ns() - c.sent_ns > REPLY_TIMEOUT_S * 1e9:
                    res.unanswered += 1
                    poller.unregister(c.sock)
                    c.rebuild()
                    poller.register(c.sock, zmq.POLLIN)
    finally:
        for c in pool:
            c.sock.close(linger=0)
    return res


def probe(endpoint: str, frames: list[bytes], timeout_s: float = 3.0) -> tuple[float | None, str]:
    """One request on a fresh client: ``(seconds to the reply, reply kind)``, or ``(None, "")``."""
    c = _Client(endpoint)
    try:
        t0 = time.monotonic()
        c.sock.send_multipart([b"", *frames])
        if not c.sock.poll(int(timeout_s * 1000), zmq.POLLIN):
            return None, ""
        return time.monotonic() - t0, _reply_kind(c.sock.recv_multipart())
    finally:
        c.sock.close(linger=0)


def send_once(endpoint: str, frames: list[bytes], wait_s: float = 1.0) -> str:
    """Send one request on a throwaway client and report what came back within ``wait_s``."""
    c = _Client(endpoint)
    try:
        c.sock.send_multipart([b"", *frames])
        if c.sock.poll(int(wait_s * 1000), zmq.POLLIN):
            return _reply_kind(c.sock.recv_multipart())
        return "no reply"
    finally:
        c.sock.close(linger=0)
