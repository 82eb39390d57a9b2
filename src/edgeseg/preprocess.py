"""Image loading and Ultralytics-exact letterboxing (keep ratio, centre, pad 114), and the two input forms
made from the letterboxed image: the float RGB NCHW tensor (/255) and NV12 for the RDK board's BPU."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
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


def read_image_file(path: str | os.PathLike) -> np.ndarray:
    """The encoded bytes of an image file as a uint8 array, or a one-line EdgesegError (missing, a directory,
    unreadable)."""
    p = Path(path)
    if not p.exists():
        raise EdgesegError("no such file", p)
    if p.is_dir():
        raise EdgesegError("is a directory, expected an image file", p)
    try:
        # np.fromfile + imdecode handles non-ASCII paths, which cv2.imread does not on every platform.
        return np.fromfile(str(p), dtype=np.uint8)
    except OSError as exc:
        raise EdgesegError(f"cannot read file ({exc.strerror or exc})", p) from None


def decode_image(data: bytes | np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """Encoded image bytes (read from ``path``, which errors name) as 8-bit BGR, EXIF orientation applied,
    or a one-line EdgesegError. ``load_image`` is ``decode_image(read_image_file(path), path)``; engines that
    move bytes (Ray) call the two halves on different machines."""
    buffer = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    if buffer.size == 0:
        raise EdgesegError("empty file, not an image", path)
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise EdgesegError("not a readable image (corrupt or unsupported format)", path)
    return image


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as 8-bit BGR (EXIF orientation applied), or raise a one-line EdgesegError."""
    return decode_image(read_image_file(path), path)


def normalise_imgsz(imgsz: int | Sequence[int], stride: int = 32) -> tuple[int, int]:
    """An input size as (h, w) from S, [S] or [H, W]; each a positive multiple of ``stride``."""
    size = (imgsz, imgsz) if isinstance(imgsz, int) else tuple(int(v) for v in imgsz)
    if len(size) == 1:
        size = (size[0], size[0])
    if len(size) != 2 or any(s <= 0 or s % stride for s in size):
        raise EdgesegError(f"imgsz {imgsz} must be one or two positive multiples of {stride}")
    return size


