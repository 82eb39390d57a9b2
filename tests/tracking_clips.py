"""Synthetic clips with known identities, made from coco128-seg on the fly (shared by the tracking tests and
benchmarks/tracking.py).

Instances are cut out of coco128 images by their polygon masks and moved along straight paths across a
background (another coco128 image), so paths cross and objects hide each other (the later object is drawn on
top). Ground truth per frame: identity, full box (clipped to the frame), class, visible fraction and the
visible mask. ``simulate_detections`` turns it into what a detector would give, seeded: boxes jittered, scores
that sag with occlusion (some fall into ByteTrack's low band), misses (at random, in bursts of 3, and when
mostly hidden) and false positives; masks are the visible masks cut to the jittered boxes. Every tracker under
comparison is fed the very same ``Detections``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edgeseg.results import Detections

SIZE = (480, 640)  # h, w


@dataclass
class Instance:
    patch: np.ndarray  # BGR crop of the instance's box
    mask: np.ndarray  # bool, same size
    class_id: int


@dataclass
class TruthFrame:
    ids: np.ndarray  # (K,) int
    boxes: np.ndarray  # (K, 4) float, full extent clipped to the frame
    class_ids: np.ndarray
    visible: np.ndarray  # (K,) visible fraction of the pasted mask
    masks: list[np.ndarray]  # full-frame visible masks


@dataclass
class Clip:
    name: str
    truth: list[TruthFrame]
    background: np.ndarray
    sprites: dict[int, tuple[Instance, np.ndarray]] = field(default_factory=dict)  # id -> (instance, (T, 2) top-left)

    def __len__(self) -> int:
        return len(self.truth)

    def centers(self, track: int) -> dict[int, np.ndarray]:
        """Frame -> centre of the ground-truth box of object ``track``, for the frames it is in."""
        out = {}
        for f, t in enumerate(self.truth):
            k = np.flatnonzero(t.ids == track)
            if k.size:
                b = t.boxes[k[0]]
                out[f] = (b[:2] + b[2:]) / 2
        return out

    def render(self, f: int) -> np.ndarray:
        """Frame ``f`` as an image (the objects drawn in id order: later ones on top)."""
        image = self.background.copy()
        for tid in sorted(self.sprites):
            inst, tops = self.sprites[tid]
            _paste(image, inst, tops[f])
        return image


def load_instances(coco128: Path, *, min_side: int = 40, max_side: int = 180, limit: int = 200) -> list[Instance]:
    """Instances of coco128-seg with a box side in [min_side, max_side] px, cut out by their polygons."""
    found: list[Instance] = []
    for label in sorted((coco128 / "labels" / "train2017").glob("*.txt")):
        image_path = coco128 / "images" / "train2017" / f"{label.stem}.jpg"
        if not image_path.is_file():
            continue
        image = cv2.imread(str(image_path))
        h, w = image.shape[:2]
        for line in label.read_text().splitlines():
            values = line.split()
            if len(values) < 7:
                continue
            poly = (np.asarray(values[1:], np.float64).reshape(-1, 2) * [w, h]).astype(np.int32)
            x0, y0 = poly.min(0)
            x1, y1 = poly.max(0) + 1
            if not (min_side <= x1 - x0 <= max_side and min_side <= y1 - y0 <= max_side):
                continue
            mask = np.zeros((h, w), np.uint8)
            cv2.fillPoly(mask, [poly], 1)
            crop = mask[y0:y1, x0:x1].astype(bool)
            if crop.mean() < 0.35:  # thin or hollow shapes make poor sprites
                continue
            found.append(Instance(image[y0:y1, x0:x1].copy(), crop, int(values[0])))
            if len(found) >= limit:
                return found
    return found


def _paste(image: np.ndarray, inst: Instance, top_left: np.ndarray) -> None:
    h, w = image.shape[:2]
    x, y = int(round(top_left[0])), int(round(top_left[1]))
    ph, pw = inst.mask.shape
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + pw, w), min(y + ph, h)
    if x1 <= x0 or y1 <= y0:
        return
    m = inst.mask[y0 - y : y1 - y, x0 - x : x1 - x]
    image[y0:y1, x0:x1][m] = inst.patch[y0 - y : y1 - y, x0 - x : x1 - x][m]


def make_clip(
    name: str,
    instances: list[Instance],
    background: np.ndarray,
    *,
    seed: int,
    objects: int,
    frames: int = 120,
    speed: tuple[float, float] = (2.0, 6.0),
) -> Clip:
    """Objects enter at one edge and leave at the opposite one (left/right or top/bottom), at constant speed,
    starting at random frames; the ground truth of every frame, with occlusion by later objects."""
    rng = np.random.default_rng(seed)
    h, w = SIZE
    bg = cv2.resize(background, (w, h), interpolation=cv2.INTER_AREA)
    picks = rng.choice(len(instances), size=objects, replace=False)
    sprites: dict[int, tuple[Instance, np.ndarray]] = {}
    for k, p in enumerate(picks, 1):
        inst = instances[int(p)]
        ph, pw = inst.mask.shape
        horizontal = rng.random() < 0.6
        forward = rng.random() < 0.5
        if horizontal:
            y_a, y_b = rng.uniform(0, h - ph, 2)
            start, end = np.array([-pw, y_a]), np.array([w, y_b])
        else:
            x_a, x_b = rng.uniform(0, w - pw, 2)
            start, end = np.array([x_a, -ph]), np.array([x_b, h])
        if not forward:
            start, end = end, start
        v = (end - start) / np.linalg.norm(end - start) * rng.uniform(*speed)
        t0 = int(rng.integers(0, frames // 2))
        tops = start + (np.arange(frames) - t0)[:, None] * v
        tops[:t0] = -1e4  # not yet in the scene
        sprites[k] = (inst, tops)
    truth = []
    for f in range(frames):
        ids, boxes, classes, visible, masks = [], [], [], [], []
        occupied = np.zeros((h, w), bool)
        layers = []
        for tid in sorted(sprites, reverse=True):  # top-most first, so each sees what is above it
            inst, tops = sprites[tid]
            full = np.zeros((h, w), bool)
            canvas = np.zeros((h, w, 3), np.uint8)
            _paste(canvas, Instance(np.full_like(inst.patch, 255), inst.mask, inst.class_id), tops[f])
            full = canvas[..., 0] > 0
            area = int(full.sum())
            if area < 0.25 * inst.mask.sum():  # mostly outside the frame: not in the ground truth
                continue
            vis = full & ~occupied
            occupied |= full
            ys, xs = np.nonzero(full)
            layers.append((tid, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], inst.class_id, vis.sum() / area, vis))
        for tid, box, cls, vf, vis in sorted(layers):
            ids.append(tid), boxes.append(box), classes.append(cls), visible.append(vf), masks.append(vis)
        truth.append(
            TruthFrame(
                np.asarray(ids, np.int64),
                np.asarray(boxes, np.float64).reshape(-1, 4),
                np.asarray(classes, np.int64),
                np.asarray(visible),
                masks,
            )
        )
    return Clip(name, truth, bg, sprites)


@dataclass(frozen=True)
class DetectorModel:
    """How the simulated detector errs."""

    jitter: float = 0.03  # box side noise, fraction of the side
    miss: float = 0.05  # chance to miss a visible object in a frame
    burst: float = 0.01  # chance per frame that a 3-frame dropout of an object starts
    hidden: float = 0.35  # visible fraction under which an object is missed
    false_positives: float = 0.3  # mean false positives per frame


def simulate_detections(
    clip: Clip, names: dict[int, str], *, seed: int, model: DetectorModel = DetectorModel()
) -> tuple[list[Detections], dict[int, float]]:
    """Per frame ``Detections`` (box-local masks included) and, per object, the fraction of its frames it
    was detected in."""
    rng = np.random.default_rng(seed)
    h, w = SIZE
    base_score = {}
    burst_until: dict[int, int] = {}
    seen: dict[int, list[int]] = {}
    out = []
    for f, t in enumerate(clip.truth):
        boxes, scores, classes, masks, origins = [], [], [], [], []
        for k, tid in enumerate(t.ids.tolist()):
            base_score.setdefault(tid, rng.uniform(0.45, 0.95))
            if rng.random() < model.burst:
                burst_until[tid] = f + 3
            hit = t.visible[k] >= model.hidden and rng.random() >= model.miss and burst_until.get(tid, -1) <= f
            seen.setdefault(tid, []).append(int(hit))
            if not hit:
                continue
            b = t.boxes[k]
            size = np.array([b[2] - b[0], b[3] - b[1]] * 2)
            jb = np.clip(b + rng.normal(0, model.jitter, 4) * size, 0, [w, h, w, h])
            if jb[2] - jb[0] < 2 or jb[3] - jb[1] < 2:
                continue
            score = float(np.clip(base_score[tid] * (0.4 + 0.6 * t.visible[k]) + rng.normal(0, 0.08), 0.05, 0.99))
            x0, y0, x1, y1 = int(jb[0]), int(jb[1]), int(np.ceil(jb[2])), int(np.ceil(jb[3]))
            boxes.append(jb), scores.append(score), classes.append(t.class_ids[k])
            masks.append(t.masks[k][y0:y1, x0:x1].copy()), origins.append((x0, y0))
        for _ in range(rng.poisson(model.false_positives)):
            bw, bh = rng.uniform(30, 150, 2)
            x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            boxes.append(np.array([x0, y0, x0 + bw, y0 + bh])), scores.append(float(rng.uniform(0.1, 0.45)))
            classes.append(int(rng.integers(0, 80)))
            m = np.zeros((int(np.ceil(y0 + bh)) - int(y0), int(np.ceil(x0 + bw)) - int(x0)), bool)
            cv2.ellipse(m.view(np.uint8), (m.shape[1] // 2, m.shape[0] // 2), (m.shape[1] // 2, m.shape[0] // 2), 0, 0, 360, 1, -1)
            masks.append(m), origins.append((int(x0), int(y0)))
        out.append(
            Detections(
                np.asarray(boxes, np.float32).reshape(-1, 4),
                np.asarray(scores, np.float32),
                np.asarray(classes, np.int64),
                SIZE,
                names,
                masks,
                np.asarray(origins, np.int64).reshape(-1, 2),
            )
        )
    return out, {tid: float(np.mean(v)) for tid, v in seen.items()}


def standard_clips(coco128: Path) -> list[Clip]:
    """The clips of the tests and the benchmark: crossing paths at three densities and speeds."""
    instances = load_instances(coco128)
    backgrounds = sorted((coco128 / "images" / "train2017").glob("*.jpg"))
    specs = [("crossing", 11, 8, (2.0, 5.0)), ("dense", 12, 16, (2.0, 5.0)), ("fast", 13, 10, (5.0, 10.0))]
    return [
        make_clip(name, instances, cv2.imread(str(backgrounds[seed])), seed=seed, objects=n, speed=speed) for name, seed, n, speed in specs
    ]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Box IoU written here (not edgeseg's) for the evaluator's similarity."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def score_tracks(clip: Clip, tracks: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """HOTA, IDF1, MOTA, IDSW (and friends) of per-frame ``(track ids, boxes)`` against the clip's truth,
    by ``trackers.eval`` (TrackEval's matching and formulas)."""
    from trackers.eval import compute_clear_metrics, compute_hota_metrics, compute_identity_metrics

    gt_ids = [t.ids for t in clip.truth]
    tr_ids = [np.asarray(ids, np.int64) for ids, _ in tracks]
    sims = [iou_matrix(t.boxes, np.asarray(b, np.float64).reshape(-1, 4)) for t, (_, b) in zip(clip.truth, tracks)]
    hota = compute_hota_metrics(gt_ids, tr_ids, sims)
    clear = compute_clear_metrics(gt_ids, tr_ids, sims)
    ident = compute_identity_metrics(gt_ids, tr_ids, sims)
    return {
        "HOTA": float(hota["HOTA"]),
        "AssA": float(hota["AssA"]),
        "DetA": float(hota["DetA"]),
        "IDF1": float(ident["IDF1"]),
        "MOTA": float(clear["MOTA"]),
        "IDSW": int(clear["IDSW"]),
    }


def run_edgeseg(detections: list[Detections], **config) -> list[tuple[np.ndarray, np.ndarray]]:
    from edgeseg.tracking import ByteTracker, TrackerConfig

    tracker = ByteTracker(TrackerConfig(**config))
    out = []
    for f, det in enumerate(detections):
        tracked = tracker.update(det, f)
        out.append((tracked.track_ids, tracked.xyxy))
    return out


def run_roboflow(detections: list[Detections], **params) -> list[tuple[np.ndarray, np.ndarray]]:
    """``trackers``' ByteTrack on the same detections (as ``supervision.Detections``); untracked rows (-1) dropped."""
    import supervision as sv
    from trackers import ByteTrackTracker

    tracker = ByteTrackTracker(**params)
    out = []
    for det in detections:
        result = tracker.update(sv.Detections(xyxy=det.xyxy.astype(np.float32), confidence=det.scores, class_id=det.class_ids))
        keep = result.tracker_id >= 0
        out.append((result.tracker_id[keep], result.xyxy[keep]))
    return out
