"""The public pipeline (dense decode) the fast decoder is measured against, as a baseline and a test oracle
(pure numpy).

Sigmoid over every class of every cell, DFL over every anchor, concatenation of all scales, NMS (or, for
one-to-one heads, Ultralytics' end-to-end top-k step by step: top anchors, then top anchor x class pairs, then
conf), and full-image masks for every detection (cropped to the box afterwards).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .backends.base import BOX, CLS, MC, PROTOS, ModelInfo, QuantizedTensor, as_float, output_name
from .decode import Candidates, DecodeOptions, dfl_dist2bbox, nms_select, protos_hwc, scale_boxes
from .masks import ProtoMapping, full_mask_logits, pixel_range
from .preprocess import Letterbox
from .results import Detections


def reference_decode(
    outputs: Mapping[str, np.ndarray | QuantizedTensor],
    info: ModelInfo,
    lb: Letterbox,
    options: DecodeOptions = DecodeOptions(),
    *,
    with_masks: bool = True,
) -> Detections:
    """Same contract as ``decode.decode`` (``multi_label`` is not supported here)."""
    conf, iou, max_det, classes, agnostic = options.conf, options.iou, options.max_det, options.classes, options.agnostic
    nc, nm, reg_max = info.num_classes, info.num_masks, info.reg_max
    boxes, probs, coeffs = [], [], []
    for s in info.strides:
        cls = as_float(outputs[output_name(CLS, s)])
        grid_w = cls.shape[2]
        cls = cls.reshape(-1, nc)
        with np.errstate(over="ignore"):  # exp(-x) overflows to inf for very negative logits: sigmoid -> 0
            probs.append(1 / (1 + np.exp(-cls)))
        box = as_float(outputs[output_name(BOX, s)]).reshape(-1, 4 * reg_max)
        boxes.append(dfl_dist2bbox(box, np.arange(box.shape[0]), grid_w, s, reg_max))
        coeffs.append(as_float(outputs[output_name(MC, s)]).reshape(-1, nm))
    boxes, probs, coeffs = np.concatenate(boxes), np.concatenate(probs), np.concatenate(coeffs)
    if info.end2end:
        cand, sel = _end2end_topk(boxes, probs, coeffs, options)
    else:
        scores, class_ids = probs.max(axis=1), probs.argmax(axis=1)
        keep = scores > conf
        if classes is not None:
            keep &= np.isin(class_ids, np.asarray(list(classes)))
        cand = Candidates(boxes[keep], scores[keep].astype(np.float32), class_ids[keep].astype(np.int64), coeffs[keep])
        sel = nms_select(cand, iou, max_det, agnostic)
    if sel.size == 0:
        return Detections.empty(lb.source_shape, info.names, with_masks)
    xyxy = scale_boxes(cand.xyxy[sel], lb)
    det = Detections(xyxy, cand.scores[sel], cand.class_ids[sel], lb.source_shape, info.names)
    if not with_masks:
        return det
    plane = protos_hwc(outputs[PROTOS])
    mapping = ProtoMapping.from_letterbox(lb, plane.shape[:2])
    h0, w0 = lb.source_shape
    masks, origins = [], []
    for c, box in zip(cand.coeffs[sel], xyxy):
        full = full_mask_logits(c, plane, mapping) > 0
        xs, xe = pixel_range(float(box[0]), float(box[2]), w0)
        ys, ye = pixel_range(float(box[1]), float(box[3]), h0)
        masks.append(full[ys:ye, xs:xe])
        origins.append((xs, ys))
    det.masks, det.mask_origins = masks, np.asarray(origins, np.int64).reshape(-1, 2)
    return det if options.keep_empty_masks else det.drop_empty_masks()


def _end2end_topk(boxes: np.ndarray, probs: np.ndarray, coeffs: np.ndarray, options: DecodeOptions) -> tuple[Candidates, np.ndarray]:
    """Ultralytics' ``Detect.get_topk_index`` and the predictor's end-to-end filter, literally: the top k =
    min(max_det, anchors) anchors by best score, the top k anchor x class pairs of those (or, ``agnostic``,
    each top anchor's best class), then score > conf, then the classes filter."""
    k = min(options.max_det, probs.shape[0])
    best = probs.max(axis=1)
    top_anchors = np.argsort(-best, kind="stable")[:k]
    if options.agnostic:
        anchor, class_ids, scores = top_anchors, probs[top_anchors].argmax(axis=1), best[top_anchors]
    else:
        pairs = probs[top_anchors].ravel()
        top_pairs = np.argsort(-pairs, kind="stable")[:k]
        nc = probs.shape[1]
        anchor, class_ids, scores = top_anchors[top_pairs // nc], top_pairs % nc, pairs[top_pairs]
    keep = scores > options.conf
    if options.classes is not None:
        keep &= np.isin(class_ids, np.asarray(list(options.classes)))
    cand = Candidates(boxes[anchor[keep]], scores[keep].astype(np.float32), class_ids[keep].astype(np.int64), coeffs[anchor[keep]])
    return cand, np.arange(len(cand.scores))
