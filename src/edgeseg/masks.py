"""Instance masks: box-local mask logits from protos, resampled to original pixels, COCO RLE, polygons.

Ultralytics' native-resolution path (``process_mask_native``) computes ``mc @ protos`` over the whole
proto plane, upsamples, crops the letterbox padding, resizes to the original image (bilinear, half-pixel
centres, edge clamp), zeroes everything outside the box and thresholds at logit 0. Here each output
pixel takes one bilinear sample of the proto-resolution logits at the point the letterbox maps it to,
and only for pixels inside the box: the logits of only the proto cells under the box (plus one cell of
margin) come from one small gemv and ``cv2.warpAffine`` resamples them (``BoxMaskSampler``). The
full-image path (``full_mask_logits``, used by the reference decoder and the tests) does the same
sampling exactly in numpy, separably along rows then columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class ProtoMapping:
    """Where original pixel centres land on the proto plane, per axis:
    ``src = (p + 0.5) * scale + offset - 0.5`` in proto cells (y first, then x)."""

    proto_shape: tuple[int, int]
    image_shape: tuple[int, int]
    scale: tuple[float, float]
    offset: tuple[float, float]

    @classmethod
    def from_letterbox(cls, lb, proto_shape: tuple[int, int]) -> ProtoMapping:
        (h0, w0), (ih, iw), (nh, nw) = lb.source_shape, lb.input_shape, lb.content_shape
        ph, pw = proto_shape
        sy, sx = ph / ih, pw / iw  # proto cells per input pixel (1/4 for YOLO)
        return cls(
            (int(ph), int(pw)),
            (int(h0), int(w0)),
            (nh / h0 * sy, nw / w0 * sx),
            (lb.pad_top * sy, lb.pad_left * sx),
        )


def _source_taps(start: int, stop: int, scale: float, offset: float, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear taps for output pixels ``start..stop-1``: lower cell, upper cell, weight of the upper one.
    Edge-clamped like PyTorch's ``interpolate(..., align_corners=False)``."""
    src = np.arange(start, stop, dtype=np.float32)
    src *= np.float32(scale)
    src += np.float32(0.5 * scale + offset - 0.5)
    np.clip(src, 0, size - 1, out=src)
    lo = src.astype(np.intp)
    hi = np.minimum(lo + 1, size - 1)
    src -= lo
    return lo, hi, src


