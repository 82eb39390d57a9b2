"""The evaluation run: predict every image of a dataset with ``Segmenter`` through the one pipeline, turn the detections into
COCO results at original resolution, and score them (``coco.score_predictions``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..backends import read_model_info
from ..decode import DecodeOptions
from ..engines.base import Predictor
from ..engines.threads import StreamRunner
from ..errors import EdgesegError, Problem
from ..predict import Segmenter
from ..preprocess import normalise_imgsz
from ..progress import progress
from ..results import class_name
from ..sources import ImageFiles
from .coco import canonical_class_name, score_predictions
from .datasets import Dataset, load_dataset
from .metrics import EvalResult


@dataclass(frozen=True)
class ValConfig:
    """How to evaluate: ``decode`` with Ultralytics' val settings by default (conf 0.001, multi-label NMS,
    detections with empty masks kept).

    ``imgsz`` is a check only (an edgeseg model has a fixed input size); ``threads`` are ONNX Runtime
    intra-op threads (0: its default); ``evaluator`` is auto, faster-coco-eval or pycocotools."""

    decode: DecodeOptions = DecodeOptions(conf=0.001, multi_label=True, keep_empty_masks=True)
    threads: int = 0
    imgsz: int | tuple[int, ...] | None = None
    evaluator: str = "auto"

    def __post_init__(self) -> None:
        if self.imgsz is not None and not isinstance(self.imgsz, int):
            object.__setattr__(self, "imgsz", tuple(int(v) for v in self.imgsz))

    def settings(self) -> dict[str, Any]:
        """The settings a metrics JSON entry records."""
        d = self.decode
        return {"conf": d.conf, "iou": d.iou, "max_det": d.max_det, "multi_label": d.multi_label, "keep_empty_masks": d.keep_empty_masks}


def check_imgsz(model_imgsz: tuple[int, int], imgsz: int | Sequence[int] | None, model: str) -> None:
    """``imgsz`` is a check only: an edgeseg model has a fixed input size."""
    if imgsz is None:
        return
    want = normalise_imgsz(imgsz, stride=1)
    if want != tuple(model_imgsz):
        raise EdgesegError(
            f"model input is {model_imgsz[0]}x{model_imgsz[1]}, not {want[0]}x{want[1]} "
            "(edgeseg models have a fixed size: export one at the size you want)",
            model,
        )


def size_mismatch(image_shape: Sequence[int], annotated: tuple[int, int]) -> str | None:
    """The problem of an image whose (h, w) differs from its annotation's, else None."""
    h, w = annotated
    if tuple(image_shape[:2]) == (h, w):
        return None
    return f"image is {image_shape[1]}x{image_shape[0]} but annotated as {w}x{h}"


def predict_records(
    segmenter: Predictor, dataset: Dataset, *, desc: str = "val", show_progress: bool = False
) -> tuple[list[dict], list[int], list[Problem]]:
    """Run ``segmenter`` (its options as they are) over the dataset on the local-threads engine: (COCO results
    records, evaluated image ids, skipped images as ``Problem`` (path, problem)). One session, two threads: one image's
    decode and masks overlap the next one's inference (ONNX Runtime's ``run`` is thread-safe)."""
    cats = dataset.category_map(segmenter.info.names)
    sizes = dataset.image_sizes()
    ids = [image_id for image_id, _ in dataset.images]
    records: list[dict] = []
    done: list[int] = []
    skipped: list[Problem] = []
    bar = progress(desc=desc, total=len(dataset.images), enabled=show_progress)
    for frame in StreamRunner([segmenter, segmenter]).run(ImageFiles([p for _, p in dataset.images])):
        bar.update(1)
        image_id = ids[frame.index]
        problem = frame.error or size_mismatch(frame.image.shape, sizes[image_id])
        if problem:
            skipped.append(Problem(frame.source, problem))
            continue
        records += frame.detections.to_coco(image_id, cats)
        done.append(image_id)
        bar.set_postfix(objects=len(records), skipped=len(skipped) + len(dataset.skipped))
    bar.close()
    return records, done, skipped


# What produces a dataset's COCO results: ``predict_records`` (this process) or ``on_ray.RayPredictions``.
PredictRecords = Callable[..., tuple[list[dict], list[int], list[Problem]]]


