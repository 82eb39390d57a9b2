"""The fast decoder (pure numpy, no I/O): touch only the cells whose best class clears the threshold.

Per scale: ReduceMax over raw class logits, keep cells above logit(conf) (sigmoid is monotonic, so no
sigmoid over the full grid), argmax + sigmoid on survivors only, gather and dequantize only their
``box``/``mc`` rows, DFL + dist2bbox on them (or the 4 distances as they are when ``reg_max`` is 1). Then NMS
over all scales, or for one-to-one heads (``ModelInfo.end2end``, YOLO26) Ultralytics' end-to-end top-k, boxes
to original pixels, and masks for the final detections only, only inside their boxes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .backends.base import BOX, CLS, MC, PROTOS, ModelInfo, QuantizedTensor, output_name
from .errors import EdgesegError
from .masks import BoxMaskSampler, ProtoMapping
from .preprocess import Letterbox
from .results import Detections
from .stages import DECODE, MASKS, StageClock

MAX_WH = 7680  # Ultralytics' class offset for class-aware NMS in one pass
MAX_NMS = 30000  # Ultralytics' cap on boxes entering NMS


@dataclass(frozen=True)
class DecodeOptions:
    """What to keep: score threshold, NMS IoU, detections per image, class filter, class-agnostic NMS,
    ``multi_label`` (one cell under several classes, as Ultralytics' validator does) and ``keep_empty_masks``
    (keep a detection whose mask has no pixel, as Ultralytics' validator does: it counts for boxes and as an
    empty mask; by default it is dropped, as Ultralytics' predictor does). For one-to-one heads
    (``ModelInfo.end2end``) there is no NMS: ``iou`` and ``multi_label`` do not apply (the top-k ranks every
    anchor x class pair) and ``agnostic`` ranks each anchor's best class only, as Ultralytics' ``agnostic_nms``
    does there."""

    conf: float = 0.25
    iou: float = 0.7
    max_det: int = 300
    classes: tuple[int, ...] | None = None
    agnostic: bool = False
    multi_label: bool = False
    keep_empty_masks: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.conf <= 1:
            raise EdgesegError(f"conf must be in [0, 1], got {self.conf}")
        if not 0 <= self.iou <= 1:
            raise EdgesegError(f"iou must be in [0, 1], got {self.iou}")
        if self.max_det < 1:
            raise EdgesegError(f"max_det must be >= 1, got {self.max_det}")
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(int(c) for c in self.classes))


@dataclass
class Candidates:
    """Survivors of the class threshold, in network-input pixels."""

    xyxy: np.ndarray  # (K, 4) float32
    scores: np.ndarray  # (K,) float32
    class_ids: np.ndarray  # (K,) int64
    coeffs: np.ndarray  # (K, nm) float32 mask coefficients


def conf_to_logit(conf: float) -> float:
    """The raw-logit threshold equivalent to ``sigmoid(x) > conf``."""
    if conf <= 0:
        return -math.inf
    if conf >= 1:
        return math.inf
    return math.log(conf / (1 - conf))


def _rows(t: np.ndarray | QuantizedTensor, channels: int) -> np.ndarray | QuantizedTensor:
    """View an NHWC head as (H*W, C) rows without copying."""
    if isinstance(t, QuantizedTensor):
        return QuantizedTensor(t.data.reshape(-1, channels), t.scale, t.zero_point)
    return t.reshape(-1, channels)


def _take_rows(t: np.ndarray | QuantizedTensor, idx: np.ndarray) -> np.ndarray:
    """Gather rows and dequantize only those."""
    if isinstance(t, QuantizedTensor):
        return t.dequantize(idx)
    return t[idx].astype(np.float32, copy=False)


def cells_above(cls_rows: np.ndarray | QuantizedTensor, threshold: float) -> np.ndarray:
    """Indices of cells whose best class logit exceeds ``threshold`` (the ReduceMax + threshold step).

    One vectorised compare over all (cell, class) pairs and a scan for the few hits is cheaper than a
    per-row max over 80 classes. Per-tensor integer logits are compared as integers (scale > 0 keeps
    the order), so nothing is dequantized here."""
    if isinstance(cls_rows, QuantizedTensor) and np.ndim(cls_rows.scale) == 0:
        data = cls_rows.data
        limit = math.floor(threshold / float(cls_rows.scale) + float(cls_rows.zero_point)) if math.isfinite(threshold) else threshold
        info = np.iinfo(data.dtype)
        if limit < info.min:
            return np.arange(data.shape[0])
        if limit >= info.max:
            return np.zeros(0, np.int64)
        hits = np.flatnonzero(data.ravel() > data.dtype.type(limit))
    else:
        data = cls_rows.dequantize() if isinstance(cls_rows, QuantizedTensor) else cls_rows
        hits = np.flatnonzero(data.ravel() > threshold)
    cells = hits // data.shape[1]
    return cells[np.r_[True, cells[1:] != cells[:-1]]] if cells.size else cells


def dfl_dist2bbox(box_logits: np.ndarray, cell_index: np.ndarray, grid_w: int, stride: int, reg_max: int) -> np.ndarray:
    """DFL (softmax over ``reg_max`` bins, expectation) then ltrb -> xyxy around cell centres, in pixels;
    with ``reg_max`` 1 (YOLO26) the head outputs the four distances themselves (Ultralytics' DFL is Identity)."""
    k = box_logits.shape[0]
    if reg_max == 1:
        dist = box_logits.reshape(k, 4)
    else:
        logits = box_logits.reshape(k, 4, reg_max)
        e = np.exp(logits - logits.max(axis=2, keepdims=True))
        dist = (e @ np.arange(reg_max, dtype=np.float32)) / e.sum(axis=2)
    cx = (cell_index % grid_w).astype(np.float32) + np.float32(0.5)
    cy = (cell_index // grid_w).astype(np.float32) + np.float32(0.5)
    xyxy = np.stack([cx - dist[:, 0], cy - dist[:, 1], cx + dist[:, 2], cy + dist[:, 3]], axis=1)
    return xyxy * np.float32(stride)


def select_candidates(
    outputs: Mapping[str, np.ndarray | QuantizedTensor],
    info: ModelInfo,
    conf: float = 0.25,
    classes: Sequence[int] | None = None,
    multi_label: bool = False,
) -> Candidates:
    """Threshold on logits per scale, gather survivors, decode their boxes and mask coefficients.

    ``multi_label`` keeps every (cell, class) pair above ``conf`` instead of each cell's best class,
    as Ultralytics' validator does (it raises mAP slightly through low-score second labels)."""
    nc, nm, reg_max = info.num_classes, info.num_masks, info.reg_max
    threshold = conf_to_logit(conf)
    parts = []
    for stride in info.strides:
        cls_t = outputs[output_name(CLS, stride)]
        grid_w = (cls_t.data if isinstance(cls_t, QuantizedTensor) else cls_t).shape[2]
        cls_rows = _rows(cls_t, nc)
        idx = cells_above(cls_rows, threshold)
        if idx.size == 0:
            continue
        kept_logits = _take_rows(cls_rows, idx)
        best = kept_logits.argmax(axis=1)
        if multi_label:
            hit = kept_logits > threshold
            hit[np.arange(idx.size), best] = True  # the best class always, whatever float rounding says
            row, class_ids = np.nonzero(hit)
        else:
            row, class_ids = np.arange(idx.size), best
        scores = 1 / (1 + np.exp(-kept_logits[row, class_ids]))
        box = _take_rows(_rows(outputs[output_name(BOX, stride)], 4 * reg_max), idx)
        coeffs = _take_rows(_rows(outputs[output_name(MC, stride)], nm), idx)
        xyxy = dfl_dist2bbox(box, idx, grid_w, stride, reg_max)
        parts.append((xyxy[row], scores, class_ids, coeffs[row]))
    if not parts:
        return Candidates(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), np.zeros((0, nm), np.float32))
    xyxy, scores, class_ids, coeffs = (np.concatenate(p) for p in zip(*parts))
    cand = Candidates(xyxy.astype(np.float32), scores.astype(np.float32), class_ids.astype(np.int64), coeffs)
    if classes is not None:
        keep = np.isin(cand.class_ids, np.asarray(list(classes), np.int64))
        cand = Candidates(cand.xyxy[keep], cand.scores[keep], cand.class_ids[keep], cand.coeffs[keep])
    return cand


def _iou_rows(x1, y1, x2, y2, areas, i, rest):
    """IoU of boxes ``i`` with boxes ``rest`` (indices; an (n, 1) column against a row gives the matrix)."""
    w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
    h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
    inter = w * h
    return inter / (areas[i] + areas[rest] - inter)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, dense_limit: int = 1024) -> np.ndarray:
    """Greedy NMS like torchvision.ops.nms: indices of kept boxes, highest score first.

    Up to ``dense_limit`` boxes the IoU matrix is computed at once and the greedy pass only reads it
    (no numpy call per kept box); above that, the classic loop keeps memory linear."""
    order = np.argsort(-scores, kind="stable")
    n = order.size
    if n <= 1:
        return order
    b = boxes[order]
    x1, y1, x2, y2 = (np.ascontiguousarray(b[:, i]) for i in range(4))
    areas = (x2 - x1) * (y2 - y1)
    if n <= dense_limit:
        every = np.arange(n)
        over = _iou_rows(x1, y1, x2, y2, areas, every[:, None], every) > iou_threshold  # (n, n) by broadcasting
        suppressed = np.zeros(n, bool)
        keep = []
        for i in range(n):
            if not suppressed[i]:
                keep.append(i)
                suppressed |= over[i]
        return order[np.asarray(keep, np.int64)]
    rest = np.arange(n)
    keep = []
    while rest.size:
        i = rest[0]
        keep.append(i)
        rest = rest[1:]
        rest = rest[~(_iou_rows(x1, y1, x2, y2, areas, i, rest) > iou_threshold)]
    return order[np.asarray(keep, np.int64)]


def nms_select(cand: Candidates, iou: float = 0.7, max_det: int = 300, agnostic: bool = False) -> np.ndarray:
    """Indices of candidates kept by (class-aware unless ``agnostic``) NMS, capped at ``max_det``."""
    if cand.scores.size == 0:
        return np.zeros(0, np.int64)
    pre = np.argsort(-cand.scores, kind="stable")[:MAX_NMS]
    boxes = cand.xyxy[pre]
    if not agnostic:
        boxes = boxes + (cand.class_ids[pre, None] * MAX_WH).astype(np.float32)
    return pre[nms(boxes, cand.scores[pre], iou)[:max_det]]


def end2end_select(cand: Candidates, max_det: int, anchors: int, classes: Sequence[int] | None = None) -> np.ndarray:
    """Indices of candidates kept by Ultralytics' one-to-one selection (no NMS), best first.

    Ultralytics (``Detect.postprocess``/``get_topk_index``, then the predictor) takes the top k = min(max_det,
    anchors) anchors by best class score, then the top k (anchor, class) pairs among them, then keeps scores
    above conf, then the classes filter. A pair never outscores its anchor's best class, so the top k pairs
    among the top k anchors are the top k pairs overall, and the conf filter keeps a prefix of them: the k best
    of the pairs above conf are the same set. So candidates thresholded on logits with every class above conf
    (``multi_label``) sorted by score and cut at k are exact; the classes filter comes after the cut, as there."""
    order = np.argsort(-cand.scores, kind="stable")[: min(max_det, anchors)]
    if classes is not None:
        order = order[np.isin(cand.class_ids[order], np.asarray(list(classes), np.int64))]
    return order


def select(outputs: Mapping[str, np.ndarray | QuantizedTensor], info: ModelInfo, options: DecodeOptions) -> tuple[Candidates, np.ndarray]:
    """Candidates and the indices of the kept ones, as the model's head wants: end-to-end top-k for
    one-to-one heads (``agnostic`` there is Ultralytics' ``agnostic_nms`` top-k: one class per anchor),
    NMS otherwise."""
    if info.end2end:
        cand = select_candidates(outputs, info, options.conf, None, multi_label=not options.agnostic)
        return cand, end2end_select(cand, options.max_det, info.anchors, options.classes)
    cand = select_candidates(outputs, info, options.conf, options.classes, options.multi_label)
    return cand, nms_select(cand, options.iou, options.max_det, options.agnostic)


def scale_boxes(xyxy: np.ndarray, lb: Letterbox) -> np.ndarray:
    """Network-input boxes -> original pixels, clipped (mirror of Ultralytics' ``scale_boxes``: per-axis
    gain of the rounded content size, integer padding)."""
    (h0, w0), (new_h, new_w) = lb.source_shape, lb.content_shape
    gain = np.float32([new_w / w0, new_h / h0, new_w / w0, new_h / h0])
    pad = np.float32([lb.pad_left, lb.pad_top, lb.pad_left, lb.pad_top])
    out = (xyxy - pad) / gain
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, w0)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, h0)
    return out.astype(np.float32)


