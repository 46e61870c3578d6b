"""``prescient serve | planner | up | replay | health | config show``: the service, the planner stub,
the whole stack, and the stack's one config file (:mod:`prescient.service.app.stack_config`).

``--model``: without it the shipped model is used, and when that is absent (an install without it)
the service runs on the documented constant-velocity fallback, flagged degraded. A model given
explicitly must exist: a typo is an error (exit 1), never a silent run on the fallback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from prescient.bus.cli import (
    ProgressBar,
    add_bus_args,
    bus_config_from_args,
    log_totals,
    non_negative_float,
    non_negative_int,
    output_dir,
    output_file,
    positive_float,
    positive_int,
    progress_bar,
    require_file,
)
from prescient.bus.errors import MissingExtraError, StartupError
from prescient.service.app.paths import default_model_path
from prescient.service.app.stack_config import add_tracker_args, tracker_config_from_args

if TYPE_CHECKING:
    from prescient.service.app.stack_config import ServiceSection, StackConfig
    from prescient.service.pipeline_types import TickResult

log = logging.getLogger(__name__)

DEFAULT_MODEL = default_model_path()


def model_from_args(args: argparse.Namespace) -> Path | None:
    """``--no-model``: None; ``--model M``: M, which must be a readable file (else a
    :class:`StartupError`); neither: the shipped model, whose absence is the documented fallback."""
    if args.no_model:
        return None
    if args.model is None:
        return DEFAULT_MODEL
    return require_file(args.model, "model")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--model",
        type=Path,
        default=None,
        help="ONNX model, its manifest next to it (default: the shipped model; "
        "if that is not installed, the constant-velocity fallback, flagged degraded)",
    )
    group.add_argument(
        "--no-model", action="store_true", help="run on the constant-velocity fallback only (degraded)"
    )


def _serve(args: argparse.Namespace) -> int:
    from prescient.service.node import ServiceOptions, run_service

    model = model_from_args(args)
    cfg = bus_config_from_args(args)
    opts = ServiceOptions(
        model=model,
        threads=args.threads,
        providers=("CPUExecutionProvider",) if args.cpu else ServiceOptions.providers,
        budget_ms=args.budget_ms,
        map_timeout_s=args.map_timeout_s,
        use_lidar=not args.no_lidar,
        tracks_input=args.tracks_input,
        max_input_rate_hz=args.max_input_rate_hz,
        model_passes=args.model_passes,
        agents_per_pass=args.agents_per_pass,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        tracker=tracker_config_from_args(args),
    )
    stop = threading.Event()
    _install_stop(stop, args.duration)
    return run_service(cfg, opts, stop)


def tcp_port(text: str) -> int:
    """A TCP port, 0-65535 (0: any free port)."""
    value = non_negative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a port 0-65535, got {text}")
    return value


def _add_metrics_args(p: argparse.ArgumentParser, default_host: str | None) -> None:
    p.add_argument(
        "--metrics-port",
        type=tcp_port,
        default=None,
        help="serve Prometheus metrics at http://HOST:PORT/metrics (0: any free port, logged; default: off)",
    )
    p.add_argument(
        "--metrics-host",
        default=default_host,
        help="address the metrics endpoint binds (default 127.0.0.1: loopback only)",
    )


def _install_stop(stop: threading.Event, duration_s: float | None) -> None:
    """SIGINT/SIGTERM (and an optional duration) set ``stop``; the loops poll it."""
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    if duration_s is not None:
        timer = threading.Timer(duration_s, stop.set)
        timer.daemon = True
        timer.start()


def _planner(args: argparse.Namespace) -> int:
    from prescient.service.planner_node import run_planner
    from prescient.service.stats import percentiles_ms

    cfg = bus_config_from_args(args)
    stop = threading.Event()
    _install_stop(stop, args.duration)
    stats = run_planner(cfg, stop, conditional_every=args.conditional_every)
    e2e, cond = percentiles_ms(stats.e2e_ns), percentiles_ms(stats.conditional_ns)
    summary = {
        "received": stats.received,
        "degraded": stats.degraded,
        "unknown_source": stats.unknown_source,
        "e2e_ms": e2e,  # processing latency (prescient.service.planner_node)
        "data_age_ms": percentiles_ms(stats.data_age_ns),
        "sensor_latency_ms": percentiles_ms(stats.sensor_ns),
        "conditional_ms": cond,
        "conditional_failures": stats.conditional_failures,
        "stale_not_acted_on": stats.stale,
        "no_prediction_alarms": stats.missing_alarms,
    }
    if args.stats_json:
        Path(args.stats_json).write_text(json.dumps(summary, indent=2))
    log.info(
        "planner: %d predictions (%d degraded); end-to-end p50 %.1f ms p99 %.1f ms max %.1f ms; conditional p50 %.1f ms (%d failed)",
        stats.received,
        stats.degraded,
        e2e["p50"],
        e2e["p99"],
        e2e["max"],
        cond["p50"],
        stats.conditional_failures,
    )
    return 0


FOXGLOVE_PORT = 8765  # Foxglove's default WebSocket port

# `up` and `config show` flags -> (section, key) of the stack config; None: the flag was not given.
_UP_FLAGS: dict[str, tuple[str, str]] = {
    "scenario": ("sim", "scenario"),
    "seed": ("sim", "seed"),
    "agents": ("sim", "agents"),
    "night": ("sim", "night"),
    "from_scenario": ("sim", "from_scenario"),
    "duration": ("stack", "duration_s"),
    "bus": ("stack", "bus"),
    "curve_dir": ("stack", "curve_dir"),
    "record": ("stack", "record"),
    "picture": ("stack", "picture"),
    "live": ("stack", "live"),
    "foxglove": ("stack", "foxglove_port"),
    "model": ("service", "model"),
    "metrics_port": ("service", "metrics_port"),
    "metrics_host": ("service", "metrics_host"),
}


def stack_config_from_args(args: argparse.Namespace) -> StackConfig:
    """Defaults < ``--config FILE`` < the flags actually given (argparse defaults are None).

    Raises:
        StartupError: the file is unreadable, or a key or value is bad (one line naming it).
    """
    from prescient.service.app.stack_config import build_config

    overrides = {
        key: getattr(args, dest) for dest, key in _UP_FLAGS.items() if getattr(args, dest) is not None
    }
    for key in (("stack", "curve_dir"), ("service", "model")):
        if key in overrides:  # relative to where the command runs
            overrides[key] = str(Path(overrides[key]).expanduser().absolute())
    if args.model is not None or args.no_model:  # (store_true: False when not given)
        overrides["service", "no_model"] = bool(args.no_model)  # either flag beats the file
    flags = {key: "--" + dest.replace("_", "-") for dest, key in _UP_FLAGS.items()}
    return build_config(args.config, overrides, flags)


def _model_from_config(svc: ServiceSection) -> Path | None:
    """Like :func:`model_from_args`, from the config's [service] section."""
    if svc.no_model:
        return None
    if svc.model is None:
        return DEFAULT_MODEL
    return require_file(svc.model, "model")


