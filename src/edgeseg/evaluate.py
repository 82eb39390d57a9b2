"""Box and mask mAP of edgeseg models with a standard COCO evaluator (faster-coco-eval, else pycocotools).

Ground truth comes from an Ultralytics dataset yaml (YOLO polygon labels), an images/labels directory
pair, or a COCO instances json. YOLO polygons are converted to COCO annotations at original resolution;
predictions are ``Segmenter`` detections with their masks as COCO RLE at original resolution. The
evaluator computes every number: nothing here re-implements mAP.
"""

from __future__ import annotations

import concurrent.futures
import copy
import json
import os
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EdgesegError
from .fileio import write_json_atomic
from .preprocess import IMAGE_SUFFIXES, load_image
from .results import Detections

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


def _norm_name(name: str) -> str:
    n = " ".join(str(name).strip().lower().replace("_", " ").replace("-", " ").split())
    return _COCO_ALIASES.get(n, _COCO_ALIASES.get(n.replace(" ", ""), n))


def is_coco80(names: Mapping[int, str]) -> bool:
    """True when class ids 0..79 carry the 80 COCO names in COCO order (older spellings accepted)."""
    return sorted(names) == list(range(80)) and all(_norm_name(names[i]) == COCO80_NAMES[i] for i in range(80))


def category_ids(names: Mapping[int, str]) -> dict[int, int]:
    """Class id -> COCO category id: the 91-id COCO numbering for the 80 COCO classes (person 1, ...,
    cake 61, ..., toothbrush 90), otherwise contiguous from 1 (class ``c`` -> ``c + 1``, Ultralytics'
    numbering for custom data)."""
    if is_coco80(names):
        return {i: COCO80_TO_COCO91[i] for i in range(80)}
    return {int(c): int(c) + 1 for c in sorted(names)}


# --------------------------------------------------------------------------------------------------
# evaluator back end


def _mask_api():
    try:
        from pycocotools import mask
    except ImportError:
        try:
            from faster_coco_eval.core import mask
        except ImportError:
            raise EdgesegError("evaluation needs faster-coco-eval or pycocotools: pip install faster-coco-eval") from None
    return mask


def _evaluator(name: str = "auto"):
    """(COCO class, COCOeval class, name) of the chosen evaluator."""
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
        raise EdgesegError("evaluation needs faster-coco-eval or pycocotools: pip install faster-coco-eval")
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


def _silent(fn):
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        return fn()


def score_predictions(
    gt: dict,
    predictions: Sequence[dict],
    image_ids: Iterable[int] | None = None,
    evaluator: str = "auto",
) -> Scores:
    """Score COCO results (``image_id``, ``category_id``, ``bbox`` xywh, ``score``, ``segmentation`` RLE)
    against a COCO instances dict with the evaluator's default parameters (bbox and segm).

    ``image_ids`` limits scoring to those images (default: all images in ``gt``)."""
    COCO, COCOeval, used = _evaluator(evaluator)
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


# --------------------------------------------------------------------------------------------------
# ground truth


@dataclass
class Dataset:
    """Ground truth as a COCO instances dict plus the image files to predict.

    ``names``/``category_ids`` are the dataset's class ids -> names / COCO category ids (for a COCO json:
    the json's categories, keyed by position). ``skipped`` lists images that cannot be evaluated (not in
    ``coco``), ``warnings`` problems that do not stop evaluation."""

    name: str
    coco: dict
    images: list[tuple[int, Path]]
    names: dict[int, str]
    category_ids: dict[int, int]
    source: str = "yolo"  # "yolo" or "coco"
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def num_instances(self) -> int:
        return len(self.coco["annotations"])

    def image_sizes(self) -> dict[int, tuple[int, int]]:
        """Image id -> (height, width) as annotated."""
        return {img["id"]: (int(img["height"]), int(img["width"])) for img in self.coco["images"]}

    def category_map(self, model_names: Mapping[int, str]) -> dict[int, int]:
        """Model class id -> category id of this ground truth, or an EdgesegError when they cannot match."""
        if self.source == "yolo":
            if len(model_names) != len(self.names):
                raise EdgesegError(
                    f"the model has {len(model_names)} classes but the dataset has {len(self.names)}", self.name
                )
            return dict(self.category_ids)
        # COCO json: match by name (older COCO spellings accepted), else by position when counts agree.
        by_name = {_norm_name(n): self.category_ids[c] for c, n in self.names.items()}
        mapped = {c: by_name.get(_norm_name(n)) for c, n in model_names.items()}
        if all(v is not None for v in mapped.values()):
            return mapped  # type: ignore[return-value]
        if len(model_names) == len(self.names):
            cats = [self.category_ids[c] for c in sorted(self.names)]
            return {c: cats[i] for i, c in enumerate(sorted(model_names))}
        missing = [n for c, n in model_names.items() if mapped[c] is None][:5]
        raise EdgesegError(f"model classes {missing} are not categories of this dataset", self.name)


