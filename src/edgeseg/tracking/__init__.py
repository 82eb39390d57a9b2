"""Tracking and counting on ``Detections`` (numpy only, so it runs on the board): ``ByteTracker`` gives
detections stable ``track_ids`` frame after frame; ``LineCounter`` / ``ZoneCounter`` count crossings and
occupancy on those tracks; ``TrackSession`` runs both over one stream in frame order."""

from .bytetrack import ByteTracker, TrackerConfig

__all__ = ["ByteTracker", "TrackerConfig"]
