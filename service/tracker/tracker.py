"""Multi-sensor EKF tracker: sensor frames in, world-frame :class:`~prescient.service.tracks.TrackSnapshot` out.

A pure processing stage: no sockets, no wall clock. Time comes only from message headers, so a
replay reproduces a live run. :class:`Tracker` is a small facade over stages that share one
struct-of-arrays :class:`~prescient.service.tracker.table.TrackTable` (fixed capacity ``N_MAX``, a ``valid``
mask, allocated once):

  * :mod:`~prescient.service.tracker.ingest`: admission (:mod:`~prescient.service.tracker.admission`: plausibility
    limits, clock windows, the vote that confirms a clock jump), the reorder queue, the ego pose
    buffer and trail. A rejected message changes no state.
  * :mod:`~prescient.service.tracker.measurements`: the detections of a batch (the frames of one modality
    sharing a capture time, i.e. the four corners) as world-frame measurements (ego pose
    interpolated at the capture time; radar range rate compensated for the sensor's own motion
    including the yaw-rate lever arm).
  * :mod:`~prescient.service.tracker.motion`: predict every track to the capture time; EKF update. Constant
    velocity for pedestrians, animals and unknown; constant turn rate and acceleration (CTRA,
    which reduces to CTRV) for cars, trucks, buses and cyclists.
  * :mod:`~prescient.service.tracker.association`: Mahalanobis gating, assignment on
    ``d2 + log det S + class cost`` (one measurement per track per sensor).
  * :mod:`~prescient.service.tracker.fusion`: hit counts, size, heading of CV tracks, attributes, class.
  * :mod:`~prescient.service.tracker.lifecycle`: births from unassigned LiDAR boxes, confirmation,
    coasting, deletion, merging of duplicates.
  * :mod:`~prescient.service.tracker.output`: the snapshot of the published tracks (the node builds the
    wire message from it).
  * :mod:`~prescient.service.tracker.timeline`: with ``TrackerConfig.lookahead`` (default), frames
    apply at once and a short state history re-filters when one arrives out of sequence, so the
    reorder window costs no latency; without it, frames wait in the window and apply in order.

Measurement models: LiDAR ``[x, y, yaw]`` (size by EMA), radar ``[range, bearing, range rate]``,
camera/LWIR bearing of the box centre (plus class, attributes).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from prescient.bus import messages as m
from prescient.service.tracker import association_kernels, fusion_kernels, measurement_kernels, motion_kernels
from prescient.service.tracker.admission import TrackerStats
from prescient.service.tracker.association import Association
from prescient.service.tracker.config import TrackerConfig
from prescient.service.tracker.fusion import Fusion
from prescient.service.tracker.ingest import Ingest
from prescient.service.tracker.layout import MEAS_BEARING, MEAS_POSE, MEAS_RADAR
from prescient.service.tracker.lifecycle import Lifecycle
from prescient.service.tracker.measurements import Meas, measurements
from prescient.service.tracker.motion import Motion
from prescient.service.tracker.output import snapshot_from_table
from prescient.service.tracker.table import TrackTable
from prescient.service.tracker.timeline import Timeline, newest_header
from prescient.service.tracks import TrackSnapshot


class Tracker:
    """Fuses camera, LiDAR, radar and LWIR frames into world-frame tracks.

    Args:
        config: thresholds and noise levels; validated once here.

    Use :meth:`process` for every incoming message and :meth:`snapshot` (or :meth:`tracks` for the
    wire message) once per output tick, or :meth:`update` for both at once. ``table`` holds the track state; ``stats`` the counters (it
    may be replaced, e.g. to carry counts over a reset).
    """

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self.config.validate()
        c = self.config
        self._stats = TrackerStats()
        self._motion = Motion(c)
        self._association = Association(c, self._stats)
        self._fusion = Fusion(c, self._motion, self._stats)
        self._lifecycle = Lifecycle(c, self._motion, self._stats)
        self._newest_applied: m.Header | None = None
        self._output_newest: m.Header | None = None
        self._timeline: Timeline | None = None
        if c.lookahead:
            # Frames apply at once; the reorder heap only says when they are final (horizon).
            self._horizon_ns: int | None = None
            self._ingest = Ingest(c, self._stats, self._retire, lambda: self._horizon_ns)
            # The timeline's stages count into each event's own counters, added to ``stats`` when
            # the event is final (an event applied again is counted once, as last applied).
            scratch = TrackerStats()
            self._tl_association = Association(c, scratch)
            self._tl_fusion = Fusion(c, self._motion, scratch)
            self._tl_lifecycle = Lifecycle(c, self._motion, scratch)
            # An event is final: add what it counted (through ``_stats``, which may be replaced).
            self._timeline = Timeline(
                c.capacity,
                self._apply_event,
                self._replay_tick,
                self._ingest.ego,
                lambda n: self._stats.add(n),
            )
            self.table = self._timeline.table
        else:
            self.table = TrackTable(c.capacity)
            self._ingest = Ingest(c, self._stats, self._apply, lambda: self.table.filter_ns)

    @property
    def stats(self) -> TrackerStats:
        """Rejection and event counters (see :class:`~prescient.service.tracker.admission.TrackerStats`)."""
        return self._stats

    @stats.setter
    def stats(self, stats: TrackerStats) -> None:
        self._stats = stats
        for stage in (self._ingest, self._association, self._fusion, self._lifecycle):
            stage.stats = stats

    # ------------------------------------------------------------------------------------------
    # Input.
    # ------------------------------------------------------------------------------------------
    def process(self, msg: Any) -> bool:
        """Take one bus message. Sensor frames are buffered for the reorder window.

        Ego states update the pose buffer. Ground truth, traffic lights and other non-sensor
        messages are ignored. Every message passes :class:`~prescient.service.tracker.admission.Admission`
        first; a rejected one is counted by reason and changes no state (it may vote for a new
        clock, see :class:`~prescient.service.tracker.admission.ClockVote`). Nothing is raised.

        Returns:
            True if the message was accepted (buffered or used), False if rejected or ignored.
        """
        return self._ingest.process(msg)

    def update(self, msgs: Iterable[Any], now_ns: int) -> m.Tracks:
        """Process ``msgs`` then return the tracks at ``now_ns`` (see :meth:`tracks`)."""
        for msg in msgs:
            self.process(msg)
        return self.tracks(now_ns)

    def sync(self) -> None:
        """Apply what arrived since the last call (no-op without ``lookahead``).

        Call it between ticks (the node does when a loop turn runs no tick), so that at the tick
        only the newest frames are left to apply. Results do not depend on when or whether it is
        called (:mod:`~prescient.service.tracker.timeline`).
        """
        if self._timeline is not None:
            self._timeline.sync(self._ingest)

    @property
    def lookahead_stats(self) -> dict[str, int]:
        """Timeline work so far: ``rebuilds`` (re-filters from a checkpoint: a frame out of
        sequence, or a newer ego state) and ``appends`` (syncs that only added events in order)."""
        t = self._timeline
        return {"rebuilds": t.rollbacks, "appends": t.appends} if t is not None else {}

    @property
    def newest_applied(self) -> m.Header | None:
        """Header of the newest frame in the tracks of the last :meth:`snapshot` (capture stamp,
        then publish time; before any snapshot: of the committed tracks).

        Of the frames sharing the newest applied capture time (the corners of one sweep), the
        one published last: the data in the tracks is as old as that frame. None before any.
        """
        if self._output_newest is not None:
            return self._output_newest
        return self._timeline.newest_applied if self._timeline is not None else self._newest_applied

    def _note_applied(self, frames: list[Any]) -> None:
        self._newest_applied = newest_header(self._newest_applied, frames)

    @property
    def newest_ego_ns(self) -> int | None:
        """Stamp of the newest admitted ego state (the tracker's reference clock), or None."""
        return self._ingest.ego.newest_ns

    def ego_history_xy(self, steps: int, period_ns: int) -> np.ndarray:
        """Past ego positions at least ``period_ns`` apart, for the raster's ego-history channel.

        Walks the admitted ego states in stamp order from the first one, keeping each that is at
        least ``period_ns`` newer than the last kept (so the rows follow the ego stream's own
        stamps, and the newest may be newer than the last output tick). An ego state adopted by a
        confirmed clock jump is not in it (only the ego states :meth:`process` accepted).

        Args:
            steps: rows wanted (at most ``4 * TRACK_HISTORY_STEPS``).
            period_ns: minimum spacing, sensor clock.

        Returns:
            (n, 2) float64 world ``[x_m, y_m]``, oldest first, n <= ``steps`` (0 before any ego).
        """
        return self._ingest.ego_trail.xy(steps, period_ns)

    # ------------------------------------------------------------------------------------------
    # One batch of frames (one modality, one capture time), called by the ingest stage.
    # ------------------------------------------------------------------------------------------
    def _apply(self, frames: list[Any]) -> None:
        """Apply one batch to the committed table (the ingest stage's callback)."""
        if self._apply_to(self.table, self._association, self._fusion, self._lifecycle, frames):
            self._stats.count("frames_applied", len(frames))
            self._note_applied(frames)

    def _timeline_stages(self, counts: TrackerStats) -> tuple[Association, Fusion, Lifecycle]:
        for stage in (self._tl_association, self._tl_fusion, self._tl_lifecycle):
            stage.stats = counts
        return self._tl_association, self._tl_fusion, self._tl_lifecycle

    def _apply_event(self, table: TrackTable, frames: list[Any], counts: TrackerStats) -> bool:
        """Apply one batch of the timeline, counting into ``counts``."""
        ok = self._apply_to(table, *self._timeline_stages(counts), frames)
        if ok:
            counts.count("frames_applied", len(frames))
        return ok

    def _replay_tick(self, table: TrackTable, now_ns: int, counts: TrackerStats) -> None:
        """A tick's steps applied again after a re-filter (no output)."""
        self._tick(table, self._timeline_stages(counts)[2], now_ns, self._ingest.ego.at(now_ns))

    def _retire(self, frames: list[Any]) -> None:
        """Frames leaving the reorder window (the ingest stage's callback, timeline mode): apply
        any of that age still waiting, then drop the events no frame can come before any more."""
        t = self._timeline
        if t is None:
            return
        stamp = frames[0].header.stamp_ns
        t.sync(self._ingest, until_ns=stamp)
        t.prune(stamp)
        self._horizon_ns = stamp

    def _apply_to(
        self,
        table: TrackTable,
        association: Association,
        fusion: Fusion,
        lifecycle: Lifecycle,
        frames: list[Any],
    ) -> bool:
        """Apply one batch to ``table`` with these stages; False if it could not be applied."""
        t = frames[0].header.stamp_ns
        stats = association.stats
        if table.filter_ns is not None and t < table.filter_ns:
            for f in frames:
                stats.reject(f.header.topic, "late")
            return False
        ego = self._ingest.ego.at(t)
        if ego is None:
            for f in frames:
                stats.reject(f.header.topic, "no_ego_pose")
            return False
        self._motion.predict_to(table, t)
        meas = measurements(frames, ego, self.config)
        n_meas = meas.z.shape[0]
        if n_meas == 0:
            return True
        stats.count("measurements", n_meas)
        if meas.kind == MEAS_RADAR and not self.config.use_radar:
            return True
        ti, dj = self._associate(table, association, meas, len(frames), t)
        if ti.size:
            self._update(table, fusion, ti, dj, meas, t)
        if meas.modality == m.Modality.LIDAR:
            unassigned = np.ones(n_meas, np.bool_)
            unassigned[dj] = False
            if unassigned.any():
                rows = lifecycle.birth_rows(table, np.flatnonzero(unassigned), meas)
                lifecycle.birth(table, rows, meas, t)
        return True

    def _associate(
        self, table: TrackTable, association: Association, meas: Meas, n_frames: int, t: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(slots, measurement rows) assigned to each other; LiDAR pairs needing a teleport dropped."""
        idx = table.live()
        if idx.size == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        ti, dj = association.associate(table, idx, meas, n_frames)
        if meas.kind == MEAS_POSE and ti.size:
            ti, dj = association.plausible_pairs(table, ti, dj, meas, t)
        return ti, dj

    def _update(
        self, table: TrackTable, fusion: Fusion, ti: np.ndarray, dj: np.ndarray, meas: Meas, t: int
    ) -> None:
        """EKF update (bearings only if ``use_bearings``), then the bookkeeping of the pairs."""
        if meas.kind != MEAS_BEARING or self.config.use_bearings:
            applied = self._motion.update(table, ti, meas, dj)
            if not applied.all():
                fusion.stats.count("update_skipped", int((~applied).sum()))
        fusion.bookkeep(table, ti, dj, meas, t)

    # ------------------------------------------------------------------------------------------
    # Output.
    # ------------------------------------------------------------------------------------------
    def snapshot(self, now_ns: int) -> TrackSnapshot:
        """The tracks at ``now_ns``, with every frame captured by then that has arrived.

        With ``lookahead`` (default) every such frame is in, applied in capture order
        (:mod:`~prescient.service.tracker.timeline`), then the tick's status changes, deletions and
        history. Without it, only frames older than the reorder window are applied (the newest
        measurement is then at least the window old). Either way the states are extrapolated (on
        copies) to ``now_ns``. Frames captured before the reorder horizon that arrive later are
        dropped as ``late``.

        Args:
            now_ns: output time (sensor clock), normally a multiple of 100 ms.

        Returns:
            Confirmed and coasting tracks (plus tentative ones if ``publish_tentative``) in the world
            frame at ``now_ns``, with history sampled on the 100 ms grid ending at ``now_ns``.
        """
        timeline = self._timeline
        if timeline is None:
            self._ingest.fresh.clear()
            self._ingest.flush(now_ns - self._ingest.window_ns)
            ego = self._ingest.ego.at(now_ns)
            self._output_newest = self._newest_applied
            return self._publish(
                self.table, self._tick(self.table, self._lifecycle, now_ns, ego), now_ns, ego
            )
        timeline.sync(self._ingest, until_ns=now_ns)
        self._ingest.flush(now_ns - self._ingest.window_ns)
        ego = self._ingest.ego.at(now_ns)

        def on_tick(table: TrackTable, counts: TrackerStats) -> TrackSnapshot:
            self._output_newest = timeline.newest_applied
            out = self._tick(table, self._timeline_stages(counts)[2], now_ns, ego)
            return self._publish(table, out, now_ns, ego)

        return timeline.tick(now_ns, on_tick)

    def _publish(
        self,
        table: TrackTable,
        out: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
        now_ns: int,
        ego: np.ndarray | None,
    ) -> TrackSnapshot:
        """The snapshot of a tick's ``out`` (see :meth:`_tick`), tentative tracks left out unless published."""
        idx, pos, vel, yaw, cov = out
        if not self.config.publish_tentative:
            pub = table.status[idx] != m.TrackStatus.TENTATIVE
            idx, pos, vel, yaw, cov = idx[pub], pos[pub], vel[pub], yaw[pub], cov[pub]
        ego_pose = ego[:3].copy() if ego is not None else np.zeros(3)
        self._stats.count("ticks")
        return snapshot_from_table(table, idx, pos, vel, yaw, cov, now_ns, ego_pose)

    def _tick(
        self, table: TrackTable, lifecycle: Lifecycle, now_ns: int, ego: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One tick's steps on ``table``: status and deletions, extrapolation, history.

        Returns:
            (idx, pos, vel, yaw, cov) of the live slots with a finite extrapolation.
        """
        lifecycle.manage(table, now_ns, ego)
        idx = table.live()
        pos, vel, yaw, cov = self._motion.extrapolate(table, idx, now_ns)
        idx, pos, vel, yaw, cov = lifecycle.drop_non_finite(table, idx, pos, vel, yaw, cov)
        table.push_history(now_ns, idx, pos, yaw, vel)
        return idx, pos, vel, yaw, cov

    def tracks(self, now_ns: int, header_topic: str = m.TOPIC_TRACKS) -> m.Tracks:
        """:meth:`snapshot` as the wire message on ``header_topic``."""
        return self.snapshot(now_ns).to_message(header_topic)

    @property
    def num_tracks(self) -> int:
        """Number of live track slots (any status)."""
        return self.table.num_live

    @staticmethod
    def warm_up() -> None:
        """Compile the numba kernels on dummy inputs (keeps JIT off the first real tick)."""
        for module in (measurement_kernels, motion_kernels, association_kernels, fusion_kernels):
            module.warm_up()
