"""Tracking and counting on ``Detections`` (numpy only, so it runs on the board): ``ByteTracker`` gives
detections stable ``track_ids`` frame after frame; ``LineCounter`` / ``ZoneCounter`` count crossings and
occupancy on those tracks; ``TrackSession`` runs both over one stream in frame order."""

from .bytetrack import ByteTracker, TrackerConfig
from .counting import LineCounter, ZoneCounter
from .geometry import Geometry, parse_line, parse_zone
from .session import TRACKERS, TrackedFrame, TrackingOptions, TrackSession

__all__ = [
    "TRACKERS",
    "ByteTracker",
    "Geometry",
    "LineCounter",
    "TrackSession",
    "TrackedFrame",
    "TrackerConfig",
    "TrackingOptions",
    "ZoneCounter",
    "parse_line",
    "parse_zone",
]
