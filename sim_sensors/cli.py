"""``prescient sim``: run the simulator and publish every message on the bus.

Publishes through the proxy (``BusConfig().pub_endpoint``), serves the map on
``BusConfig().map_endpoint`` (a ``Replier`` thread answering ``MapRequest`` with the VectorMap),
paces to the sim clock with a monotonic clock in ``--realtime`` mode (default) or runs flat out
with ``--fast``, and prints per-topic counts at the end. ``--offline`` skips the bus (data
generation, pictures). ``prescient sim branch`` rolls one scene forward under several ego plans
(:mod:`prescient.sim_sensors.branch_cli`).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import threading
import time
from collections import Counter

from pydantic import ValidationError

from prescient.bus.cli import add_curve_args, bus_config_from_args
from prescient.bus.errors import BusError, StartupError
from prescient.bus.map_server import MapServer
from prescient.bus.messages import TOPIC_MAP

log = logging.getLogger(__name__)

MAP_REPUBLISH_NS = 5_000_000_000  # the map is also published every 5 s for late joiners (recorders)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``sim`` subcommand."""
    from prescient.sim_sensors.maps import SCENARIOS

    p = subparsers.add_parser("sim", help="run the simulated world and its 16 sensors on the bus")
    p.add_argument("--scenario", default="intersection", choices=SCENARIOS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--agents", type=int, default=None, help="target number of agents (ego excluded, default 50)"
    )
    p.add_argument("--duration", type=float, default=30.0, help="sim seconds to run")
    p.add_argument("--night", action="store_true", help="darkness: camera degrades, LWIR does not")
    p.add_argument(
        "--disable",
        action="append",
        default=[],
        metavar="MODALITY",
        help="camera|lidar|radar|lwir (repeatable)",
    )
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--realtime", dest="fast", action="store_false", help="pace to the sim clock (default)")
    pace.add_argument("--fast", dest="fast", action="store_true", help="run as fast as possible")
    p.add_argument(
        "--offline", action="store_true", help="do not touch the bus (with --snapshot: just a picture)"
    )
    p.add_argument(
        "--wait-subscribers", type=float, default=2.0, metavar="S", help="wait this long for a subscriber"
    )
    p.add_argument("--snapshot", metavar="PNG", help="write a picture of the last state and detections")
    p.add_argument(
        "--from-scenario",
        metavar="FILE[#INDEX]",
        help="start from a scene of a scene file (prescient scenarios generate); sets --scenario, "
        "and --agents defaults to the scene's agent count",
    )
    p.add_argument(
        "--map",
        metavar="FILE",
        help="drive on an imported map (.json from `prescient import lanelet2`) instead of --scenario's",
    )
    add_curve_args(p)  # CurveZMQ for the publisher and the map server
    p.set_defaults(func=run_sim, fast=False)
    from prescient.sim_sensors.branch_cli import add_branch_parser

    # Optional: plain ``prescient sim [options]`` still runs the simulator.
    add_branch_parser(p.add_subparsers(dest="sim_command", required=False, metavar="{branch}"))


def _build_sim(args: argparse.Namespace):
    """The Simulation the arguments ask for (random start or ``--from-scenario``), and its config.

    Raises:
        StartupError: a bad argument or scene file, in one line.
    """
    from prescient.sim_sensors.config import SimConfig
    from prescient.sim_sensors.simulation import Simulation

    scene = None
    scenario = args.scenario
    n_agents = 50 if args.agents is None else args.agents
    if getattr(args, "from_scenario", None):
        from prescient.sim_sensors.scenario_file import ScenarioFileError, load_scene

        try:
            scene = load_scene(args.from_scenario)
        except ScenarioFileError as e:
            raise StartupError(f"--from-scenario: {e}") from e
        scenario = scene.map_name
        n_agents = scene.n_agents if args.agents is None else args.agents
    try:
        cfg = SimConfig(
            scenario=scenario,
            seed=args.seed,
            n_agents=n_agents,
            night=args.night,
            disabled_modalities=tuple(args.disable),
        )
    except ValidationError as e:
        err = e.errors()[0]
        raise StartupError(f"bad argument {'.'.join(map(str, err['loc']))}: {err['msg']}") from e
    if args.duration <= 0:
        raise StartupError(f"--duration must be > 0, got {args.duration}")
    if getattr(args, "map", None):
        if scene is not None:
            raise StartupError(
                "--map and --from-scenario cannot be combined (a scene belongs to its own map)"
            )
        from prescient.sim_sensors.maps.imported import load_map_data

        md, mix = load_map_data(args.map)  # raises StartupError
        return Simulation(cfg, map_data=md, class_mix=mix), cfg
    sim = Simulation(cfg) if scene is None else Simulation.from_scenario(scene, cfg)
    if sim.placement is not None and scene is not None:
        print(
            f"from scenario {args.from_scenario}: {len(sim.placement.index)} of {scene.n_agents} agents placed"
            + (f", dropped: {sim.placement.dropped}" if sim.placement.dropped else "")
        )
    return sim, cfg


