"""``prescient track``: run the tracker live on the bus, on a recorded log, or on a simulation.

* ``--live``: subscribe to every sensor topic and the ego state, publish ``perception.tracks`` every
  100 ms of sensor time and ``health.tracker`` (rejection counts) every second of sensor time.
* ``--log LOG``: replay a recorded log offline (no sockets), print a summary; ``--score`` scores
  against the log's ground truth.
* ``--sim SCENARIO``: run the simulator in-process offline (``synthetic`` needs no simulator).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prescient.bus import messages as m
from prescient.bus.errors import StartupError
from prescient.service.app.tracking.evaluate import TrackingScorer
from prescient.service.app.tracking.runner import TickDriver
from prescient.service.liveness import Verdict, health_message
from prescient.service.tracker.config import TrackerConfig
from prescient.service.tracker.tracker import Tracker

log = logging.getLogger(__name__)
_MODALITIES = {name.lower(): mod for name, mod in m.Modality.__members__.items()}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``prescient track``."""
    p = subparsers.add_parser("track", help="perception tracker: sensor frames -> tracks")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--live", action="store_true", help="subscribe to the bus and publish tracks")
    mode.add_argument("--log", type=Path, metavar="LOG", help="replay a recorded log offline")
    mode.add_argument("--sim", metavar="SCENARIO", help="run the simulator in-process (or 'synthetic')")
    p.add_argument("--seed", type=int, default=0, help="simulation seed")
    p.add_argument("--duration", type=float, default=10.0, help="simulated seconds (--sim)")
    p.add_argument("--agents", type=int, default=50, help="number of agents (--sim)")
    p.add_argument("--night", action="store_true", help="night conditions (--sim)")
    p.add_argument(
        "--disable",
        action="append",
        default=[],
        choices=sorted(_MODALITIES),
        help="switch a modality off (--sim)",
    )
    p.add_argument("--score", action="store_true", help="score against ground truth (needs motmetrics)")
    p.add_argument("--eval-range", type=float, default=50.0, help="scoring radius around the ego, m")
    p.add_argument("--reorder-window", type=float, default=None, help="reorder window, s")
    p.add_argument("--publish-tentative", action="store_true", help="also publish tentative tracks")
    p.add_argument("--json", type=Path, default=None, help="write the summary as JSON here")
    from prescient.bus.cli import add_bus_args

    add_bus_args(p)
    p.set_defaults(func=_main)


def _tracker_config(args: argparse.Namespace) -> TrackerConfig:
    kw: dict[str, Any] = {"publish_tentative": bool(args.publish_tentative)}
    if args.reorder_window is not None:
        kw["reorder_window_s"] = args.reorder_window
    cfg = TrackerConfig(**kw)
    try:
        cfg.validate()
    except ValueError as e:
        raise StartupError(str(e)) from e
    return cfg


def _main(args: argparse.Namespace) -> int:
    cfg = _tracker_config(args)
    if args.live:
        return _live(args, cfg)
    if args.log is not None:
        return _offline(args, cfg, _log_messages(args.log), f"log {args.log}")
    return _offline(args, cfg, sim_messages(args), f"sim {args.sim} seed {args.seed}")


# ----------------------------------------------------------------------------------------------
# Offline sources.
# ----------------------------------------------------------------------------------------------
def _log_messages(path: Path) -> Iterator[Any]:
    if not path.is_file():
        raise StartupError(f"log not found: {path}")
    try:
        from prescient.bus.replayer import iter_messages
    except ImportError as e:
        raise StartupError(f"prescient.bus.replayer is not available in this checkout: {e}") from e
    for rec in iter_messages(path):
        yield rec.msg


def sim_messages(args: argparse.Namespace) -> Iterator[Any]:
    """Messages of an in-process simulation, in emission order, for ``args.duration`` seconds."""
    disabled = tuple(_MODALITIES[d] for d in args.disable)
    if args.sim == "synthetic":
        from prescient.service.app.tracking.synthetic import SyntheticScene

        if disabled:
            raise StartupError("--disable is not supported with --sim synthetic")
        scene = SyntheticScene(n_agents=args.agents, seed=args.seed, night=args.night)
        for _ in range(int(round(args.duration / m.PRED_DT_S))):
            yield from scene.step()
        return
    try:
        from prescient.sim_sensors import SimConfig, Simulation
    except ImportError as e:
        raise StartupError(f"the simulator (sim_sensors) is not available in this checkout: {e}") from e
    try:
        sim_cfg = SimConfig(
            scenario=args.sim,
            seed=args.seed,
            n_agents=args.agents,
            night=args.night,
            disabled_modalities=disabled,
        )
        sim = Simulation(sim_cfg)
    except ValueError as e:  # pydantic ValidationError is a ValueError
        raise StartupError(f"bad simulation settings: {e}") from e
    t_end = sim.time_ns + int(args.duration * 1e9)
    while sim.time_ns < t_end:
        yield from sim.step()


