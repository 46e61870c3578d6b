"""``prescient record``, ``prescient log info|replay|export-ros2`` and ``prescient import ...``.

``prescient log export-foxglove`` joins the group from :mod:`prescient.service.app.foxglove.cli`.

Exit status of the log commands: 0 the log read cleanly; 1 the command could not start (log
missing, empty or not MCAP; output exists); 3 (:data:`~prescient.bus.logreader.EXIT_DAMAGED`) the log is
damaged or unfinished: every readable message was still processed, and every problem and skipped
byte range is printed. A malformed log never ends in a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prescient.bus.cli import (
    add_bus_args,
    bus_config_from_args,
    log_totals,
    non_negative_float,
    non_negative_int,
    output_file,
    positive_float,
    progress_bar,
    require_file,
)
from prescient.bus.errors import StartupError, TransportError
from prescient.bus.logfile import LogError, refuse_existing
from prescient.bus.logreader import EXIT_DAMAGED, ReadStats
from prescient.bus.logsummary import summarize_log
from prescient.bus.ros2.cli import add_export_ros2_parser, add_import_arguments

log = logging.getLogger(__name__)


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT/SIGTERM while inside the block (handlers restored after)."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def _handler(signum: int, _frame: Any) -> None:
        log.info("%s received: finishing", signal.Signals(signum).name)
        stop.set()

    for s in previous:
        signal.signal(s, _handler)
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


# ----------------------------------------------------------------------------------------------
# record
# ----------------------------------------------------------------------------------------------
def add_record_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out",
        required=True,
        type=output_file,
        help="output MCAP log; if it holds data (a restart), the next part NAME.1.EXT, NAME.2.EXT, "
        "... is written and the file is left untouched",
    )
    p.add_argument(
        "--duration", type=positive_float, default=None, help="seconds to record (default: until Ctrl-C)"
    )
    p.add_argument(
        "--topics", nargs="+", default=[""], metavar="PREFIX", help="topic prefixes (default: all)"
    )
    p.add_argument("--compression", choices=("zstd", "lz4", "none"), default="zstd")
    p.add_argument(
        "--chunk-interval",
        type=positive_float,
        default=1.0,
        help="max seconds a message waits before its chunk is written",
    )
    add_bus_args(p)


def cmd_record(args: argparse.Namespace) -> int:
    from prescient.bus.recorder import Recorder, summary_lines

    cfg = bus_config_from_args(args)
    try:
        rec = Recorder(
            cfg,
            args.out,
            prefixes=args.topics,
            compression=args.compression,
            chunk_interval_s=args.chunk_interval,
        )
    except (TransportError, LogError, OSError) as e:
        raise StartupError(f"cannot start recorder: {e}") from e
    log.info("recording %s from %s to %s", args.topics, cfg.sub_endpoint, rec.out)
    with _stop_on_signals() as stop:
        summary = rec.run(duration_s=args.duration, stop=stop)
    for line in summary_lines(summary):
        print(line)
    return 0


# ----------------------------------------------------------------------------------------------
# log info / replay / export-foxglove
# ----------------------------------------------------------------------------------------------
def _open_error(e: LogError) -> StartupError:
    return StartupError(str(e))


def cmd_info(args: argparse.Namespace) -> int:
    from prescient.bus.recorder import log_parts

    require_file(args.log, "log")
    try:
        s = summarize_log(args.log)
    except LogError as e:
        raise _open_error(e) from e
    later_parts = [str(p) for p in log_parts(args.log)[1:]]  # a recorder restarted on this --out
    if args.json:
        out = {
            "path": s.path,
            "messages": s.count,
            "duration_s": s.duration_s,
            "start_ns": s.start_ns,
            "end_ns": s.end_ns,
            "gaps": s.gaps,
            "complete": s.stats.complete,
            "problems": s.stats.problems,
            "skipped_ranges": [{"start": a, "end": b, "reason": r} for a, b, r in s.stats.skipped_ranges],
            "skipped": s.stats.skipped,
            "metadata": s.stats.metadata,
            "later_parts": later_parts,
            "topics": {
                t.topic: {
                    "type": t.type_name,
                    "count": t.count,
                    "bytes": t.bytes,
                    "rate_hz": t.rate_hz,
                    "gaps": t.gaps,
                    "restarts": t.restarts,
                }
                for t in s.topics.values()
            },
        }
        print(json.dumps(out, indent=2))
    else:
        print(
            f"{s.path}: {s.count} messages, {len(s.topics)} topics, {s.duration_s:.2f} s, "
            f"seq gaps {s.gaps}, {'finished' if s.stats.complete else 'NOT FINISHED'}"
        )
        print(f"  {'topic':32s} {'type':16s} {'count':>8s} {'rate Hz':>8s} {'MB':>8s} {'gaps':>6s}")
        for t in s.topics.values():
            print(
                f"  {t.topic:32s} {t.type_name or '?':16s} {t.count:8d} {t.rate_hz:8.2f} "
                f"{t.bytes / 1e6:8.2f} {t.gaps:6d}" + (f"  restarts {t.restarts}" if t.restarts else "")
            )
        rec_meta = s.stats.metadata.get("prescient.recorder")
        if rec_meta:
            print(f"  recorder reported: gaps {rec_meta.get('gaps')}, rejected {rec_meta.get('rejected')}")
        for k, n in s.stats.skipped.items():
            print(f"  skipped {n}: {k}")
        if later_parts:
            print(f"  the recording continues in {len(later_parts)} more part(s): {', '.join(later_parts)}")
        _print_damage(s.stats)
    return _exit_status(s.stats)


def _print_damage(stats: ReadStats) -> None:
    for line in stats.damage_lines():
        print(f"  {line}")


def _exit_status(stats: ReadStats) -> int:
    return EXIT_DAMAGED if stats.problems else 0


def _selection(args: argparse.Namespace) -> tuple[int | None, int | None]:
    """The ``--start``/``--end`` window in log time (ns), checked with ``--topics`` against the log:
    a selection that holds nothing is an error, not an empty success."""
    if args.start is not None and args.end is not None and args.end <= args.start:
        raise StartupError(f"--end {args.end:g} must be after --start {args.start:g}")
    if args.start is None and args.end is None and args.topics is None:
        return None, None
    try:
        s = summarize_log(args.log)
    except LogError as e:
        raise _open_error(e) from e
    if args.topics is not None and not any(t.startswith(tuple(args.topics)) for t in s.topics):
        raise StartupError(
            f"no topic of {args.log} starts with {' or '.join(map(repr, args.topics))} "
            f"(it has {', '.join(s.topics) or 'none'})"
        )
    if args.start and args.start > s.duration_s:
        raise StartupError(f"--start {args.start:g} s is past the end of the log ({s.duration_s:.2f} s)")
    start = None if args.start is None else s.start_ns + int(args.start * 1e9)
    end = None if args.end is None else s.start_ns + int(args.end * 1e9)
    return start, end


def _replay_total(args: argparse.Namespace) -> int | None:
    """How many messages the replay will read (a progress bar's total); None if unknown."""
    totals = log_totals(args.log) if args.start is None and args.end is None else None
    if totals is None:
        return None
    prefixes = tuple(args.topics) if args.topics is not None else ("",)
    return sum(n for t, n in totals[0].items() if t.startswith(prefixes))


def _replay_offline(args: argparse.Namespace, start_ns: int | None, end_ns: int | None) -> int:
    from prescient.bus.replayer import iter_messages

    stats = ReadStats()
    counts: dict[str, int] = {}
    try:
        with progress_bar(f"decode {args.log.name}", _replay_total(args), "messages") as bar:
            for lm in iter_messages(args.log, args.topics, start_ns, end_ns, stats=stats):
                counts[lm.topic] = counts.get(lm.topic, 0) + 1
                bar.advance()
    except LogError as e:
        raise _open_error(e) from e
    print(f"offline replay: {sum(counts.values())} messages decoded, {stats.total_skipped} skipped")
    for t, n in sorted(counts.items()):
        print(f"  {t:32s} {n:8d}")
    for k, n in stats.skipped.items():
        print(f"  skipped {n}: {k}")
    _print_damage(stats)
    return _exit_status(stats)


def cmd_replay(args: argparse.Namespace) -> int:
    from prescient.bus.map_server import MapServer
    from prescient.bus.maps import empty_map
    from prescient.bus.messages import TOPIC_MAP
    from prescient.bus.replayer import BusReplayer, iter_messages

    require_file(args.log, "log")
    start_ns, end_ns = _selection(args)
    if args.offline:
        return _replay_offline(args, start_ns, end_ns)
    rate = 0.0 if args.max_speed else args.rate
    cfg = bus_config_from_args(args)
    try:
        rp = BusReplayer(cfg, args.log, rate=rate, topics=args.topics, start_ns=start_ns, end_ns=end_ns)
    except TransportError as e:
        raise StartupError(str(e)) from e
    try:
        vmap = next((lm.msg for lm in iter_messages(args.log, [TOPIC_MAP])), None)
    except LogError as e:
        rp.close()
        raise _open_error(e) from e
    lead = []
    if vmap is None:  # ETH/UCY and other map-less logs: serve and announce an empty map
        print(f"{args.log} holds no map: serving an empty one (the raster's map channels stay empty)")
        vmap = empty_map()
        lead.append(vmap)
    server = MapServer(cfg, vmap).start()  # the service asks for it
    try:
        with _stop_on_signals() as stop, progress_bar(f"replay {args.log.name}", _replay_total(args)) as bar:
            done = threading.Event()
            bar.follow(lambda: rp.stats.sent + rp.stats.dropped, done)
            try:
                st = rp.run(stop=stop, wait_topics=args.wait_for, wait_s=args.wait_s, lead=lead)
            finally:
                done.set()
    except LogError as e:
        raise _open_error(e) from e
    finally:
        rp.close()
        server.stop()
    late = sorted(st.late_ns)
    p99 = late[int(0.99 * (len(late) - 1))] / 1e6 if late else 0.0
    print(
        f"replayed {st.sent} messages in {st.wall_s:.2f} s (rate {rate or 'max'}), dropped {st.dropped}, "
        f"p99 lateness {p99:.2f} ms" + (" (interrupted)" if st.interrupted else "")
    )
    _print_damage(st.read)
    return _exit_status(st.read)


# ----------------------------------------------------------------------------------------------
# import
# ----------------------------------------------------------------------------------------------
def _import_lanelet2(args: argparse.Namespace) -> int:
    """``prescient import lanelet2 MAP.osm --origin LAT LON --out MAP.json``: a map file, not a log."""
    from prescient.bus.importers import InputError
    from prescient.bus.importers.lanelet2_map import load_lanelet2_map
    from prescient.bus.importers.map_file import write_map_json

    if args.origin is None:
        raise StartupError(
            "import lanelet2: --origin LAT LON is required (the map's local frame origin, deg)"
        )
    try:
        refuse_existing(args.out, overwrite=args.force)
        imp = load_lanelet2_map(args.src, *args.origin)
        extras = {
            "origin_lat_lon_deg": list(args.origin),
            "light_xy_m": imp.light_xy_m.tolist(),
            "light_group": imp.light_group.tolist(),
        }
        write_map_json(args.out, imp.vector_map, extras, overwrite=args.force)
    except (InputError, LogError, FileExistsError) as e:
        raise StartupError(str(e)) from e
    v = imp.vector_map
    skipped = f", skipped lanelets {imp.skipped}" if imp.skipped else ""
    print(
        f"imported {args.src} -> {args.out}: {len(v.lane_id)} lanes, {len(v.crossing_offsets) - 1} crossings, "
        f"{len(v.stop_line_lane_id)} stop lines, {len(imp.light_xy_m)} traffic lights in "
        f"{len(v.group_plan_s)} signal groups{skipped}"
    )
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from prescient.bus.importers import InputError

    if args.kind == "lanelet2":
        return _import_lanelet2(args)
    kwargs: dict[str, Any] = {}
    if args.kind == "eth-ucy":
        from prescient.bus.importers.eth_ucy import import_eth_ucy as fn
    elif args.kind == "av2-sensor":
        from prescient.bus.importers.av2_sensor import import_av2_sensor as fn
    elif args.kind == "lyft":
        from prescient.bus.importers.lyft import import_lyft as fn

        kwargs["scene"] = args.scene
    elif args.kind == "ros2":
        from prescient.bus.ros2.cli import import_kwargs

        kwargs.update(import_kwargs(args))
        from prescient.bus.ros2.importer import import_ros2 as fn
    else:
        from prescient.bus.importers.av2_motion import import_av2_motion as fn
    try:
        refuse_existing(args.out, overwrite=args.force)  # before the (long) conversion
        with progress_bar(f"import {args.kind} {args.src.name}"):
            report = fn(args.src, args.out, overwrite=args.force, **kwargs)
    except (InputError, LogError, FileNotFoundError) as e:
        raise StartupError(str(e)) from e
    print(f"imported {args.src} -> {args.out}: " + ", ".join(f"{t} {n}" for t, n in sorted(report.items())))
    return 0


EXIT_HELP = (
    "exit status: 0 the log read cleanly; 1 the command could not start (log missing or not MCAP, "
    f"output exists); {EXIT_DAMAGED} the log is damaged or unfinished: every readable message was "
    "still processed, and each problem and skipped byte range is printed"
)
_INFO_DESC = "Topics, counts, rates, duration and seq gaps of a log, and every damage found in it."


# The ``prescient log`` subcommand group of each top-level parser, so that a command implemented
# outside ``bus`` (``log export-foxglove`` draws the scene with service code) joins the group.
_LOG_GROUPS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def add_log_command(subparsers: Any, name: str, **kwargs: Any) -> argparse.ArgumentParser:
    """Add ``prescient log NAME`` to the ``log`` group that :func:`register` added to ``subparsers``.

    Raises:
        KeyError: :func:`register` has not run on ``subparsers``.
    """
    parser: argparse.ArgumentParser = _LOG_GROUPS[subparsers].add_parser(name, epilog=EXIT_HELP, **kwargs)
    return parser


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("record", help="record every bus topic to an MCAP log")
    add_record_arguments(p)
    p.set_defaults(func=cmd_record)

    lg = subparsers.add_parser("log", help="inspect, replay and export recorded logs")
    lsub = lg.add_subparsers(dest="log_command", metavar="LOG_COMMAND", required=True)
    p = lsub.add_parser(
        "info",
        help="topics, counts, rates, duration, gaps, damage",
        epilog=EXIT_HELP,
        description=_INFO_DESC,
    )
    p.add_argument("log", type=Path)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_info)

    p = lsub.add_parser(
        "replay", help="publish a log through the bus with its original timing", epilog=EXIT_HELP
    )
    p.add_argument("log", type=Path)
    p.add_argument(
        "--rate",
        type=positive_float,
        default=1.0,
        help="time scale: 0.5 half speed, 4 four times faster (no pacing: --max-speed)",
    )
    p.add_argument("--max-speed", action="store_true", help="no pacing: send as fast as possible")
    p.add_argument("--topics", nargs="+", default=None, metavar="PREFIX", help="topic prefixes to replay")
    p.add_argument("--start", type=non_negative_float, default=None, help="seconds from the log start")
    p.add_argument("--end", type=positive_float, default=None, help="seconds from the log start")
    p.add_argument(
        "--wait-for",
        nargs="+",
        default=None,
        metavar="TOPIC",
        help="start once one of these topics has a subscriber (default: any topic of the log but the map)",
    )
    p.add_argument(
        "--wait-s", type=non_negative_float, default=10.0, help="max seconds to wait for subscribers"
    )
    p.add_argument(
        "--offline",
        action="store_true",
        help="no bus: decode in-process, deterministic, as fast as possible; print counts",
    )
    add_bus_args(p)
    p.set_defaults(func=cmd_replay)

    add_export_ros2_parser(lsub, EXIT_HELP)
    _LOG_GROUPS[subparsers] = lsub

    imp = subparsers.add_parser("import", help="convert a public data set to a prescient log")
    imp.add_argument("kind", choices=("eth-ucy", "av2-sensor", "av2-motion", "lyft", "lanelet2", "ros2"))
    imp.add_argument(
        "src",
        type=Path,
        help="eth-ucy: .txt file; av2-sensor: log dir; av2-motion: scenario dir; lyft: l5kit .zarr dir; "
        "lanelet2: Lanelet2 .osm map; ros2: rosbag2 dir (Autoware objects + odometry)",
    )
    imp.add_argument(
        "--out",
        required=True,
        type=output_file,
        help="output MCAP log (lanelet2: map .json for `prescient sim --map`); must not exist, unless --force",
    )
    imp.add_argument(
        "--origin",
        nargs=2,
        type=float,
        metavar=("LAT", "LON"),
        help="lanelet2: WGS84 origin of the local frame (deg); x east, y north in metres from it",
    )
    imp.add_argument("--force", action="store_true", help="replace --out if it exists")
    imp.add_argument(
        "--scene", type=non_negative_int, default=0, help="lyft: scene index in the zarr (default 0)"
    )
    add_import_arguments(imp)
    imp.set_defaults(func=cmd_import)