def img2label_path(image: Path) -> Path:
    """Ultralytics' rule: the last ``/images/`` component becomes ``/labels/``, the suffix ``.txt``."""
    s = os.fspath(image)
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    if sa not in s:
        return image.with_suffix(".txt")
    return Path(sb.join(s.rsplit(sa, 1))).with_suffix(".txt")


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) as ``load_image`` will see it (EXIF orientation applied), from the header only."""
    from PIL import Image  # Pillow comes with matplotlib and Ultralytics; it reads the header only

    try:
        with Image.open(path) as im:
            w, h = im.size
            try:
                orientation = im.getexif().get(0x0112, 1)
            except Exception:  # unreadable EXIF: OpenCV will ignore it too
                orientation = 1
    except Exception:
        image = load_image(path)  # formats Pillow lacks; raises a one-line EdgesegError for junk
        return int(image.shape[0]), int(image.shape[1])
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)


def parse_yolo_label(path: Path, height: int, width: int, num_classes: int) -> list[tuple[int, list[float]]]:
    """Read one YOLO segmentation label file as ``[(class id, [x1, y1, x2, y2, ...] in pixels)]``.

    A line is ``class x1 y1 x2 y2 x3 y3 ...`` (normalised polygon, >= 3 points) or ``class cx cy w h``
    (a box, kept as its rectangle). Anything else raises an EdgesegError naming ``file:line``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgesegError(f"cannot read label file ({getattr(exc, 'strerror', None) or exc})", path) from None
    out, seen = [], set()
    for lineno, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{lineno}"
        try:
            values = [float(v) for v in fields]
        except ValueError:
            raise EdgesegError(f"not a number in {line.strip()[:60]!r}", where) from None
        if not all(np.isfinite(values)):
            raise EdgesegError("non-finite value", where)
        cls = values[0]
        if cls != int(cls) or not 0 <= cls < num_classes:
            raise EdgesegError(f"class {fields[0]} is not a class id of this dataset (0..{num_classes - 1})", where)
        coords = values[1:]
        if len(coords) != 4 and (len(coords) < 6 or len(coords) % 2):
            raise EdgesegError(
                f"expected 'class x1 y1 x2 y2 x3 y3 ...' (a polygon of >= 3 points) or 'class cx cy w h', "
                f"got {len(fields)} values",
                where,
            )
        if min(coords) < 0 or max(coords) > 1:
            raise EdgesegError("coordinates must be normalised to 0..1", where)
        if len(coords) == 4:  # a box label: its rectangle (clipped to the image) is the polygon
            cx, cy, w, h = coords
            x1, y1, x2, y2 = max(cx - w / 2, 0), max(cy - h / 2, 0), min(cx + w / 2, 1), min(cy + h / 2, 1)
            coords = [x1, y1, x2, y1, x2, y2, x1, y2]
        key = tuple(values)
        if key in seen:  # Ultralytics drops duplicate rows too
            continue
        seen.add(key)
        xy = np.asarray(coords, np.float64).reshape(-1, 2) * (width, height)
        out.append((int(cls), [round(float(v), 3) for v in xy.ravel()]))
    return out


