"""Video files, cameras and network streams through OpenCV's FFmpeg/V4L2 capture.

OpenCV's capture (``cv2.VideoCapture``) is the one video reader: its wheels bundle FFmpeg (files, RTSP,
RTMP, HTTP) and V4L2 (cameras), it hands back BGR frames as the rest of the pipeline wants them, and it
bounds network waits with its open/read timeouts. A video file is opened, and its first frame read, before
any work starts, so a missing, empty or unreadable file is a one-line error up front; one that ends before
the frame count its container announced gets a warning with the frame index (the frames before are kept).

Cameras and streams run unattended: by default (``RetryPolicy(attempts=None)``) they are retried forever,
with capped, jittered exponential backoff, and a source never fails because its camera is down. It connects
when it is iterated, reports each change of state to its ``state_listener`` (``connecting``, ``live``,
``reconnecting``) and goes on when the camera comes back; a stream that stalls (no frame within
``read_timeout_s``) is reopened like one that ended. With a finite ``attempts`` a camera or stream is opened
up front as a file is (a one-line error when it cannot) and ends with a one-line error when it stays down
mid-run (the frames before it are kept). ``close()`` (from any thread) ends an iteration that waits for its
camera promptly.
"""

from __future__ import annotations

import functools
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import EdgesegError
from .base import CONNECTING, LIVE, RECONNECTING, Source, SourceItem, strided_length

VIDEO_SUFFIXES = (".asf", ".avi", ".flv", ".gif", ".m4v", ".mkv", ".mov", ".mp4", ".mpeg", ".mpg", ".ts", ".webm", ".wmv")
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "rtmps://", "http://", "https://", "udp://", "tcp://", "srt://")
_CAMERA_DEVICE = re.compile(r"^/dev/video\d+$")
CLOSE_POLL_S = 0.05  # how often a wait for a try to open looks whether the source was closed


def source_kind(spec: str) -> str:
    """``camera`` (``0``, ``/dev/video0``), ``url`` (rtsp/rtmp/http(s)/...), ``video`` (a video file
    suffix), or ``files`` (image files, directories, globs)."""
    if spec.isdigit() or _CAMERA_DEVICE.match(spec):
        return "camera"
    if spec.lower().startswith(STREAM_SCHEMES):
        return "url"
    if Path(spec).suffix.lower() in VIDEO_SUFFIXES:
        return "video"
    return "files"


@dataclass(frozen=True)
class RetryPolicy:
    """How cameras and network streams are opened, and reopened when they stop or stall.

    ``attempts``: tries to open one, and again to bring it back each time it stops. None (the default) tries
    forever: the source waits for its camera, however long it is down. A number opens the source up front (a
    one-line error when it cannot: a stream gets ``attempts`` tries, a camera one) and ends it with a one-line
    error when it stays down mid-run. Between two tries the source waits ``delay(k, rng)``: ``backoff_s`` * 2**k
    after the (k+1)-th failed try in a row, capped at ``max_backoff_s`` (2 s: a camera that comes back is read again
    within a few seconds, and a refused try costs little), less a random part of up to ``jitter``
    of it (cameras that dropped together do not all knock again at once); k starts again from 0 once the
    camera is back. ``open_timeout_s`` bounds one try to open a stream (connect, read its header and the first
    frames FFmpeg probes: up to ~3 s of them); OpenCV opens one FFmpeg capture at a time in a process, so a host
    that never answers holds the other cameras' (re)connects back that long. ``read_timeout_s`` bounds the wait
    for each frame: a stream that stalls that long is reopened."""

    attempts: int | None = None
    backoff_s: float = 0.5
    max_backoff_s: float = 2.0
    jitter: float = 0.25
    open_timeout_s: float = 10.0
    read_timeout_s: float = 3.0

    def __post_init__(self) -> None:
        if self.attempts is not None and self.attempts < 1:
            raise EdgesegError(f"retry attempts must be at least 1 (None: forever), got {self.attempts}")
        if not 0 <= self.backoff_s <= self.max_backoff_s:
            raise EdgesegError(f"retry backoff must be between 0 and max_backoff_s ({self.max_backoff_s}), got {self.backoff_s}")
        if not 0 <= self.jitter <= 1:
            raise EdgesegError(f"retry jitter must be between 0 and 1, got {self.jitter}")
        if self.open_timeout_s <= 0 or self.read_timeout_s <= 0:
            raise EdgesegError(f"retry timeouts must be positive, got {self.open_timeout_s} and {self.read_timeout_s}")

    def delay(self, k: int, rng: random.Random) -> float:
        """Seconds to wait after the (k+1)-th failed try in a row (k from 0): in [(1 - jitter) * b, b] where
        b = min(max_backoff_s, backoff_s * 2**k)."""
        base = min(self.max_backoff_s, self.backoff_s * 2.0 ** min(k, 64))
        return base * (1.0 - self.jitter * rng.random())


