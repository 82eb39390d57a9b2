"""Image loading and Ultralytics-exact letterboxing (keep ratio, centre, pad 114, RGB, /255, NCHW)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import EdgesegError

PAD_VALUE = 114


@dataclass(frozen=True)
class Letterbox:
    """How an original image of ``source_shape`` (h, w) was placed into the network input ``input_shape``:
    resized to ``content_shape`` (h, w) and pasted at (``pad_left``, ``pad_top``)."""

    source_shape: tuple[int, int]
    input_shape: tuple[int, int]
    content_shape: tuple[int, int]
    pad_left: int
    pad_top: int


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as 8-bit BGR (EXIF orientation applied), or raise a one-line EdgesegError."""
    p = Path(path)
    if not p.exists():
        raise EdgesegError("no such file", p)
    if p.is_dir():
        raise EdgesegError("is a directory, expected an image file", p)
    try:
        # np.fromfile + imdecode handles non-ASCII paths, which cv2.imread does not on every platform.
        data = np.fromfile(str(p), dtype=np.uint8)
    except OSError as exc:
        raise EdgesegError(f"cannot read file ({exc.strerror or exc})", p) from None
    if data.size == 0:
        raise EdgesegError("empty file, not an image", p)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise EdgesegError("not a readable image (corrupt or unsupported format)", p)
    return image


def letterbox_params(source_shape: tuple[int, int], input_shape: tuple[int, int]) -> Letterbox:
    """Ultralytics' LetterBox geometry (auto=False, scaleup=True, centred)."""
    h, w = source_shape
    ih, iw = input_shape
    gain = min(ih / h, iw / w)
    new_w, new_h = max(round(w * gain), 1), max(round(h * gain), 1)
    return Letterbox(
        (int(h), int(w)), (int(ih), int(iw)), (new_h, new_w), round((iw - new_w) / 2 - 0.1), round((ih - new_h) / 2 - 0.1)
    )


def letterbox(image_bgr: np.ndarray, input_shape: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """Resize with unchanged aspect ratio and pad to ``input_shape`` exactly like Ultralytics' LetterBox
    (bilinear resize, pad value 114). Returns the padded uint8 BGR image and its geometry."""
    h, w = image_bgr.shape[:2]
    ih, iw = input_shape
    lb = letterbox_params((h, w), input_shape)
    new_h, new_w = lb.content_shape
    if (w, h) != (new_w, new_h):
        image_bgr = cv2.resize(image_bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    bottom = ih - new_h - lb.pad_top
    right = iw - new_w - lb.pad_left
    padded = cv2.copyMakeBorder(
        image_bgr, lb.pad_top, bottom, lb.pad_left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3
    )
    return padded, lb


def to_input_tensor(padded_bgr: np.ndarray) -> np.ndarray:
    """uint8 BGR HWC -> float32 RGB NCHW in [0, 1], contiguous."""
    rgb = padded_bgr[..., ::-1].transpose(2, 0, 1)
    tensor = np.empty((1,) + rgb.shape, np.float32)
    tensor[0] = rgb
    tensor /= np.float32(255)  # divide (not multiply by 1/255) to match Ultralytics bit for bit
    return tensor


def preprocess(image_bgr: np.ndarray, input_shape: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """Letterbox then convert to the network's input tensor."""
    if image_bgr.ndim == 2:
        image_bgr = cv2.cvtColor(image_bgr, cv2.COLOR_GRAY2BGR)
    padded, lb = letterbox(image_bgr, input_shape)
    return to_input_tensor(padded), lb
