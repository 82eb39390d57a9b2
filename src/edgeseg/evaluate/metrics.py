"""The result of evaluating one model (``EvalResult``) and its files: the metrics JSON that
``edgeseg val --save-json`` writes, the COCO results beside it, and reading the metrics JSON back."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EdgesegError, Problem
from ..fileio import is_count, is_real, read_json, write_json_atomic

METRICS = ("box_map50_95", "box_map50", "mask_map50_95", "mask_map50")
SETTINGS = ("conf", "iou", "max_det", "multi_label", "keep_empty_masks")  # the val settings each metrics JSON entry carries
_SHAPE = 'not an edgeseg val JSON (expected {"models": [{"model": ...}, ...]})'


@dataclass
class EvalResult:
    """Metrics of one model on one dataset (fractions in 0..1) and its COCO results records."""

    model: str
    data: str
    images: int
    box_map50_95: float
    box_map50: float
    mask_map50_95: float
    mask_map50: float
    per_class: dict[str, dict[str, Any]]
    predictions: list[dict] = field(repr=False, default_factory=list)
    skipped: list[Problem] = field(default_factory=list)
    evaluator: str = ""
    settings: dict[str, Any] = field(default_factory=dict)  # conf, iou, max_det, multi_label, keep_empty_masks

    def to_dict(self) -> dict[str, Any]:
        """The metrics JSON entry of this model."""
        return {
            "model": self.model,
            "data": self.data,
            "images": self.images,
            "box_map50_95": self.box_map50_95,
            "box_map50": self.box_map50,
            "mask_map50_95": self.mask_map50_95,
            "mask_map50": self.mask_map50,
            "per_class": self.per_class,
            "skipped": [{"image": s, "problem": p} for s, p in self.skipped],
            "evaluator": self.evaluator,
            **self.settings,
        }

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any], path: str | os.PathLike | None = None) -> EvalResult:
        """The result of a metrics JSON entry (``to_dict``'s form); ``path`` names the file in errors.
        ``model``, ``images`` and the four metrics are required; the COCO results records are not read
        (the entry's ``predictions`` names their file), so ``predictions`` is empty."""
        if not isinstance(entry, Mapping) or not isinstance(entry.get("model"), str):
            raise EdgesegError(_SHAPE, path)
        where = f"model {entry['model']!r}"
        images = entry.get("images")
        if not is_count(images):
            raise EdgesegError(f"{where}: 'images' must be a count, got {images!r}", path)
        metrics = {}
        for key in METRICS:
            value = entry.get(key)
            if not is_real(value):
                raise EdgesegError(f"{where}: {key!r} must be a number, got {value!r}", path)
            metrics[key] = float(value)
        per_class = entry.get("per_class", {})
        skipped = entry.get("skipped", [])
        if not isinstance(per_class, dict) or not all(isinstance(m, dict) for m in per_class.values()):
            raise EdgesegError(f"{where}: 'per_class' must map class names to metrics", path)
        if not isinstance(skipped, list) or not all(isinstance(s, dict) and {"image", "problem"} <= s.keys() for s in skipped):
            raise EdgesegError(f"{where}: 'skipped' must list {{'image': ..., 'problem': ...}} records", path)
        return cls(
            model=entry["model"],
            data=str(entry.get("data", "")),
            images=images,
            per_class=dict(per_class),
            skipped=[Problem(str(s["image"]), str(s["problem"])) for s in skipped],
            evaluator=str(entry.get("evaluator", "")),
            settings={k: entry[k] for k in SETTINGS if k in entry},
            **metrics,
        )


def prediction_paths(path: str | os.PathLike, count: int) -> list[Path]:
    """Where ``save_results`` puts each model's COCO results: ``<stem>_predictions.json`` beside the
    metrics file (``<stem>_predictions_<k>.json``, k from 1, with several models)."""
    p = Path(path)
    stem = p.name[: -len(p.suffix)] if p.suffix else p.name
    if count == 1:
        return [p.with_name(f"{stem}_predictions.json")]
    return [p.with_name(f"{stem}_predictions_{k}.json") for k in range(1, count + 1)]


def save_results(results: Sequence[EvalResult], path: str | os.PathLike) -> tuple[Path, list[Path]]:
    """Write the metrics JSON ``{"models": [...]}`` to ``path`` and each model's predictions as a COCO
    results json beside it (see ``prediction_paths``); both atomically. Returns (metrics, predictions)."""
    pred_paths = prediction_paths(path, len(results))
    for r, p in zip(results, pred_paths):
        write_json_atomic(p, r.predictions)
    models = [dict(r.to_dict(), predictions=p.name) for r, p in zip(results, pred_paths)]
    return write_json_atomic(path, {"models": models}), pred_paths


def read_eval_results(path: str | os.PathLike) -> list[EvalResult]:
    """The results of a metrics JSON (``save_results``' ``{"models": [...]}``), in file order; a missing,
    unreadable or malformed file is a one-line EdgesegError naming it."""
    p = Path(path)
    doc = read_json(p, "val")
    models = doc.get("models") if isinstance(doc, dict) else None
    if not isinstance(models, list):
        raise EdgesegError(_SHAPE, p)
    return [EvalResult.from_dict(entry, p) for entry in models]
