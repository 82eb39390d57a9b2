"""The annotated video of a camera (OpenCV's FFmpeg writer), safe to interrupt.

The video is written to a hidden temporary sibling and moved into place when it is closed, which also happens on
Ctrl-C / SIGTERM (the container is finalised, so the file plays, with every frame written so far). A write that
fails mid-run (a full disk, a lost mount, an encoder that stops) is an ``EdgesegError`` naming the file; the video
is then left under its partial name, never moved into place as if it were complete. With a ``Rotation``, numbered
segments, each finalised when the next one starts.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from ..draw import annotate
from ..errors import EdgesegError
from .base import OutputBase
from .files import Rotation, SegmentedFile, Segments, check_writable

if TYPE_CHECKING:
    from ..engines.frames import StreamFrame, StreamStats

# FourCC per container; mp4v is the MPEG-4 Part 2 encoder every OpenCV FFmpeg build has.
FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG", ".webm": "VP80"}
DEFAULT_FPS = 25.0


class VideoSink(SegmentedFile):
    """An annotated video at the source's frame rate and the first frame's size. A frame of another size
    (a stream that changes resolution) is resized to fit, with one warning. With ``rotation``, numbered segments
    of that size, each finalised and moved into place when the next one starts."""

    def __init__(self, path: str | os.PathLike, fps: float | None, *, rotation: Rotation | None = None) -> None:
        given = check_writable(path, "video")
        self.fourcc = FOURCC.get(given.suffix.lower())
        if self.fourcc is None:
            raise EdgesegError(f"unsupported video container; use one of {', '.join(sorted(FOURCC))}", given)
        self.fps = fps or DEFAULT_FPS
        self.size: tuple[int, int] | None = None
        self.frames = 0
        self.failed = False
        self.warnings: list[str] = []
        self._segments = Segments(given, rotation)
        self._segment_frames = 0
        self._writer: cv2.VideoWriter | None = None

    @property
    def _tmp(self) -> Path:
        return self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")

    def write(self, image: np.ndarray, index: int) -> None:
        h, w = image.shape[:2]
        if self._writer is not None and self._segments.due(self._partial_bytes):
            self._finish()
        if self._writer is None:
            self.size = self.size or (w, h)
            self._segments.start()
            self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, self.size)
            if not self._writer.isOpened():
                raise EdgesegError(f"OpenCV cannot write {self.fourcc} video here", self.path)
        if (w, h) != self.size:
            if not self.warnings:
                self.warnings.append(
                    f"{self.path}: frame {index} is {w}x{h}, not {self.size[0]}x{self.size[1]}; frames of another size are resized to fit"
                )
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        if self._writer.write(image) is False:  # OpenCV says so (disk full, file gone, encoder error), it never raises
            self.failed = True
            kept = f"the {self._segment_frames} frame(s) before it were written to {self._tmp}"
            raise EdgesegError(f"cannot write the video ({self._write_problem(index)}); {kept}", self.path)
        self.frames += 1
        self._segment_frames += 1
        self._segments.wrote()

    def _partial_bytes(self) -> int:
        try:
            return os.stat(self._tmp).st_size
        except OSError:
            return 0  # gone: the next write fails and says so

    def _write_problem(self, index: int) -> str:
        try:
            if shutil.disk_usage(self._tmp.parent).free < 64 * 1024:
                return "no space left on the device"
        except OSError as exc:
            return exc.strerror or str(exc)
        if not self._tmp.exists():
            return "the partial file was removed"
        return f"OpenCV's {self.fourcc} encoder failed at frame {index}"

    def close(self) -> Path | None:
        """Finalise the container and move it into place; None when no frame was written, or when a write failed
        (the frames before it stay in the partial file). Every finished file is in ``paths``."""
        if self._writer is None:
            return None
        if self.failed:
            self._writer.release()
            self._writer = None
            return None
        return self._finish()

    def _finish(self) -> Path:
        path, tmp = self.path, self._tmp
        self._writer.release()
        self._writer = None
        try:
            os.replace(tmp, path)
        except OSError as exc:
            self.failed = True
            raise EdgesegError(f"cannot move the finished video into place ({exc.strerror or exc}); it is in {tmp}", path) from None
        self._segments.finished(path)
        self._segment_frames = 0
        return path


class VideoOutput(OutputBase):
    """A camera's annotated video as an output: its ok frames drawn (with tracking: ids, trails, lines, zones) at
    the source's frame rate (``fps()``: asked at the first frame, a camera's is known once it has connected)."""

    def __init__(
        self, path: str | os.PathLike, *, fps: Callable[[], float | None] = lambda: None, rotation: Rotation | None = None
    ) -> None:
        super().__init__(name=str(path), on_failure="stop")
        self.sink = VideoSink(path, None, rotation=rotation)
        self._fps = fps

    @property
    def warnings(self) -> list[str]:
        return self.sink.warnings

    def on_frame(self, frame: StreamFrame, stats: StreamStats) -> None:
        if not frame.ok:
            return
        if self.sink.frames == 0:
            self.sink.fps = self._fps() or self.sink.fps
        self.sink.write(annotate(frame.image, frame.detections, frame.tracking), frame.index)

    def close(self) -> list[Path]:
        self.sink.close()
        return list(self.sink.paths)
