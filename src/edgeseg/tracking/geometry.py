"""Counting lines and zones as the user writes them: ``NAME=x1,y1,x2,y2`` (a line) and ``NAME=x1,y1,x2,y2,x3,y3,...``
(a polygon zone), parsed with one-line errors that name the option, and resolved to pixels of a frame.

Coordinates are source pixels. A geometry whose numbers all lie in 0..1 is read as fractions of the frame's
width and height (``door=0,0.5,1,0.5`` is the horizontal middle line of any frame): a pixel geometry that
small would cover one pixel, so the reading is unambiguous in practice.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..errors import EdgesegError

FAR_OUTSIDE = 0.1  # points further outside the frame than this fraction of its size get a warning


@dataclass(frozen=True)
class Geometry:
    """A named line (2 points) or zone (>= 3 points) as given: ``option`` is ``--line`` or ``--zone``."""

    option: str
    name: str
    points: tuple[tuple[float, float], ...]

    @property
    def normalized(self) -> bool:
        return all(0 <= v <= 1 for p in self.points for v in p)

    def pixels(self, image_shape: tuple[int, int]) -> np.ndarray:
        """(K, 2) float points in pixels of a frame of ``image_shape`` (h, w)."""
        pts = np.asarray(self.points, np.float64)
        if self.normalized:
            h, w = image_shape
            pts = pts * np.asarray([w, h], np.float64)
        return pts

    def warnings_for(self, image_shape: tuple[int, int]) -> list[str]:
        """One warning per geometry with a point far outside a frame of ``image_shape``."""
        h, w = image_shape
        pts = self.pixels(image_shape)
        far = (
            (pts[:, 0] < -FAR_OUTSIDE * w)
            | (pts[:, 0] > (1 + FAR_OUTSIDE) * w)
            | (pts[:, 1] < -FAR_OUTSIDE * h)
            | (pts[:, 1] > (1 + FAR_OUTSIDE) * h)
        )
        if not far.any():
            return []
        x, y = pts[int(np.argmax(far))]
        return [f"{self.option} {self.name}: point ({x:g}, {y:g}) is far outside the {w}x{h} frame"]


def _parse(text: str, option: str, usage: str) -> tuple[str, list[float]]:
    name, sep, numbers = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise EdgesegError(f"{option} {text!r}: expected {usage}")
    try:
        values = [float(v) for v in numbers.replace(" ", "").split(",")]
    except ValueError:
        raise EdgesegError(f"{option} {name}: expected {usage}, got {numbers!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise EdgesegError(f"{option} {name}: coordinates must be finite numbers, got {numbers!r}")
    return name, values


def parse_line(text: str) -> Geometry:
    """``NAME=x1,y1,x2,y2`` -> a line; a wrong count of numbers, NaN/inf or a zero-length line is an error."""
    name, values = _parse(text, "--line", "NAME=x1,y1,x2,y2")
    if len(values) != 4:
        raise EdgesegError(f"--line {name}: expected 4 numbers x1,y1,x2,y2, got {len(values)}")
    if values[:2] == values[2:]:
        raise EdgesegError(f"--line {name}: its two points are the same, so nothing can cross it")
    return Geometry("--line", name, ((values[0], values[1]), (values[2], values[3])))


def polygon_area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def parse_zone(text: str) -> Geometry:
    """``NAME=x1,y1,x2,y2,x3,y3,...`` -> a polygon zone; an odd count, fewer than 3 points, zero area or
    NaN/inf is an error."""
    name, values = _parse(text, "--zone", "NAME=x1,y1,x2,y2,x3,y3,...")
    if len(values) % 2:
        raise EdgesegError(f"--zone {name}: expected x,y pairs, got {len(values)} numbers (an odd count)")
    if len(values) < 6:
        raise EdgesegError(f"--zone {name}: a zone needs at least 3 points, got {len(values) // 2}")
    points = tuple((values[i], values[i + 1]) for i in range(0, len(values), 2))
    if polygon_area(np.asarray(points)) <= 0:
        raise EdgesegError(f"--zone {name}: the polygon has zero area (its points are on one line)")
    return Geometry("--zone", name, points)


def check_names(geometries: Iterable[Geometry]) -> None:
    """Lines and zones share one name space (their counts are keyed by name): the same name twice is an error."""
    seen: dict[str, str] = {}
    for g in geometries:
        if g.name in seen:
            raise EdgesegError(f"{g.option} {g.name}: the name is already used by a {seen[g.name]}; give each one its own name")
        seen[g.name] = g.option
