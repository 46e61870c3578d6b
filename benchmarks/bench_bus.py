"""Bus round-trip latency: ping-pong between two processes through our Publisher/Subscriber.

Each round trip is: encode + publish (ping) -> other process receives, decodes, re-encodes,
publishes (pong) -> receive + decode here. So it is the real per-hop cost of the bus (codec
included) twice. Direct connects (no proxy) over ipc:// and tcp://127.0.0.1; payload sizes 1 KB,
100 KB and 1 MB; warm-up round trips are discarded. Timing uses ``time.perf_counter_ns``.

Writes ``bus.json`` into ``--out DIR`` (default ``$PRESCIENT_HOME/bench`` or the user data folder).

Usage: python -m prescient.benchmarks.bench_bus [--iters 1000] [--warmup 100] [--out DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing as mp
import socket
import tempfile
import time

import numpy as np

from prescient.benchmarks.common import add_out_argument, markdown_table, write_json
from prescient.bus import messages as m
from prescient.bus.config import BusConfig
from prescient.service.stats import percentiles_ms

SIZES = {"1KB": 1024, "100KB": 100 * 1024, "1MB": 1024 * 1024}
PING, PONG = "bench.ping", "bench.pong"


def _message(topic: str, n_bytes: int) -> m.ConditionalRequest:
    n_floats = max(2, (n_bytes - 200) // 4)
    plans = np.random.default_rng(0).normal(size=(1, n_floats // 2, 2)).astype(np.float32)
    return m.ConditionalRequest(header=m.Header(topic=topic), request_id=0, plans_xy_m=plans)


def _echo(ping_ep: str, pong_ep: str, n: int, ready: mp.Event) -> None:
    from prescient.bus.transport import Publisher, Subscriber

    cfg = BusConfig(poll_ms=50)
    sub = Subscriber(cfg, [PING], endpoint=ping_ep)
    pub = Publisher(cfg, endpoint=pong_ep, bind=True)
    ready.set()
    # The pong leg has a slow joiner too: without this wait the first pong could be sent before the
    # benchmark's subscription reached this publisher.
    if not pub.wait_for_subscribers([PONG], 60):
        raise RuntimeError("benchmark process never subscribed to the pong topic")
    done, deadline = 0, time.monotonic() + 600
    while done < n and time.monotonic() < deadline:
        msg = sub.recv(timeout_ms=200)
        if msg is None:
            continue
        pub.publish(dataclasses.replace(msg, header=dataclasses.replace(msg.header, topic=PONG)))
        done += 1
    sub.close()
    pub.close(linger_ms=5000)  # with linger 0 the last 1 MB pong was dropped in the queue (1 lost of 333)


def free_tcp_port() -> int:
    """A loopback port that is free right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_point(transport: str, n_bytes: int, iters: int, warmup: int) -> dict:
    from prescient.bus.transport import Publisher, Subscriber

    tmp = tempfile.mkdtemp(prefix="bench-bus-")
    if transport == "ipc":
        ping_ep, pong_ep = f"ipc://{tmp}/ping", f"ipc://{tmp}/pong"
    else:
        ping_ep, pong_ep = (f"tcp://127.0.0.1:{free_tcp_port()}" for _ in range(2))
    cfg = BusConfig(poll_ms=50)
    pub = Publisher(cfg, endpoint=ping_ep, bind=True)
    ready = mp.get_context("spawn").Event()
    proc = mp.get_context("spawn").Process(
        target=_echo, args=(ping_ep, pong_ep, iters + warmup, ready), daemon=True
    )
    proc.start()
    ready.wait(60)
    sub = Subscriber(cfg, [PONG], endpoint=pong_ep)
    if not pub.wait_for_subscribers([PING], 30):
        raise RuntimeError("echo process never subscribed")
    msg = _message(PING, n_bytes)
    rtts, lost = [], 0
    for i in range(iters + warmup):
        t0 = time.perf_counter_ns()
        payload = pub.publish(msg)
        got = sub.recv(timeout_ms=2000)
        t1 = time.perf_counter_ns()
        if got is None:
            lost += 1
            continue
        if i >= warmup:
            rtts.append(t1 - t0)
    proc.join(10)
    pub.close()
    sub.close()
    return {
        "transport": transport,
        "size": n_bytes,
        "payload_bytes": len(payload),
        "lost": lost,
        **percentiles_ms(rtts),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="prescient bench bus", description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=100)
    add_out_argument(ap)
    args = ap.parse_args(argv)
    rows, results = [], []
    for transport in ("ipc", "tcp"):
        for label, size in SIZES.items():
            iters = args.iters if size < 1_000_000 else max(100, args.iters // 3)
            r = run_point(transport, size, iters, args.warmup)
            results.append(r)
            rows.append([transport, label, r["n"], r["p50"], r["p95"], r["p99"], r["max"], r["lost"]])
    print("Bus round trip (ms): encode+send+recv+decode, twice (ping and pong)")
    print(markdown_table(["transport", "size", "n", "p50", "p95", "p99", "max", "lost"], rows))
    print(f"json: {write_json('bus', {'results': results}, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