def _annotation(ann_id: int, image_id: int, category: int, polygon: list[float], h: int, w: int, mask_api) -> dict:
    """A COCO annotation from a pixel polygon: area from the rasterised polygon, bbox from its extent."""
    rle = mask_api.merge(mask_api.frPyObjects([polygon], h, w))
    xs, ys = polygon[0::2], polygon[1::2]
    x0, y0 = min(xs), min(ys)
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category,
        "segmentation": [polygon],
        "area": float(mask_api.area(rle)),
        "bbox": [round(x0, 3), round(y0, 3), round(max(xs) - x0, 3), round(max(ys) - y0, 3)],
        "iscrowd": 0,
    }


def _image_ids(paths: list[Path]) -> list[int]:
    """Numeric file stems when they are all numeric and unique (COCO's own ids), else 1..N."""
    stems = [p.stem for p in paths]
    if stems and all(s.isdigit() for s in stems) and len({int(s) for s in stems}) == len(stems):
        return [int(s) for s in stems]
    return list(range(1, len(paths) + 1))


def _list_images(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def yolo_dataset(
    images: Sequence[Path],
    names: Mapping[int, str],
    name: str,
    label_dirs: Iterable[tuple[Path, Path]] = (),
) -> Dataset:
    """COCO ground truth from images and their YOLO label files (``img2label_path``).

    Images without a label file are backgrounds. ``label_dirs`` are (images dir, labels dir) pairs whose
    label files without an image are reported as warnings."""
    mask_api = _mask_api()
    names = {int(k): str(v) for k, v in names.items()}
    cats = category_ids(names)
    paths = sorted(dict.fromkeys(Path(p) for p in images))
    ids = _image_ids(paths)
    coco: dict[str, Any] = {
        "info": {"description": f"edgeseg ground truth from {name}"},
        "images": [],
        "annotations": [],
        "categories": [{"id": cats[c], "name": n, "supercategory": ""} for c, n in sorted(names.items())],
    }
    ds = Dataset(name, coco, [], names, cats, "yolo")
    backgrounds = 0
    for image_id, path in zip(ids, paths):
        try:
            h, w = image_size(path)
        except EdgesegError as exc:
            ds.skipped.append((str(path), str(exc).removeprefix(f"{path}: ")))
            continue
        label = img2label_path(path)
        rows = parse_yolo_label(label, h, w, len(names)) if label.is_file() else []
        backgrounds += not rows
        coco["images"].append({"id": image_id, "file_name": path.name, "height": h, "width": w})
        for cls, polygon in rows:
            ann = _annotation(len(coco["annotations"]) + 1, image_id, cats[cls], polygon, h, w, mask_api)
            coco["annotations"].append(ann)
        ds.images.append((image_id, path))
    image_labels = {img2label_path(p) for p in paths}
    orphans = []
    for image_dir, label_dir in label_dirs:
        if label_dir.is_dir() and label_dir != image_dir:
            orphans += [t for t in sorted(label_dir.rglob("*.txt")) if t not in image_labels]
    if orphans:
        shown = ", ".join(t.name for t in orphans[:5]) + (", ..." if len(orphans) > 5 else "")
        ds.warnings.append(f"{len(orphans)} label file(s) without an image, ignored: {shown}")
    if backgrounds:
        ds.warnings.append(f"{backgrounds} image(s) without labels, evaluated as backgrounds")
    return ds


def _yaml_root(cfg: dict, yaml_path: Path) -> Path:
    """The dataset root of an Ultralytics yaml: an absolute ``path:``, else ``path:`` relative to the
    yaml's directory, else a directory named like the yaml beside it (Ultralytics resolves a relative
    ``path:`` against its own datasets dir, which is meaningless elsewhere)."""
    here = yaml_path.parent
    candidates = []
    if cfg.get("path"):
        p = Path(os.path.expanduser(str(cfg["path"])))
        candidates.append(p if p.is_absolute() else here / p)
    else:
        candidates.append(here)
    candidates.append(here / yaml_path.stem)
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    raise EdgesegError(
        f"dataset root not found (path: {cfg.get('path')!r}; tried {', '.join(str(c) for c in candidates)})", yaml_path
    )


def _split_images(entry: Any, root: Path, yaml_path: Path) -> tuple[list[Path], list[tuple[Path, Path]]]:
    """Images of a split entry (a directory, an image-list .txt, an image, or a list of these)."""
    entries = entry if isinstance(entry, (list, tuple)) else [entry]
    images: list[Path] = []
    dirs: list[tuple[Path, Path]] = []
    for e in entries:
        p = Path(os.path.expanduser(str(e)))
        p = p if p.is_absolute() else root / p
        if p.is_dir():
            images += _list_images(p)
            dirs.append((p, img2label_path(p / "x").parent))
        elif p.is_file() and p.suffix.lower() == ".txt":
            for line in p.read_text(encoding="utf-8").splitlines():
                line = line.strip()
                if line:
                    q = Path(line)
                    images.append(q if q.is_absolute() else (p.parent / q).resolve())
        elif p.is_file():
            images.append(p)
        else:
            raise EdgesegError(f"split entry {e!r} not found (looked at {p})", yaml_path)
    return images, dirs


def yaml_dataset(path: str | os.PathLike, split: str = "val") -> Dataset:
    """Ground truth of an Ultralytics dataset yaml's ``split`` (YOLO polygon labels)."""
    try:
        import yaml
    except ImportError:
        raise EdgesegError("reading a dataset yaml needs PyYAML: pip install pyyaml", path) from None
    yaml_path = Path(path)
    try:
        cfg = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EdgesegError(f"cannot read dataset yaml ({first})", yaml_path) from None
    if not isinstance(cfg, dict):
        raise EdgesegError("not an Ultralytics dataset yaml (expected a mapping)", yaml_path)
    names = cfg.get("names")
    if isinstance(names, (list, tuple)):
        names = dict(enumerate(names))
    elif names is None and isinstance(cfg.get("nc"), int):
        names = {i: str(i) for i in range(cfg["nc"])}
    if not isinstance(names, dict) or not names:
        raise EdgesegError("no 'names' (class names) in the dataset yaml", yaml_path)
    try:
        names = {int(k): str(v) for k, v in names.items()}
    except (TypeError, ValueError):
        raise EdgesegError("'names' keys must be class ids", yaml_path) from None
    if split not in cfg or not cfg[split]:
        raise EdgesegError(f"no '{split}' split in the dataset yaml", yaml_path)
    root = _yaml_root(cfg, yaml_path)
    images, dirs = _split_images(cfg[split], root, yaml_path)
    if not images:
        raise EdgesegError(f"the '{split}' split holds no images", yaml_path)
    return yolo_dataset(images, names, str(yaml_path), dirs)


def directory_dataset(path: str | os.PathLike, names: Mapping[int, str]) -> Dataset:
    """Ground truth of a directory holding ``images/`` and ``labels/`` (or an images directory whose
    labels sit where Ultralytics looks: ``/images/`` -> ``/labels/``). Class names come from the model."""
    d = Path(path)
    image_dir = d / "images" if (d / "images").is_dir() else d
    images = _list_images(image_dir)
    if not images:
        raise EdgesegError("directory holds no images", d)
    label_dir = img2label_path(image_dir / "x").parent
    if not any(img2label_path(p).is_file() for p in images):
        raise EdgesegError(f"no YOLO label files found for these images (expected them under {label_dir})", d)
    return yolo_dataset(images, names, str(d), [(image_dir, label_dir)])


def _coco_image_dir(json_path: Path, coco: dict, images: str | os.PathLike | None) -> Path:
    if images is not None:
        d = Path(images)
        if not d.is_dir():
            raise EdgesegError("image directory not found", d)
        return d
    # COCO's own layout: annotations/instances_val2017.json beside val2017/ or images/val2017/.
    split = json_path.stem.split("_", 1)[-1]
    here = json_path.parent
    candidates = [here, here / split, here.parent / split, here.parent / "images" / split, here.parent / "images"]
    first = coco["images"][0]["file_name"] if coco.get("images") else None
    for c in candidates:
        if c.is_dir() and (first is None or (c / first).is_file()):
            return c
    raise EdgesegError("cannot find the image directory of this COCO json: give it with --images", json_path)


def coco_dataset(path: str | os.PathLike, images: str | os.PathLike | None = None) -> Dataset:
    """Ground truth of a COCO instances json; ``images`` is the directory its ``file_name``s are in."""
    json_path = Path(path)
    try:
        coco = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EdgesegError(f"cannot read COCO json ({exc})", json_path) from None
    if not isinstance(coco, dict) or not all(k in coco for k in ("images", "annotations", "categories")):
        raise EdgesegError("not a COCO instances json (needs images, annotations and categories)", json_path)
    image_dir = _coco_image_dir(json_path, coco, images)
    cats = sorted(coco["categories"], key=lambda c: c["id"])
    names = {i: str(c.get("name", c["id"])) for i, c in enumerate(cats)}
    ds = Dataset(str(json_path), coco, [], names, {i: int(c["id"]) for i, c in enumerate(cats)}, "coco")
    kept = []
    for img in coco["images"]:
        p = image_dir / img["file_name"]
        if p.is_file():
            ds.images.append((img["id"], p))
            kept.append(img)
        else:
            ds.skipped.append((str(p), "no such file"))
    ds.coco = dict(coco, images=kept)
    return ds


def load_dataset(
    data: str | os.PathLike,
    names: Mapping[int, str] | None = None,
    images: str | os.PathLike | None = None,
    split: str = "val",
) -> Dataset:
    """Ground truth from an Ultralytics dataset yaml, a COCO instances json (+ ``images`` directory), or
    an images/labels directory (class ``names`` then come from the model)."""
    p = Path(data)
    if not p.exists():
        raise EdgesegError("no such file or directory", p)
    if p.is_dir():
        if names is None:
            raise EdgesegError("a directory dataset needs class names (from the model)", p)
        return directory_dataset(p, names)
    if p.suffix.lower() in (".yaml", ".yml"):
        return yaml_dataset(p, split)
    if p.suffix.lower() == ".json":
        return coco_dataset(p, images)
    raise EdgesegError("expected a dataset .yaml, a COCO .json or an images/labels directory", p)


# --------------------------------------------------------------------------------------------------
# prediction and scoring


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
    skipped: list[tuple[str, str]] = field(default_factory=list)
    evaluator: str = ""
    settings: dict[str, Any] = field(default_factory=dict)  # conf, iou, max_det, multi_label

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


def check_imgsz(model_imgsz: tuple[int, int], imgsz: int | Sequence[int] | None, model: str) -> None:
    """``imgsz`` is a check only: an edgeseg model has a fixed input size."""
    if imgsz is None:
        return
    want = (imgsz, imgsz) if isinstance(imgsz, int) else tuple(imgsz)
    want = want * 2 if len(want) == 1 else want
    if tuple(want) != tuple(model_imgsz):
        raise EdgesegError(
            f"model input is {model_imgsz[0]}x{model_imgsz[1]}, not {want[0]}x{want[1]} "
            "(edgeseg models have a fixed size: export one at the size you want)",
            model,
        )


def _network_outputs(segmenter, items: Sequence[tuple[int, Path]]) -> Iterator[tuple[int, Path, Any]]:
    """(image id, path, (image shape, outputs, letterbox) or EdgesegError) per image; the next image is
    read and run in a worker thread while the caller decodes this one (ORT and most of numpy release
    the GIL, so the two overlap)."""

    def work(path: Path):
        try:
            image = load_image(path)
            outputs, lb = segmenter.raw(image)
            return image.shape[:2], outputs, lb
        except EdgesegError as exc:
            return exc

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = [pool.submit(work, p) for _, p in items[:2]]
        for k, (image_id, path) in enumerate(items):
            result = pending.pop(0).result()
            if k + 2 < len(items):
                pending.append(pool.submit(work, items[k + 2][1]))
            yield image_id, path, result


def decode_for_val(outputs: Mapping[str, Any], segmenter, lb, multi_label: bool = True) -> Detections:
    """Detections of one image with the segmenter's thresholds; ``multi_label`` as in Ultralytics' val,
    otherwise exactly what ``Segmenter`` returns."""
    from .decode import decode

    s = segmenter
    return decode(outputs, s.info, lb, s.conf, s.iou, s.max_det, s.classes, s.agnostic, True, multi_label)


def detection_records(image_id: int, det: Detections, categories: Mapping[int, int]) -> list[dict]:
    """COCO results records of one image: xywh box, score, category id, RLE mask at original resolution.
    Classes without a category are left out."""
    records = []
    rles = det.rle()
    for (x1, y1, x2, y2), score, c, rle in zip(det.xyxy.tolist(), det.scores.tolist(), det.class_ids.tolist(), rles):
        if c in categories:
            records.append(
                {
                    "image_id": image_id,
                    "category_id": categories[c],
                    "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
                    "score": round(score, 5),
                    "segmentation": rle,
                }
            )
    return records


def predict_records(
    segmenter,
    dataset: Dataset,
    progress: bool = False,
    desc: str = "val",
    multi_label: bool = True,
) -> tuple[list[dict], list[int], list[tuple[str, str]]]:
    """Run ``segmenter`` over the dataset: (COCO results records, evaluated image ids, skipped images)."""
    from tqdm import tqdm

    cats = dataset.category_map(segmenter.names)
    sizes = dataset.image_sizes()
    records: list[dict] = []
    done: list[int] = []
    skipped: list[tuple[str, str]] = []
    bar = tqdm(total=len(dataset.images), desc=desc, unit="img", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    for image_id, path, result in _network_outputs(segmenter, dataset.images):
        bar.update(1)
        if isinstance(result, EdgesegError):
            skipped.append((str(path), str(result).removeprefix(f"{path}: ")))
            continue
        shape, outputs, lb = result
        if tuple(shape) != sizes[image_id]:
            h, w = sizes[image_id]
            skipped.append((str(path), f"image is {shape[1]}x{shape[0]} but annotated as {w}x{h}"))
            continue
        records += detection_records(image_id, decode_for_val(outputs, segmenter, lb, multi_label), cats)
        done.append(image_id)
        bar.set_postfix(objects=len(records), skipped=len(skipped) + len(dataset.skipped))
    bar.close()
    return records, done, skipped


def evaluate(
    model: str | os.PathLike,
    data: str | os.PathLike | Dataset,
    imgsz: int | Sequence[int] | None = None,
    conf: float = 0.001,
    iou: float = 0.7,
    max_det: int = 300,
    images: str | os.PathLike | None = None,
    threads: int = 0,
    progress: bool = False,
    evaluator: str = "auto",
    multi_label: bool = True,
) -> EvalResult:
    """Box and mask mAP of one edgeseg ONNX model on a dataset (see ``load_dataset``), with
    Ultralytics' val settings by default (conf 0.001, multi-label NMS). Unreadable images are skipped
    and listed in ``skipped``."""
    from .predict import Segmenter

    seg = Segmenter(model, conf=conf, iou=iou, max_det=max_det, threads=threads)
    check_imgsz(seg.info.imgsz, imgsz, os.fspath(model))
    ds = data if isinstance(data, Dataset) else load_dataset(data, seg.names, images)
    if ds.source == "yolo" and [_norm_name(n) for _, n in sorted(seg.names.items())] != [
        _norm_name(n) for _, n in sorted(ds.names.items())
    ]:
        note = f"class names of {Path(model).name} differ from the dataset's: classes are matched by id"
        if note not in ds.warnings:
            ds.warnings.append(note)
    records, done, skipped = predict_records(seg, ds, progress, f"val {Path(model).name}", multi_label)
    if not done:
        raise EdgesegError("no image could be evaluated", ds.name)
    scores = score_predictions(ds.coco, records, done, evaluator)
    inv = {cat: c for c, cat in ds.category_ids.items()}
    counts: dict[int, int] = {}
    image_counts: dict[int, set] = {}
    evaluated = set(done)
    for a in ds.coco["annotations"]:
        if a["image_id"] in evaluated:
            counts[a["category_id"]] = counts.get(a["category_id"], 0) + 1
            image_counts.setdefault(a["category_id"], set()).add(a["image_id"])
    per_class = {}
    for cat, m in scores.per_class.items():
        c = inv.get(cat, cat)
        name = ds.names.get(c, str(cat))
        per_class[name] = {"class_id": c, "category_id": cat, "images": len(image_counts.get(cat, ())),
                           "instances": counts.get(cat, 0), **m}  # fmt: skip
    return EvalResult(
        model=os.fspath(model),
        data=ds.name,
        images=len(done),
        box_map50_95=scores.box_map50_95,
        box_map50=scores.box_map50,
        mask_map50_95=scores.mask_map50_95,
        mask_map50=scores.mask_map50,
        per_class=per_class,
        predictions=records,
        skipped=list(ds.skipped) + skipped,
        evaluator=scores.evaluator,
        settings={"conf": conf, "iou": iou, "max_det": max_det, "multi_label": multi_label},
    )


def evaluate_models(
    models: Sequence[str | os.PathLike],
    data: str | os.PathLike,
    imgsz: int | Sequence[int] | None = None,
    conf: float = 0.001,
    iou: float = 0.7,
    max_det: int = 300,
    images: str | os.PathLike | None = None,
    threads: int = 0,
    progress: bool = False,
    evaluator: str = "auto",
    multi_label: bool = True,
) -> tuple[Dataset, list[EvalResult]]:
    """Evaluate several models (e.g. float then INT8) on the same ground truth, loaded once."""
    from .runtime import read_model_info

    if not models:
        raise EdgesegError("no model given")
    infos = [read_model_info(m) for m in models]  # fail on a bad model before minutes of inference
    for m, info in zip(models, infos):
        check_imgsz(info.imgsz, imgsz, os.fspath(m))
    ds = load_dataset(data, infos[0].names, images)
    results = [
        evaluate(m, ds, imgsz, conf, iou, max_det, None, threads, progress, evaluator, multi_label)
        for m in models
    ]
    return ds, results


# --------------------------------------------------------------------------------------------------
# reports


def _labels(results: Sequence[EvalResult]) -> list[str]:
    names = [Path(r.model).name for r in results]
    return names if len(set(names)) == len(names) else [r.model for r in results]


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in rows)


def retention(value: float, reference: float) -> float | None:
    """``value`` as a percentage of ``reference`` (None when the reference is 0)."""
    return 100.0 * value / reference if reference > 0 else None


def format_summary(results: Sequence[EvalResult]) -> str:
    """One model: a row of box/mask mAP50-95 and mAP50. Several: the metrics side by side as
    'box / mask' per model, with retention (model k / model 1) for every model after the first."""
    labels = _labels(results)
    if len(results) == 1:
        r = results[0]
        rows = [
            ["model", "images", "box mAP50-95", "box mAP50", "mask mAP50-95", "mask mAP50"],
            [labels[0], str(r.images), f"{r.box_map50_95:.4f}", f"{r.box_map50:.4f}", f"{r.mask_map50_95:.4f}", f"{r.mask_map50:.4f}"],
        ]  # fmt: skip
        return _table(rows)
    ref = results[0]
    header = ["metric", f"{labels[0]} (box / mask)"]
    for lab in labels[1:]:
        header += [f"{lab} (box / mask)", "retention (box / mask)"]
    rows = [header]
    for title, b, m in (("mAP50-95", "box_map50_95", "mask_map50_95"), ("mAP50", "box_map50", "mask_map50")):
        row = [title, f"{getattr(ref, b):.4f} / {getattr(ref, m):.4f}"]
        for r in results[1:]:
            rb, rm = retention(getattr(r, b), getattr(ref, b)), retention(getattr(r, m), getattr(ref, m))
            pct = " / ".join("n/a" if v is None else f"{v:.1f}%" for v in (rb, rm))
            row += [f"{getattr(r, b):.4f} / {getattr(r, m):.4f}", pct]
        rows.append(row)
    rows.append(["images", str(ref.images)] + sum(([str(r.images), ""] for r in results[1:]), []))
    return _table(rows)


def format_per_class(result: EvalResult) -> str:
    """Per-class table of one model (classes with ground truth instances)."""
    rows = [["class", "id", "images", "instances", "box mAP50-95", "box mAP50", "mask mAP50-95", "mask mAP50"]]
    for name, m in sorted(result.per_class.items(), key=lambda kv: kv[1]["class_id"]):
        rows.append([name, str(m["class_id"]), str(m["images"]), str(m["instances"]),
                     f"{m['box_map50_95']:.4f}", f"{m['box_map50']:.4f}", f"{m['mask_map50_95']:.4f}", f"{m['mask_map50']:.4f}"])  # fmt: skip
    return _table(rows)


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
