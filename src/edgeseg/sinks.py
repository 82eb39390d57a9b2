"""Where stream results go: an annotated video (OpenCV's FFmpeg writer) and JSON Lines, one line per frame.

Both are safe to interrupt. The video is written to a hidden temporary sibling and moved into place when
it is closed, which also happens on Ctrl-C / SIGTERM (the container is finalised, so the file plays,
with every frame written so far). JSON Lines are flushed line by line: the file is complete up to the
last frame written. Output paths are checked before any work starts.

A write that fails mid-run (a full disk, a lost mount, an encoder that stops) is an ``EdgesegError`` naming
the file. The video is then left under its partial name, never moved into place as if it were complete; the
JSON Lines are cut back to their last whole line.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, TYPE_CHECKING

import cv2
import numpy as np

from .errors import EdgesegError
from .results import Detections

if TYPE_CHECKING:
    from .tracking import TrackedFrame

# FourCC per container; mp4v is the MPEG-4 Part 2 encoder every OpenCV FFmpeg build has.
FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG", ".webm": "VP80"}
DEFAULT_FPS = 25.0


def check_writable(path: str | os.PathLike, what: str) -> Path:
    """Fail before any work when ``path`` cannot be written: its folder is created, a file is tried in it."""
    p = Path(path)
    if p.is_dir():
        raise EdgesegError(f"is a directory, expected a {what} file name", p)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=p.parent, prefix=f".{p.name}.", suffix=".check"):
            pass
    except OSError as exc:
        raise EdgesegError(f"cannot write the {what} here ({exc.strerror or exc})", p) from None
    return p


class VideoSink:
    """An annotated video at the source's frame rate and the first frame's size. A frame of another size
    (a stream that changes resolution) is resized to fit, with one warning."""

    def __init__(self, path: str | os.PathLike, fps: float | None) -> None:
        self.path = check_writable(path, "video")
        self.fourcc = FOURCC.get(self.path.suffix.lower())
        if self.fourcc is None:
            raise EdgesegError(f"unsupported video container; use one of {', '.join(sorted(FOURCC))}", self.path)
        self.fps = fps or DEFAULT_FPS
        self.size: tuple[int, int] | None = None
        self.frames = 0
        self.failed = False
        self.warnings: list[str] = []
        self._writer: cv2.VideoWriter | None = None
        self._tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")

    def write(self, image: np.ndarray, index: int) -> None:
        h, w = image.shape[:2]
        if self._writer is None:
            self.size = (w, h)
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
            raise EdgesegError(
                f"cannot write the video ({self._write_problem(index)}); the {self.frames} frame(s) before it were written to {self._tmp}",
                self.path,
            )
        self.frames += 1

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
        (the frames before it stay in the partial file)."""
        if self._writer is None:
            return None
        self._writer.release()
        self._writer = None
        if self.failed:
            return None
        try:
            os.replace(self._tmp, self.path)
        except OSError as exc:
            raise EdgesegError(
                f"cannot move the finished video into place ({exc.strerror or exc}); it is in {self._tmp}", self.path
            ) from None
        return self.path


def frame_record(*, index: int, time_s: float | None, source: str, detections: Detections, tracking: TrackedFrame | None = None) -> dict:
    """The JSON of one frame: ``{"frame": i, "time_s": t, "detections": [records of --save-json]}`` (a line of
    ``--save-jsonl``, a message of the live view's events); when tracking, the records carry ``track_id`` and
    the frame its counting ``events`` and the running ``counts``."""
    record = {"frame": index, "time_s": None if time_s is None else round(time_s, 4), "detections": detections.to_records(source)}
    if tracking is not None:
        record["events"] = tracking.events
        record["counts"] = tracking.counts
    return record


class JsonlSink:
    """One ``frame_record`` per frame, each line handed to the OS as it is written (unbuffered: nothing is left
    in a buffer to be written later, so a failed write leaves at most a cut last line, which is cut off)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = check_writable(path, "JSON Lines")
        self._file: IO[bytes] | None = open(self.path, "wb", buffering=0)  # noqa: SIM115 (closed in close())
        self.lines = 0
        self.failed = False
        self._whole_bytes = 0  # the file's size up to its last whole line

    def write(self, *, index: int, time_s: float | None, source: str, detections: Detections, tracking: TrackedFrame | None = None) -> None:
        record = frame_record(index=index, time_s=time_s, source=source, detections=detections, tracking=tracking)
        rest = memoryview((json.dumps(record, separators=(",", ":")) + "\n").encode("utf-8"))
        size = len(rest)
        try:
            while rest:  # a full disk may take part of a line, then refuse the rest
                rest = rest[self._file.write(rest) :]
        except OSError as exc:
            self.failed = True
            file, self._file = self._file, None
            with contextlib.suppress(OSError):
                os.ftruncate(file.fileno(), self._whole_bytes)  # back to the last whole line
            with contextlib.suppress(OSError):
                file.close()
            raise EdgesegError(
                f"cannot write the JSON Lines ({(exc.strerror or str(exc)).lower()}); its {self.lines} whole line(s) are kept", self.path
            ) from None
        self.lines += 1
        self._whole_bytes += size

    def close(self) -> Path | None:
        """The file, or None when a write failed (its whole lines are kept)."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        return None if self.failed else self.path