def _up(args: argparse.Namespace) -> int:
    from prescient.service.app.stack import StackOptions, run_stack
    from prescient.service.app.stack_config import to_toml

    cfg = stack_config_from_args(args)
    model = _model_from_config(cfg.service)  # before any process starts
    if cfg.stack.foxglove_port is not None:
        try:
            import foxglove  # noqa: F401
        except ModuleNotFoundError as e:
            raise MissingExtraError("foxglove-sdk", "foxglove") from e
    scenario, agents = cfg.sim.scenario, cfg.sim.agents
    if cfg.sim.from_scenario:
        from prescient.sim_sensors.scenario_file import ScenarioFileError, load_scene

        try:  # fail here, with one line, rather than in a supervised child
            scene = load_scene(cfg.sim.from_scenario)
        except ScenarioFileError as e:
            raise StartupError(f"--from-scenario: {e}") from e
        scenario, agents = scene.map_name, scene.n_agents
    opts = StackOptions(
        scenario=scenario,
        seed=cfg.sim.seed,
        agents=agents,
        from_scenario=cfg.sim.from_scenario,
        duration_s=cfg.stack.duration_s,
        night=cfg.sim.night,
        model=model,
        model_is_default=model is not None and cfg.service.model is None,
        out_dir=args.out if args.out else Path("runs") / time.strftime("%Y%m%d-%H%M%S"),
        bus=cfg.stack.bus,
        record=cfg.stack.record,
        picture=cfg.stack.picture,
        live=cfg.stack.live,
        curve_dir=cfg.stack.curve_dir,
        foxglove_port=cfg.stack.foxglove_port,
        serve_args=tuple(cfg.service.serve_args() + cfg.tracker.serve_args()),
        planner_args=tuple(cfg.planner.planner_args()),
        config_toml=to_toml(cfg),
    )
    res = run_stack(opts)
    signum = getattr(res, "interrupted", None)  # the signal that ended the run early, if any
    if signum is not None:
        print(
            f"prescient up: interrupted by {signal.Signals(signum).name}; the run directory "
            f"{opts.out_dir} is complete ({res.monitor.predictions} predictions, summary.json)",
            file=sys.stderr,
        )
        return 128 + signum  # 130 for Ctrl-C
    if not res.ok:
        why = "no predictions arrived" if res.summary["completed"] else "the stack did not complete normally"
        raise StartupError(f"{why}; see the per-process logs in {opts.out_dir}")
    return 0


