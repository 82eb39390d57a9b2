"""The Python API for inference: ``Segmenter`` (one image -> Detections) and batch prediction over
files, directories and globs with overlays and a JSON of COCO-RLE records."""

from __future__ import annotations

import glob
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

from .decode import decode
from .draw import draw_detections
from .errors import EdgesegError
from .fileio import write_bytes_atomic, write_json_atomic
from .preprocess import IMAGE_SUFFIXES, load_image, preprocess
from .results import Detections
from .runtime import Backend, ModelInfo, OnnxRuntimeBackend

ASSETS = Path(__file__).with_name("assets")
DEFAULT_MODEL = ASSETS / "yolov8n-seg-coco128-640.onnx"
SAMPLE_IMAGE = ASSETS / "sample.jpg"  # made by tools/make_sample_image.py: the project's own, redistributable


def check_thresholds(conf: float, iou: float, max_det: int) -> None:
    if not 0 <= conf <= 1:
        raise EdgesegError(f"conf must be in [0, 1], got {conf}")
    if not 0 <= iou <= 1:
        raise EdgesegError(f"iou must be in [0, 1], got {iou}")
    if max_det < 1:
        raise EdgesegError(f"max_det must be >= 1, got {max_det}")


class Segmenter:
    """Runs an edgeseg model on images.

    ``model`` is a path to an edgeseg ONNX file (float or INT8; default: the embedded model) or any
    ``Backend``. One Segmenter may be shared by threads: ONNX Runtime's ``run`` is thread-safe and the
    decoder keeps no state."""

    def __init__(
        self,
        model: str | os.PathLike | Backend | None = None,
        conf: float = 0.25,
        iou: float = 0.7,
        max_det: int = 300,
        classes: Sequence[int] | None = None,
        agnostic: bool = False,
        threads: int = 0,
        providers: list[str] | None = None,
    ) -> None:
        check_thresholds(conf, iou, max_det)
        if model is None or isinstance(model, (str, os.PathLike)):
            self.backend: Backend = OnnxRuntimeBackend(model or DEFAULT_MODEL, providers, intra_op_threads=threads)
        else:
            self.backend = model
        self.info: ModelInfo = self.backend.info
        if classes is not None:
            bad = [c for c in classes if c not in self.info.names]
            if bad:
                raise EdgesegError(f"class ids {bad} not in this model (0..{self.info.num_classes - 1})")
        self.conf, self.iou, self.max_det = conf, iou, max_det
        self.classes, self.agnostic = (list(classes) if classes is not None else None), agnostic

    @property
    def names(self) -> dict[int, str]:
        return self.info.names

    def raw(self, image: np.ndarray):
        """Preprocess and run the network: (outputs by name, Letterbox)."""
        tensor, lb = preprocess(image, self.info.imgsz)
        return self.backend.run(tensor), lb

    def __call__(self, image: str | os.PathLike | np.ndarray, with_masks: bool = True) -> Detections:
        """Detections for one image (a path or an 8-bit BGR array)."""
        if not isinstance(image, np.ndarray):
            image = load_image(image)
        outputs, lb = self.raw(image)
        return decode(
            outputs, self.info, lb, self.conf, self.iou, self.max_det, self.classes, self.agnostic, with_masks
        )

    predict = __call__


def expand_sources(sources: Iterable[str | os.PathLike]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files, directories (their images, sorted) and globs -> (image paths, [(source, problem)])."""
    images: list[Path] = []
    problems: list[tuple[str, str]] = []
    for src in sources:
        s = os.fspath(src)
        p = Path(s)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                problems.append((s, "directory holds no images"))
            images.extend(found)
        elif p.exists():
            images.append(p)
        elif glob.has_magic(s):
            found = sorted(Path(q) for q in glob.glob(s, recursive=True) if Path(q).is_file())
            if not found:
                problems.append((s, "pattern matches no files"))
            images.extend(found)
        else:
            problems.append((s, "no such file or directory"))
    return images, problems


def detection_records(image: str, det: Detections) -> list[dict]:
    """JSON records for one image: class, score, box in original pixels, COCO RLE mask."""
    rles = det.rle() if det.masks is not None else [None] * len(det)
    return [
        {
            "image": image,
            "class_id": int(c),
            "class_name": det.names.get(int(c), str(int(c))),
            "score": round(float(s), 5),
            "bbox_xyxy": [round(float(v), 2) for v in box],
            "segmentation": rle,
        }
        for box, s, c, rle in zip(det.xyxy, det.scores, det.class_ids, rles)
    ]


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
    out_dir: str | os.PathLike | None = None,
    save_json: str | os.PathLike | None = None,
    progress: bool = True,
) -> PredictSummary:
    """Predict every image in ``sources``; bad items are skipped and listed in ``summary.failed``."""
    from tqdm import tqdm

    images, problems = expand_sources(sources)
    summary = PredictSummary(failed=list(problems))
    out = Path(out_dir) if out_dir is not None else None
    used: set[str] = set()
    bar = tqdm(images, desc="predict", unit="img", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    for path in bar:
        try:
            image = load_image(path)
            det = segmenter(image)
        except EdgesegError as exc:
            summary.failed.append((str(path), str(exc).removeprefix(f"{path}: ")))
            continue
        summary.processed += 1
        summary.detections += len(det)
        summary.records.extend(detection_records(str(path), det))
        if out is not None:
            ok, buf = cv2.imencode(".jpg", draw_detections(image, det))
            if ok:
                summary.overlays.append(write_bytes_atomic(_unique_overlay_name(out, path, used), buf.tobytes()))
        bar.set_postfix(objects=summary.detections, failed=len(summary.failed))
    if save_json is not None:
        write_json_atomic(save_json, summary.records)
    return summary
