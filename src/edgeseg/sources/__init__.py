"""Sources: what turns user arguments into images, one policy for all commands.

Image files, directories and globs follow one listing rule (``files.py``); video files, cameras and
network streams are read by ``video.py``. Every kind yields ``SourceItem``s (``base.py``), so a runner
or command consumes them the same way. ``open_sources`` splits a command line's arguments into sources,
in argument order: consecutive image arguments form one ``ImageFiles``, each video, camera or URL is a
``VideoSource``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..errors import EdgesegError
from .base import Source, SourceItem
from .files import (
    IMAGE_SUFFIXES,
    ImageFiles,
    ImageList,
    collect_images,
    image_directory,
    images_in,
    is_image_file,
    progress,
    readable_images,
    reason,
)
from .video import STREAM_SCHEMES, VIDEO_SUFFIXES, RetryPolicy, VideoSource, source_kind

__all__ = [
    "IMAGE_SUFFIXES",
    "STREAM_SCHEMES",
    "VIDEO_SUFFIXES",
    "ImageFiles",
    "ImageList",
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
    "progress",
    "readable_images",
    "reason",
    "source_kind",
]


@dataclass
class OpenedSources:
    """The sources named by some arguments, in order, and ``(argument, problem)`` for those that gave none."""

    sources: list[Source] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)


def open_sources(args: Iterable[str | os.PathLike | Source], *, live: bool | None = None, vid_stride: int = 1,
                 retry: RetryPolicy = RetryPolicy()) -> OpenedSources:  # fmt: skip
    """Arguments -> sources. A video, camera or URL that cannot be opened is a problem of its own (the
    other arguments still run); a ``Source`` object (e.g. a camera of your own) is taken as it is."""
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
        if source_kind(spec) == "files":
            pending.append(spec)
            continue
        flush()
        try:
            opened.sources.append(VideoSource(spec, live=live, vid_stride=vid_stride, retry=retry))
        except EdgesegError as exc:
            opened.problems.append((spec, reason(exc)))
    flush()
    return opened
