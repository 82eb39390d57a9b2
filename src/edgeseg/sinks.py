"""Where stream results go: an annotated video (OpenCV's FFmpeg writer) and JSON Lines, one line per frame.

Both are safe to interrupt. The video is written to a hidden temporary sibling and moved into place when
it is closed, which also happens on Ctrl-C / SIGTERM (the container is finalised, so the file plays,
with every frame written so far). JSON Lines are flushed line by line: the file is complete up to the
last frame written. Output paths are checked before any work starts.

A write that fails mid-run (a full disk, a lost mount, an encoder that stops) is an ``EdgesegError`` naming
the file. The video is then left under its partial name, never moved into place as if it were complete; the
JSON Lines are cut back to their last whole line.

With a ``Rotation`` either sink writes numbered segments next to the given path (``NAME.00000.mp4``,
``NAME.00001.mp4``, ...), so an unattended run of weeks never grows one unbounded file. Each segment is
complete on its own (whole lines; a finalised video) and every frame goes into exactly one of them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class Rotation:
    """When a sink starts its next segment: once the current one holds ``max_bytes`` or its first frame is
    ``max_seconds`` old (wall clock, ``clock``: injectable for tests). Checked before each frame, so the frame
    that finds a segment full starts the next one. A video's size is the bytes its encoder has handed to the
    file so far (the muxer buffers some), so its segments end near ``max_bytes``, not exactly on it."""

    max_bytes: int | None = None
    max_seconds: float | None = None
    clock: Callable[[], float] = field(default=time.monotonic, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_bytes is None and self.max_seconds is None:
            raise EdgesegError("rotation needs a size (max_bytes) or a duration (max_seconds)")
        for name, value in (("max_bytes", self.max_bytes), ("max_seconds", self.max_seconds)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or not value > 0):
                raise EdgesegError(f"rotation {name} must be a positive number, got {value!r}")


class _Segments:
    """The numbered files of one rotated output (or the one file of an unrotated one) and when to start the next."""

    def __init__(self, path: Path, rotation: Rotation | None) -> None:
        self.base, self.rotation = path, rotation
        # a run started again (after a reboot, a crash) goes on after the segments already there, never over them
        self.first = self._after_existing() if rotation is not None else 0
        self.number = self.first
        self.paths: list[Path] = []  # every finished segment, in order
        self._first_frame_at: float | None = None

    def _after_existing(self) -> int:
        numbers = [
            int(p.name[len(self.base.stem) + 1 : -len(self.base.suffix) or None])
            for p in self.base.parent.glob(f"{self.base.stem}.[0-9][0-9][0-9][0-9][0-9]*{self.base.suffix}")
            if p.name[len(self.base.stem) + 1 : -len(self.base.suffix) or None].isdigit()
        ]
        return max(numbers) + 1 if numbers else 0

    @property
    def path(self) -> Path:
        """The current segment's file: the one being written, or after it was finished, the last one."""
        if self.rotation is None:
            return self.base
        return self.base.with_name(f"{self.base.stem}.{self.number:05d}{self.base.suffix}")

    def start(self) -> Path:
        """The file of the segment that starts now."""
        self.number = self.first + len(self.paths)
        return self.path

    def due(self, size: Callable[[], int]) -> bool:
        """Whether the current segment (at least one frame; ``size()`` bytes, asked only when rotating by size) is
        full: the next frame starts another."""
        r = self.rotation
        if r is None or self._first_frame_at is None:
            return False
        if r.max_bytes is not None and size() >= r.max_bytes:
            return True
        return r.max_seconds is not None and r.clock() - self._first_frame_at >= r.max_seconds

    def wrote(self) -> None:
        if self.rotation is not None and self._first_frame_at is None:
            self._first_frame_at = self.rotation.clock()

    def finished(self, path: Path) -> None:
        self.paths.append(path)
        self._first_frame_at = None


class _SegmentedSink:
    """What both sinks say of their files (``_segments``: the one file, or the rotation's segments)."""

    _segments: _Segments

    @property
    def path(self) -> Path:
        """The file being written (with rotation, the current segment's; after ``close``, the last one's)."""
        return self._segments.path

    @property
    def paths(self) -> list[Path]:
        """Every finished file, in order."""
        return self._segments.paths


class VideoSink(_SegmentedSink):
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
        self._segments = _Segments(given, rotation)
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


def frame_record(
    *,
    index: int,
    time_s: float | None,
    source: str,
    detections: Detections,
    tracking: TrackedFrame | None = None,
    camera: str | None = None,
) -> dict:
    """The JSON of one frame: ``{"frame": i, "time_s": t, "detections": [records of --save-json]}`` (a line of
    ``--save-jsonl``, a message of the live view's events); with several cameras, ``"camera": name`` after
    ``frame``; when tracking, the records carry ``track_id`` and the frame its counting ``events`` and the
    running ``counts``."""
    record: dict = {"frame": index}
    if camera is not None:
        record["camera"] = camera
    record["time_s"] = None if time_s is None else round(time_s, 4)
    record["detections"] = detections.to_records(source)
    if tracking is not None:
        record["events"] = tracking.events
        record["counts"] = tracking.counts
    return record


class JsonlSink(_SegmentedSink):
    """One ``frame_record`` per frame, each line handed to the OS as it is written (unbuffered: nothing is left
    in a buffer to be written later, so a failed write leaves at most a cut last line, which is cut off). With
    ``rotation``, numbered segments, each of whole lines; the next one is opened by the frame that starts it."""

    def __init__(self, path: str | os.PathLike, *, rotation: Rotation | None = None) -> None:
        self._segments = _Segments(check_writable(path, "JSON Lines"), rotation)
        self.lines = 0
        self.failed = False
        self._file: IO[bytes] | None = None
        self._open()

    def _open(self) -> None:
        try:
            self._file = open(self._segments.start(), "wb", buffering=0)  # noqa: SIM115 (closed in close())
        except OSError as exc:
            self.failed = True
            raise EdgesegError(f"cannot write the JSON Lines ({(exc.strerror or str(exc)).lower()})", self.path) from None
        self._segment_lines = 0
        self._whole_bytes = 0  # the file's size up to its last whole line

    def _finish(self) -> None:
        file, self._file = self._file, None
        with contextlib.suppress(OSError):
            file.close()
        self._segments.finished(self.path)

    def write(
        self,
        *,
        index: int,
        time_s: float | None,
        source: str,
        detections: Detections,
        tracking: TrackedFrame | None = None,
        camera: str | None = None,
    ) -> None:
        record = frame_record(index=index, time_s=time_s, source=source, detections=detections, tracking=tracking, camera=camera)
        rest = memoryview((json.dumps(record, separators=(",", ":")) + "\n").encode("utf-8"))
        size = len(rest)
        if self._segments.due(lambda: self._whole_bytes):
            self._finish()
            self._open()
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
                f"cannot write the JSON Lines ({(exc.strerror or str(exc)).lower()}); its {self._segment_lines} whole line(s) are kept",
                self.path,
            ) from None
        self.lines += 1
        self._segment_lines += 1
        self._whole_bytes += size
        self._segments.wrote()

    def close(self) -> Path | None:
        """The file (the last segment, with rotation; every finished one is in ``paths``), or None when a write
        failed (its whole lines are kept)."""
        if self._file is not None:
            self._finish()
        return None if self.failed else self.path
