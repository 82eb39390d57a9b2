"""The Python API for inference: ``Segmenter`` (one image -> Detections) and batch prediction over
files, directories and globs with overlays and a JSON of COCO-RLE records."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from .backends import Backend, ModelInfo, open_backend
from .decode import DecodeOptions, StageClock, decode
from .draw import draw_detections
from .errors import EdgesegError
from .fileio import write_bytes_atomic, write_json_atomic
from .preprocess import load_image, preprocess
from .results import Detections
from .sources import ImageFiles, collect_images, progress

ASSETS = Path(__file__).with_name("assets")
DEFAULT_MODEL = ASSETS / "yolov8n-seg-coco128-640.onnx"
SAMPLE_IMAGE = ASSETS / "sample.jpg"  # made by tools/make_sample_image.py: the project's own, redistributable


class Segmenter:
    """Runs an edgeseg model on images.

    ``model`` is a model file (default: the embedded model; the backend is chosen from the file by
    ``open_backend``) or any ``Backend``. Options are those of ``DecodeOptions`` (``conf``, ``iou``,
    ``max_det``, ``classes``, ``agnostic``, ``multi_label``) or ``options=`` one. One Segmenter may be
    shared by threads: ONNX Runtime's ``run`` is thread-safe and the decoder keeps no state."""

    def __init__(
        self,
        model: str | os.PathLike | Backend | None = None,
        *,
        options: DecodeOptions | None = None,
        threads: int = 0,
        providers: list[str] | None = None,
        **option_values,
    ) -> None:
        self.options = replace(options or DecodeOptions(), **option_values)
        if model is None or isinstance(model, (str, os.PathLike)):
            self.backend: Backend = open_backend(model or DEFAULT_MODEL, threads=threads, providers=providers)
        else:
            self.backend = model
        self.info: ModelInfo = self.backend.info
        if self.options.classes is not None:
            bad = [c for c in self.options.classes if c not in self.info.names]
            if bad:
                raise EdgesegError(f"class ids {bad} not in this model (0..{self.info.num_classes - 1})")

    @property
    def names(self) -> dict[int, str]:
        return self.info.names

    def raw(self, image: np.ndarray, clock: StageClock | None = None):
        """Preprocess and run the network: (outputs by name, Letterbox)."""
        tensor, lb = preprocess(image, self.info.imgsz)
        if clock is not None:
            clock.mark("preprocess")
        outputs = self.backend.run(tensor)
        if clock is not None:
            clock.mark("inference")
        return outputs, lb

    def __call__(
        self, image: str | os.PathLike | np.ndarray, with_masks: bool = True, clock: StageClock | None = None
    ) -> Detections:
        """Detections for one image (a path or an 8-bit BGR array). ``clock`` is told when each stage
        ends: preprocess, inference, decode, masks (the benchmark's hook)."""
        if not isinstance(image, np.ndarray):
            image = load_image(image)
        outputs, lb = self.raw(image, clock)
        return decode(outputs, self.info, lb, self.options, with_masks=with_masks, clock=clock)

    predict = __call__


@dataclass
class PredictSummary:
    processed: int = 0
    detections: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)
    overlays: list[Path] = field(default_factory=list)


def _unique_overlay_name(out_dir: Path, image: Path, used: set[str]) -> Path:
    name = image.stem + ".jpg"
    k = 1
    while name in used:
        name = f"{image.stem}_{k}.jpg"
        k += 1
    used.add(name)
    return out_dir / name


def predict_sources(
    segmenter: Segmenter,
    sources: Iterable[str | os.PathLike],
    *,
    out_dir: str | os.PathLike | None = None,
    save_json: str | os.PathLike | None = None,
    show_progress: bool = True,
) -> PredictSummary:
    """Predict every image in ``sources``; bad items are skipped and listed in ``summary.failed``."""
    found = collect_images(sources)
    summary = PredictSummary(failed=list(found.problems))
    out = Path(out_dir) if out_dir is not None else None
    used: set[str] = set()
    bar = progress(desc="predict", total=len(found.paths), enabled=show_progress)
    for item in ImageFiles(found.paths):
        bar.update(1)
        if not item.ok:
            summary.failed.append((item.name, item.error))
            continue
        try:
            det = segmenter(item.image)
        except EdgesegError as exc:
            summary.failed.append((item.name, str(exc)))
            continue
        summary.processed += 1
        summary.detections += len(det)
        summary.records.extend(det.to_records(item.name))
        if out is not None:
            ok, buf = cv2.imencode(".jpg", draw_detections(item.image, det))
            if ok:
                summary.overlays.append(write_bytes_atomic(_unique_overlay_name(out, Path(item.name), used), buf.tobytes()))
        bar.set_postfix(objects=summary.detections, failed=len(summary.failed))
    bar.close()
    if save_json is not None:
        write_json_atomic(save_json, summary.records)
    return summary

