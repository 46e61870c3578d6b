"""Tracker configuration: one frozen dataclass of documented thresholds and noise levels.

Track management (all times are sensor time, from message headers):
  * Birth: every LiDAR detection left unassigned after association starts a TENTATIVE track
    (at most ``admission.max_births_per_frame`` per frame, nearest first, and none beyond
    ``admission.max_tentative_tracks``). Radar, camera and LWIR never start tracks (radar:
    clutter; camera/LWIR: no range). A LiDAR box associates only if the track reaches it from its
    last position at no more than ``admission.max_implied_speed_mps``.
  * TENTATIVE -> CONFIRMED (checked every output tick): ``confirm_hits`` (3) associated
    measurements from any modality (several corners in the same instant count separately, so an
    LWIR bearing at night speeds up confirmation of a pedestrian LiDAR sees weakly) including at
    least ``confirm_position_hits`` (2) LiDAR hits, within ``tentative_timeout_s`` of each other.
  * CONFIRMED -> COASTING: no LiDAR update for ``coast_after_s`` (0.3 s). Back to CONFIRMED on
    the next one. Radar updates the state but does not keep a track alive unless
    ``radar_keeps_alive`` (clutter would otherwise sustain dead tracks).
  * Deleted: TENTATIVE with no update for ``tentative_timeout_s`` (0.35 s); no LiDAR update for
    longer than ``max_coast_s`` (per class, 1-2 s); position standard deviation above
    ``max_position_std_m`` (2.5 m); farther than ``max_range_m`` (150 m) from the ego; surely
    faster than its class can move (``admission.max_speed_mps``, ``implausible_speed``); or a
    younger duplicate of an older track of the same motion model, closer than
    ``duplicate_width_frac`` (0.7) of the narrower box width, clipped to
    [``duplicate_min_distance_m``, ``duplicate_distance_m``] = [0.3, 1.2] m.

Reorder window: the tracks follow every frame in capture-time order whatever the order of arrival,
for frames up to ``reorder_window_s`` (50 ms) older than the newest capture time seen. With
``lookahead`` (default) frames apply at once and a state history re-filters when one arrives out
of sequence (:mod:`~prescient.service.tracker.timeline`), so the window costs no latency; without
it, frames wait in the window and apply in order once older than the newest capture (or the time
asked of :meth:`Tracker.tracks`) minus the window. A frame older than that horizon (it arrived
after its window had closed) is dropped and counted as ``late`` (no retrodiction). The
simulator's latencies (40-60 ms) differ by at most 20 ms between modalities, well inside the window.

Admission (``admission``, :class:`~prescient.service.tracker.admission.AdmissionConfig`): every plausibility
and clock limit on the input in one place: objects per frame, ranges, speeds, births, and the
clock windows (a frame more than ``admission.max_future_s`` (0.5 s) ahead of the newest ego state
is ``future_dated``, more than ``admission.max_age_s`` (2 s) behind it ``stale``). See
:mod:`prescient.service.tracker.admission`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prescient.bus.messages import NUM_CLASSES
from prescient.service.tracker.admission import AdmissionConfig, per_class


@dataclass(frozen=True)
class TrackerConfig:
    """Tracker parameters. Per-class tuples are indexed by :class:`~prescient.bus.messages.AgentClass`."""

    capacity: int = 512  # N_MAX track slots, allocated once
    # --- process noise (white acceleration), per class ---
    sigma_accel_mps2: tuple[float, ...] = field(
        default_factory=lambda: per_class(
            2.0, car=2.5, truck=1.5, bus=1.5, pedestrian=1.0, cyclist=1.5, animal=3.0
        )
    )
    sigma_yaw_accel_radps2: tuple[float, ...] = field(
        default_factory=lambda: per_class(1.0, car=0.6, truck=0.4, bus=0.4, cyclist=1.0)
    )
    sigma_jerk_mps3: tuple[float, ...] = field(  # drives the CTRA acceleration state
        default_factory=lambda: per_class(2.0, car=3.0, truck=2.0, bus=2.0, cyclist=2.0)
    )
    init_sigma_accel_mps2: float = 1.5
    init_sigma_speed_mps: tuple[float, ...] = field(
        default_factory=lambda: per_class(3.0, car=10.0, truck=8.0, bus=8.0, pedestrian=2.0, cyclist=6.0)
    )
    max_coast_s: tuple[float, ...] = field(  # long enough to bridge short occlusions
        default_factory=lambda: per_class(1.0, car=2.0, truck=2.0, bus=2.0, pedestrian=1.5, cyclist=1.5)
    )
    # --- measurement noise (standard deviations) ---
    lidar_pos_std_m: float = 0.15
    lidar_pos_std_per_m: float = 0.002  # grows with range
    lidar_yaw_std_rad: float = 0.1
    radar_range_std_m: float = 1.0  # returns lie on the object's surface, not its centre
    radar_bearing_std_rad: float = 0.02
    radar_range_rate_std_mps: float = 0.2
    camera_bearing_std_rad: float = 0.006
    lwir_bearing_std_rad: float = 0.01
    bearing_width_std_frac: float = 0.15  # extra bearing std per rad of box half-width
    # --- association ---
    gate_pose_d2: float = 13.8  # chi2(2) 99.9 %
    gate_radar_d2: float = 16.3  # chi2(3) 99.9 %
    gate_bearing_d2: float = 10.8  # chi2(1) 99.9 %
    max_assoc_dist_m: float = 6.0  # Euclidean pre-gate for LiDAR, range pre-gate for radar
    class_cost_weight: float = 2.0
    use_radar: bool = True
    # Radar clutter and returns of neighbouring objects would keep dead tracks alive: by default
    # only LiDAR refreshes a track's liveness (coasting/deletion clocks); radar still updates it.
    radar_keeps_alive: bool = False
    use_bearings: bool = True  # camera / LWIR bearing updates (class and attributes always fuse)
    # --- track management ---
    confirm_hits: int = 3
    confirm_position_hits: int = 2
    tentative_timeout_s: float = 0.35
    coast_after_s: float = 0.3
    max_position_std_m: float = 2.5
    max_range_m: float = 150.0
    duplicate_distance_m: float = 1.2  # cap of the duplicate distance
    duplicate_min_distance_m: float = 0.3
    duplicate_width_frac: float = 0.7  # of the narrower box width
    size_alpha: float = 0.2  # EMA weight of a LiDAR box size
    # --- class and attribute fusion ---
    class_weight: tuple[float, float, float, float] = (1.0, 0.7, 0.0, 1.0)  # by Modality
    class_logp_floor: float = -7.0
    attribute_alpha: float = 0.3
    # --- timing ---
    reorder_window_s: float = 0.05
    lookahead: bool = True  # publish committed tracks + the frames in the window (lookahead.py)
    ego_buffer: int = 256
    publish_tentative: bool = False
    # --- input limits (objects, ranges, speeds, births, clocks) ---
    admission: AdmissionConfig = field(default_factory=AdmissionConfig)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent field."""
        for name in (
            "sigma_accel_mps2",
            "sigma_yaw_accel_radps2",
            "sigma_jerk_mps3",
            "init_sigma_speed_mps",
            "max_coast_s",
        ):
            v = getattr(self, name)
            if len(v) != NUM_CLASSES:
                raise ValueError(f"TrackerConfig.{name}: {len(v)} entries, expected {NUM_CLASSES}")
            if min(v) <= 0:
                raise ValueError(f"TrackerConfig.{name}: values must be > 0, got {v}")
        if self.capacity < 1:
            raise ValueError(f"TrackerConfig.capacity: must be >= 1, got {self.capacity}")
        if self.reorder_window_s < 0:
            raise ValueError("TrackerConfig.reorder_window_s: must be >= 0")
        if self.confirm_position_hits > self.confirm_hits:
            raise ValueError("TrackerConfig.confirm_position_hits: must be <= confirm_hits")
        self.admission.validate()
