"""A prescient log -> a rosbag2 directory (``metadata.yaml`` + one ``.mcap``), ``prescient log export-ros2``.

What is written (ROS topic <- prescient topic; types in :mod:`~prescient.bus.ros2.types`):

* ``/localization/kinematic_state`` (``nav_msgs/Odometry``) and ``/tf`` (``map -> base_link``) <- ``ego.state``
* ``/perception/object_recognition/tracking/objects`` (``TrackedObjects``) and
  ``/prescient/markers/tracks`` (boxes) <- ``perception.tracks``
* ``/perception/object_recognition/objects`` (``PredictedObjects``, the topic Autoware's planning
  reads) and ``/prescient/markers/predictions`` (line strips) <- ``pred.trajectories``
* ``/prescient/detection/lidar/<corner>`` (``DetectedObjects`` in ``base_link``) <- ``sensor.lidar.<corner>``

Camera and LWIR frames (2-D boxes), radar returns, ground truth, the map and health have no
standard ROS 2 or Autoware counterpart among the registered types and are not exported.

Time: ROS header stamps are wall-clock (ns since the UNIX epoch). The log's ``header.stamp_ns``
is a sensor clock, moved by one offset chosen by :func:`time_anchor` and written to the bag's
``custom_data`` (``prescient.stamp_offset_ns``, ``prescient.time_source``), so the import can
undo it. Each bag message's own timestamp is its receive time (live recordings) or its stamp.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from prescient.bus import messages as m
from prescient.bus.logfile import LogError, LogExistsError
from prescient.bus.logreader import LogReader, ReadStats
from prescient.bus.ros2 import markers, to_ros
from prescient.bus.ros2 import types as rt

# Stamps at or after 2000-01-01 are taken to be UNIX time already (Argoverse 2, Lyft imports).
UNIX_2000_NS: Final = 946_684_800 * 1_000_000_000
# Where a log with a relative clock and no recorded wall-clock start begins: 2024-01-01T00:00:00Z.
# Fixed, not the file's mtime, so one log always exports to the same bag.
FIXED_EPOCH_NS: Final = 1_704_067_200 * 1_000_000_000
CLOCK_METADATA: Final = "prescient.clock"  # written by the recorder (bus/recorder.py)
EXPORTED_TOPICS: Final = (m.TOPIC_EGO, m.TOPIC_TRACKS, m.TOPIC_PREDICTIONS, "sensor.lidar.")
MAX_PENDING_PREDICTIONS: Final = 64  # predictions waiting for the Tracks of their stamp


@dataclasses.dataclass(frozen=True)
class TimeAnchor:
    """How log times become ROS times.

    Attributes:
        stamp_offset_ns: ROS header stamp = ``header.stamp_ns`` + this.
        log_offset_ns: bag message timestamp = the log's ``log_time`` + this.
        source: where the offset comes from, in words.
    """

    stamp_offset_ns: int
    log_offset_ns: int
    source: str


@dataclasses.dataclass
class ExportReport:
    """What an export wrote: messages per ROS topic, the time anchor, and what it left out."""

    counts: dict[str, int]
    anchor: TimeAnchor
    predictions_without_track: int = 0
    out: Path | None = None


def _first_message(src: Path, stats: ReadStats, any_topic: bool = False) -> Any:
    from prescient.bus.replayer import iter_messages

    # The ego state is the tracker's clock; then what the export writes (or any message).
    for topics in ([m.TOPIC_EGO], None if any_topic else list(EXPORTED_TOPICS)):
        for lm in iter_messages(src, topics=topics, stats=stats):
            return lm
    return None


def time_anchor(src: Path, any_topic: bool = False) -> TimeAnchor:
    """The offsets from the log's clocks to ROS (UNIX) time.

    In order: stamps already UNIX time -> offset 0; a live recording (``prescient.clock`` says
    ``log_time`` is the receive time, with ``wall_minus_monotonic_ns``) -> the first ego state's
    receive time in wall-clock time is its stamp's ROS time; otherwise the first stamp becomes
    :data:`FIXED_EPOCH_NS`. ``any_topic``: without an ego state, the first message of any topic
    (not only of those a ROS 2 export writes) sets the clock.

    Raises:
        LogError: the log holds nothing this export writes.
    """
    stats = ReadStats()
    first = _first_message(src, stats, any_topic)
    if first is None:
        raise LogError(src, f"holds no {', '.join(EXPORTED_TOPICS)} message: nothing to export")
    stamp = int(first.msg.header.stamp_ns)
    clock = stats.metadata.get(CLOCK_METADATA, {})
    receive = (
        clock.get("log_time") == "receive" and clock.get("wall_minus_monotonic_ns", "").lstrip("-").isdigit()
    )
    wall_minus_mono = int(clock["wall_minus_monotonic_ns"]) if receive else 0
    if stamp >= UNIX_2000_NS:
        offset, source = 0, "log stamps are UNIX time"
    elif receive:
        offset = int(first.log_time_ns) + wall_minus_mono - stamp
        source = f"recorder wall clock ({CLOCK_METADATA}): first {first.topic} received at its ROS stamp"
    else:
        offset = FIXED_EPOCH_NS - stamp
        source = "fixed epoch 2024-01-01T00:00:00Z (the log records no wall-clock start)"
    return TimeAnchor(offset, wall_minus_mono if receive else offset, source)


class _BagSink:
    """A rosbags Writer with one connection per topic, made on first use, and per-topic counts."""

    def __init__(self, writer: Any, store: Any) -> None:
        self._writer, self._store = writer, store
        self._connections: dict[str, Any] = {}
        self.counts: dict[str, int] = {}

    def write(self, topic: str, msgtype: str, msg: Any, timestamp_ns: int) -> None:
        conn = self._connections.get(topic)
        if conn is None:
            conn = self._connections[topic] = self._writer.add_connection(
                topic, msgtype, typestore=self._store
            )
        self._writer.write(conn, max(0, int(timestamp_ns)), self._store.serialize_cdr(msg, msgtype))
        self.counts[topic] = self.counts.get(topic, 0) + 1


class _Exporter:
    """Turns each log message into its ROS messages; holds predictions until their Tracks arrive
    (the service publishes the predictions of a tick before that tick's tracks)."""

    def __init__(self, sink: _BagSink, store: Any, anchor: TimeAnchor) -> None:
        self.sink, self.store, self.anchor = sink, store, anchor
        self.tracks_at: dict[int, m.Tracks] = {}  # stamp_ns -> the Tracks of that stamp (recent ones)
        self.pending: dict[int, list[tuple[m.Predictions, int]]] = {}  # stamp -> (predictions, bag time)
        self.predictions_without_track = 0

    def feed(self, topic: str, msg: Any, log_time_ns: int) -> None:
        ros_ns = int(msg.header.stamp_ns) + self.anchor.stamp_offset_ns
        bag_ns = int(log_time_ns) + self.anchor.log_offset_ns
        s, st = self.sink, self.store
        if isinstance(msg, m.EgoState):
            s.write(rt.TOPIC_ODOMETRY, rt.ODOMETRY, to_ros.odometry(st, msg, ros_ns), bag_ns)
            s.write(rt.TOPIC_TF, rt.TF_MESSAGE, to_ros.tf_map_from_base_link(st, msg, ros_ns), bag_ns)
        elif isinstance(msg, m.Tracks):
            s.write(rt.TOPIC_TRACKED, rt.TRACKED_OBJECTS, to_ros.tracked_objects(st, msg, ros_ns), bag_ns)
            s.write(rt.TOPIC_TRACK_MARKERS, rt.MARKER_ARRAY, markers.track_markers(st, msg, ros_ns), bag_ns)
            self._remember(msg)
            for pred, pred_bag_ns in self.pending.pop(msg.header.stamp_ns, []):
                self._write_prediction(pred, msg, pred_bag_ns)
        elif isinstance(msg, m.Predictions):
            tracks = self.tracks_at.get(msg.header.stamp_ns)
            if tracks is not None:
                self._write_prediction(msg, tracks, bag_ns)
            else:
                self.pending.setdefault(msg.header.stamp_ns, []).append((msg, bag_ns))
                if len(self.pending) > MAX_PENDING_PREDICTIONS:
                    self._flush_oldest()
        elif isinstance(msg, m.LidarFrame):
            topic = rt.detections_topic(topic)
            s.write(topic, rt.DETECTED_OBJECTS, to_ros.detected_objects(st, msg, ros_ns), bag_ns)

    def _remember(self, tracks: m.Tracks) -> None:
        self.tracks_at[tracks.header.stamp_ns] = tracks
        while len(self.tracks_at) > MAX_PENDING_PREDICTIONS:
            del self.tracks_at[min(self.tracks_at)]

    def _write_prediction(self, pred: m.Predictions, tracks: m.Tracks | None, bag_ns: int) -> None:
        ros_ns = int(pred.header.stamp_ns) + self.anchor.stamp_offset_ns
        msg, missing = to_ros.predicted_objects(self.store, pred, tracks, ros_ns)
        self.predictions_without_track += missing
        self.sink.write(rt.TOPIC_PREDICTED, rt.PREDICTED_OBJECTS, msg, bag_ns)
        marker_msg = markers.prediction_markers(self.store, pred, ros_ns)
        self.sink.write(rt.TOPIC_PREDICTION_MARKERS, rt.MARKER_ARRAY, marker_msg, bag_ns)

    def _flush_oldest(self) -> None:
        for pred, bag_ns in self.pending.pop(min(self.pending)):
            self._write_prediction(pred, None, bag_ns)

    def finish(self) -> None:
        """Write the predictions whose Tracks never came (their agents are counted as left out)."""
        while self.pending:
            self._flush_oldest()


def _swap_into_place(new: Path, out: Path, scratch: Path) -> None:
    """Rename ``new`` to ``out``; an existing ``out`` is moved into ``scratch`` first (removed with it)."""
    if out.is_dir() and not out.is_symlink():
        out.rename(scratch / "replaced")
    elif out.exists() or out.is_symlink():
        out.unlink()
    new.rename(out)


def export_ros2(
    src: str | Path,
    out: str | Path,
    *,
    overwrite: bool = False,
    distro: str = "humble",
    stats: ReadStats | None = None,
    on_message: Callable[[], object] | None = None,
) -> ExportReport:
    """Write the rosbag2 directory ``out`` (MCAP storage, zstd chunks) from the log ``src``.

    Atomic: the bag is written in a hidden folder beside ``out`` and renamed at the end, so
    ``out`` is either absent, the old one, or complete.

    Args:
        src: the log.
        out: the bag directory to create.
        overwrite: replace an existing ``out``.
        distro: ROS 2 type definitions to use, ``humble`` or ``jazzy`` (:data:`~prescient.bus.ros2.types.DISTROS`).
        stats: receives read counts, skipped messages and damage of ``src``.
        on_message: called after each log message read (progress).

    Returns:
        messages per ROS topic, the time anchor, agents left out.

    Raises:
        LogError: ``src`` missing, empty, not MCAP or with nothing to export.
        LogExistsError: ``out`` exists and ``overwrite`` is False (checked before anything is read).
    """
    from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer

    from prescient.bus.replayer import iter_messages

    src, out = Path(src), Path(out)
    stats = stats if stats is not None else ReadStats()
    if out.exists() and not overwrite:
        raise LogExistsError(out, "exists; refusing to overwrite it (--force replaces it)")
    LogReader(src)  # an unreadable log fails here, before any output exists
    anchor = time_anchor(src)
    store = rt.typestore(distro)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        bag = scratch / out.name  # the storage file is named after this folder: <name>/<name>.mcap
        writer = Writer(bag, version=rt.BAG_VERSION, storage_plugin=StoragePlugin.MCAP)
        writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        for key, value in {
            rt.META_STAMP_OFFSET: str(anchor.stamp_offset_ns),
            rt.META_TIME_SOURCE: anchor.source,
            rt.META_SOURCE_LOG: src.name,
            "prescient.ros_distro": distro,
        }.items():
            writer.set_custom_data(key, value)
        with writer:
            sink = _BagSink(writer, store)
            exporter = _Exporter(sink, store, anchor)
            for lm in iter_messages(src, topics=EXPORTED_TOPICS, stats=stats):
                exporter.feed(lm.topic, lm.msg, lm.log_time_ns)
                if on_message is not None:
                    on_message()
            exporter.finish()
        _swap_into_place(bag, out, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return ExportReport(dict(sink.counts), anchor, exporter.predictions_without_track, out)
