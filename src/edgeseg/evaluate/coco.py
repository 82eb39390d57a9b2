"""COCO conventions and scoring: the COCO-80 class table and its 91-id category numbering, the choice
of evaluator (faster-coco-eval, else pycocotools), and box/mask mAP of COCO results computed by it.
Nothing here re-implements mAP: the evaluator computes every number."""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from ..errors import EdgesegError

# The 80 COCO class names in the order every YOLO COCO model uses, and their ids among COCO's 91.
COCO80_NAMES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip
COCO80_TO_COCO91 = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32,
    33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59,
    60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90,
)  # fmt: skip
# Older (Darknet/VOC-style) spellings of the same COCO classes.
_COCO_ALIASES = {
    "motorbike": "motorcycle", "aeroplane": "airplane", "sofa": "couch", "pottedplant": "potted plant",
    "diningtable": "dining table", "tvmonitor": "tv", "tv monitor": "tv", "cellphone": "cell phone",
    "hair dryer": "hair drier", "doughnut": "donut",
}  # fmt: skip


def canonical_class_name(name: str) -> str:
    """A class name compared the forgiving way: lower case, ``_``/``-`` as spaces, older COCO spellings mapped."""
    n = " ".join(str(name).strip().lower().replace("_", " ").replace("-", " ").split())
    return _COCO_ALIASES.get(n, _COCO_ALIASES.get(n.replace(" ", ""), n))


def is_coco80(names: Mapping[int, str]) -> bool:
    """True when class ids 0..79 carry the 80 COCO names in COCO order (older spellings accepted)."""
    return sorted(names) == list(range(80)) and all(canonical_class_name(names[i]) == COCO80_NAMES[i] for i in range(80))


def category_ids(names: Mapping[int, str]) -> dict[int, int]:
    """Class id -> COCO category id: the 91-id COCO numbering for the 80 COCO classes (person 1, ...,
    cake 61, ..., toothbrush 90), otherwise contiguous from 1 (class ``c`` -> ``c + 1``, Ultralytics'
    numbering for custom data)."""
    if is_coco80(names):
        return {i: COCO80_TO_COCO91[i] for i in range(80)}
    return {int(c): int(c) + 1 for c in sorted(names)}


# --------------------------------------------------------------------------------------------------
# evaluator back end

_INSTALL_HINT = "evaluation needs faster-coco-eval or pycocotools: pip install faster-coco-eval"


def coco_mask_api():
    """The COCO mask module (polygon rasterising, RLE area) of whichever evaluator is installed."""
    try:
        from pycocotools import mask
    except ImportError:
        try:
            from faster_coco_eval.core import mask
        except ImportError:
            raise EdgesegError(_INSTALL_HINT) from None
    return mask


def coco_evaluator_backend(name: str = "auto") -> tuple[Any, Any, str]:
    """(COCO class, COCOeval class, name) of the evaluator ``name``: auto, faster-coco-eval or pycocotools."""
    if name in ("auto", "faster-coco-eval"):
        try:
            from faster_coco_eval import COCO, COCOeval_faster

            return COCO, COCOeval_faster, "faster-coco-eval"
        except ImportError:
            if name != "auto":
                raise EdgesegError("faster-coco-eval is not installed: pip install faster-coco-eval") from None
    if name in ("auto", "pycocotools"):
        try:
            from pycocotools.coco import COCO
            from pycocotools.cocoeval import COCOeval

            return COCO, COCOeval, "pycocotools"
        except ImportError:
            pass
        raise EdgesegError(_INSTALL_HINT)
    raise EdgesegError(f"unknown evaluator {name!r} (auto, faster-coco-eval or pycocotools)")


@dataclass
class Scores:
    """COCO mAP of one prediction set against one ground truth, fractions in 0..1.

    ``per_class`` maps a category id to ``{"box_map50_95", "box_map50", "mask_map50_95", "mask_map50"}``
    for categories with ground truth instances."""

    box_map50_95: float
    box_map50: float
    mask_map50_95: float
    mask_map50: float
    per_class: dict[int, dict[str, float]]
    evaluator: str


