"""``prescient log export-ros2 LOG OUTDIR`` and the ``ros2`` kind of ``prescient import``.

Registered by :mod:`prescient.bus.log_cli`. rosbags (the ``ros`` extra) is imported only when a
command runs, so the CLI starts without it and says how to install it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from prescient.bus.cli import log_totals, output_dir, progress_bar, require_file
from prescient.bus.errors import StartupError
from prescient.bus.logfile import LogError
from prescient.bus.logreader import EXIT_DAMAGED, ReadStats
from prescient.bus.ros2 import types as rt


def require_rosbags() -> None:
    """A :class:`StartupError` with the install line if rosbags is missing."""
    try:
        import rosbags.rosbag2  # noqa: F401
    except ImportError as e:
        raise StartupError(f"ROS 2 bags need rosbags: pip install 'prescient[ros]' ({e})") from e


def add_export_ros2_parser(lsub: Any, epilog: str) -> None:
    """``log export-ros2``: arguments and handler."""
    p = lsub.add_parser(
        "export-ros2",
        help="write a ROS 2 bag (Autoware PredictedObjects/TrackedObjects, odometry, TF, markers)",
        epilog=epilog,
    )
    p.add_argument("log", type=Path)
    p.add_argument("outdir", type=output_dir, help="rosbag2 directory to create (metadata.yaml + .mcap)")
    p.add_argument("--force", action="store_true", help="replace OUTDIR if it exists")
    p.add_argument(
        "--distro", choices=rt.DISTROS, default="humble", help="ROS 2 message definitions (default humble)"
    )
    p.set_defaults(func=cmd_export_ros2)


def cmd_export_ros2(args: argparse.Namespace) -> int:
    from prescient.bus.ros2.export import export_ros2

    require_rosbags()
    require_file(args.log, "log")
    if args.outdir.exists() and not args.force:
        raise StartupError(f"{args.outdir} exists; refusing to overwrite it (--force replaces it)")
    totals = log_totals(args.log)
    stats = ReadStats()
    try:
        with progress_bar(f"export {args.log.name}", sum(totals[0].values()) if totals else None) as bar:
            report = export_ros2(
                args.log,
                args.outdir,
                overwrite=args.force,
                distro=args.distro,
                stats=stats,
                on_message=bar.advance,
            )
    except LogError as e:
        raise StartupError(str(e)) from e
    print(
        f"wrote {sum(report.counts.values())} messages on {len(report.counts)} topics to {args.outdir} "
        f"(rosbag2 mcap, {args.distro}); ROS time = log stamp + {report.anchor.stamp_offset_ns} ns "
        f"({report.anchor.source})"
    )
    for topic, n in sorted(report.counts.items()):
        print(f"  {topic:52s} {n:8d}")
    if report.predictions_without_track:
        print(f"  {report.predictions_without_track} predicted agents had no track at their stamp: left out")
    if totals:
        exported = ("ego.state", "perception.tracks", "pred.trajectories", "sensor.lidar.")
        skipped = {t: n for t, n in totals[0].items() if not t.startswith(exported)}
        if skipped:
            print(
                "  not exported (no ROS 2 type): " + ", ".join(f"{t} {n}" for t, n in sorted(skipped.items()))
            )
    for line in stats.damage_lines():
        print(f"  {line}")
    return EXIT_DAMAGED if stats.problems else 0


def add_import_arguments(imp: argparse.ArgumentParser) -> None:
    """The options of ``import ros2``."""
    imp.add_argument(
        "--objects-topic",
        default=rt.TOPIC_TRACKED,
        help=f"ros2: TrackedObjects / PredictedObjects / DetectedObjects topic (default {rt.TOPIC_TRACKED})",
    )
    imp.add_argument(
        "--odom-topic",
        default=rt.TOPIC_ODOMETRY,
        help=f"ros2: nav_msgs/Odometry topic (default {rt.TOPIC_ODOMETRY})",
    )


def import_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of :func:`~prescient.bus.ros2.importer.import_ros2` from the command line."""
    require_rosbags()
    return {"objects_topic": args.objects_topic, "odom_topic": args.odom_topic}
