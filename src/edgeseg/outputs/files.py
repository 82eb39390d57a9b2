"""File outputs' common ground: the check that a file can be written before any work, and ``Rotation``: an
unattended run of weeks writes numbered segments next to the given path (``NAME.00000.mp4``, ``NAME.00001.mp4``,
...) instead of one unbounded file; each segment is complete on its own and every frame goes into exactly one."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import EdgesegError


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


class Segments:
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


class SegmentedFile:
    """What both sinks say of their files (``_segments``: the one file, or the rotation's segments)."""

    _segments: Segments

    @property
    def path(self) -> Path:
        """The file being written (with rotation, the current segment's; after ``close``, the last one's)."""
        return self._segments.path

    @property
    def paths(self) -> list[Path]:
        """Every finished file, in order."""
        return self._segments.paths