T = TypeVar("T")


def _silent(fn: Callable[[], T]) -> T:
    """Run ``fn`` with stdout swallowed: the evaluators print their progress and summaries."""
    with contextlib.redirect_stdout(io.StringIO()):
        return fn()


def score_predictions(
    gt: dict,
    predictions: Sequence[dict],
    *,
    image_ids: Iterable[int] | None = None,
    evaluator: str = "auto",
) -> Scores:
    """Score COCO results (``image_id``, ``category_id``, ``bbox`` xywh, ``score``, ``segmentation`` RLE)
    against a COCO instances dict with the evaluator's default parameters (bbox and segm).

    ``image_ids`` limits scoring to those images (default: all images in ``gt``)."""
    COCO, COCOeval, used = coco_evaluator_backend(evaluator)
    ids = sorted({img["id"] for img in gt["images"]} if image_ids is None else set(image_ids))
    cat_ids = sorted({c["id"] for c in gt["categories"]})
    wanted = set(ids)
    counted = {a["category_id"] for a in gt["annotations"] if a["image_id"] in wanted}
    if not counted:
        raise EdgesegError("the ground truth has no labelled instances on the evaluated images: nothing to score")
    gt = dict(gt, info=gt.get("info", {}), licenses=gt.get("licenses", []))
    if used == "pycocotools":
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        _silent(coco_gt.createIndex)
    else:
        coco_gt = COCO(copy.deepcopy(gt))
    preds = [dict(p) for p in predictions if p["image_id"] in wanted]  # loadRes writes into its records
    out: dict[str, tuple[float, float, dict[int, tuple[float, float]]]] = {}
    for iou_type in ("bbox", "segm"):
        if not preds:  # loadRes refuses an empty list; no predictions score 0
            out[iou_type] = (0.0, 0.0, {c: (0.0, 0.0) for c in counted})
            continue
        coco_dt = _silent(lambda: coco_gt.loadRes(copy.deepcopy(preds)))
        ev = COCOeval(coco_gt, coco_dt, iou_type)
        ev.params.imgIds = ids
        ev.params.catIds = cat_ids
        _silent(ev.evaluate)
        _silent(ev.accumulate)
        _silent(ev.summarize)
        out[iou_type] = (float(ev.stats[0]), float(ev.stats[1]), _per_category(ev, cat_ids, counted))
    box, mask = out["bbox"], out["segm"]
    per_class = {
        c: {
            "box_map50_95": box[2][c][0],
            "box_map50": box[2][c][1],
            "mask_map50_95": mask[2][c][0],
            "mask_map50": mask[2][c][1],
        }
        for c in sorted(counted)
    }
    return Scores(max(box[0], 0.0), max(box[1], 0.0), max(mask[0], 0.0), max(mask[1], 0.0), per_class, used)


def _per_category(ev, cat_ids: list[int], counted: set[int]) -> dict[int, tuple[float, float]]:
    """mAP50-95 and mAP50 per category from the evaluator's own precision table (area 'all', the
    largest maxDets), averaged the way its ``summarize`` does."""
    precision = np.asarray(ev.eval["precision"])  # [iou thresholds, recall, category, area, maxDets]
    iou_thrs = np.asarray(ev.params.iouThrs)
    t50 = int(np.argmin(np.abs(iou_thrs - 0.5)))
    result = {}
    for k, cat in enumerate(cat_ids):
        if cat not in counted:
            continue
        p = precision[:, :, k, 0, -1]
        p50 = p[t50]
        result[cat] = (
            float(p[p > -1].mean()) if (p > -1).any() else 0.0,
            float(p50[p50 > -1].mean()) if (p50 > -1).any() else 0.0,
        )
    return result
