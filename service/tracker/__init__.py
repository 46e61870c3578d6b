"""Perception tracker: fuses camera, LiDAR, radar and LWIR frames into world-frame tracks."""

from prescient.service.tracker.admission import AdmissionConfig, TrackerStats
from prescient.service.tracker.config import TrackerConfig
from prescient.service.tracker.motion import model_of_class
from prescient.service.tracker.table import TrackTable
from prescient.service.tracker.tracker import Tracker

__all__ = ["AdmissionConfig", "TrackTable", "Tracker", "TrackerConfig", "TrackerStats", "model_of_class"]
