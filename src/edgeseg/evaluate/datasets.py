"""Ground truth for evaluation as a COCO instances dict: from an Ultralytics dataset yaml (YOLO polygon
labels), an images/labels directory pair, or a COCO instances json. YOLO polygons are converted to COCO
annotations at original resolution."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EdgesegError, Problem, first_line
from ..fileio import read_json
from ..preprocess import load_image
from ..sources import images_in
from .coco import canonical_class_name, category_ids, coco_mask_api


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
    skipped: list[Problem] = field(default_factory=list)
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
                raise EdgesegError(f"the model has {len(model_names)} classes but the dataset has {len(self.names)}", self.name)
            return dict(self.category_ids)
        # COCO json: match by name (older COCO spellings accepted), else by position when counts agree.
        by_name = {canonical_class_name(n): self.category_ids[c] for c, n in self.names.items()}
        mapped = {c: by_name.get(canonical_class_name(n)) for c, n in model_names.items()}
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
                f"expected 'class x1 y1 x2 y2 x3 y3 ...' (a polygon of >= 3 points) or 'class cx cy w h', got {len(fields)} values",
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


def yolo_dataset(
    images: Sequence[Path],
    names: Mapping[int, str],
    name: str,
    label_dirs: Iterable[tuple[Path, Path]] = (),
) -> Dataset:
    """COCO ground truth from images and their YOLO label files (``img2label_path``).

    Images without a label file are backgrounds. ``label_dirs`` are (images dir, labels dir) pairs whose
    label files without an image are reported as warnings."""
    mask_api = coco_mask_api()
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
            ds.skipped.append(Problem(str(path), exc.problem))
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
    raise EdgesegError(f"dataset root not found (path: {cfg.get('path')!r}; tried {', '.join(str(c) for c in candidates)})", yaml_path)


def _split_images(entry: Any, root: Path, yaml_path: Path) -> tuple[list[Path], list[tuple[Path, Path]]]:
    """Images of a split entry (a directory, an image-list .txt, an image, or a list of these)."""
    entries = entry if isinstance(entry, (list, tuple)) else [entry]
    images: list[Path] = []
    dirs: list[tuple[Path, Path]] = []
    for e in entries:
        p = Path(os.path.expanduser(str(e)))
        p = p if p.is_absolute() else root / p
        if p.is_dir():
            images += images_in(p)
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
        first = first_line(exc)
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
    images = images_in(image_dir)
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
    coco = read_json(json_path, "COCO instances")
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
            ds.skipped.append(Problem(str(p), "no such file"))
    ds.coco = dict(coco, images=kept)
    return ds


def load_dataset(
    data: str | os.PathLike,
    *,
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
