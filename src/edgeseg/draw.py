"""Overlay pictures: translucent masks, boxes and labels on the original image."""

from __future__ import annotations

import cv2
import numpy as np

from .preprocess import Nv12Frame
from .results import Detections

# Ultralytics-like palette (BGR), distinct and readable on photos.
_PALETTE_HEX = [
    "FF3838", "FF9D97", "FF701F", "FFB21D", "CFD231", "48F90A", "92CC17", "3DDB86", "1A9334", "00D4BB",
    "2C99A8", "00C2FF", "344593", "6473FF", "0018EC", "8438FF", "520085", "CB38FF", "FF95C8", "FF37C7",
]  # fmt: skip
_BYTES = np.arange(256, dtype=np.uint8)[:, None]
PALETTE = [tuple(int(h[i : i + 2], 16) for i in (4, 2, 0)) for h in _PALETTE_HEX]


def color_for(class_id: int) -> tuple[int, int, int]:
    return PALETTE[int(class_id) % len(PALETTE)]


def draw_detections(image_bgr: np.ndarray | Nv12Frame, det: Detections, alpha: float = 0.45) -> np.ndarray:
    """A copy of ``image_bgr`` with masks (box-local, blended), boxes and ``name score`` labels (an NV12 frame is
    converted to BGR here: drawing is where a colour conversion is paid, never before)."""
    out = image_bgr.to_bgr() if isinstance(image_bgr, Nv12Frame) else image_bgr.copy()
    if out.ndim == 2:
        out = cv2.cvtColor(out, cv2.COLOR_GRAY2BGR)
    h, w = out.shape[:2]
    thickness = max(1, round(0.002 * (h + w)))
    font_scale = max(0.4, 0.0009 * (h + w))
    order = np.argsort(det.scores)  # strongest drawn last, on top
    if det.masks is not None:
        for i in order:
            m = det.masks[i]
            if not m.size:
                continue
            x0, y0 = (int(v) for v in det.mask_origins[i])
            roi = out[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]]
            color = np.asarray(color_for(det.class_ids[i]), np.float32)
            # The blend of every possible byte as a lookup table, applied under the mask: the same numbers as
            # blending the masked pixels one by one, several times faster (it runs for every frame of a video).
            lut = (_BYTES * (1 - alpha) + color * alpha).astype(np.uint8).reshape(256, 1, 3)
            cv2.copyTo(cv2.LUT(roi, lut), m.view(np.uint8), roi)
    for i in order:
        color = color_for(det.class_ids[i])
        x1, y1, x2, y2 = (int(round(float(v))) for v in det.xyxy[i])
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
        label = f"{det.names.get(int(det.class_ids[i]), int(det.class_ids[i]))} {det.scores[i]:.2f}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, max(1, thickness - 1))
        ty = y1 - 2 if y1 - th - base - 2 >= 0 else y1 + th + base + 2
        cv2.rectangle(out, (x1, ty - th - base), (x1 + tw + 2, ty + base - 2), color, -1)
        cv2.putText(out, label, (x1 + 1, ty - 2), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255),
                    max(1, thickness - 1), cv2.LINE_AA)
    return out