def _offline(args: argparse.Namespace, cfg: TrackerConfig, msgs: Iterator[Any], what: str) -> int:
    tracker = Tracker(cfg)
    tracker.warm_up()
    driver = TickDriver(tracker)
    scorer = TrackingScorer(eval_range_m=args.eval_range) if args.score else None
    pairer = GroundTruthPairer(scorer)
    n_tracks = 0
    for msg in msgs:
        if isinstance(msg, m.GroundTruth):
            pairer.add_gt(msg)
        for tracks in driver.feed(msg):
            n_tracks += len(tracks.track_id)
            pairer.add_tracks(tracks)
            if driver.ticks % 50 == 0:
                log.info("t=%.1f s: %d tracks", tracks.header.stamp_ns / 1e9, len(tracks.track_id))
    summary: dict[str, Any] = {
        "source": what,
        "ticks": driver.ticks,
        "mean_tracks": n_tracks / max(driver.ticks, 1),
        "tick_ms": driver.timings.percentiles_ms(skip=min(10, driver.ticks // 2)),
        "rejected": dict(tracker.stats.rejected),
        "counters": dict(tracker.stats.counters),
    }
    if scorer is not None:
        if not scorer.frames:
            raise StartupError("--score: no ground truth matched any tick in this source")
        summary["score"] = scorer.summary()
    _print_summary(summary)
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


class GroundTruthPairer:
    """Hands (tracks, ground truth) of equal stamps to a scorer, whichever arrives first."""

    def __init__(self, scorer: TrackingScorer | None, keep: int = 64) -> None:
        self.scorer = scorer
        self._gt: dict[int, m.GroundTruth] = {}
        self._tracks: dict[int, m.Tracks] = {}
        self._keep = keep

    def add_gt(self, gt: m.GroundTruth) -> None:
        if self.scorer is None:
            return
        t = gt.header.stamp_ns
        if t in self._tracks:
            self.scorer.add(self._tracks.pop(t), gt)
        else:
            self._store(self._gt, t, gt)

    def add_tracks(self, tracks: m.Tracks) -> None:
        if self.scorer is None:
            return
        t = tracks.header.stamp_ns
        if t in self._gt:
            self.scorer.add(tracks, self._gt.pop(t))
        else:
            self._store(self._tracks, t, tracks)

    def _store(self, d: dict[int, Any], t: int, v: Any) -> None:
        d[t] = v
        if len(d) > self._keep:
            del d[min(d)]


def _print_summary(s: dict[str, Any]) -> None:
    t = s["tick_ms"]
    print(f"{s['source']}: {s['ticks']} ticks, {s['mean_tracks']:.1f} tracks/tick")
    print(f"tick cost ms: p50 {t['p50']:.2f}  p95 {t['p95']:.2f}  p99 {t['p99']:.2f}  max {t['max']:.2f}")
    if s["rejected"]:
        print("rejected: " + ", ".join(f"{k}={v}" for k, v in sorted(s["rejected"].items())))
    sc = s.get("score")
    if sc:
        print(
            f"MOTA {sc['mota']:.3f}  MOTP {sc['motp']:.3f} m  IDF1 {sc['idf1']:.3f}  IDsw {sc['num_switches']}  "
            f"FP {sc['num_false_positives']}  miss {sc['num_misses']}  GT {sc['num_objects']}"
        )
        for name, c in sc["per_class"].items():
            print(
                f"  {name:<11} n={c['n']:<6} pos RMSE {c['pos_rmse_m']:.3f} m  vel RMSE {c['vel_rmse_mps']:.3f} m/s"
            )


# ----------------------------------------------------------------------------------------------
# Live.
# ----------------------------------------------------------------------------------------------
def _live(args: argparse.Namespace, cfg: TrackerConfig) -> int:
    from prescient.bus.transport import Publisher, Subscriber

    try:
        from prescient.bus.cli import bus_config_from_args

        bus_cfg = bus_config_from_args(args)
    except ModuleNotFoundError:
        from prescient.bus.config import BusConfig

        bus_cfg = BusConfig()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    tracker = Tracker(cfg)
    tracker.warm_up()
    driver = TickDriver(tracker)
    sub = Subscriber(bus_cfg, prefixes=("sensor.", m.TOPIC_EGO))
    pub = Publisher(bus_cfg)
    budget_ns = 10_000_000  # tracker share of the 100 ms tick (benchmarks/budgets: track 10 ms)
    misses = 0
    log.info("tracking live: sub %s, pub %s", bus_cfg.sub_endpoint, bus_cfg.pub_endpoint)
    try:
        while not stop.is_set():
            msg = sub.recv(timeout_ms=100)
            if msg is None:
                continue
            for tracks in driver.feed(msg):
                if driver.timings.tick_ns[-1] > budget_ns:
                    misses += 1
                pub.publish(tracks)
                if driver.ticks % 10 == 0:
                    pub.publish(_health(tracker, sub, driver, misses, tracks.header.stamp_ns))
    finally:
        sub.close()
        pub.close()
    t = driver.timings.percentiles_ms(skip=min(10, driver.ticks // 2))
    log.info("stopped after %d ticks; tick ms p50 %.2f p99 %.2f", driver.ticks, t["p50"], t["p99"])
    return 0


def _health(tracker: Tracker, sub: Any, driver: TickDriver, misses: int, stamp_ns: int) -> m.Health:
    """Tracker rejections plus the subscriber's decode rejections and sequence gaps."""
    rejected = dict(tracker.stats.rejected)
    for k, v in sub.stats.rejected.items():
        rejected[k] = rejected.get(k, 0) + v
    skipped = driver.skipped_ticks
    verdict = Verdict("degraded" if skipped else "ok", f"skipped {skipped} ticks" if skipped else "")
    return health_message(
        "tracker",
        stamp_ns,
        "cpu",
        verdict,
        ticks=driver.ticks,
        deadline_misses=misses,
        rejected=rejected,
        seq_gaps=sub.stats.gaps,
    )
