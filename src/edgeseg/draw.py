"""Overlay pictures: translucent masks, boxes and labels on the original image; with tracking, the ids, a
short trail behind each object, and the counting lines and zones with their counts."""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from .preprocess import Nv12Frame
from .results import Detections

if TYPE_CHECKING:
    from .tracking import TrackedFrame

# Ultralytics-like palette (BGR), distinct and readable on photos.
_PALETTE_HEX = [
    "FF3838",
    "FF9D97",
    "FF701F",
    "FFB21D",
    "CFD231",
    "48F90A",
    "92CC17",
    "3DDB86",
    "1A9334",
    "00D4BB",
    "2C99A8",
    "00C2FF",
    "344593",
    "6473FF",
    "0018EC",
    "8438FF",
    "520085",
    "CB38FF",
    "FF95C8",
    "FF37C7",
]
_BYTES = np.arange(256, dtype=np.uint8)[:, None]
PALETTE = [tuple(int(h[i : i + 2], 16) for i in (4, 2, 0)) for h in _PALETTE_HEX]


def color_for(class_id: int) -> tuple[int, int, int]:
    return PALETTE[int(class_id) % len(PALETTE)]


def draw_detections(image_bgr: np.ndarray | Nv12Frame, det: Detections, alpha: float = 0.45) -> np.ndarray:
    """A copy of ``image_bgr`` with masks (box-local, blended), boxes and ``name score`` labels; tracked
    detections are labelled ``#id name score`` and coloured by id, so an object keeps its colour. An NV12 frame is
    converted to BGR here: drawing is where a colour conversion is paid, never before."""
    out = image_bgr.to_bgr() if isinstance(image_bgr, Nv12Frame) else image_bgr.copy()
    if out.ndim == 2:
        out = cv2.cvtColor(out, cv2.COLOR_GRAY2BGR)
    h, w = out.shape[:2]
    thickness = max(1, round(0.002 * (h + w)))
    font_scale = max(0.4, 0.0009 * (h + w))
    order = np.argsort(det.scores)  # strongest drawn last, on top
    keys = det.class_ids if det.track_ids is None else det.track_ids
    if det.masks is not None:
        for i in order:
            m = det.masks[i]
            if not m.size:
                continue
            x0, y0 = (int(v) for v in det.mask_origins[i])
            roi = out[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]]
            color = np.asarray(color_for(keys[i]), np.float32)
            # The blend of every possible byte as a lookup table, applied under the mask: the same numbers as
            # blending the masked pixels one by one, several times faster (it runs for every frame of a video).
            lut = (_BYTES * (1 - alpha) + color * alpha).astype(np.uint8).reshape(256, 1, 3)
            cv2.copyTo(cv2.LUT(roi, lut), m.view(np.uint8), roi)
    names = det.class_names
    for i in order:
        color = color_for(keys[i])
        x1, y1, x2, y2 = (int(round(float(v))) for v in det.xyxy[i])
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
        label = f"{names[i]} {det.scores[i]:.2f}"
        if det.track_ids is not None:
            label = f"#{int(det.track_ids[i])} {label}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, max(1, thickness - 1))
        ty = y1 - 2 if y1 - th - base - 2 >= 0 else y1 + th + base + 2
        cv2.rectangle(out, (x1, ty - th - base), (x1 + tw + 2, ty + base - 2), color, -1)
        cv2.putText(out, label, (x1 + 1, ty - 2), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255), max(1, thickness - 1), cv2.LINE_AA)
    return out


def draw_tracking(image_bgr: np.ndarray, tracked: TrackedFrame) -> np.ndarray:
    """``image_bgr`` (drawn on in place, and returned) with each object's trail, the counting lines with their
    ``in``/``out`` counts and the zones with their occupancy (``tracking.TrackedFrame``)."""
    out = image_bgr
    h, w = out.shape[:2]
    thickness = max(1, round(0.002 * (h + w)))
    font_scale = max(0.4, 0.0009 * (h + w))
    for tid, points in tracked.trails.items():
        if len(points) > 1:
            cv2.polylines(out, [np.round(np.asarray(points)).astype(np.int32)], False, color_for(tid), thickness + 1, cv2.LINE_AA)
    for name, polygon, counts in tracked.zones:
        cv2.polylines(out, [np.round(polygon).astype(np.int32)], True, (255, 255, 255), thickness, cv2.LINE_AA)
        _caption(out, f"{name}: {counts['occupancy']} inside", tuple(np.round(polygon.min(0)).astype(int)), font_scale, thickness)
    for name, (p1, p2), counts in tracked.lines:
        a, b = tuple(np.round(p1).astype(int)), tuple(np.round(p2).astype(int))
        cv2.line(out, a, b, (255, 255, 255), thickness + 1, cv2.LINE_AA)
        cv2.circle(out, a, thickness + 2, (255, 255, 255), -1, cv2.LINE_AA)  # the first point: "in" is to its right
        _caption(out, f"{name}: in {counts['in']} out {counts['out']}", (min(a[0], b[0]), min(a[1], b[1])), font_scale, thickness)
    return out


def _caption(image: np.ndarray, text: str, at: tuple[int, int], font_scale: float, thickness: int) -> None:
    """White text on a dark box, kept inside the image."""
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, max(1, thickness - 1))
    h, w = image.shape[:2]
    x = int(min(max(at[0], 0), max(w - tw - 4, 0)))
    y = int(min(max(at[1] - 4, th + base + 2), h - 2))
    cv2.rectangle(image, (x, y - th - base - 2), (x + tw + 4, y + 2), (32, 32, 32), -1)
    cv2.putText(image, text, (x + 2, y - base), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255), max(1, thickness - 1), cv2.LINE_AA)


def annotate(image_bgr: np.ndarray, det: Detections, tracked: TrackedFrame | None = None) -> np.ndarray:
    """The picture of a frame: ``draw_detections``, and ``draw_tracking`` on top when the frame was tracked."""
    out = draw_detections(image_bgr, det)
    return out if tracked is None else draw_tracking(out, tracked)
