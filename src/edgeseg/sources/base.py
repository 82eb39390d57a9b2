"""What every source yields: ``SourceItem``s (an image or the one-line reason it could not be read), and
the ``Source`` protocol the runners consume."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..preprocess import Nv12Frame

# A camera's states, in the order a run goes through them: before its first frame, while frames come, after they
# stopped and while it is reopened (forever, unless a finite retry policy says otherwise), and done (a file that
# ended, a source that gave up, a run that stopped).
CONNECTING, LIVE, RECONNECTING, ENDED = "connecting", "live", "reconnecting", "ended"
SOURCE_STATES = (CONNECTING, LIVE, RECONNECTING, ENDED)
StateListener = Callable[[str, str], None]  # (state, one-line detail)


@dataclass
class SourceItem:
    """One image of a source: the BGR array (or an ``Nv12Frame`` from the board's camera or decoder), or ``error``
    (one line) when it could not be read.
    ``index`` counts items of the source from 0 (frames of a video: the frame number in the file, so a
    ``vid_stride`` shows as gaps); ``time_s`` is the timestamp of a video frame."""

    index: int
    name: str
    image: np.ndarray | Nv12Frame | None = None
    error: str | None = None
    time_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class Source(Protocol):
    """An ordered run of images: image files, a video file, a camera or a network stream; what engines need of it.

    ``live`` sources (cameras, URLs) produce frames whether or not anyone keeps up: engines drop stale frames of a
    live source rather than fall behind. ``fps`` is the source's frame rate where it has one (a camera's or
    stream's: None until it first connects). ``warnings`` collects one-line notes found while reading (a truncated
    file, a size change). ``stills``: the items are separate pictures (image files: overlays and JSON records)
    rather than frames of one video (an annotated video and JSON Lines). ``length``: the items it will yield where
    known (a progress bar's total), None for cameras and streams. ``failed``: why it stopped for good mid-way (a
    board camera or decoder that ran dry), which makes the run incomplete. A source of your own may subclass
    ``Source`` to take the defaults."""

    name: str
    live: bool
    fps: float | None
    warnings: list[str]
    stills: bool = False
    length: int | None = None
    failed: str | None = None
    # Set by the engine before it iterates: a source that connects (a stream, a camera) calls it with one of
    # ``SOURCE_STATES`` and a one-line detail each time its state changes (``connecting`` before its first frame,
    # ``live`` when frames come, ``reconnecting`` when they stop). The engine marks ``ended`` itself.
    state_listener: StateListener | None = None

    def __iter__(self) -> Iterator[SourceItem]: ...

    def close(self) -> None:
        """Stop, from any thread (the engine's, when a run ends): an iteration waiting for its camera (a backoff,
        a reconnect) returns promptly. Sources that never wait (files) need nothing: the default does nothing."""


def strided_length(frame_count: int | None, vid_stride: int) -> int | None:
    """The frames a source yields of ``frame_count`` when it keeps every ``vid_stride``-th one."""
    return -(-frame_count // vid_stride) if frame_count else None
