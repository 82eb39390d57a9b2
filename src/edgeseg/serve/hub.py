"""The frame hub: the runner hands it every frame, the server's clients take the newest.

The runner's side (``on_frame``) only stores references and counters under a short lock and wakes the server's
event loop: it never encodes, serialises or waits for a viewer. The server's side does the work lazily, once per
frame and only while someone asks: the JPEG of the annotated newest frame (for every MJPEG client at once) and
the JSON message of a frame (for every events client at once), on one helper thread so that however many viewers
connect, the view costs at most one core. A slow client skips to the newest frame (MJPEG) or to the oldest
message still kept (events, ``ServeConfig.history`` frames back)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from ..draw import annotate
from ..engines.threads import StreamFrame, StreamStats
from ..results import Detections
from ..sinks import frame_record
from ..tracking import TrackedFrame

_RATE_FRAMES, _RATE_MAX_AGE_S = 30, 10.0  # frames/s and latency on the page: the last 30 frames of the last 10 s
VIEW_NICE = 10  # the view's thread: the pipeline gets ~10x its CPU share when they compete for a core


@dataclass(frozen=True)
class FrameMessage:
    """What an events client needs of a frame, without its image: ``seq`` counts the hub's frames from 1."""

    seq: int
    source: str
    index: int
    time_s: float | None
    detections: Detections
    tracking: TrackedFrame | None = None  # events and running counts, when the run tracks


class FrameHub:
    """An observer of ``predict_sources`` (``on_frame`` / ``close``) that the server's handlers read from."""

    def __init__(self, *, quality: int = 80, history: int = 64) -> None:
        self.quality = quality
        self._lock = threading.Lock()
        self._seq = 0
        self._newest: StreamFrame | None = None
        self._messages: deque[FrameMessage] = deque(maxlen=history)
        self._recent: deque[tuple[float, float]] = deque(maxlen=_RATE_FRAMES)  # (arrival time, worker latency ms)
        self.failed = 0
        self.dropped = 0
        self.source: str | None = None
        self.ended = False
        self.viewers = 0  # open /stream.mjpg and /events responses
        self.jpeg_encodes = 0  # how many frames were drawn and encoded for the view
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgeseg-view", initializer=_lower_priority)
        self._jpeg: tuple[int, asyncio.Future] | None = None
        self._json: dict[int, asyncio.Future] = {}

    # ------------------------------------------------------------------ the runner's side (any thread)

    def on_frame(self, frame: StreamFrame, stats: StreamStats) -> None:
        now = time.monotonic()
        with self._lock:
            self.dropped = stats.dropped
            self.source = frame.source
            if frame.ok:
                self._seq += 1
                self._newest = frame
                self._messages.append(FrameMessage(self._seq, frame.source, frame.index, frame.time_s, frame.detections, frame.tracking))
                self._recent.append((now, frame.latency_ms or 0.0))
            else:
                self.failed += 1
        self._wake()

    def on_state(self, stats: StreamStats) -> None:
        pass

    def close(self) -> None:
        """The run is over: clients get what is left, then their responses end."""
        self.ended = True
        self._wake()

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
        """How many frames with detections the hub has seen."""
        return self._seq

    async def wait_newer(self, seq: int, timeout: float | None = None) -> bool:
        """Wait until a frame newer than ``seq`` is in (True), or the run ended or ``timeout`` passed with none (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._seq <= seq and not self.ended:
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), wait)
            except asyncio.TimeoutError:
                return False
        return self._seq > seq

    async def jpeg(self) -> tuple[int, bytes]:
        """(seq, JPEG) of the annotated newest frame, drawn and encoded once however many clients ask."""
        with self._lock:
            seq, frame = self._seq, self._newest
        if self._jpeg is None or self._jpeg[0] != seq:
            self._jpeg = (seq, asyncio.get_running_loop().run_in_executor(self._pool, self._encode, frame))
        return seq, await asyncio.shield(self._jpeg[1])

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
        """The ``--save-jsonl`` line of a frame, built once however many clients ask."""
        future = self._json.get(message.seq)
        if future is None:
            oldest = self._messages[0].seq if self._messages else message.seq
            for old in [s for s in self._json if s < oldest]:
                del self._json[old]
            future = self._json[message.seq] = asyncio.get_running_loop().run_in_executor(self._pool, _message_json, message)
        return await asyncio.shield(future)

    def status(self) -> dict:
        """What ``/health`` reports: state, counters, frames/s and median worker latency of the last frames."""
        with self._lock:
            recent = [r for r in self._recent if r[0] >= time.monotonic() - _RATE_MAX_AGE_S]
            span = recent[-1][0] - recent[0][0] if len(recent) > 1 else 0.0
            return {
                "status": "ended" if self.ended else "running" if self._seq or self.failed else "waiting",
                "source": self.source,
                "frames": self._seq,
                "failed": self.failed,
                "dropped": self.dropped,
                "fps": round((len(recent) - 1) / span, 2) if span > 0 else None,
                "latency_ms": round(float(np.median([r[1] for r in recent])), 1) if recent else None,
                "viewers": self.viewers,
            }

    def shutdown(self) -> None:
        self._loop = None
        self._pool.shutdown(wait=False, cancel_futures=True)


def _message_json(message: FrameMessage) -> str:
    record = frame_record(
        index=message.index, time_s=message.time_s, source=message.source, detections=message.detections, tracking=message.tracking
    )
    return json.dumps(record, separators=(",", ":"))


def _lower_priority() -> None:
    """The view's helper thread yields to the pipeline when cores are short: on Linux a thread has its own nice
    value. The view then slows down (skips frames) instead of the stream."""
    if sys.platform.startswith("linux"):  # elsewhere PRIO_PROCESS takes a process id, not a thread's
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), VIEW_NICE)
