"""The enumerations of the message schema (classes, attributes, modalities, corners, lane
types, light states, track status, per-agent prediction source). Re-exported by
:mod:`prescient.bus.messages`, where the rest of the schema lives.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final


class AgentClass(IntEnum):
    """Object classes. Values reach the wire and raster channels: never renumber."""

    UNKNOWN = 0
    CAR = 1
    TRUCK = 2
    BUS = 3
    PEDESTRIAN = 4
    CYCLIST = 5
    ANIMAL = 6


NUM_CLASSES: Final = len(AgentClass)
# Typical box sizes (length, width, height) in metres per class: for data without sizes (ETH/UCY,
# AV2 motion forecasting) and for synthetic scenes. One table, so they agree.
DEFAULT_SIZE_LWH_M: Final = {
    AgentClass.UNKNOWN: (1.0, 1.0, 1.0),
    AgentClass.CAR: (4.5, 1.9, 1.6),
    AgentClass.TRUCK: (8.0, 2.5, 3.5),
    AgentClass.BUS: (12.0, 2.6, 3.2),
    AgentClass.PEDESTRIAN: (0.6, 0.6, 1.75),
    AgentClass.CYCLIST: (1.8, 0.7, 1.7),
    AgentClass.ANIMAL: (1.0, 0.4, 0.6),
}


class Attribute(IntEnum):
    """Bit flags in the ``attributes`` (uint8) fields."""

    PHONE = 1  # pedestrian holding a phone
    BRAKE_LIGHTS = 2
    LEFT_SIGNAL = 4
    RIGHT_SIGNAL = 8


class Modality(IntEnum):
    CAMERA = 0
    LIDAR = 1
    RADAR = 2
    LWIR = 3


class Corner(IntEnum):
    FRONT_LEFT = 0
    FRONT_RIGHT = 1
    REAR_LEFT = 2
    REAR_RIGHT = 3


CORNER_TAGS: Final = {
    Corner.FRONT_LEFT: "fl",
    Corner.FRONT_RIGHT: "fr",
    Corner.REAR_LEFT: "rl",
    Corner.REAR_RIGHT: "rr",
}
MODALITY_TAGS: Final = {
    Modality.CAMERA: "camera",
    Modality.LIDAR: "lidar",
    Modality.RADAR: "radar",
    Modality.LWIR: "lwir",
}


class LaneType(IntEnum):
    VEHICLE = 0
    BIKE = 1
    BUS = 2


class LightState(IntEnum):
    UNKNOWN = 0
    RED = 1
    YELLOW = 2
    GREEN = 3


class TrackStatus(IntEnum):
    TENTATIVE = 0
    CONFIRMED = 1
    COASTING = 2


class AgentSource(IntEnum):
    """Where one agent's prediction came from (``Predictions.agent_source``)."""

    MODEL = 0
    FALLBACK_CAPACITY = 1  # constant velocity: beyond the model's agent slots (the farthest)
    FALLBACK_DEGRADED = 2  # constant velocity for every agent: no model, failed, late (see reason)
    UNKNOWN = 255  # a payload older than schema 5 does not say
