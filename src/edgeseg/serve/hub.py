"""The frame hub: the runner hands it every frame, the server's clients take the newest.

The runner's side (``on_frame``) only stores references and counters under a short lock and wakes the server's
event loop: it never encodes, serialises or waits for a viewer. The server's side does the work lazily, once per
frame and only while someone asks: the JPEG of the annotated newest frame (for every MJPEG client at once) and
the JSON message of a frame (for every events client at once), on one helper thread so that however many viewers
connect, the view costs at most one core. A slow client skips to the newest frame (MJPEG) or to the oldest
message still kept (events, ``ServeConfig.history`` frames back)."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import json
import os
import sys
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from ..draw import annotate
from ..engines.threads import StreamFrame, StreamStats
from ..outputs import OutputBase
from ..outputs.jsonl import frame_record
from ..results import Detections
from ..sources.base import CONNECTING, ENDED, LIVE
from ..tracking import TrackedFrame

_RATE_FRAMES, _RATE_MAX_AGE_S = 30, 10.0  # frames/s and latency on the page: the last 30 frames of the last 10 s
VIEW_NICE = 10  # the view's thread: the pipeline gets ~10x its CPU share when they compete for a core
# Upper bounds (seconds) of the latency histograms' buckets: a board's 20 ms to a busy CPU's seconds.
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class FrameMessage:
    """What an events client needs of a frame, without its image: ``seq`` counts the hub's frames from 1 (all
    cameras together); ``camera`` is the frame's camera ("" in a run of one unnamed source)."""

    seq: int
    source: str
    index: int
    time_s: float | None
    detections: Detections
    tracking: TrackedFrame | None = None  # events and running counts, when the run tracks
    camera: str = ""


class Histogram:
    """Cumulative-bucket counts of values in seconds (``LATENCY_BUCKETS_S``, then +Inf), their sum and count: what
    a Prometheus histogram exposes, kept by the hub so that a frame costs one bisect."""

    def __init__(self) -> None:
        self.buckets = [0] * (len(LATENCY_BUCKETS_S) + 1)  # per bucket, not cumulative; the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self.buckets[bisect.bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        self.sum += seconds
        self.count += 1

    def copy(self) -> Histogram:
        twin = Histogram()
        twin.buckets, twin.sum, twin.count = list(self.buckets), self.sum, self.count
        return twin

    def cumulative(self) -> list[tuple[str, int]]:
        """(upper bound, values <= it) per bucket, as ``prometheus_client``'s ``HistogramMetricFamily`` takes them."""
        bounds = [*map(str, LATENCY_BUCKETS_S), "+Inf"]
        return list(zip(bounds, itertools.accumulate(self.buckets)))


@dataclass
class CameraView:
    """The hub's record of one camera, every field guarded by the hub's lock (read them through
    ``FrameHub.cameras``, which copies). ``name`` is the camera's, or for the unnamed camera of a single-source run
    (``key`` "") its newest frame's source; ``state`` is the engine's (``sources.base.SOURCE_STATES``), ``live``
    once frames come from a camera the engine reports no state for, ``ended`` once the run is over."""

    key: str
    name: str
    source: str = ""
    seq: int = 0  # frames with detections
    failed: int = 0
    dropped: int = 0
    reconnects: int = 0
    state: str = CONNECTING
    state_detail: str = ""
    last_frame_at: float | None = None  # time.time() of its last frame
    counts: dict | None = None  # the running line and zone counts of its newest frame, when the run tracks
    recent: deque[tuple[float, float, float]] = field(default_factory=lambda: deque(maxlen=_RATE_FRAMES), repr=False)
    latency: Histogram = field(default_factory=Histogram, repr=False)  # the worker's time (inference + decode)
    age: Histogram = field(default_factory=Histogram, repr=False)  # read to ready: what the view lags by
    newest: StreamFrame | None = field(default=None, repr=False)

    def copy(self) -> CameraView:
        """A snapshot for a reader off the runner's thread (``counts`` is a new dict each frame: shared as it is)."""
        return replace(self, recent=deque(self.recent, maxlen=_RATE_FRAMES), latency=self.latency.copy(), age=self.age.copy())

    def health(self, now_s: float) -> dict:
        """``/health``'s entry of the camera; ``now_s`` (time.time()) gives the age of its last frame."""
        recent = [r for r in self.recent if r[0] >= time.monotonic() - _RATE_MAX_AGE_S]
        span = recent[-1][0] - recent[0][0] if len(recent) > 1 else 0.0
        return {
            "name": self.name,
            "camera": self.key,
            "source": self.source,
            "state": self.state,
            "state_detail": self.state_detail,
            "frames": self.seq,
            "failed": self.failed,
            "dropped": self.dropped,
            "reconnects": self.reconnects,
            "fps": round((len(recent) - 1) / span, 2) if span > 0 else None,
            "latency_ms": round(float(np.median([r[1] for r in recent])), 1) if recent else None,
            "age_ms": round(float(np.median([r[2] for r in recent])), 1) if recent else None,
            "last_frame_age_s": None if self.last_frame_at is None else round(max(now_s - self.last_frame_at, 0.0), 3),
        }


