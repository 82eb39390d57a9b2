"""Tracking one stream in frame order: the tracker, the line and zone counters and the short trails drawn
behind each object, kept together per source. The stream runner calls ``update`` on its consumer side, after
frames are back in order, so inference workers stay parallel and only this cheap step is sequential."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..results import Detections
from .bytetrack import ByteTracker, TrackerConfig
from .counting import LineCounter, ZoneCounter, anchors
from .geometry import Geometry, check_names

TRACKERS = ("bytetrack",)


@dataclass(frozen=True)
class TrackingOptions:
    """What to track and count: the tracker's settings, ``lines`` and ``zones`` (``geometry.parse_line`` /
    ``parse_zone``), and how many past positions a drawn trail shows."""

    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    lines: tuple[Geometry, ...] = ()
    zones: tuple[Geometry, ...] = ()
    trail: int = 30

    def __post_init__(self) -> None:
        check_names((*self.lines, *self.zones))


@dataclass
class TrackedFrame:
    """What tracking adds to a frame: the tracked detections (with ``track_ids``), this frame's counting
    events, the running counts, and the trails and geometry to draw."""

    detections: Detections
    events: list[dict]
    counts: dict
    trails: dict[int, list[tuple[float, float]]]
    lines: list[tuple[str, np.ndarray, dict]]
    zones: list[tuple[str, np.ndarray, dict]]


class TrackSession:
    """The per-stream tracking state. ``warnings`` collects what the run should report (a geometry far outside
    the frame, a frame size that changed and reset the tracks)."""

    def __init__(self, options: TrackingOptions = TrackingOptions(), *, name: str = "") -> None:
        self.options = options
        self.name = name
        self.tracker = ByteTracker(options.tracker)
        self.counters: list[LineCounter | ZoneCounter] = []
        self.trails: dict[int, deque] = {}
        self.image_shape: tuple[int, int] | None = None
        self.warnings: list[str] = []

    def _start(self, image_shape: tuple[int, int]) -> None:
        forget = self.options.tracker.track_buffer + 1
        if not self.counters:
            self.counters = [LineCounter(g, image_shape, forget_after=forget) for g in self.options.lines]
            self.counters += [ZoneCounter(g, image_shape, forget_after=forget) for g in self.options.zones]
        else:
            for counter in self.counters:
                counter.reset_tracks(image_shape)
        for g in (*self.options.lines, *self.options.zones):
            for w in g.warnings_for(image_shape):
                if w not in self.warnings:
                    self.warnings.append(w)
        self.image_shape = image_shape

    def update(self, detections: Detections, frame_index: int) -> TrackedFrame:
        shape = tuple(detections.image_shape)
        if self.image_shape is None:
            self._start(shape)
        elif shape != self.image_shape:
            old = self.image_shape
            self.warnings.append(
                f"{self.name + ': ' if self.name else ''}frame {frame_index} is {shape[1]}x{shape[0]}, not "
                f"{old[1]}x{old[0]}: tracks were reset (ids start again; counts so far are kept)"
            )
            self.tracker.reset()
            self.trails.clear()
            self._start(shape)
        tracked = self.tracker.update(detections, frame_index)
        events = []
        for counter in self.counters:
            for event in counter.update(tracked, frame_index):
                events.append({**event, "frame": frame_index})
        self._grow_trails(tracked)
        return TrackedFrame(
            detections=tracked,
            events=events,
            counts=self.counts(),
            trails={t: list(points) for t, points in self.trails.items()},
            lines=[(c.name, c.points, c.counts()) for c in self.counters if isinstance(c, LineCounter)],
            zones=[(c.name, c.polygon, c.counts()) for c in self.counters if isinstance(c, ZoneCounter)],
        )

    def _grow_trails(self, tracked: Detections) -> None:
        seen = set()
        for tid, point in zip(tracked.track_ids.tolist(), anchors(tracked).tolist()):
            self.trails.setdefault(tid, deque(maxlen=max(1, self.options.trail))).append(tuple(point))
            seen.add(tid)
        for tid in [t for t in self.trails if t not in seen]:  # a trail is drawn only while its object is seen
            del self.trails[tid]

    def counts(self) -> dict:
        """``{"lines": {name: {"in", "out", "by_class"}}, "zones": {name: {"entered", "exited", "occupancy",
        "occupancy_by_class", "by_class"}}}``."""
        return {
            "lines": {c.name: c.counts() for c in self.counters if isinstance(c, LineCounter)},
            "zones": {c.name: c.counts() for c in self.counters if isinstance(c, ZoneCounter)},
        }
