"""What the local-threads engine hands back: ``StreamFrame`` (one frame of a camera with its detections) and
``StreamStats`` (what a camera's run did so far). Per-frame latencies are kept for the last ``LATENCY_WINDOW``
frames, so a run of weeks keeps flat memory; counters cover the whole run."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..results import Detections
from ..tracking import TrackedFrame

LATENCY_WINDOW = 10_000  # frames whose latency and age the percentiles are taken over


@dataclass
class StreamFrame:
    """One frame (or image) of a source with its detections, or the one-line reason it has none.
    ``latency_ms``: the time a worker spent on it (preprocess to masks); ``age_ms``: from the moment it
    was read to the moment its detections were ready (queueing included: what a live view lags by).
    ``tracking``: what tracking added (events, running counts, trails), when the run tracks; then
    ``detections`` are the tracked ones, with ``track_ids``."""

    index: int
    source: str
    image: np.ndarray | None
    detections: Detections | None
    error: str | None = None
    time_s: float | None = None
    latency_ms: float | None = None
    age_ms: float | None = None
    tracking: TrackedFrame | None = None
    camera: str = ""  # the name of the camera (source) the frame came from: unique within a run

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class StreamStats:
    """What a run did: frames with detections, frames that failed, live frames dropped, wall time, and per
    frame the worker latency and the age (read to ready)."""

    frames: int = 0
    failed: int = 0
    dropped: int = 0
    wall_s: float = 0.0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW), repr=False)
    ages_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW), repr=False)
    camera: str = ""  # whose statistics these are (one camera's, in a run of several)
    state: str = "connecting"  # one of sources.base.SOURCE_STATES
    state_detail: str = ""  # the one line that came with the last state change
    reconnects: int = 0  # times the source came back after it had stopped
    last_frame_at: float | None = None  # time.time() when its last frame was handed back

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    def percentiles(self, values: Sequence[float]) -> tuple[float, float] | None:
        """(p50, p99) of ``values`` (``latencies_ms`` or ``ages_ms``), None when empty."""
        return (float(np.percentile(values, 50)), float(np.percentile(values, 99))) if values else None

    def summary(self) -> str:
        text = f"{self.frames} frame(s), {self.failed} failed, {self.dropped} dropped, {self.fps:.2f} frames/s"
        for label, values in (("latency", self.latencies_ms), ("age", self.ages_ms)):
            p = self.percentiles(values)
            if p is not None:
                text += f", {label} p50 {p[0]:.1f} ms / p99 {p[1]:.1f} ms"
        return text