def _config_show(args: argparse.Namespace) -> int:
    """Print the effective stack config (TOML) that `up` with the same arguments would run."""
    from prescient.service.app.stack_config import to_toml

    print(to_toml(stack_config_from_args(args)), end="")
    return 0


def _log_seconds(bar: ProgressBar) -> Callable[[TickResult], None]:
    """An ``on_tick`` for ``replay_log``: seconds of log replayed since the first tick, onto ``bar``."""
    first_ns: list[int] = []

    def on_tick(res: TickResult) -> None:
        stamp_ns = res.predictions.header.stamp_ns
        if not first_ns:
            first_ns.append(stamp_ns)
        bar.update((stamp_ns - first_ns[0]) / 1e9)

    return on_tick


def _replay(args: argparse.Namespace) -> int:
    from prescient.service.offline import replay_log

    log_path = require_file(args.log, "log")
    if args.start is not None and args.end is not None and args.end <= args.start:
        raise StartupError(f"--end {args.end:g} must be after --start {args.start:g}")
    totals = log_totals(log_path)
    span_s = None if totals is None else totals[1]
    if span_s is not None and args.start and args.start > span_s:
        raise StartupError(f"--start {args.start:g} s is past the end of the log ({span_s:.2f} s)")
    model = model_from_args(args)
    if span_s is not None:
        span_s = min(span_s, args.end or span_s) - (args.start or 0.0)
    with progress_bar(f"replay {log_path.name}", span_s, "s of log") as bar:
        summary = replay_log(
            log_path,
            model,
            args.out,
            start_s=args.start,
            end_s=args.end,
            overwrite=args.force,
            on_tick=_log_seconds(bar),
        )
    print(json.dumps(summary, indent=2))
    if summary["exit_code"] == 0 and summary["ticks"] == 0:
        window = "" if args.start is None and args.end is None else " in the --start/--end window"
        raise StartupError(
            f"no prediction tick ran on {log_path}{window}: a tick needs an ego state and tracks or sensor frames"
        )
    return summary["exit_code"]  # 3: the log is damaged or unfinished (every readable tick was run)


def _health(args: argparse.Namespace) -> int:
    from prescient.bus import messages as m
    from prescient.bus.transport import Subscriber

    cfg = bus_config_from_args(args)
    prefix = m.health_topic(args.node) if args.node else m.TOPIC_HEALTH_PREFIX
    sub = Subscriber(cfg, [prefix])
    deadline = time.monotonic() + args.timeout_s
    try:
        while time.monotonic() < deadline:
            msg = sub.recv(timeout_ms=100)
            if msg is not None:
                print(
                    json.dumps(
                        {
                            "node": msg.node,
                            "provider": msg.provider,
                            "degraded": msg.degraded,
                            "reason": msg.reason,
                            "ticks": msg.ticks,
                            "deadline_misses": msg.deadline_misses,
                            "state": msg.state,
                            "live": msg.live,
                        }
                    )
                )
                return 0
    finally:
        sub.close()
    raise StartupError(f"no health message on {prefix!r} within {args.timeout_s:g} s")


def _add_up_args(p: argparse.ArgumentParser, scenarios: tuple[str, ...], with_out: bool) -> None:
    """The flags of `up` (and `config show`). Every default is None: a flag overrides the config
    file only when given (defaults live in :mod:`prescient.service.app.stack_config`)."""
    on_off = argparse.BooleanOptionalAction
    p.add_argument("--config", type=Path, default=None, help="stack config file (TOML; see config show)")
    p.add_argument("--scenario", default=None, choices=scenarios, help="default intersection")
    p.add_argument("--seed", type=non_negative_int, default=None, help="default 0")
    p.add_argument("--agents", type=non_negative_int, default=None, help="default 40")
    p.add_argument(
        "--duration", type=positive_float, default=None, help="simulated seconds (real time), default 40"
    )
    p.add_argument("--night", action=on_off, default=None)
    _add_model_args(p)
    if with_out:
        p.add_argument(
            "--out",
            type=output_dir,
            default=None,
            help="run directory (log, picture, summary, config.toml); default runs/<time>",
        )
    p.add_argument(
        "--bus",
        default=None,
        help="bus base endpoint for this stack (sets $PRESCIENT_BUS), e.g. ipc:///tmp/prescient",
    )
    p.add_argument("--record", action=on_off, default=None, help="record the bus to log.mcap (default on)")
    p.add_argument("--picture", action=on_off, default=None, help="draw summary.png (default on)")
    p.add_argument("--live", action=on_off, default=None, help="live table (default on; off: logs only)")
    p.add_argument(
        "--foxglove", type=tcp_port, nargs="?", const=FOXGLOVE_PORT, default=None, metavar="PORT",
        help=f"also serve the live scene to the Foxglove app on PORT (default {FOXGLOVE_PORT}; loopback)",
    )  # fmt: skip
    p.add_argument(
        "--curve-dir",
        type=Path,
        default=None,
        help="a `prescient bus keys` directory: CurveZMQ on every socket of every child",
    )
    p.add_argument(
        "--from-scenario",
        metavar="FILE[#INDEX]",
        default=None,
        help="start the simulator from a generated scene (prescient scenarios generate); "
        "the scene's map and agents replace --scenario and --agents",
    )
    _add_metrics_args(p, default_host=None)  # the service child serves them


