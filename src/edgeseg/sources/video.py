"""Video files, cameras and network streams through OpenCV's FFmpeg/V4L2 capture.

OpenCV's capture (``cv2.VideoCapture``) is the one video reader: its wheels bundle FFmpeg (files, RTSP,
RTMP, HTTP) and V4L2 (cameras), it hands back BGR frames as the rest of the pipeline wants them, and it
bounds network waits with its open/read timeouts. A source is opened, and its first frame read, before any
work starts, so a missing file, an empty or unreadable video, a missing camera or an unreachable URL is a
one-line error up front. Network streams are retried with exponential backoff, on open and when they drop
mid-stream, and so is a camera that stops giving frames mid-run; one that stays down ends its source with a
one-line error (the frames before it are kept), never a quiet end. A file that ends before the frame count
its container announced gets a warning with the frame index (the frames before the break are kept).
"""

from __future__ import annotations

import functools
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import EdgesegError
from .base import Source, SourceItem, strided_length

VIDEO_SUFFIXES = (".asf", ".avi", ".flv", ".gif", ".m4v", ".mkv", ".mov", ".mp4", ".mpeg", ".mpg", ".ts", ".webm", ".wmv")
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "rtmps://", "http://", "https://", "udp://", "tcp://", "srt://")
_CAMERA_DEVICE = re.compile(r"^/dev/video\d+$")


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
    """How network streams are (re)opened, and cameras reopened when they stop mid-run: ``attempts`` tries,
    waiting ``backoff_s`` * 2**k between them, each bounded by ``timeout_s`` for opening and for every read."""

    attempts: int = 4
    backoff_s: float = 0.5
    timeout_s: float = 10.0


@functools.cache
def _quiet_capture_logs() -> None:
    """OpenCV and FFmpeg print their own retries and failures to stderr; the errors that matter reach the
    user as one line each from here. A user's own OPENCV_LOG_LEVEL / OPENCV_FFMPEG_LOGLEVEL wins."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # read when FFmpeg's capture first opens
    if "OPENCV_LOG_LEVEL" not in os.environ:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def _open_capture(spec: str, kind: str, timeout_s: float) -> cv2.VideoCapture:
    _quiet_capture_logs()
    if kind == "camera":
        return cv2.VideoCapture(int(spec)) if spec.isdigit() else cv2.VideoCapture(spec, cv2.CAP_V4L2)
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(timeout_s * 1000), cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(timeout_s * 1000)]
    return cv2.VideoCapture(spec, cv2.CAP_FFMPEG, params)


class VideoSource(Source):
    """Frames of a video file, a camera or a network stream, as ``SourceItem``s (frame index, timestamp).

    ``live`` defaults to True for cameras and URLs (runners then drop stale frames), False for files.
    ``vid_stride`` keeps every n-th frame (the others are grabbed, not decoded)."""

    def __init__(
        self,
        spec: str,
        *,
        live: bool | None = None,
        vid_stride: int = 1,
        retry: RetryPolicy = RetryPolicy(),
        open_capture: Callable[[str, str, float], cv2.VideoCapture] = _open_capture,
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
        self._open_capture = open_capture
        if self.kind == "video" and not Path(spec).is_file():
            raise EdgesegError("no such file" if not Path(spec).exists() else "is a directory, expected a video file", spec)
        self._cap, self._first = self._open()
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps: float | None = float(fps) if fps and np.isfinite(fps) and 0 < fps < 1000 else None
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if self.kind == "video" else 0
        self.frame_count: int | None = count if count > 0 else None
        self.length = strided_length(self.frame_count, vid_stride)
        self.size = (int(self._first.shape[1]), int(self._first.shape[0]))  # (width, height) of the first frame

    def _open(self, attempts: int | None = None) -> tuple[cv2.VideoCapture, np.ndarray]:
        """Open and read the first frame in ``attempts`` tries (default: network streams ``retry.attempts``, the
        others one); a one-line error when it cannot."""
        attempts = attempts or (self.retry.attempts if self.kind == "url" else 1)
        for k in range(attempts):
            cap = self._open_capture(self.spec, self.kind, self.retry.timeout_s)
            ok, frame = cap.read() if cap.isOpened() else (False, None)
            if ok and frame is not None and frame.size:
                return cap, frame
            opened = cap.isOpened()
            cap.release()
            if k + 1 < attempts:
                time.sleep(self.retry.backoff_s * 2**k)
        if self.kind == "video":
            raise EdgesegError("no frames: empty, corrupt or not a video" if opened else "cannot open as a video", self.spec)
        if self.kind == "camera":
            raise EdgesegError("no such camera, or it gives no frames", self.spec)
        raise EdgesegError(f"cannot read the stream (unreachable or no video) after {attempts} tries", self.spec)

    def _reconnect(self) -> bool:
        """Reopen a dropped network stream or camera in ``retry.attempts`` tries with backoff; False when it stays down."""
        self._cap.release()
        try:
            self._cap, self._first = self._open(self.retry.attempts)
        except EdgesegError:
            return False
        return True

    def __iter__(self) -> Iterator[SourceItem]:
        cap, index, frame = self._cap, 0, self._first
        try:
            while True:
                if frame is None:
                    for _ in range(self.vid_stride - 1):  # frames skipped by the stride are grabbed, not decoded
                        if not cap.grab():
                            break
                        index += 1
                    ok, frame = cap.read()
                    if not ok or frame is None:
                        if self.kind == "video":
                            break
                        if not self._reconnect():
                            what = "stream" if self.kind == "url" else "camera"
                            raise EdgesegError(
                                f"the {what} stopped after frame {index} and did not come back in {self.retry.attempts} tries", self.name
                            )
                        self.warnings.append(f"{self.name}: stream dropped after frame {index}; reconnected")
                        cap, frame = self._cap, self._first
                        index += 1
                        continue
                    index += 1
                msec = cap.get(cv2.CAP_PROP_POS_MSEC)
                time_s = msec / 1000 if msec > 0 or index == 0 else (index / self.fps if self.fps else None)
                yield SourceItem(index, self.name, image=frame, time_s=time_s)
                frame = None
            if self.frame_count and index + 1 < self.frame_count - self.vid_stride:
                self.warnings.append(f"{self.name}: stopped at frame {index + 1} of {self.frame_count}: the file is truncated or corrupt")
        finally:
            cap.release()