# FFmpeg's options for every capture OpenCV opens (it reads them at each open; a user's own value wins). Without
# them OpenCV asks for RTSP over TCP only, and FFmpeg probes a live stream for its frame rate for ~2 s of frames
# (which then come in one burst): with OpenCV opening one capture at a time, four cameras reconnecting took ~8 s.
# Half a second of probing gives the same rate and size.
CAPTURE_OPTIONS = "rtsp_transport;tcp|analyzeduration;500000"


@functools.cache
def _quiet_capture_logs() -> None:
    """OpenCV and FFmpeg print their own retries and failures to stderr; the errors that matter reach the
    user as one line each from here. A user's own OPENCV_LOG_LEVEL / OPENCV_FFMPEG_LOGLEVEL wins. Also sets
    ``CAPTURE_OPTIONS``."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # read when FFmpeg's capture first opens
    os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", CAPTURE_OPTIONS)
    if "OPENCV_LOG_LEVEL" not in os.environ:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def _open_capture(spec: str, kind: str, retry: RetryPolicy) -> cv2.VideoCapture:
    _quiet_capture_logs()
    if kind == "camera":
        return cv2.VideoCapture(int(spec)) if spec.isdigit() else cv2.VideoCapture(spec, cv2.CAP_V4L2)
    params = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        int(retry.open_timeout_s * 1000),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        int(retry.read_timeout_s * 1000),
    ]
    return cv2.VideoCapture(spec, cv2.CAP_FFMPEG, params)


def _release_late(future: Future) -> None:
    """A try to open that ended after its source was closed: release what it opened."""
    if future.exception() is None and future.result()[0] is not None:
        future.result()[0].release()


class VideoSource(Source):
    """Frames of a video file, a camera or a network stream, as ``SourceItem``s (frame index, timestamp).

    ``live`` defaults to True for cameras and URLs (runners then drop stale frames), False for files.
    ``vid_stride`` keeps every n-th frame (the others are grabbed, not decoded). A camera or stream retried
    forever (``retry.attempts`` None, the default) connects when iterated: ``fps`` and ``size`` are None until
    its first frame. Frame indices go on counting across reconnects, and ``time_s`` too (the outage included);
    a camera that comes back at another size gives frames at that size (with a warning)."""

    def __init__(
        self,
        spec: str,
        *,
        live: bool | None = None,
        vid_stride: int = 1,
        retry: RetryPolicy = RetryPolicy(),
        open_capture: Callable[[str, str, RetryPolicy], cv2.VideoCapture] = _open_capture,
    ) -> None:
        if vid_stride < 1:
            raise EdgesegError(f"vid_stride must be >= 1, got {vid_stride}")
        self.spec = spec
        self.name = spec
        self.kind = source_kind(spec)
        if self.kind == "files":
            self.kind = "video"  # asked for explicitly: read it as a video whatever its suffix
        self.live = self.kind in ("camera", "url") if live is None else live
        self.vid_stride = vid_stride
        self.retry = retry
        self.warnings: list[str] = []
        self.fps: float | None = None
        self.size: tuple[int, int] | None = None  # (width, height) of the frames now
        self.frame_count: int | None = None
        self._open_capture = open_capture
        self._closed = threading.Event()
        self._rng = random.Random()  # seeded from the OS: cameras that dropped together back off apart
        self._cap: cv2.VideoCapture | None = None
        self._first: np.ndarray | None = None
        self._opened = False  # whether the last failed try opened at all (the error names what failed)
        self._drops = 0
        self._drop_note = ""  # the one warning line about drops, rewritten at each
        self._time_offset_s = 0.0  # added to a connection's own timestamps: time_s goes on across reconnects
        if self.kind == "video" and not Path(spec).is_file():
            raise EdgesegError("no such file" if not Path(spec).exists() else "is a directory, expected a video file", spec)
        if self.kind == "video" or retry.attempts is not None:  # opened, and its first frame read, up front
            if not self._connect(self._first_tries, CONNECTING):
                raise EdgesegError(self._unreadable(self._first_tries), spec)
            if self.kind == "video":
                count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
                self.frame_count = count if count > 0 else None
                # checked, then closed: it opens again when read, so files given by the hundred do not hold a
                # hundred decoders (and first frames) while the engine reads a few at a time
                self._cap.release()
                self._cap, self._first = None, None
        self.length = strided_length(self.frame_count, vid_stride)

    @property
    def _first_tries(self) -> int | None:
        """Tries to open before the first frame: a stream's ``retry.attempts``; a file one, a camera one unless
        retried forever."""
        if self.kind == "video" or (self.kind == "camera" and self.retry.attempts is not None):
            return 1
        return self.retry.attempts

    def _unreadable(self, tries: int) -> str:
        if self.kind == "video":
            return "no frames: empty, corrupt or not a video" if self._opened else "cannot open as a video"
        if self.kind == "camera":
            return "no such camera, or it gives no frames"
        return f"cannot read the stream (unreachable or no video) after {tries} tries"

    def close(self) -> None:
        """End the iteration, from any thread: one that waits for its camera (a backoff, a try to open) returns
        within ~0.1 s, one that reads frames after the frame it reads (``read_timeout_s`` at most)."""
        self._closed.set()

    def _notify(self, state: str, detail: str) -> None:
        if self.state_listener is not None:
            self.state_listener(state, detail)

    def _open_once(self) -> tuple[cv2.VideoCapture | None, np.ndarray | None, bool]:
        """Open and read the first frame: (capture, frame, True), or (None, None, whether it opened at all)."""
        cap = self._open_capture(self.spec, self.kind, self.retry)
        ok, frame = cap.read() if cap.isOpened() else (False, None)
        if ok and frame is not None and frame.size:
            return cap, frame, True
        opened = cap.isOpened()
        cap.release()
        return None, None, opened

    def _try_open(self) -> tuple[cv2.VideoCapture | None, np.ndarray | None, bool] | None:
        """One try to open; None when the source was closed meanwhile. A camera's or stream's try runs on a
        helper thread, so that ``close()`` need not wait out its open timeout (what it opens late is released)."""
        if self.kind == "video":
            return self._open_once()
        future: Future = Future()

        def attempt() -> None:
            try:
                future.set_result(self._open_once())
            except BaseException as exc:  # noqa: BLE001 (handed to the iterating thread)
                future.set_exception(exc)

        threading.Thread(target=attempt, name="edgeseg-open", daemon=True).start()
        while True:
            try:
                return future.result(timeout=CLOSE_POLL_S)
            except FutureTimeout:
                if self._closed.is_set():
                    future.add_done_callback(_release_late)
                    return None

    def _connect(self, attempts: int | None, state: str) -> bool:
        """Open and read a first frame in ``attempts`` tries (None: until it works), ``retry.delay`` apart; the
        listener hears ``state`` with the reason and the next wait while the waits grow. False when every try
        failed or the source was closed."""
        what = "stream" if self.kind == "url" else "camera"
        failed, reason = 0, ""
        while not self._closed.is_set():
            tried = self._try_open()
            if tried is None:
                return False
            cap, frame, self._opened = tried
            if cap is not None:
                self._connected(cap, frame)
                return True
            failed += 1
            if attempts is not None and failed >= attempts:
                return False
            wait = self.retry.delay(failed - 1, self._rng)
            was, reason = reason, f"the {what} opens but gives no frames" if self._opened else f"cannot reach the {what}"
            if reason != was or self.retry.backoff_s * 2 ** (failed - 2) < self.retry.max_backoff_s:  # news: a new reason, a longer wait
                self._notify(state, f"{reason} (try {failed}); next try in {wait:.1f} s")
            if self._closed.wait(wait):
                return False
        return False

    def _connected(self, cap: cv2.VideoCapture, frame: np.ndarray) -> None:
        self._cap, self._first = cap, frame
        size = (int(frame.shape[1]), int(frame.shape[0]))
        if self.size is not None and size != self.size:
            self.warnings.append(
                f"{self.name}: the frame size changed from {self.size[0]}x{self.size[1]} to {size[0]}x{size[1]} when it came back"
            )
        self.size = size
        if self.fps is None:
            fps = cap.get(cv2.CAP_PROP_FPS)
            self.fps = float(fps) if fps and np.isfinite(fps) and 0 < fps < 1000 else None

    def _reconnect(self, index: int, why: str) -> bool:
        """Reopen a camera or stream that stopped after frame ``index`` in ``retry.attempts`` tries (forever by
        default); False when it stays down or the source was closed."""
        what = "stream" if self.kind == "url" else "camera"
        stopped, size = time.monotonic(), self.size
        self._cap.release()
        self._cap = None
        self._notify(RECONNECTING, f"the {what} stopped after frame {index}{why}")
        if not self._connect(self.retry.attempts, RECONNECTING):
            return False
        self._drops += 1
        note = f"{self.name}: stream dropped after frame {index}; reconnected"
        if self._drops > 1:  # one line however often: a camera that drops every hour for weeks is one warning
            self.warnings.remove(self._drop_note)
            note = f"{self.name}: stream dropped {self._drops} times, the last after frame {index}; reconnected each time"
        self._drop_note = note
        self.warnings.append(note)
        resized = f"; now {self.size[0]}x{self.size[1]}" if self.size != size else ""
        self._notify(LIVE, f"reconnected after {time.monotonic() - stopped:.1f} s{resized}")
        return True

    def __iter__(self) -> Iterator[SourceItem]:
        if self._cap is None and not self._connect(self._first_tries, CONNECTING):
            if self._closed.is_set():
                return
            raise EdgesegError(self._unreadable(self._first_tries), self.spec)  # iterated again, and it opens no more
        cap, index, frame, first_index, time_s, previous_s = self._cap, 0, self._first, 0, None, None
        self._notify(LIVE, f"{self.size[0]}x{self.size[1]}" + (f" at {self.fps:g} fps" if self.fps else ""))
        try:
            while not self._closed.is_set():
                if frame is None:
                    for _ in range(self.vid_stride - 1):  # frames skipped by the stride are grabbed, not decoded
                        if not cap.grab():
                            break
                        index += 1
                    asked = time.monotonic()
                    ok, frame = cap.read()
                    # FFmpeg's read timeout can end in a frame still inside the decoder: a read that long is a stall
                    stalled = self.kind != "video" and time.monotonic() - asked >= self.retry.read_timeout_s
                    if not ok or frame is None or stalled:
                        if self.kind == "video":
                            break
                        why = f" (no frame for {self.retry.read_timeout_s:g} s)" if stalled else ""
                        if not self._reconnect(index, why):
                            if self._closed.is_set():
                                return
                            what = "stream" if self.kind == "url" else "camera"
                            raise EdgesegError(
                                f"the {what} stopped after frame {index} and did not come back in {self.retry.attempts} tries", self.name
                            )
                        self._time_offset_s = (time_s or 0.0) + (time.monotonic() - asked)
                        cap, frame = self._cap, self._first
                        index += 1
                        first_index = index
                        continue
                    index += 1
                msec = cap.get(cv2.CAP_PROP_POS_MSEC)
                if msec > 0 or index == first_index:
                    time_s = self._time_offset_s + msec / 1000
                else:  # no timestamp from the capture: the frame rate's
                    time_s = self._time_offset_s + (index - first_index) / self.fps if self.fps else None
                if self.live and time_s is not None and previous_s is not None and time_s < previous_s:
                    # a stream's clock that goes back (FFmpeg re-bases RTP times on the first RTCP report): time_s
                    # goes on from where it was, a frame's interval later
                    step = 1 / self.fps if self.fps else 0.0
                    self._time_offset_s += previous_s - time_s + step
                    time_s = previous_s + step
                previous_s = time_s
                yield SourceItem(index, self.name, image=frame, time_s=time_s)
                frame = None
            if self.frame_count and index + 1 < self.frame_count - self.vid_stride and not self._closed.is_set():
                self.warnings.append(f"{self.name}: stopped at frame {index + 1} of {self.frame_count}: the file is truncated or corrupt")
        finally:
            if self._cap is not None:
                self._cap.release()
                self._cap = None  # iterated again: opened again (a file from its start)
