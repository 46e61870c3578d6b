"""Perception tracker: fuses camera, LiDAR, radar and LWIR frames into world-frame tracks."""

from service.tracker.config import TrackerConfig
from service.tracker.tracker import Tracker, TrackerStats, model_of_class

__all__ = ["Tracker", "TrackerConfig", "TrackerStats", "model_of_class"]