def register(sub: argparse._SubParsersAction) -> None:
    from prescient.sim_sensors.maps import SCENARIOS

    p = sub.add_parser("serve", help="run the prediction service (tracker -> raster -> ONNX -> predictions)")
    add_bus_args(p)
    _add_model_args(p)
    p.add_argument(
        "--threads",
        type=positive_int,
        default=int(os.environ.get("PRESCIENT_ORT_THREADS", "2")),
        help="onnxruntime intra-op threads",
    )
    p.add_argument("--cpu", action="store_true", help="do not try the CUDA provider")
    p.add_argument("--budget-ms", type=positive_float, default=100.0)
    p.add_argument("--map-timeout-s", type=positive_float, default=30.0)
    p.add_argument("--no-lidar", action="store_true", help="do not splat LiDAR points into the raster")
    p.add_argument(
        "--tracks-input",
        action="store_true",
        help="take perception.tracks from the bus (replayed imported logs) instead of sensor frames",
    )
    p.add_argument(
        "--max-input-rate-hz",
        type=non_negative_float,
        default=200.0,
        help="per-topic admission rate checked before decoding; excess counted as rate_limited (0: off)",
    )
    p.add_argument(
        "--model-passes",
        type=positive_int,
        default=1,
        help="model passes per tick: pass k predicts the next agents nearest the ego (1: the rest get constant velocity)",
    )
    p.add_argument(
        "--agents-per-pass",
        type=positive_int,
        default=None,
        help="agents one model pass takes, for a model with a symbolic agent axis "
        "(default: SYMBOLIC_AGENTS_PER_PASS; a fixed axis keeps its slots)",
    )
    _add_metrics_args(p, default_host="127.0.0.1")
    add_tracker_args(p)
    p.add_argument(
        "--duration", type=positive_float, default=None, help="seconds to run (default: until Ctrl-C)"
    )
    p.set_defaults(func=_serve)

    p = sub.add_parser("planner", help="run the planner stub (latency, plan checks, conditional requests)")
    add_bus_args(p)
    p.add_argument(
        "--conditional-every",
        type=non_negative_int,
        default=10,
        help="ask for conditional predictions every N predictions (0: never)",
    )
    p.add_argument(
        "--duration", type=positive_float, default=None, help="seconds to run (default: until Ctrl-C)"
    )
    p.add_argument(
        "--stats-json", type=output_file, default=None, help="write latency statistics here on exit"
    )
    p.set_defaults(func=_planner)

    p = sub.add_parser(
        "up", help="start the whole stack (bus, simulator, service, planner, recorder) with a live table"
    )
    _add_up_args(p, SCENARIOS, with_out=True)
    p.set_defaults(func=_up)

    p = sub.add_parser("config", help="the stack's config file (prescient up --config)")
    config_sub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    p = config_sub.add_parser(
        "show",
        help="print the effective config (TOML) of `prescient up` with these arguments",
        description="Defaults < --config FILE < the flags given. The output is a valid --config file.",
    )
    _add_up_args(p, SCENARIOS, with_out=False)
    p.set_defaults(func=_config_show)

    p = sub.add_parser(
        "replay",
        help="run the service offline on a recorded or imported log (deterministic)",
        description="Exit codes: 0 done; 1 the replay cannot run (one line: log or --model not found, "
        "no tick in the log or window); 2 a bad argument; 3 the log is damaged or unfinished: "
        "every readable message was replayed and every skipped byte range is listed in the summary. "
        "On a terminal, a progress bar (seconds of log) runs on stderr.",
    )
    p.add_argument("log", type=Path)
    _add_model_args(p)
    p.add_argument("--out", type=output_file, default=None, help="write tracks and predictions to this MCAP")
    p.add_argument("--force", action="store_true", help="replace --out if it exists (never the input log)")
    p.add_argument("--start", type=non_negative_float, default=None, help="seconds from the log start")
    p.add_argument("--end", type=positive_float, default=None, help="seconds from the log start")
    p.set_defaults(func=_replay)

    p = sub.add_parser("health", help="exit 0 when a node's health message arrives (container health check)")
    add_bus_args(p)
    p.add_argument("--node", default=None)
    p.add_argument("--timeout-s", type=positive_float, default=5.0)
    p.set_defaults(func=_health)
