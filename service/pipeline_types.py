"""The pipeline's settings, counters and per-tick result (plain data; see :mod:`prescient.service.pipeline`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from prescient.bus import messages as m
from prescient.service.tracks import TrackSnapshot

NS_PER_MS = 1_000_000


@dataclass(frozen=True)
class PipelineConfig:
    """Plain, validated-once settings of the pipeline (built from the CLI's pydantic model).

    Attributes:
        tick_period_ns: tick spacing on the sensor clock (100 ms).
        budget_ns: end-to-end compute budget of one tick.
        deadline_guard: use the fallback when the model is not expected to finish in budget
            (live only: it makes output depend on machine speed, so replay turns it off).
        use_lidar: splat the newest LiDAR point clouds into the raster.
        num_modes / future_steps: shape of the fallback when no model is loaded.
        model_passes: model passes at most per tick when there are more agents than model slots
            (:meth:`~prescient.service.predictor.OnnxPredictor.predict`); the rest get the fallback.
    """

    tick_period_ns: int = 100 * NS_PER_MS
    budget_ns: int = 100 * NS_PER_MS
    deadline_guard: bool = True
    use_lidar: bool = True
    num_modes: int = 6
    future_steps: int = m.PRED_HORIZON_STEPS
    model_passes: int = 1


@dataclass
class PipelineStats:
    """Counters reported on the health topic."""

    ticks: int = 0
    skipped_ticks: int = 0
    degraded_ticks: int = 0
    deadline_misses: int = 0
    no_ego_ticks: int = 0
    clock_resets: int = 0
    map_changes: int = 0
    maps_refused: int = 0
    agents_over_capacity: int = 0  # agent-predictions beyond the model's slots (constant velocity)
    degraded_reasons: dict[str, int] = field(default_factory=dict)

    def degraded(self, reason: str) -> None:
        self.degraded_ticks += 1
        key = reason.split(":")[0]
        self.degraded_reasons[key] = self.degraded_reasons.get(key, 0) + 1


@dataclass(frozen=True, eq=False)
class TickScene:
    """What one tick rendered from, kept so conditional requests answer for that same scene.

    Attributes:
        tracks: the tick's tracks (world frame).
        ego: the ego state the tick rendered with.
        stamp_ns: the tick time, sensor clock.
        lights: the traffic-light states then (None: none received).
        lidar: the newest LiDAR frames then (None: LiDAR not drawn).
        ego_history_xy_m: (H, 2) float64 past ego positions, world frame.
    """

    tracks: TrackSnapshot
    ego: m.EgoState
    stamp_ns: int
    lights: m.TrafficLights | None
    lidar: list[m.LidarFrame] | None
    ego_history_xy_m: np.ndarray


@dataclass(frozen=True, eq=False)
class TickResult:
    """What one tick produced. ``raster`` is the rasterizer's buffer (overwritten next tick).

    ``tracks`` are the tracks the prediction was computed from; ``tracks.to_message()`` is what
    the node publishes.
    """

    tracks: TrackSnapshot
    predictions: m.Predictions
    raster: np.ndarray
    total_ns: int


def agent_source(n: int, from_model: np.ndarray | None) -> np.ndarray:
    """(n,) uint8 :class:`~prescient.bus.messages.AgentSource` of one tick's predictions.

    ``from_model``: (n,) bool of a model pass (False: beyond its slots), or None when the whole
    tick fell back (degraded).
    """
    if from_model is None or from_model.shape[0] != n:
        return np.full(n, m.AgentSource.FALLBACK_DEGRADED, np.uint8)
    return np.where(from_model, m.AgentSource.MODEL, m.AgentSource.FALLBACK_CAPACITY).astype(np.uint8)