class FrameHub(OutputBase):
    """A run-wide output of ``predict_sources`` / ``run_cameras`` (``outputs.Output``: ``on_frame`` / ``on_state`` /
    ``close``; a failure of the view never stops the run) that the server's handlers read from: one ``CameraView``
    per camera (the newest frame, its rate, latency and counters), in the order the cameras first appeared, and the
    recent frames' messages of all cameras together."""

    def __init__(self, *, quality: int = 80, history: int = 64) -> None:
        super().__init__(name="live view", on_failure="continue")
        self.quality = quality
        self.watched: list = []  # the run's other outputs, whose counters /metrics shows (``watch``)
        self._lock = threading.Lock()
        self._seq = 0
        self._cameras: dict[str, CameraView] = {}
        self._messages: deque[FrameMessage] = deque(maxlen=history)
        self.ended = False
        self.viewers = 0  # open /stream.mjpg and /events responses
        self.jpeg_encodes = 0  # how many frames were drawn and encoded for the view
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgeseg-view", initializer=_lower_priority)
        self._jpeg: dict[str, tuple[int, asyncio.Future]] = {}  # per camera key: (its seq, the JPEG being made)
        self._json: dict[int, asyncio.Future] = {}

    def watch(self, outputs) -> None:
        """Show these outputs' ``counters()`` on ``/metrics`` (the run's other outputs: a broker's drops and
        reconnects, a bag's messages)."""
        self.watched = [o for o in outputs if o is not self]

    # ------------------------------------------------------------------ the runner's side (any thread)

    def on_frame(self, frame: StreamFrame, stats: StreamStats) -> None:
        now = time.monotonic()
        with self._lock:
            camera = self._camera(frame.camera)
            camera.source = frame.source
            camera.name = frame.camera or frame.source
            self._take_stats(camera, stats)
            camera.last_frame_at = stats.last_frame_at or time.time()
            if camera.state == CONNECTING:  # an engine that reports no states: a camera whose frames come is live
                camera.state = LIVE
            if frame.ok:
                self._seq += 1
                camera.seq += 1
                camera.newest = frame
                if frame.tracking is not None:
                    camera.counts = frame.tracking.counts
                message = FrameMessage(self._seq, frame.source, frame.index, frame.time_s, frame.detections, frame.tracking, frame.camera)
                self._messages.append(message)
                latency, age = frame.latency_ms or 0.0, frame.age_ms if frame.age_ms is not None else frame.latency_ms or 0.0
                camera.recent.append((now, latency, age))
                camera.latency.observe(latency / 1000)
                camera.age.observe(age / 1000)
            else:
                camera.failed += 1
        self._wake()

    def on_state(self, stats: StreamStats) -> None:
        with self._lock:
            camera = self._camera(stats.camera)
            self._take_stats(camera, stats)
            camera.state, camera.state_detail = stats.state, stats.state_detail
        self._wake()

    def close(self) -> list:
        """The run is over: every camera has ended, clients get what is left, then their responses end."""
        with self._lock:
            for camera in self._cameras.values():
                camera.state = ENDED
        self.ended = True
        self._wake()
        return []

    def _camera(self, key: str) -> CameraView:
        camera = self._cameras.get(key)
        if camera is None:
            camera = self._cameras[key] = CameraView(key=key, name=key)
        return camera

    @staticmethod
    def _take_stats(camera: CameraView, stats: StreamStats) -> None:
        camera.dropped, camera.reconnects = stats.dropped, stats.reconnects
        if stats.state != CONNECTING:  # the default of an engine that reports no states says nothing
            camera.state, camera.state_detail = stats.state, stats.state_detail

    def _wake(self) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the server's loop is already closed
                loop.call_soon_threadsafe(self._notify)

    # ------------------------------------------------------------------ the server's side (its event loop)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Called on ``loop`` before the server serves: wake-ups go there."""
        self._changed = asyncio.Event()
        self._loop = loop

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    @property
    def seq(self) -> int:
        """How many frames with detections the hub has seen (all cameras)."""
        return self._seq

    def cameras(self) -> list[CameraView]:
        """A copy of every camera's record, in the order they first appeared."""
        with self._lock:
            return [camera.copy() for camera in self._cameras.values()]

    def find(self, name: str | None) -> str | None:
        """The key of the camera called ``name`` (its name, or the source of the unnamed camera's frames; None: the
        first camera, or "" before any), None when there is no such camera."""
        with self._lock:
            if name is None:
                return next(iter(self._cameras), "")
            if name in self._cameras and name:
                return name
            unnamed = self._cameras.get("")
            return "" if unnamed is not None and name in ("", unnamed.name) else None

    def camera_seq(self, key: str) -> int:
        camera = self._cameras.get(key)
        return camera.seq if camera is not None else 0

    async def wait_newer(self, seq: int, timeout: float | None = None, *, camera: str | None = None) -> bool:
        """Wait until a frame newer than ``seq`` is in (True), or the run ended or ``timeout`` passed with none
        (False); with ``camera`` (a key), ``seq`` counts that camera's frames."""
        deadline = None if timeout is None else time.monotonic() + timeout

        def newest() -> int:
            return self._seq if camera is None else self.camera_seq(camera)

        while newest() <= seq and not self.ended:
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), wait)
            except asyncio.TimeoutError:
                return False
        return newest() > seq

    async def jpeg(self, camera: str = "") -> tuple[int, bytes]:
        """(camera's seq, JPEG) of camera ``camera``'s (a key) annotated newest frame, drawn and encoded once
        however many clients ask."""
        with self._lock:
            view = self._cameras.get(camera)
            seq, frame = (view.seq, view.newest) if view is not None else (0, None)
        if frame is None:
            return seq, b""
        made = self._jpeg.get(camera)
        if made is None or made[0] != seq:
            made = self._jpeg[camera] = (seq, asyncio.get_running_loop().run_in_executor(self._pool, self._encode, frame))
        return seq, await asyncio.shield(made[1])

    def _encode(self, frame: StreamFrame) -> bytes:
        self.jpeg_encodes += 1
        picture = annotate(frame.image, frame.detections, frame.tracking)
        ok, buf = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:  # an image OpenCV cannot encode (it decoded it, so this is a bug): show nothing rather than fail
            return b""
        return buf.tobytes()

    def messages_after(self, seq: int) -> list[FrameMessage]:
        """The kept messages newer than ``seq`` (a client that lagged further skips the ones no longer kept)."""
        with self._lock:
            return [m for m in self._messages if m.seq > seq]

    async def message_json(self, message: FrameMessage) -> str:
        """The ``--save-jsonl`` line of a frame (a named camera's with ``"camera"`` first), built once however many
        clients ask."""
        future = self._json.get(message.seq)
        if future is None:
            oldest = self._messages[0].seq if self._messages else message.seq
            for old in [s for s in self._json if s < oldest]:
                del self._json[old]
            future = self._json[message.seq] = asyncio.get_running_loop().run_in_executor(self._pool, _message_json, message)
        return await asyncio.shield(future)

    def status(self) -> dict:
        """What ``/health`` reports: the run's state and totals (frames/s summed over the cameras, the median
        worker latency of their last frames), the first camera's ``source``, and each camera's ``health``."""
        cameras, now_s = self.cameras(), time.time()
        entries = [camera.health(now_s) for camera in cameras]
        latencies = [r[1] for camera in cameras for r in camera.recent if r[0] >= time.monotonic() - _RATE_MAX_AGE_S]
        rates = [e["fps"] for e in entries if e["fps"] is not None]
        frames, failed = sum(e["frames"] for e in entries), sum(e["failed"] for e in entries)
        return {
            "status": "ended" if self.ended else "running" if frames or failed else "waiting",
            "source": cameras[0].source or None if cameras else None,
            "frames": frames,
            "failed": failed,
            "dropped": sum(e["dropped"] for e in entries),
            "reconnects": sum(e["reconnects"] for e in entries),
            "fps": round(sum(rates), 2) if rates else None,
            "latency_ms": round(float(np.median(latencies)), 1) if latencies else None,
            "viewers": self.viewers,
            "cameras": entries,
        }

    def shutdown(self) -> None:
        self._loop = None
        self._pool.shutdown(wait=False, cancel_futures=True)


def _message_json(message: FrameMessage) -> str:
    record = frame_record(  # the camera's --save-jsonl line, byte for byte
        index=message.index,
        time_s=message.time_s,
        source=message.source,
        detections=message.detections,
        tracking=message.tracking,
        camera=message.camera or None,
    )
    return json.dumps(record, separators=(",", ":"))


def _lower_priority() -> None:
    """The view's helper thread yields to the pipeline when cores are short: on Linux a thread has its own nice
    value. The view then slows down (skips frames) instead of the stream."""
    if sys.platform.startswith("linux"):  # elsewhere PRIO_PROCESS takes a process id, not a thread's
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), VIEW_NICE)