def letterbox_params(source_shape: tuple[int, int], input_shape: tuple[int, int]) -> Letterbox:
    """Ultralytics' LetterBox geometry (auto=False, scaleup=True, centred)."""
    h, w = source_shape
    ih, iw = input_shape
    gain = min(ih / h, iw / w)
    new_w, new_h = max(round(w * gain), 1), max(round(h * gain), 1)
    return Letterbox((int(h), int(w)), (int(ih), int(iw)), (new_h, new_w), round((iw - new_w) / 2 - 0.1), round((ih - new_h) / 2 - 0.1))


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
    padded = cv2.copyMakeBorder(image_bgr, lb.pad_top, bottom, lb.pad_left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    return padded, lb


def to_input_tensor(padded_bgr: np.ndarray) -> np.ndarray:
    """uint8 BGR HWC -> float32 RGB NCHW in [0, 1], contiguous."""
    rgb = padded_bgr[..., ::-1].transpose(2, 0, 1)
    tensor = np.empty((1,) + rgb.shape, np.float32)
    tensor[0] = rgb
    tensor /= np.float32(255)  # divide (not multiply by 1/255) to match Ultralytics bit for bit
    return tensor


def as_bgr(image: np.ndarray) -> np.ndarray:
    """A gray (2-D) image as 3-channel BGR; a BGR image as it is."""
    return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image


def preprocess(image_bgr: np.ndarray, input_shape: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """Letterbox then convert to the network's input tensor."""
    padded, lb = letterbox(as_bgr(image_bgr), input_shape)
    return to_input_tensor(padded), lb


@cache
def _pad_yuv() -> tuple[int, int]:
    """The pad colour as OpenCV's BGR -> I420 conversion makes it: its Y byte, and its U and V bytes as the
    one 16-bit word they form interleaved in NV12's UV plane."""
    yuv = cv2.cvtColor(np.full((2, 2, 3), PAD_VALUE, np.uint8), cv2.COLOR_BGR2YUV_I420).reshape(-1)
    return int(yuv[0]), int(np.array([yuv[4], yuv[5]], np.uint8).view(np.uint16)[0])


def _fill_outside(plane: np.ndarray, rows: tuple[int, int], cols: tuple[int, int], value: int) -> None:
    """Set every element of a 2-D ``plane`` outside the rectangle ``rows`` x ``cols`` to ``value``."""
    (r0, r1), (c0, c1) = rows, cols
    plane[:r0] = value
    plane[r1:] = value
    plane[r0:r1, :c0] = value
    plane[r0:r1, c1:] = value


def _even_span(start: int, length: int, limit: int) -> tuple[int, int]:
    """[start, start + length) widened to even bounds, so that no 2x2 chroma block straddles it."""
    return start & ~1, min(limit, (start + length + 1) & ~1)


def to_nv12(padded_bgr: np.ndarray, lb: Letterbox | None = None) -> np.ndarray:
    """uint8 BGR HWC (even H and W) -> NV12: one flat uint8 buffer of H*W*3/2, the Y plane then U and V
    interleaved at half resolution (OpenCV's BT.601 video-range conversion, as the RDK model zoo feeds its
    models; `edgeseg horizon` compiles the .bin for that range).

    With the image's ``Letterbox``, only the content (widened to even rows and columns) is converted and the
    pad gets its constant Y/U/V: the same bytes as converting the whole image, with less work."""
    h, w = padded_bgr.shape[:2]
    if h % 2 or w % 2:
        raise EdgesegError(f"NV12 needs an even height and width, got {h}x{w}")
    nv12 = np.empty(h * w * 3 // 2, np.uint8)
    y_plane = nv12[: h * w].reshape(h, w)
    uv_plane = nv12[h * w :].reshape(h // 2, w // 2, 2)
    rows, cols = (0, h), (0, w)
    if lb is not None:
        rows, cols = _even_span(lb.pad_top, lb.content_shape[0], h), _even_span(lb.pad_left, lb.content_shape[1], w)
        pad_y, pad_uv = _pad_yuv()
        _fill_outside(y_plane, rows, cols, pad_y)
        _fill_outside(
            nv12[h * w :].view(np.uint16).reshape(h // 2, w // 2), (rows[0] // 2, rows[1] // 2), (cols[0] // 2, cols[1] // 2), pad_uv
        )
    (y0, y1), (x0, x1) = rows, cols
    ch, cw = y1 - y0, x1 - x0
    i420 = cv2.cvtColor(padded_bgr[y0:y1, x0:x1], cv2.COLOR_BGR2YUV_I420).reshape(-1)  # Y, then U plane, then V plane
    quarter = (ch // 2) * (cw // 2)
    y_plane[y0:y1, x0:x1] = i420[: ch * cw].reshape(ch, cw)
    u = i420[ch * cw : ch * cw + quarter].reshape(ch // 2, cw // 2)
    v = i420[ch * cw + quarter :].reshape(ch // 2, cw // 2)
    uv_plane[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2] = cv2.merge([u, v])  # the one interleave
    return nv12


def nv12_to_bgr(nv12: np.ndarray, input_shape: tuple[int, int]) -> np.ndarray:
    """The inverse of ``to_nv12`` (up to the colour round trip): flat NV12 -> uint8 BGR HWC."""
    h, w = input_shape
    return cv2.cvtColor(np.asarray(nv12, np.uint8).reshape(h * 3 // 2, w), cv2.COLOR_YUV2BGR_NV12)


def nv12_input_tensor(padded_nv12: np.ndarray, input_shape: tuple[int, int]) -> np.ndarray:
    """A letterboxed NV12 input as the float RGB NCHW tensor (/255): how a backend without an NV12 input (ONNX
    Runtime) takes an NV12 frame. One colour conversion, at the network's input size."""
    return to_input_tensor(nv12_to_bgr(padded_nv12, input_shape))


@dataclass(frozen=True)
class Nv12Frame:
    """A frame as the board's camera and video decoder deliver it: flat NV12 bytes (``height`` x ``width`` luma,
    then interleaved UV at half resolution), never converted to BGR unless something draws it.

    ``source_shape`` is the scene's size (h, w) when the hardware scaler already shrank the frame (the MIPI
    camera asked for the letterbox's inner size): detections are mapped to it, and ``to_bgr`` scales back up."""

    data: np.ndarray
    height: int
    width: int
    source_shape: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.height <= 0 or self.width <= 0 or self.height % 2 or self.width % 2:
            raise EdgesegError(f"an NV12 frame needs an even, positive height and width, got {self.height}x{self.width}")
        expected = self.height * self.width * 3 // 2
        if self.data.dtype != np.uint8 or self.data.ndim != 1 or self.data.size != expected:
            raise EdgesegError(
                f"an NV12 frame of {self.height}x{self.width} is {expected} uint8 bytes in one flat "
                f"array, got {self.data.dtype} {list(self.data.shape)}"
            )

    @classmethod
    def from_bytes(cls, data: bytes | np.ndarray, height: int, width: int, source_shape: tuple[int, int] | None = None) -> Nv12Frame:
        """A frame from the bytes a camera or decoder returned (no copy: a read-only view of ``data``)."""
        buffer = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else np.asarray(data, np.uint8)
        return cls(buffer.reshape(-1), int(height), int(width), source_shape)

    @classmethod
    def from_bgr(cls, image_bgr: np.ndarray) -> Nv12Frame:
        """An NV12 frame of a BGR image (even height and width), as a camera would have delivered it."""
        h, w = image_bgr.shape[:2]
        return cls(to_nv12(as_bgr(image_bgr)), h, w)

    @property
    def scene_shape(self) -> tuple[int, int]:
        """(h, w) of the scene the detections are mapped to."""
        return self.source_shape or (self.height, self.width)

    @property
    def shape(self) -> tuple[int, int, int]:
        """The shape the BGR image of this frame has (``image.shape[:2]`` works on either)."""
        return (*self.scene_shape, 3)

    def planes(self) -> tuple[np.ndarray, np.ndarray]:
        """Views of the Y plane (h, w) and the interleaved UV plane (h/2, w/2, 2)."""
        h, w = self.height, self.width
        return self.data[: h * w].reshape(h, w), self.data[h * w :].reshape(h // 2, w // 2, 2)

    def to_bgr(self) -> np.ndarray:
        """The BGR image (for drawing): one colour conversion, scaled to ``scene_shape`` if the hardware shrank it."""
        bgr = nv12_to_bgr(self.data, (self.height, self.width))
        sh, sw = self.scene_shape
        return bgr if (sh, sw) == (self.height, self.width) else cv2.resize(bgr, (sw, sh), interpolation=cv2.INTER_LINEAR)


def letterbox_nv12(frame: Nv12Frame, input_shape: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """Ultralytics' letterbox done in NV12: the Y plane and the UV plane resized apart (bilinear, as the BGR
    letterbox resizes) into the content area, the pad filled with the Y/U/V bytes of the pad colour that
    ``to_nv12`` gives. No BGR in between. A frame that the hardware scaler already shrank to the content size
    is only padded. Chroma rows and columns are whole 2x2 blocks: an odd pad offset puts the content's first
    chroma sample half a pixel early (the BPU's NV12 input is the same)."""
    ih, iw = input_shape
    if ih % 2 or iw % 2:
        raise EdgesegError(f"NV12 needs an even input height and width, got {ih}x{iw}")
    lb = letterbox_params(frame.scene_shape, input_shape)
    nh, nw = lb.content_shape
    y_src, uv_src = frame.planes()
    out = np.empty(ih * iw * 3 // 2, np.uint8)
    y_out = out[: ih * iw].reshape(ih, iw)
    uv_words = out[ih * iw :].view(np.uint16).reshape(ih // 2, iw // 2)
    pad_y, pad_uv = _pad_yuv()
    y0, x0 = lb.pad_top, lb.pad_left
    _fill_outside(y_out, (y0, y0 + nh), (x0, x0 + nw), pad_y)
    y_out[y0 : y0 + nh, x0 : x0 + nw] = _resized(y_src, nh, nw)
    cy0, cx0 = y0 // 2, x0 // 2
    ch, cw = (y0 + nh + 1) // 2 - cy0, (x0 + nw + 1) // 2 - cx0
    _fill_outside(uv_words, (cy0, cy0 + ch), (cx0, cx0 + cw), pad_uv)
    uv_out = out[ih * iw :].reshape(ih // 2, iw // 2, 2)
    uv_out[cy0 : cy0 + ch, cx0 : cx0 + cw] = _resized(uv_src, ch, cw)
    return out, lb


def _resized(plane: np.ndarray, h: int, w: int) -> np.ndarray:
    """``plane`` at (h, w): as it is when it already has that size (the hardware scaled it), else bilinear. At an
    odd whole shrink factor k (1920x1080 -> 640x360: k = 3) bilinear samples land exactly on source pixels
    (centre ``k*i + k//2``), so every k-th pixel is the same bytes, read from a third of the rows."""
    sh, sw = plane.shape[:2]
    if (sh, sw) == (h, w):
        return plane
    k = sh // h
    if k > 1 and k % 2 and sh == k * h and sw == k * w:
        return plane[k // 2 :: k, k // 2 :: k]
    return cv2.resize(plane, (w, h), interpolation=cv2.INTER_LINEAR)