def protos_hwc(protos: np.ndarray | QuantizedTensor) -> np.ndarray:
    """The (Hp, Wp, nm) float proto plane."""
    if isinstance(protos, QuantizedTensor):
        return protos.dequantize()[0]
    return protos[0]


def decode(
    outputs: Mapping[str, np.ndarray | QuantizedTensor],
    info: ModelInfo,
    lb: Letterbox,
    options: DecodeOptions = DecodeOptions(),
    *,
    with_masks: bool = True,
    clock: StageClock | None = None,
) -> Detections:
    """Split-head outputs of one image -> Detections in original pixels with box-local masks.

    ``clock`` (optional) is told when the box stage (``DECODE``) and the mask stage (``MASKS``) end."""
    cand, keep = select(outputs, info, options)
    if keep.size == 0:
        det = Detections.empty(lb.source_shape, info.names, with_masks)
    else:
        xyxy = scale_boxes(cand.xyxy[keep], lb)
        det = Detections(xyxy, cand.scores[keep], cand.class_ids[keep], lb.source_shape, info.names)
    if clock is not None:
        clock.mark(DECODE)
    if with_masks and len(det):
        det.masks, det.mask_origins = instance_masks(cand.coeffs[keep], outputs[PROTOS], det.xyxy, lb)
        if not options.keep_empty_masks:
            det = det.drop_empty_masks()
    if clock is not None:
        clock.mark(MASKS)
    return det


def instance_masks(
    coeffs: np.ndarray, protos: np.ndarray | QuantizedTensor, xyxy: np.ndarray, lb: Letterbox
) -> tuple[list[np.ndarray], np.ndarray]:
    """Box-local bool masks (logit > 0) for final detections and their (x, y) origins."""
    plane = protos_hwc(protos)
    sampler = BoxMaskSampler(plane, ProtoMapping.from_letterbox(lb, plane.shape[:2]))
    masks, origins = [], []
    for c, box in zip(coeffs, xyxy):
        logits, origin = sampler.logits(c, box)
        masks.append(logits > 0)
        origins.append(origin)
    return masks, np.asarray(origins, np.int64).reshape(-1, 2)
