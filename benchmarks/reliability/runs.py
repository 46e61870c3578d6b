"""The attacks of ``prescient bench reliability``, each run against the live stack.

Each attack function takes the :class:`Ctx` and returns an :class:`Outcome` (what was sent and
anything it learnt on the way: reply kinds, latencies, recovery). The runner in
``benchmarks/bench_reliability.py`` measures prediction rates and health around each one.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zmq

from prescient.benchmarks.reliability import attacks as a
from prescient.benchmarks.reliability.observe import BusObserver, recovery_s
from prescient.benchmarks.reliability.senders import pub_socket, request_flood, send_paced
from prescient.benchmarks.reliability.stackproc import StackProcess
from prescient.bus import messages as m
from prescient.bus.config import BusConfig

LIDAR = "sensor.lidar.fl"
RADAR = "sensor.radar.fl"
NOMINAL_HZ = {"lidar": 10.0, "radar": 20.0, "camera": 30.0, "lwir": 30.0}
KILL_RECOVERY_LIMIT_S = 60.0
FRESH_WAIT_S = 0.25


@dataclass(frozen=True)
class Scale:
    """Sizes of one run (``--quick`` or full)."""

    duration_s: float  # of each attack
    malformed_hz: float
    random_topics: int
    random_topics_s: float
    huge_topics: int
    request_hz: float = 100.0
    kill_lead_s: float = 3.0  # the full subscriber hashes frames this long before a recorder kill


QUICK = Scale(duration_s=2.0, malformed_hz=1000.0, random_topics=10_000, random_topics_s=2.0, huge_topics=4)
FULL = Scale(duration_s=8.0, malformed_hz=2000.0, random_topics=100_000, random_topics_s=20.0, huge_topics=16)


@dataclass
class Ctx:
    """Everything an attack needs."""

    cfg: BusConfig
    obs: BusObserver
    stack: StackProcess
    rng: np.random.Generator
    scale: Scale
    templates: dict[str, bytes]  # topic -> valid synthetic payload (mutation source)
    early: list[tuple[float, str, bytes]] = field(default_factory=list)  # real frames from warm-up
    kills: list[tuple[float, str]] = field(default_factory=list)
    recorder_window: dict = field(default_factory=dict)
    _pub: zmq.Socket | None = None

    @property
    def pub(self) -> zmq.Socket:
        if self._pub is None:
            self._pub = pub_socket(self.cfg.pub_endpoint)
            time.sleep(1.0)  # the proxy forwards the subscriptions; before that PUB drops
        return self._pub

    def close(self) -> None:
        if self._pub is not None:
            self._pub.close(linger=0)


@dataclass
class Outcome:
    """What one attack did. ``hostile``: messages sent that the stack must refuse or survive."""

    hostile: int = 0
    valid: int = 0
    notes: list[str] = field(default_factory=list)
    latency_ns: list[int] | None = None
    fails: list[str] = field(default_factory=list)
    t_end: float | None = None  # when the attack (or a kill's recovery) ended, monotonic s
    recovery_s: float | None = None  # kills: kill -> recovered


def current(ctx: Ctx, topic: str, fresh: bool = False) -> tuple[bytes, int, int]:
    """Newest real frame on ``topic``, the sensor clock now (ns, estimated) and the next seq.

    A topic the stack does not publish (no capture) gets the synthetic template and seq 0, with
    the clock taken from the ego state.

    Args:
        fresh: first wait (up to ``FRESH_WAIT_S``) for the next real frame on ``topic``. A forged
            frame with the next seq sent right then reaches the service before the real one
            (which is then refused as a duplicate): it is the content, not the seq, under test.
    """
    if fresh:
        seen = ctx.obs.newest(topic)
        t_limit = time.monotonic() + FRESH_WAIT_S
        while ctx.obs.newest(topic) is seen and time.monotonic() < t_limit:
            time.sleep(0.002)
    own = ctx.obs.newest(topic)
    ref = own or ctx.obs.newest(m.TOPIC_EGO)
    if ref is None:
        raise RuntimeError(f"no real frame captured on {topic} or {m.TOPIC_EGO}")
    t_s, payload = ref
    h = a.header_of(payload)
    now_stamp = int(h["stamp_ns"] + (time.monotonic() - t_s) * 1e9)
    if own is None:
        return ctx.templates[topic], now_stamp, 0
    return payload, now_stamp, int(h["seq"]) + 1


def _live(make: Callable[[int], a.Frame]) -> Iterator[a.Frame]:
    """Frames built at send time (so stamps and seqs follow the live streams)."""
    for i in itertools.count():
        yield make(i)


# ----------------------------------------------------------------------------------------------
# Payload attacks on the bus.
# ----------------------------------------------------------------------------------------------
def baseline(ctx: Ctx) -> Outcome:
    """No attack: the same measurement on the undisturbed stack (this machine's noise floor)."""
    time.sleep(ctx.scale.duration_s)
    return Outcome()


def malformed(ctx: Ctx) -> Outcome:
    frames = a.malformed_stream(ctx.rng, ctx.templates)
    return Outcome(send_paced(ctx.pub, frames, ctx.scale.duration_s, ctx.scale.malformed_hz))


def huge_topic(ctx: Ctx) -> Outcome:
    frame = a.huge_topic_frame(ctx.templates[LIDAR])
    n = ctx.scale.huge_topics
    return Outcome(
        send_paced(ctx.pub, itertools.repeat(frame, n), ctx.scale.duration_s, n / ctx.scale.duration_s)
    )


def random_topics(ctx: Ctx) -> Outcome:
    s = ctx.scale
    frames = a.random_topic_frames(ctx.rng, ctx.templates, s.random_topics)
    return Outcome(send_paced(ctx.pub, frames, s.random_topics_s, s.random_topics / s.random_topics_s))


def oversized(ctx: Ctx) -> Outcome:
    # Its own socket: the proxy drops the connection of a publisher that sends a frame over
    # max_bytes, and the other attacks still need theirs.
    sock = pub_socket(ctx.cfg.pub_endpoint)
    try:
        time.sleep(1.0)
        frame = a.oversized_frame(LIDAR)
        seen = ctx.obs.oversized
        sock.send_multipart([frame.topic, frame.payload], copy=False)
        time.sleep(max(ctx.scale.duration_s - 1.0, 0.5))
    finally:
        sock.close(linger=0)
    delivered = ctx.obs.oversized - seen
    where = f"delivered to subscribers x{delivered}" if delivered else "never reached a subscriber"
    return Outcome(1, notes=[f"{len(frame.payload) / 1e6:.0f} MB frame {where}"])


def replay_old(ctx: Ctx) -> Outcome:
    frames = [a.Frame(topic.encode(), p, "replay") for _, topic, p in ctx.early]
    if not frames:
        return Outcome(fails=["nothing captured to replay"])
    age = time.monotonic() - ctx.early[0][0]
    n = send_paced(ctx.pub, frames, ctx.scale.duration_s, len(frames) / ctx.scale.duration_s)
    return Outcome(n, notes=[f"{age:.0f} s old"])


def out_of_order(ctx: Ctx) -> Outcome:
    """Every 100 ms: the newest 5 real LiDAR frames again, newest first, with fresh seqs."""

    def rounds() -> Iterator[a.Frame]:
        while True:
            _, _, seq = current(ctx, LIDAR)
            yield from a.out_of_order(LIDAR, ctx.obs.captured(LIDAR)[-5:], seq)

    return Outcome(send_paced(ctx.pub, rounds(), ctx.scale.duration_s, 50.0))


def future_stamps(ctx: Ctx) -> Outcome:
    def make(_: int) -> a.Frame:
        p, stamp, seq = current(ctx, RADAR, fresh=True)
        return a.restamped(RADAR, p, "future", seq=seq, stamp_ns=stamp + 3600 * 10**9)

    return Outcome(send_paced(ctx.pub, _live(make), ctx.scale.duration_s, 20.0))


def seq_injection(ctx: Ctx) -> Outcome:
    def pairs() -> Iterator[a.Frame]:
        while True:
            p, stamp, _ = current(ctx, LIDAR)
            yield from a.seq_injections(LIDAR, p, stamp)

    return Outcome(send_paced(ctx.pub, pairs(), ctx.scale.duration_s, 20.0))


def old_stamp_1hz(ctx: Ctx) -> Outcome:
    topic = "sensor.lidar.fr"

    def make(_: int) -> a.Frame:
        p, stamp, seq = current(ctx, topic, fresh=True)
        return a.restamped(topic, p, "old_stamp", seq=seq, stamp_ns=max(stamp - 10 * 10**9, 0))

    return Outcome(send_paced(ctx.pub, _live(make), ctx.scale.duration_s, 1.0))


def future_ego_1hz(ctx: Ctx) -> Outcome:
    def make(_: int) -> a.Frame:
        p, stamp, seq = current(ctx, m.TOPIC_EGO, fresh=True)
        return a.restamped(m.TOPIC_EGO, p, "future_ego", seq=seq, stamp_ns=stamp + 3600 * 10**9)

    return Outcome(send_paced(ctx.pub, _live(make), ctx.scale.duration_s, 1.0))


def lookalike_ego(ctx: Ctx) -> Outcome:
    """Real ego states re-sent 50 ms later on ``ego.state.forged``: the service subscribes by
    prefix, and a topic with no fixed type in ``prescient.bus.messages`` accepts any message type."""
    topic = m.TOPIC_EGO + ".forged"

    def make(i: int) -> a.Frame:
        p, stamp, _ = current(ctx, m.TOPIC_EGO, fresh=True)
        forged = a.with_header(p, topic=topic, seq=i, stamp_ns=stamp + 50_000_000, sent_mono_ns=0)
        return a.Frame(topic.encode(), forged, "lookalike_ego")

    return Outcome(send_paced(ctx.pub, _live(make), ctx.scale.duration_s, 10.0))


def _synthetic(ctx: Ctx, topic: str, build: Callable[[int, int], object], rate_hz: float) -> Outcome:
    from prescient.bus import codec

    def make(_: int) -> a.Frame:
        _, stamp, seq = current(ctx, topic, fresh=True)
        return a.Frame(topic.encode(), codec.encode(build(seq, stamp + 1_000_000)), "absurd")

    return Outcome(send_paced(ctx.pub, _live(make), ctx.scale.duration_s, rate_hz))


def lidar_1000(ctx: Ctx) -> Outcome:
    return _synthetic(
        ctx, LIDAR, lambda seq, st: a.lidar_frame(LIDAR, seq, st, ctx.rng, n_objects=1000), 10.0
    )


def radar_300mps(ctx: Ctx) -> Outcome:
    return _synthetic(
        ctx,
        RADAR,
        lambda seq, st: a.radar_frame(RADAR, seq, st, ctx.rng, n_returns=64, range_rate_mps=300.0),
        20.0,
    )


def flood_10x(ctx: Ctx) -> Outcome:
    rate = 10 * NOMINAL_HZ["lidar"]
    p, stamp, seq = current(ctx, LIDAR, fresh=True)
    step_ns = int(1e9 / rate)
    frames = (
        a.restamped(LIDAR, p, "flood", seq=seq + i, stamp_ns=stamp + i * step_ns) for i in itertools.count()
    )
    return Outcome(
        send_paced(ctx.pub, frames, ctx.scale.duration_s, rate), notes=[f"{rate:.0f} Hz on {LIDAR}"]
    )


# ----------------------------------------------------------------------------------------------
# Request/reply endpoints.
# ----------------------------------------------------------------------------------------------
def _requests(ctx: Ctx, endpoint: str, kinds: tuple[str, ...], hostile_frames, valid_frames) -> Outcome:
    def make(i: int) -> tuple[list[bytes], bool]:
        if i % 10 == 9:  # one in ten is a legitimate request: is it still served?
            return valid_frames(i), False
        return hostile_frames(kinds[i % len(kinds)], i, ctx.rng), True

    res = request_flood(endpoint, make, ctx.scale.duration_s, ctx.scale.request_hz)
    notes = ["replies " + ", ".join(f"{k} x{v}" for k, v in res.replies.most_common(4))]
    fails = [f"{res.unanswered} of {res.sent} requests unanswered in 2 s"] if res.unanswered else []
    return Outcome(res.hostile, res.sent - res.hostile, notes, res.latency_ns, fails)


def conditional(ctx: Ctx) -> Outcome:
    return _requests(
        ctx,
        ctx.cfg.conditional_endpoint,
        a.CONDITIONAL_KINDS,
        a.conditional_attack,
        lambda i: [m.TOPIC_CONDITIONAL_REQUEST.encode(), a.conditional_request(i, 3)],
    )


def map_endpoint(ctx: Ctx) -> Outcome:
    return _requests(
        ctx,
        ctx.cfg.map_endpoint,
        a.MAP_KINDS,
        a.map_attack,
        lambda i: [m.TOPIC_MAP_REQUEST.encode(), a.map_request(i)],
    )


# ----------------------------------------------------------------------------------------------
# kill -9 of each child.
# ----------------------------------------------------------------------------------------------
def log_bytes(run_dir: Path) -> tuple[int, float]:
    """Total size (bytes) and newest modification time (wall clock s) of the run's logs."""
    files = list(run_dir.glob("*.mcap"))
    return sum(f.stat().st_size for f in files), max((f.stat().st_mtime for f in files), default=0.0)


def wait_for(cond: Callable[[], float | None], limit_s: float) -> float | None:
    """Poll ``cond`` every 0.2 s until it returns a value (returned) or ``limit_s`` passes (None)."""
    t_limit = time.monotonic() + limit_s
    while time.monotonic() < t_limit:
        got = cond()
        if got is not None:
            return got
        time.sleep(0.2)
    return None


def kill(ctx: Ctx, name: str) -> Outcome:
    """``kill -9`` child ``name`` and wait until the stack has recovered from it.

    Recovered: for the recorder, a new recorder writing to a log again; for the planner, a new
    planner publishing statuses; for the rest, predictions back at >= 9.5 Hz over 2 s.
    """
    obs, stack = ctx.obs, ctx.stack
    if name == "recorder":
        obs.open_window()
        time.sleep(ctx.scale.kill_lead_s)
    old_pid = stack.children().get(name)
    t_kill = time.monotonic()
    if stack.kill_child(name) is None:
        return Outcome(fails=[f"{name} not running before the kill"], t_end=t_kill)
    ctx.kills.append((t_kill, name))

    def restarted() -> int | None:
        pid = stack.children().get(name)
        return pid if pid is not None and pid != old_pid else None

    if name == "recorder":
        wall_kill = time.time()

        def writing() -> float | None:
            if restarted() is None:
                return None
            return time.monotonic() if log_bytes(stack.run_dir)[1] > wall_kill + 0.05 else None

        t_rec = wait_for(writing, KILL_RECOVERY_LIMIT_S)
    elif name == "planner":

        def status_again() -> float | None:
            if restarted() is None:
                return None
            return next((t for t, _ in reversed(obs.status) if t > t_kill + 0.2), None)

        t_rec = wait_for(status_again, KILL_RECOVERY_LIMIT_S)
    else:

        def predicting() -> float | None:
            d = recovery_s(obs.pred_t, t_kill + 0.1, limit_s=KILL_RECOVERY_LIMIT_S)
            return None if d is None else t_kill + 0.1 + d

        t_rec = wait_for(predicting, KILL_RECOVERY_LIMIT_S + 5)
    out = Outcome(1, t_end=t_rec if t_rec is not None else time.monotonic())
    if t_rec is None:
        out.fails.append(f"{name}: not recovered {KILL_RECOVERY_LIMIT_S:.0f} s after kill -9")
    else:
        out.recovery_s = t_rec - t_kill
    if name == "recorder":
        time.sleep(3.0)  # the restarted recorder's first chunks
        ctx.recorder_window = {
            "t_kill": t_kill,
            "window": obs.close_window(),
            "lead_s": ctx.scale.kill_lead_s,
        }
    return out


ATTACKS: dict[str, tuple[Callable[[Ctx], Outcome], str, bool]] = {
    # name: (function, what it hits, whether predictions must hold >= 9 Hz during it)
    "baseline": (baseline, "nothing (noise floor)", True),
    "malformed": (malformed, "18 input topics x 10 kinds", False),
    "huge_topic": (huge_topic, "1.1 MB topic name", True),
    "random_topics": (random_topics, "one topic per frame", False),
    "oversized": (oversized, f"{a.OVERSIZED_BYTES / 1e6:.0f} MB on {LIDAR}", True),
    "replay_old": (replay_old, "warm-up frames, all inputs", False),
    "out_of_order": (out_of_order, LIDAR, True),
    "future_stamps": (future_stamps, RADAR + " +1 h", True),
    "seq_injection": (seq_injection, LIDAR + " seq 2^62 / 0", True),
    "old_stamp_1hz": (old_stamp_1hz, "sensor.lidar.fr -10 s", True),
    "future_ego_1hz": (future_ego_1hz, "ego.state +1 h", True),
    "lookalike_ego": (lookalike_ego, "ego.state.forged (+50 ms)", True),
    "lidar_1000": (lidar_1000, LIDAR + " 1000 objects", True),
    "radar_300mps": (radar_300mps, RADAR + " 300 m/s", True),
    "flood_10x": (flood_10x, LIDAR + " 100 Hz", True),
    "conditional": (conditional, "conditional endpoint", True),
    "map": (map_endpoint, "map endpoint", True),
}
KILL_ORDER = ("recorder", "service", "planner", "sim", "bus")
for _child in KILL_ORDER:
    ATTACKS[f"kill:{_child}"] = (lambda ctx, _n=_child: kill(ctx, _n), f"kill -9 {_child}", False)
