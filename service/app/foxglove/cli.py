"""``prescient view LOG`` (a Foxglove WebSocket server playing a log), ``prescient export-scene``
and ``prescient log export-foxglove`` (the scene plus every logged message as JSON)."""

from __future__ import annotations

import argparse
import logging
import threading
from pathlib import Path
from typing import Any

from prescient.bus.cli import add_bus_args, log_totals, output_file, progress_bar, require_file
from prescient.bus.errors import MissingExtraError, StartupError
from prescient.bus.log_cli import add_log_command
from prescient.bus.logfile import LogError
from prescient.bus.logreader import EXIT_DAMAGED, ReadStats

log = logging.getLogger(__name__)
DEFAULT_PORT = 8765  # Foxglove's default WebSocket port


def _need_foxglove() -> None:
    try:
        import foxglove  # noqa: F401
    except ModuleNotFoundError as e:
        raise MissingExtraError("foxglove-sdk", "foxglove") from e


def _export(args: argparse.Namespace, raw_messages: bool) -> tuple[int, ReadStats]:
    """Run the export with a progress bar; prints the summary; returns (exit status, stats)."""
    _need_foxglove()
    from prescient.service.app.foxglove.export import export_scene, summary_line

    require_file(args.log, "log")
    stats = ReadStats()
    totals = log_totals(args.log)
    try:
        with progress_bar(f"export {args.log.name}", sum(totals[0].values()) if totals else None) as bar:
            counts = export_scene(
                args.log,
                args.out,
                stats,
                overwrite=args.force,
                on_message=bar.advance,
                raw_messages=raw_messages,
            )
    except LogError as e:
        raise StartupError(str(e)) from e
    print(summary_line(counts, args.out))
    for k, n in stats.skipped.items():
        print(f"  skipped {n}: {k}")
    for line in stats.damage_lines():
        print(f"  {line}")
    return (EXIT_DAMAGED if stats.problems else 0), stats


def cmd_export_foxglove(args: argparse.Namespace) -> int:
    return _export(args, raw_messages=True)[0]


def cmd_export_scene(args: argparse.Namespace) -> int:
    status, _ = _export(args, raw_messages=False)
    if args.picture is not None:
        from prescient.service.app.foxglove.picture import render_layout

        try:
            print(f"picture: {render_layout(args.out, args.at, args.picture)}")
        except ValueError as e:
            raise StartupError(str(e)) from e
    return status


def _stop_on_signals(stop: threading.Event) -> None:
    """SIGINT/SIGTERM (the launcher stopping its children) end the live view normally."""
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())


def cmd_view(args: argparse.Namespace) -> int:
    _need_foxglove()
    from prescient.service.app.foxglove import server

    if (args.log is None) == (not args.live):
        raise StartupError("view: give a LOG to play or --live for the running stack's bus (one of them)")
    if args.log is not None:
        require_file(args.log, "log")
    srv, channels = server.start(args.port, args.host)
    print(f"Foxglove: open ws://{args.host}:{srv.port} (Open connection -> Foxglove WebSocket); Ctrl-C stops")
    stop = threading.Event()
    writer = None
    if args.record is not None:  # the same context: the file gets exactly what the server streams
        import foxglove

        writer = foxglove.open_mcap(args.record, allow_overwrite=args.force, context=channels.context)
    try:
        if args.live:
            from prescient.bus.cli import bus_config_from_args

            _stop_on_signals(stop)
            sent = server.serve_bus(bus_config_from_args(args), channels, stop)
        else:
            sent = server.play_log(args.log, channels, rate=args.rate, loop=args.loop, stop=stop)
    except LogError as e:
        raise StartupError(str(e)) from e
    finally:
        srv.stop()
        if writer is not None:
            writer.close()
    print(f"sent {sent} foxglove messages" + (f", recorded in {args.record}" if writer is not None else ""))
    return 0


def cmd_picture(args: argparse.Namespace) -> int:
    _need_foxglove()
    from prescient.service.app.foxglove.picture import render_layout

    require_file(args.mcap, "Foxglove MCAP")
    try:
        print(f"picture: {render_layout(args.mcap, args.at, args.out)}")
    except ValueError as e:
        raise StartupError(str(e)) from e
    return 0


def register(sub: Any) -> None:
    """Add ``prescient view`` and ``prescient export-scene``."""
    p = sub.add_parser("view", help="serve a log's (or the live bus's) scene to the Foxglove app (WebSocket)")
    p.add_argument("log", type=Path, nargs="?", default=None, help="the log to play (or --live)")
    p.add_argument("--live", action="store_true", help="the running stack's bus instead of a log")
    add_bus_args(p)
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"WebSocket port (default {DEFAULT_PORT}; 0: any)"
    )
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    p.add_argument(
        "--rate", type=float, default=1.0, help="playback speed x real time (0: as fast as possible)"
    )
    p.add_argument("--loop", action="store_true", help="start again at the end (Ctrl-C stops)")
    p.add_argument(
        "--record", type=output_file, default=None, help="also write what is streamed to this MCAP"
    )
    p.add_argument("--force", action="store_true", help="replace the --record file if it exists")
    p.set_defaults(func=cmd_view)
    p = sub.add_parser(
        "foxglove-picture",
        help="draw the shipped layout's panels (scene, raster, latency, tick rate) from a Foxglove MCAP",
    )
    p.add_argument(
        "mcap", type=Path, help="export-scene / log export-foxglove output, or a view --record file"
    )
    p.add_argument("--at", type=float, default=5.0, help="seconds into the stream")
    p.add_argument("--out", type=output_file, required=True, help="PNG to write")
    p.set_defaults(func=cmd_picture)
    p = sub.add_parser("export-scene", help="write a log's scene as foxglove.* MCAP (SceneUpdate on /scene)")
    p.add_argument("log", type=Path)
    p.add_argument("out", type=output_file)
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.add_argument(
        "--picture", type=output_file, default=None, help="also draw the exported scene to this PNG"
    )
    p.add_argument("--at", type=float, default=5.0, help="seconds into the scene for --picture")
    p.set_defaults(func=cmd_export_scene)
    p = add_log_command(
        sub,
        "export-foxglove",
        help="write a log for the Foxglove app: the scene (foxglove.*) and every message as JSON",
        description="The export-scene topics plus each logged message as JSON on /prescient/<topic>, "
        "with wall-clock log times; written under a temporary name and renamed when complete.",
    )
    p.add_argument("log", type=Path)
    p.add_argument("out", type=output_file)
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=cmd_export_foxglove)
