"""Sources: what turns user arguments into images, one policy for all commands.

Image files, directories and globs follow one listing rule (``files.py``); video files, cameras and
network streams are read by ``video.py``; the RDK board's MIPI camera (``mipi:N``) and hardware decoder
(NV12 frames) by ``board.py``. Every kind yields ``SourceItem``s (``base.py``), so a runner
or command consumes them the same way. ``open_sources`` splits a command line's arguments into sources,
in argument order: consecutive image arguments form one ``ImageFiles``, each video, camera or URL is a
``VideoSource``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..errors import EdgesegError, Problem
from .base import Source, SourceItem
from .board import HardwareDecoded, MipiCamera, is_mipi
from .files import (
    IMAGE_SUFFIXES,
    ImageFiles,
    ImageList,
    collect_images,
    image_directory,
    images_in,
    is_image_file,
    readable_images,
)
from .video import STREAM_SCHEMES, VIDEO_SUFFIXES, RetryPolicy, VideoSource, source_kind

__all__ = [
    "IMAGE_SUFFIXES",
    "STREAM_SCHEMES",
    "VIDEO_SUFFIXES",
    "BoardInputs",
    "HardwareDecoded",
    "ImageFiles",
    "ImageList",
    "MipiCamera",
    "OpenedSources",
    "RetryPolicy",
    "Source",
    "SourceItem",
    "VideoSource",
    "collect_images",
    "image_directory",
    "images_in",
    "is_image_file",
    "open_sources",
    "readable_images",
    "source_kind",
]


@dataclass
class OpenedSources:
    """The sources named by some arguments, in order, and a ``Problem`` (argument, problem) for each that gave none."""

    sources: list[Source] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


@dataclass(frozen=True)
class BoardInputs:
    """The board's own inputs: ``imgsz`` of the model (a MIPI camera is asked for the letterbox's inner size)
    and ``hw_decode``: True decodes videos and streams with the hardware decoder (an error where it cannot),
    None does so where the board's library imports and the codec is one it takes, False never."""

    imgsz: tuple[int, int] | None = None
    hw_decode: bool | None = None


def _board_source(spec: str, kind: str, board: BoardInputs, live: bool | None, vid_stride: int, retry: RetryPolicy) -> Source | None:
    """The board source for ``spec``, or None when OpenCV's reader is the one to use."""
    if kind == "mipi":
        if board.imgsz is None:
            raise EdgesegError("a MIPI camera needs the model's input size (give the model first)", spec)
        return MipiCamera(spec, imgsz=board.imgsz, live=live, retry=retry)
    if kind not in ("video", "url") or board.hw_decode is False:
        return None
    try:
        source = HardwareDecoded(spec, live=kind == "url" if live is None else live, vid_stride=vid_stride, retry=retry)
        if source.codec is None and board.hw_decode is None:
            source.close()  # unreachable for now, codec unknown: OpenCV's reader waits for it and decodes any codec
            return None
        return source
    except EdgesegError:
        if board.hw_decode is None:
            return None  # not a board, or a codec its decoder does not take: OpenCV decodes
        raise


def open_sources(
    args: Iterable[str | os.PathLike | Source],
    *,
    live: bool | None = None,
    vid_stride: int = 1,
    retry: RetryPolicy = RetryPolicy(),
    board: BoardInputs = BoardInputs(),
) -> OpenedSources:
    """Arguments -> sources. A video, camera or URL that cannot be opened is a problem of its own (the
    other arguments still run); a ``Source`` object (e.g. a camera of your own) is taken as it is. ``board``:
    the RDK board's MIPI camera (``mipi:N``) and hardware decoder."""
    opened = OpenedSources()
    pending: list[str] = []

    def flush() -> None:
        if pending:
            found = collect_images(pending)
            opened.problems.extend(found.problems)
            if found.paths:
                opened.sources.append(ImageFiles(found.paths))
            pending.clear()

    for arg in args:
        if not isinstance(arg, (str, os.PathLike)):
            flush()
            opened.sources.append(arg)
            continue
        spec = os.fspath(arg)
        kind = "mipi" if is_mipi(spec) else source_kind(spec)
        if kind == "files":
            pending.append(spec)
            continue
        flush()
        try:
            on_board = _board_source(spec, kind, board, live, vid_stride, retry)
            opened.sources.append(on_board or VideoSource(spec, live=live, vid_stride=vid_stride, retry=retry))
        except EdgesegError as exc:
            opened.problems.append(Problem(spec, exc.problem))
    flush()
    return opened
