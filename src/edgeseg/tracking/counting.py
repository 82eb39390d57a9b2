"""Counting on tracks: who crossed a line (once per track, with a direction) and who is in a zone.

A tracked object is where its box centre is. ``LineCounter``: a track crosses when the step from its previous
sighting to this one passes through the line segment; each track is counted once per line, in the direction of
that first crossing. ``in`` is a crossing from the left of the line to its right, looking from its first point
to its second (in image coordinates, y down: a line drawn left to right counts downward motion as ``in``).
``ZoneCounter``: a track enters when it is seen inside after being seen outside or never before, and exits when
it is seen outside after being inside; occupancy is the number of tracks inside in this frame, per class. To
change sides a track must be past the zone's edge by a tenth of its box's smaller side (hysteresis): a box
centre wobbles by a few pixels from frame to frame, and without it an object walking along the edge would
enter and leave many times.

Both keep a little state per track id and forget ids unseen for more than ``forget_after`` frames (the tracker
never brings such an id back), so a long-running stream does not grow them.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..results import Detections
from .geometry import Geometry

HYSTERESIS = 0.1  # of the box's smaller side


def anchors(detections: Detections) -> np.ndarray:
    """(N, 2) box centres: the point of a tracked object that lines and zones look at."""
    xyxy = np.asarray(detections.xyxy, np.float64)
    return (xyxy[:, :2] + xyxy[:, 2:]) / 2


def _cross(o: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """z of (a - o) x (b - o), broadcast over rows."""
    return (a[..., 0] - o[..., 0]) * (b[..., 1] - o[..., 1]) - (a[..., 1] - o[..., 1]) * (b[..., 0] - o[..., 0])


class _PerTrack:
    """The last frame each track id was seen, with one value of state per id."""

    def __init__(self, forget_after: int) -> None:
        self.forget_after = forget_after
        self.values: dict[int, object] = {}
        self.seen: dict[int, int] = {}

    def forget_stale(self, frame: int) -> None:
        stale = [t for t, f in self.seen.items() if frame - f > self.forget_after]
        for t in stale:
            del self.seen[t]
            self.values.pop(t, None)


class LineCounter:
    """Crossings of one line by tracks; ``counts`` and the events of each ``update``."""

    kind = "line"

    def __init__(self, geometry: Geometry, image_shape: tuple[int, int], *, forget_after: int = 30) -> None:
        self.geometry = geometry
        self.name = geometry.name
        self.points = geometry.pixels(image_shape)
        self.tracks = _PerTrack(forget_after)  # values: last anchor (x, y)
        self.counted: dict[int, int] = {}  # track id -> frame it was counted (forgotten with the track)
        self.totals = {"in": 0, "out": 0}
        self.by_class: dict[str, dict[str, int]] = {}

    def reset_tracks(self, image_shape: tuple[int, int]) -> None:
        """Forget every track (the tracker restarted its ids) but keep the counts."""
        self.points = self.geometry.pixels(image_shape)
        self.tracks = _PerTrack(self.tracks.forget_after)
        self.counted.clear()

    def update(self, detections: Detections, frame_index: int) -> list[dict]:
        events = []
        if detections.track_ids is None:
            raise ValueError("counting needs tracked detections (track_ids)")
        p1, p2 = self.points
        here = anchors(detections)
        for k, (tid, cls_name) in enumerate(zip(detections.track_ids.tolist(), detections.class_names)):
            prev = self.tracks.values.get(tid)
            self.tracks.values[tid] = here[k]
            self.tracks.seen[tid] = frame_index
            if prev is None or tid in self.counted:
                continue
            side_prev, side_now = _cross(p1, p2, prev), _cross(p1, p2, here[k])
            if not (side_prev < 0 <= side_now or side_now < 0 <= side_prev) or side_prev == side_now == 0:
                continue
            # the step crosses the infinite line; it crosses the segment when the ends lie on both sides of the step
            if _cross(prev, here[k], p1) * _cross(prev, here[k], p2) > 0:
                continue
            direction = "in" if side_prev < 0 else "out"
            self.counted[tid] = frame_index
            self.totals[direction] += 1
            self.by_class.setdefault(cls_name, {"in": 0, "out": 0})[direction] += 1
            events.append({"type": "line", "name": self.name, "track_id": tid, "class_name": cls_name, "direction": direction})
        self.tracks.forget_stale(frame_index)
        for tid in [t for t in self.counted if t not in self.tracks.seen]:
            del self.counted[tid]
        return events

    def counts(self) -> dict:
        return {**self.totals, "by_class": {c: dict(v) for c, v in sorted(self.by_class.items())}}


class ZoneCounter:
    """Tracks entering, leaving and inside one polygon zone."""

    kind = "zone"

    def __init__(self, geometry: Geometry, image_shape: tuple[int, int], *, forget_after: int = 30) -> None:
        self.geometry = geometry
        self.name = geometry.name
        self.polygon = geometry.pixels(image_shape)
        self._contour = self.polygon.astype(np.float32)
        self.tracks = _PerTrack(forget_after)  # values: inside at the last sighting (bool)
        self.totals = {"entered": 0, "exited": 0}
        self.by_class: dict[str, dict[str, int]] = {}
        self.occupancy: dict[str, int] = {}

    def reset_tracks(self, image_shape: tuple[int, int]) -> None:
        self.polygon = self.geometry.pixels(image_shape)
        self._contour = self.polygon.astype(np.float32)
        self.tracks = _PerTrack(self.tracks.forget_after)
        self.occupancy = {}

    def update(self, detections: Detections, frame_index: int) -> list[dict]:
        if detections.track_ids is None:
            raise ValueError("counting needs tracked detections (track_ids)")
        events = []
        xyxy = np.asarray(detections.xyxy, np.float64)
        margins = (HYSTERESIS * np.minimum(xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1])).tolist()
        occupancy: dict[str, int] = {}
        rows = zip(detections.track_ids.tolist(), detections.class_names, anchors(detections).tolist(), margins)
        for tid, cls_name, point, margin in rows:
            depth = cv2.pointPolygonTest(self._contour, (point[0], point[1]), True)  # > 0 inside, < 0 outside, in pixels
            before = self.tracks.values.get(tid)
            now = depth > 0 if before is None else (depth > -margin if before else depth > margin)
            self.tracks.values[tid] = now
            self.tracks.seen[tid] = frame_index
            if now:
                occupancy[cls_name] = occupancy.get(cls_name, 0) + 1
            if now and not before:
                event = "entered"
            elif before and not now:
                event = "exited"
            else:
                continue
            self.totals[event] += 1
            self.by_class.setdefault(cls_name, {"entered": 0, "exited": 0})[event] += 1
            events.append(
                {
                    "type": "zone",
                    "name": self.name,
                    "track_id": tid,
                    "class_name": cls_name,
                    "event": "enter" if event == "entered" else "exit",
                }
            )
        self.occupancy = occupancy
        self.tracks.forget_stale(frame_index)
        return events

    def counts(self) -> dict:
        return {
            **self.totals,
            "occupancy": sum(self.occupancy.values()),
            "occupancy_by_class": dict(sorted(self.occupancy.items())),
            "by_class": {c: dict(v) for c, v in sorted(self.by_class.items())},
        }
