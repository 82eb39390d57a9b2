"""Image files: the one listing policy for all commands, and the image-file source.

``collect_images`` turns arguments (files, directories, glob patterns) into image paths plus one-line
problems. The rule, the same for predict, calibration, horizon, evaluation, bench and the soak
benchmark: a directory is searched recursively; files and folders whose name starts with ``.`` are
skipped; files whose suffix is not an image suffix are skipped inside directories and patterns (a file
named directly is always tried); results are sorted by path, directory by directory, in argument order.

``ImageFiles`` yields a ``SourceItem`` per file, the loaded BGR image or the one-line reason it could not
be read, so every caller skips and records bad items the same way.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import EdgesegError, Problem
from ..preprocess import load_image
from .base import Source, SourceItem

IMAGE_SUFFIXES = (".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp", ".pfm", ".heic")


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def images_in(directory: str | os.PathLike) -> list[Path]:
    """Image files under ``directory``: recursive, sorted, hidden entries skipped."""
    d = Path(directory)
    return sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not _hidden(p, d) and p.is_file())


@dataclass
class ImageList:
    """Image paths found for some arguments, and a ``Problem`` (argument, problem) for each that gave none."""

    paths: list[Path] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def collect_images(sources: Iterable[str | os.PathLike]) -> ImageList:
    """Files, directories and glob patterns -> image paths (see the module docstring for the rule)."""
    found = ImageList()
    for src in sources:
        s = os.fspath(src)
        p = Path(s)
        if p.is_dir():
            images = images_in(p)
            if not images:
                found.problems.append(Problem(s, "directory holds no images"))
            found.paths.extend(images)
        elif p.exists():
            found.paths.append(p)
        elif glob.has_magic(s):
            images = sorted(q for q in map(Path, glob.glob(s, recursive=True)) if is_image_file(q))
            if not images:
                found.problems.append(Problem(s, "pattern matches no image files"))
            found.paths.extend(images)
        else:
            found.problems.append(Problem(s, "no such file or directory"))
    return found


def image_directory(directory: str | os.PathLike, purpose: str) -> list[Path]:
    """The images of a directory that must hold some (calibration sets and the like), or a one-line error."""
    d = Path(directory)
    if not d.exists():
        raise EdgesegError("no such directory", d)
    if not d.is_dir():
        raise EdgesegError(f"not a directory (expected a folder of {purpose} images)", d)
    files = images_in(d)
    if not files:
        raise EdgesegError("holds no image files", d)
    return files


class ImageFiles(Source):
    """Image files read one by one, in order (a ``Source`` of stills; never live, no frame rate)."""

    live = False
    stills = True
    fps: float | None = None

    def __init__(self, paths: Sequence[str | os.PathLike], name: str | None = None) -> None:
        self.paths = [Path(p) for p in paths]
        self.name = name or (str(self.paths[0]) if len(self.paths) == 1 else "images")
        self.warnings: list[str] = []
        self.length = len(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[SourceItem]:
        for i, path in enumerate(self.paths):
            try:
                yield SourceItem(i, str(path), image=load_image(path))
            except EdgesegError as exc:
                yield SourceItem(i, str(path), error=exc.problem)


def readable_images(paths: Sequence[str | os.PathLike], count: int, skipped: list[Problem]) -> Iterator[SourceItem]:
    """The first ``count`` readable images of ``paths``, in order; unreadable ones go to ``skipped``
    (name, problem) and are replaced by the next file."""
    got = 0
    for item in ImageFiles(paths):
        if got >= count:
            return
        if not item.ok:
            skipped.append(Problem(item.name, item.error))
            continue
        got += 1
        yield item
