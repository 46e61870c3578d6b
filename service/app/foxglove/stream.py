"""Bus topics -> Foxglove topics: the one mapping shared by the MCAP export, ``view`` and ``up --foxglove``.

Foxglove topics (all times ns since the UNIX epoch):

* ``/scene`` ``foxglove.SceneUpdate`` (protobuf) <- ``map.vector``, ``perception.tracks``,
  ``pred.trajectories``, ``ego.state`` (one entity per kind; see :mod:`.scene`).
* ``/tf`` ``foxglove.FrameTransform`` (``map -> base_link``) <- ``ego.state``.
* ``/planner/status`` JSON <- ``planner.status`` (latencies in ms, for plots).
* ``/health`` JSON <- ``health.<node>`` (the node is a field; rates in Hz, for plots).
* ``/raster`` ``foxglove.RawImage`` (rgb8) <- drawn again from the map, ego state, lights and
  tracks (:mod:`.raster_image`; 2 Hz).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Final

from prescient.bus import messages as m
from prescient.service.app.foxglove import scene
from prescient.service.app.foxglove.raster_image import RasterImages

TOPIC_SCENE: Final = "/scene"
TOPIC_TF: Final = "/tf"
TOPIC_PLANNER: Final = "/planner/status"
TOPIC_HEALTH: Final = "/health"
TOPIC_RASTER: Final = "/raster"
# Bus topics this mapping reads (prefixes allowed, as the bus subscribes by prefix).
SOURCE_TOPICS: Final = (
    m.TOPIC_MAP,
    m.TOPIC_TRACKS,
    m.TOPIC_PREDICTIONS,
    m.TOPIC_EGO,
    m.TOPIC_PLANNER_STATUS,
    m.TOPIC_HEALTH_PREFIX,
    m.TOPIC_TRAFFIC_LIGHTS,  # for the raster image
)
# JSON Schemas of the JSON topics: loose (objects), so Foxglove offers the fields for plots.
JSON_SCHEMAS: Final = {
    TOPIC_PLANNER: {"type": "object", "title": "prescient.PlannerStatus"},
    TOPIC_HEALTH: {"type": "object", "title": "prescient.Health"},
}


@dataclasses.dataclass(frozen=True)
class FoxgloveMessage:
    """One output message: a ``foxglove.messages`` object or a JSON-able dict, at ``log_time_ns`` (UNIX)."""

    topic: str
    log_time_ns: int
    payload: Any


def _finite(x: float) -> float | None:
    """JSON has no inf/nan: those become null."""
    return float(x) if math.isfinite(x) else None


def planner_json(st: m.PlannerStatus, stamp_ns: int) -> dict[str, Any]:
    """A planner verdict with its latencies in milliseconds (``stamp_ns``: UNIX ns)."""
    return {
        "stamp_ns": stamp_ns,
        "prediction_seq": st.prediction_seq,
        "e2e_latency_ms": st.e2e_latency_ns / 1e6,
        "data_age_ms": st.data_age_ns / 1e6,
        "chosen_plan": st.chosen_plan,
        "min_distance_m": _finite(st.min_distance_m),
        "min_ttc_s": _finite(st.min_ttc_s),
        "status": st.status,
    }


def health_json(h: m.Health, stamp_ns: int) -> dict[str, Any]:
    """A node's health; ``tick_rate_hz`` is ``live.tick_rate_mhz`` / 1000 when present."""
    live = {str(k): v for k, v in h.live.items()}
    rate = live.get("tick_rate_mhz")
    return {
        "stamp_ns": stamp_ns,
        "node": h.node,
        "state": h.state,
        "degraded": h.degraded,
        "reason": h.reason,
        "provider": h.provider,
        "precision": h.precision,
        "ticks": h.ticks,
        "deadline_misses": h.deadline_misses,
        "tick_rate_hz": rate / 1000.0 if isinstance(rate, int | float) else None,
        "live": live,
    }


@dataclasses.dataclass
class SceneStream:
    """Converts bus messages one at a time; holds the two clock offsets and the raster drawer.

    Attributes:
        stamp_offset_ns: UNIX time of a message = ``header.stamp_ns`` + this.
        log_offset_ns: UNIX log time = the bus/log receive time (``log_time_ns``) + this.
        raster: draws ``/raster`` (None: no raster images).
    """

    stamp_offset_ns: int = 0
    log_offset_ns: int = 0
    raster: RasterImages | None = dataclasses.field(default_factory=RasterImages)

    def convert(self, topic: str, msg: Any, log_time_ns: int) -> list[FoxgloveMessage]:
        """The Foxglove messages for one bus message (empty for a topic not drawn)."""
        stamp = int(msg.header.stamp_ns) + self.stamp_offset_ns
        t = int(log_time_ns) + self.log_offset_ns
        if self.raster is not None:
            self.raster.note(msg)
        if isinstance(msg, m.VectorMap):
            return [FoxgloveMessage(TOPIC_SCENE, t, scene.scene_update(stamp, vmap=msg))]
        if isinstance(msg, m.Tracks):
            out = [FoxgloveMessage(TOPIC_SCENE, t, scene.scene_update(stamp, tracks=msg))]
            image = self.raster.image(msg, stamp) if self.raster is not None else None
            return out + ([FoxgloveMessage(TOPIC_RASTER, t, image)] if image is not None else [])
        if isinstance(msg, m.Predictions):
            return [FoxgloveMessage(TOPIC_SCENE, t, scene.scene_update(stamp, predictions=msg))]
        if isinstance(msg, m.EgoState):
            return [
                FoxgloveMessage(TOPIC_TF, t, scene.ego_transform(msg, stamp)),
                FoxgloveMessage(TOPIC_SCENE, t, scene.scene_update(stamp, ego=msg)),
            ]
        if isinstance(msg, m.PlannerStatus):
            return [FoxgloveMessage(TOPIC_PLANNER, t, planner_json(msg, stamp))]
        if isinstance(msg, m.Health):
            return [FoxgloveMessage(TOPIC_HEALTH, t, health_json(msg, stamp))]
        return []
