"""JSON Lines, one line per frame, flushed line by line: the file is complete up to the last frame written. A write
that fails mid-run is an ``EdgesegError`` naming the file, and the file is cut back to its last whole line. With a
``Rotation``, numbered segments of whole lines."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import IO, TYPE_CHECKING

from ..errors import EdgesegError
from ..results import Detections
from .base import OutputBase
from .files import Rotation, SegmentedFile, Segments, check_writable

if TYPE_CHECKING:
    from ..engines.frames import StreamFrame, StreamStats
    from ..tracking import TrackedFrame


def json_time(time_s: float | None) -> float | None:
    """A frame's ``time_s`` as every JSON payload writes it (JSON Lines, MQTT, ROS 2's JSON strings): 0.1 ms steps."""
    return None if time_s is None else round(time_s, 4)


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
    record["time_s"] = json_time(time_s)
    record["detections"] = detections.to_records(source)
    if tracking is not None:
        record["events"] = tracking.events
        record["counts"] = tracking.counts
    return record


class JsonlSink(SegmentedFile):
    """One ``frame_record`` per frame, each line handed to the OS as it is written (unbuffered: nothing is left
    in a buffer to be written later, so a failed write leaves at most a cut last line, which is cut off). With
    ``rotation``, numbered segments, each of whole lines; the next one is opened by the frame that starts it."""

    def __init__(self, path: str | os.PathLike, *, rotation: Rotation | None = None) -> None:
        self._segments = Segments(check_writable(path, "JSON Lines"), rotation)
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

    def write(self, record: dict) -> None:
        """Append one record (``frame_record``) as a whole line."""
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


class JsonlOutput(OutputBase):
    """A camera's JSON Lines as an output: one ``frame_record`` per ok frame, with ``camera`` when ``camera`` is
    given (a run of several cameras)."""

    def __init__(self, path: str | os.PathLike, *, camera: str | None = None, rotation: Rotation | None = None) -> None:
        super().__init__(name=str(path), on_failure="stop")
        self.sink = JsonlSink(path, rotation=rotation)
        self.camera = camera

    def on_frame(self, frame: StreamFrame, stats: StreamStats) -> None:
        if frame.ok:
            self.sink.write(
                frame_record(
                    index=frame.index,
                    time_s=frame.time_s,
                    source=frame.source,
                    detections=frame.detections,
                    tracking=frame.tracking,
                    camera=self.camera,
                )
            )

    def close(self) -> list[Path]:
        self.sink.close()
        return list(self.sink.paths)