def _open_bus(args: argparse.Namespace, sim, bus_cfg):
    """Map server and publisher (both None with ``--offline``), after waiting for a subscriber.

    Raises:
        StartupError: an endpoint will not bind or connect.
    """
    if args.offline:
        return None, None
    from prescient.bus.transport import Publisher

    server = MapServer(bus_cfg, sim.map).start()  # raises StartupError if it cannot bind
    try:
        pub = Publisher(bus_cfg)
    except BusError as e:
        server.stop()
        raise StartupError(f"publisher: {e}") from e
    if not pub.wait_for_subscribers(["sensor."], args.wait_subscribers):
        log.warning(
            "no subscriber after %.1f s (is `prescient bus` running?); publishing anyway",
            args.wait_subscribers,
        )
    return pub, server


def _warm_up(cfg) -> None:
    """Compile every kernel (simulation and all four sensor kinds) on a throwaway copy first.

    On a cold numba cache that takes seconds, which would otherwise stall the real-time clock
    and then send a burst of late frames.
    """
    from prescient.sim_sensors.simulation import Simulation

    for _ in Simulation(cfg.model_copy(update={"n_agents": min(cfg.n_agents, 5)})).run(0.3):
        pass


def _loop(sim, pub, args: argparse.Namespace, stop: threading.Event, t_start: float, seen: tuple) -> None:
    """Step until ``--duration`` or ``stop``, publishing everything; paced unless ``--fast``.

    Args:
        t_start: ``time.monotonic()`` at sim time 0 (the pacing reference).
        seen: ``(per-topic Counter, newest sensor frame per topic)``, filled in.
    """
    counts, latest = seen
    n_steps = int(round(args.duration * 1e9 / sim.dt_ns))
    next_map_ns = 0
    for _ in range(n_steps):
        if stop.is_set():
            break
        if pub is not None and sim.time_ns >= next_map_ns:
            # Also on the bus (not only on request), so recorders put the map in every log.
            pub.publish(
                dataclasses.replace(
                    sim.map,
                    header=dataclasses.replace(sim.map.header, topic=TOPIC_MAP, stamp_ns=sim.time_ns),
                )
            )
            next_map_ns = sim.time_ns + MAP_REPUBLISH_NS
        for m in sim.step():
            counts[m.header.topic] += 1
            if m.header.topic.startswith("sensor."):
                latest[m.header.topic] = m
            if pub is not None:
                pub.publish(m, check=False)
        if not args.fast:
            lag = t_start + sim.time_ns / 1e9 - time.monotonic()
            if lag > 0:
                time.sleep(lag)


def _report(sim, cfg, wall: float, counts: Counter, server, bus_cfg) -> None:
    """Print the run summary: speed, per-topic counts and rates, map requests, counters."""
    sim_s = sim.time_ns / 1e9
    print(
        f"prescient sim: {sim.map_data.name} seed={cfg.seed}: {sim_s:.1f} sim s in {wall:.2f} wall s ({sim_s / max(wall, 1e-9):.1f}x real time)"
    )
    print(f"{'topic':<24}{'count':>8}{'rate_hz':>10}")
    for topic in sorted(counts):
        print(f"{topic:<24}{counts[topic]:>8}{counts[topic] / max(sim_s, 1e-9):>10.1f}")
    if server is not None:
        print(f"map requests served on {bus_cfg.map_endpoint} ({TOPIC_MAP}): {server.served}")
    print("counters: " + ", ".join(f"{k}={v}" for k, v in sim.counters.items()))


def run_sim(args: argparse.Namespace) -> int:
    """Handler of ``prescient sim``; returns the exit code."""
    sim, cfg = _build_sim(args)
    bus_cfg = bus_config_from_args(args)  # --curve-dir, else $PRESCIENT_CURVE_DIR / endpoints from env
    pub, server = _open_bus(args, sim, bus_cfg)
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    old = (
        {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        if threading.current_thread() is threading.main_thread()
        else {}
    )
    counts: Counter[str] = Counter()
    latest: dict[str, object] = {}
    log.info(
        "sim %s seed=%d agents=%d %s, %s for %.1f s",
        sim.map_data.name,
        cfg.seed,
        cfg.n_agents,
        "night" if cfg.night else "day",
        "fast" if args.fast else "realtime",
        args.duration,
    )
    if not args.fast:
        _warm_up(cfg)
    t_start = time.monotonic()
    try:
        _loop(sim, pub, args, stop, t_start, (counts, latest))
    finally:
        wall = time.monotonic() - t_start
        for s, h in old.items():
            signal.signal(s, h)
        if pub is not None:
            pub.close(linger_ms=0 if stop.is_set() else 1000)  # deliver the last frames of a normal end
        if server is not None:
            server.stop()
    _report(sim, cfg, wall, counts, server, bus_cfg)
    if args.snapshot:
        from prescient.sim_sensors.snapshot import draw_snapshot

        out = draw_snapshot(sim, latest, args.snapshot)
        print(f"snapshot written to {out}")
    return 0
