"""Perception tracker: fuses camera, LiDAR, radar and LWIR frames into world-frame tracks."""

from service.tracker.admission import AdmissionConfig, TrackerStats
from service.tracker.config import TrackerConfig
from service.tracker.tracker import Tracker, model_of_class

__all__ = ["AdmissionConfig", "Tracker", "TrackerConfig", "TrackerStats", "model_of_class"]