def _lerp_rows(plane: np.ndarray, lo: np.ndarray, hi: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """``plane[lo] * (1 - lam) + plane[hi] * lam`` along axis 0, for 2-D ``plane``."""
    out = plane[lo]
    out += (plane[hi] - out) * lam[:, None]
    return out


def _lerp_cols(plane: np.ndarray, lo: np.ndarray, hi: np.ndarray, lam: np.ndarray) -> np.ndarray:
    out = plane[:, lo]
    out += (plane[:, hi] - out) * lam
    return out


def pixel_range(x1: float, x2: float, limit: int) -> tuple[int, int]:
    """Pixels ``p`` with ``x1 <= p < x2`` (Ultralytics' ``crop_mask`` rule), clipped to ``[0, limit)``."""
    start = min(max(math.ceil(x1), 0), limit)
    stop = min(max(math.ceil(x2), 0), limit)
    return start, max(stop, start)


class BoxMaskSampler:
    """Samples mask logits inside boxes of one image: the logits of only the proto cells under the box
    (plus the bilinear margin) come from one small gemv, then ``cv2.warpAffine`` takes the bilinear
    samples (edge-replicated, which is the edge clamp). OpenCV quantises sample positions to 1/32 of a
    proto cell; on coco128-seg that changes no mask pixel against the exact numpy path
    (``full_mask_logits``), which the tests keep as the oracle."""

    def __init__(self, protos_hwc: np.ndarray, mapping: ProtoMapping) -> None:
        self.protos = protos_hwc
        self.mapping = mapping

    def logits(self, coeffs: np.ndarray, box_xyxy: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        """(logits, (x0, y0)): mask logits of the original pixels inside the box, whose top-left is (x0, y0)."""
        (h0, w0), (ph, pw) = self.mapping.image_shape, self.mapping.proto_shape
        (sy, sx), (oy, ox) = self.mapping.scale, self.mapping.offset
        x1, y1, x2, y2 = box_xyxy.tolist()
        xs, xe = pixel_range(x1, x2, w0)
        ys, ye = pixel_range(y1, y2, h0)
        if xe == xs or ye == ys:
            return np.zeros((ye - ys, xe - xs), np.float32), (xs, ys)
        # Proto coordinates of the first and last pixel centres in the box.
        fx0, fx1 = (xs + 0.5) * sx + ox - 0.5, (xe - 0.5) * sx + ox - 0.5
        fy0, fy1 = (ys + 0.5) * sy + oy - 0.5, (ye - 0.5) * sy + oy - 0.5
        cx0, cx1 = min(max(math.floor(fx0), 0), pw - 1), min(max(math.floor(fx1) + 2, 1), pw)
        cy0, cy1 = min(max(math.floor(fy0), 0), ph - 1), min(max(math.floor(fy1) + 2, 1), ph)
        region = self.protos[cy0:cy1, cx0:cx1]
        # One gemv over a compact copy beats numpy's stacked per-row matmul on the strided view.
        local = (region.reshape(-1, region.shape[2]) @ coeffs).reshape(region.shape[:2]).astype(np.float32, copy=False)
        warp = np.float32([[sx, 0, fx0 - cx0], [0, sy, fy0 - cy0]])
        logits = cv2.warpAffine(
            local, warp, (xe - xs, ye - ys), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
        )
        return logits.reshape(ye - ys, xe - xs), (xs, ys)


def box_mask_logits(
    coeffs: np.ndarray, protos_hwc: np.ndarray, box_xyxy: np.ndarray, mapping: ProtoMapping
) -> tuple[np.ndarray, tuple[int, int]]:
    """Mask logits of one detection, only inside its box, at original resolution (see BoxMaskSampler)."""
    return BoxMaskSampler(protos_hwc, mapping).logits(coeffs, box_xyxy)


def full_mask_logits(coeffs: np.ndarray, protos_hwc: np.ndarray, mapping: ProtoMapping) -> np.ndarray:
    """Mask logits of one detection over the whole original image (the public pipeline's way)."""
    h0, w0 = mapping.image_shape
    ph, pw = mapping.proto_shape
    plane = protos_hwc.astype(np.float32, copy=False) @ coeffs.astype(np.float32, copy=False)
    rows = _lerp_rows(plane, *_source_taps(0, h0, mapping.scale[0], mapping.offset[0], ph))
    return _lerp_cols(rows, *_source_taps(0, w0, mapping.scale[1], mapping.offset[1], pw))


def encode_rle(mask: np.ndarray) -> dict:
    """COCO compressed RLE (pycocotools' ``encode`` format) of a 2-D binary mask."""
    h, w = mask.shape
    flat = np.asarray(mask, bool).ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts.insert(0, 0)  # RLE always starts with a run of zeros
    if not flat.size:
        counts = []
    return {"size": [int(h), int(w)], "counts": _rle_to_string(counts)}


def _rle_to_string(counts: list[int]) -> str:
    # pycocotools' rleToString: delta against the count two back, 5-bit groups, '0'-offset ASCII.
    out = []
    for i, x in enumerate(counts):
        if i > 2:
            x -= counts[i - 2]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def decode_rle(rle: dict) -> np.ndarray:
    """Inverse of :func:`encode_rle` (for tests and tools that read our JSON without pycocotools)."""
    h, w = rle["size"]
    s = rle["counts"]
    counts: list[int] = []
    p = 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    flat = np.zeros(h * w, bool)
    pos, val = 0, False
    for c in counts:
        if val:
            flat[pos : pos + c] = True
        pos += c
        val = not val
    return flat.reshape((w, h)).T


def mask_to_polygons(mask: np.ndarray, origin: np.ndarray | tuple[int, int] = (0, 0)) -> list[np.ndarray]:
    """Outer contours of a (box-local) mask as (K, 2) float32 arrays in original pixels."""
    if mask.size == 0 or not mask.any():
        return []
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    ox, oy = (float(v) for v in origin)
    return [c.reshape(-1, 2).astype(np.float32) + np.float32([ox, oy]) for c in contours if len(c) >= 3]
