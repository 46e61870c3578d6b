"""Perception tracker: fuses camera, LiDAR, radar and LWIR frames into world-frame tracks."""

from service.tracker.admission import AdmissionConfig, TrackerStats
from service.tracker.config import TrackerConfig
from service.tracker.motion import model_of_class
from service.tracker.table import TrackTable
from service.tracker.tracker import Tracker

__all__ = ["AdmissionConfig", "TrackTable", "Tracker", "TrackerConfig", "TrackerStats", "model_of_class"]
