"""The tracks of one tick as the runtime's stages pass them: :class:`TrackSnapshot`.

The tracker builds a snapshot from its track table; the rasterizer and the predictor read it; the
node and the offline replay turn it into the wire message (:class:`~prescient.bus.messages.Tracks`) once,
when they publish or record it. Tracks that come from outside (an imported log's ground truth, a
caller holding a wire message) enter through :meth:`TrackSnapshot.from_message`, which is the one
place their rows are checked: the stages after it trust a snapshot and check nothing again.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from prescient.bus import messages as m

ROW_FIELDS = (
    "track_id",
    "class_id",
    "class_probs",
    "status",
    "position_m",
    "velocity_mps",
    "accel_mps2",
    "yaw_rad",
    "yaw_rate_radps",
    "size_lwh_m",
    "covariance",
    "attributes",
    "age_s",
    "history_xy_m",
    "history_yaw_rad",
    "history_valid",
)


@dataclass(frozen=True, eq=False)
class TrackSnapshot:
    """Tracks at ``stamp_ns`` (sensor clock), world frame, struct of arrays over N agents.

    Every row holds a known class (``0 <= class_id < NUM_CLASSES``) and a finite position,
    velocity, acceleration, heading and size; history entries may be invalid (``history_valid``).

    Attributes:
        stamp_ns: the time the states are extrapolated to.
        ego_pose: (3,) float64 world ``[x_m, y_m, yaw_rad]`` of the ego at ``stamp_ns``.
        track_id (N,) int64; class_id (N,) int32; class_probs (N, C) float32; status (N,) uint8.
        position_m, velocity_mps, accel_mps2: (N, 2) float32 world.
        yaw_rad, yaw_rate_radps: (N,) float32 world heading and its rate.
        size_lwh_m: (N, 3) float32. covariance: (N, 4, 4) float32 over ``[x, y, vx, vy]``.
        attributes: (N,) uint8 :class:`~prescient.bus.messages.Attribute` bits. age_s: (N,) float32.
        history_xy_m (N, H, 2), history_yaw_rad (N, H) float32, history_valid (N, H) bool:
            ``PRED_DT_S`` apart, oldest first, the last column at ``stamp_ns``.
        dropped_rows: rows of the source message left out by :meth:`from_message`, by reason.
    """

    stamp_ns: int
    ego_pose: npt.NDArray[np.float64]
    track_id: npt.NDArray[np.int64]
    class_id: npt.NDArray[np.int32]
    class_probs: npt.NDArray[np.float32]
    status: npt.NDArray[np.uint8]
    position_m: npt.NDArray[np.float32]
    velocity_mps: npt.NDArray[np.float32]
    accel_mps2: npt.NDArray[np.float32]
    yaw_rad: npt.NDArray[np.float32]
    yaw_rate_radps: npt.NDArray[np.float32]
    size_lwh_m: npt.NDArray[np.float32]
    covariance: npt.NDArray[np.float32]
    attributes: npt.NDArray[np.uint8]
    age_s: npt.NDArray[np.float32]
    history_xy_m: npt.NDArray[np.float32]
    history_yaw_rad: npt.NDArray[np.float32]
    history_valid: npt.NDArray[np.bool_]
    dropped_rows: dict[str, int] | None = None

    def __len__(self) -> int:
        return int(self.track_id.shape[0])

    def take(self, rows: np.ndarray) -> TrackSnapshot:
        """The snapshot of ``rows`` (int indices, in that order); the ego and stamp unchanged."""
        return dataclasses.replace(self, **{name: getattr(self, name)[rows] for name in ROW_FIELDS})

    def to_message(self, topic: str = m.TOPIC_TRACKS) -> m.Tracks:
        """The wire message of these tracks (arrays shared, not copied)."""
        rows = {name: getattr(self, name) for name in ROW_FIELDS}
        return m.Tracks(
            header=m.Header(topic=topic, stamp_ns=int(self.stamp_ns)), ego_pose=self.ego_pose, **rows
        )

    @classmethod
    def from_message(cls, tracks: m.Tracks) -> TrackSnapshot:
        """A snapshot of a wire message, keeping only the rows every stage can use.

        Rows with an unknown class or a non-finite position, velocity, acceleration, heading or
        length/width are left out and counted in ``dropped_rows`` (``bad_class``,
        ``non_finite``); non-finite history entries are marked invalid. Shapes are the codec's
        (:func:`prescient.bus.codec.check_message`) and are not checked again.

        Raises:
            ValueError: a non-finite ego pose (nothing could be drawn around it).
        """
        ego_pose = np.asarray(tracks.ego_pose, np.float64)
        if ego_pose.shape != (3,) or not np.all(np.isfinite(ego_pose)):
            raise ValueError(f"tracks.ego_pose: expected 3 finite values, got {ego_pose.tolist()}")
        cls_id = np.asarray(tracks.class_id)
        known = (cls_id >= 0) & (cls_id < m.NUM_CLASSES)
        finite = (
            np.all(np.isfinite(tracks.position_m), axis=1)
            & np.isfinite(tracks.yaw_rad)
            & np.all(np.isfinite(tracks.size_lwh_m[:, :2]), axis=1)
            & np.all(np.isfinite(tracks.velocity_mps), axis=1)
            & np.all(np.isfinite(tracks.accel_mps2), axis=1)
        )
        keep = known & finite
        rows = {name: getattr(tracks, name) for name in ROW_FIELDS}
        if not keep.all():
            rows = {name: a[keep] for name, a in rows.items()}
        hist_ok = np.all(np.isfinite(rows["history_xy_m"]), axis=-1) & np.isfinite(rows["history_yaw_rad"])
        if not hist_ok.all():
            rows["history_valid"] = rows["history_valid"] & hist_ok
        dropped = {
            "bad_class": int(np.count_nonzero(~known)),
            "non_finite": int(np.count_nonzero(known & ~finite)),
        }
        return cls(
            stamp_ns=int(tracks.header.stamp_ns),
            ego_pose=ego_pose,
            dropped_rows={k: n for k, n in dropped.items() if n},
            **rows,
        )