def _note_name_mismatch(dataset: Dataset, model_names: dict[int, str], model: str | os.PathLike) -> None:
    """YOLO labels carry class ids only: differing names are matched by id, with a warning."""
    ours = [canonical_class_name(n) for _, n in sorted(model_names.items())]
    theirs = [canonical_class_name(n) for _, n in sorted(dataset.names.items())]
    if dataset.source == "yolo" and ours != theirs:
        note = f"class names of {Path(model).name} differ from the dataset's: classes are matched by id"
        if note not in dataset.warnings:
            dataset.warnings.append(note)


def _per_class(dataset: Dataset, per_category: dict[int, dict[str, float]], done: list[int]) -> dict[str, dict[str, Any]]:
    """Per-class metrics keyed by class name, with the images and instances each class has among ``done``."""
    inv = {cat: c for c, cat in dataset.category_ids.items()}
    counts: dict[int, int] = {}
    image_counts: dict[int, set] = {}
    evaluated = set(done)
    for a in dataset.coco["annotations"]:
        if a["image_id"] in evaluated:
            counts[a["category_id"]] = counts.get(a["category_id"], 0) + 1
            image_counts.setdefault(a["category_id"], set()).add(a["image_id"])
    per_class = {}
    for cat, m in per_category.items():
        c = inv.get(cat, cat)
        per_class[class_name(dataset.names, c)] = {
            "class_id": c,
            "category_id": cat,
            "images": len(image_counts.get(cat, ())),
            "instances": counts.get(cat, 0),
            **m,
        }
    return per_class


def evaluate(
    model: str | os.PathLike,
    data: str | os.PathLike | Dataset,
    *,
    config: ValConfig | None = None,
    images: str | os.PathLike | None = None,
    show_progress: bool = False,
    predict: PredictRecords = predict_records,
) -> EvalResult:
    """Box and mask mAP of one edgeseg ONNX model on a dataset (see ``load_dataset``; ``images`` is the
    image directory of a COCO json) with ``config`` (default ``ValConfig()``). Unreadable images are skipped and listed in ``skipped``.
    ``predict(segmenter, dataset, desc=, show_progress=)`` makes the COCO results (default: in this process)."""
    config = config or ValConfig()
    seg = Segmenter(model, options=config.decode, threads=config.threads)
    check_imgsz(seg.info.imgsz, config.imgsz, os.fspath(model))
    ds = data if isinstance(data, Dataset) else load_dataset(data, names=seg.names, images=images)
    _note_name_mismatch(ds, seg.names, model)
    records, done, skipped = predict(seg, ds, desc=f"val {Path(model).name}", show_progress=show_progress)
    if not done:
        raise EdgesegError("no image could be evaluated", ds.name)
    scores = score_predictions(ds.coco, records, image_ids=done, evaluator=config.evaluator)
    return EvalResult(
        model=os.fspath(model),
        data=ds.name,
        images=len(done),
        box_map50_95=scores.box_map50_95,
        box_map50=scores.box_map50,
        mask_map50_95=scores.mask_map50_95,
        mask_map50=scores.mask_map50,
        per_class=_per_class(ds, scores.per_class, done),
        predictions=records,
        skipped=list(ds.skipped) + skipped,
        evaluator=scores.evaluator,
        settings=config.settings(),
    )


def evaluate_models(
    models: Sequence[str | os.PathLike],
    data: str | os.PathLike,
    *,
    config: ValConfig | None = None,
    images: str | os.PathLike | None = None,
    show_progress: bool = False,
    predict: PredictRecords = predict_records,
) -> tuple[Dataset, list[EvalResult]]:
    """Evaluate several models (e.g. float then INT8) on the same ground truth, loaded once
    (``config`` and ``predict`` as in ``evaluate``)."""
    config = config or ValConfig()
    if not models:
        raise EdgesegError("no model given")
    infos = [read_model_info(m) for m in models]  # fail on a bad model before minutes of inference
    for m, info in zip(models, infos):
        check_imgsz(info.imgsz, config.imgsz, os.fspath(m))
    ds = load_dataset(data, names=infos[0].names, images=images)
    return ds, [evaluate(m, ds, config=config, show_progress=show_progress, predict=predict) for m in models]
