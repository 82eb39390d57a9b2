"""The one result type every stage speaks: boxes, scores, class ids and box-local masks, in original pixels."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

# What selects detections: a position, a slice, a boolean mask over all of them, or positions (list or array).
Index = int | np.integer | slice | Sequence[int] | Sequence[bool] | np.ndarray


def class_name(names: Mapping[int, str], class_id: int | np.integer) -> str:
    """The name of ``class_id`` in ``names``, or its digits when ``names`` has none for it."""
    return names.get(int(class_id), str(int(class_id)))


@dataclass
class Detections:
    """Detections of one image.

    ``xyxy`` are float32 boxes in original-image pixels, ``scores`` float32 in (0, 1), ``class_ids`` int64
    (0-based). ``masks[i]`` is a bool array covering only box ``i``: its top-left pixel is
    ``mask_origins[i]`` (x, y) in the original image. ``masks`` is ``None`` when masks were not asked for.
    ``track_ids`` (int64, one per detection) are the identities a tracker gave them, ``None`` when not tracking.
    """

    xyxy: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    image_shape: tuple[int, int]
    names: dict[int, str] = field(default_factory=dict)
    masks: list[np.ndarray] | None = None
    mask_origins: np.ndarray | None = None
    track_ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.track_ids is not None:
            self.track_ids = np.asarray(self.track_ids, np.int64).reshape(-1)
            if self.track_ids.shape[0] != self.scores.shape[0]:
                raise ValueError(f"{self.track_ids.shape[0]} track ids for {self.scores.shape[0]} detections")

    @classmethod
    def empty(cls, image_shape: tuple[int, int], names: dict[int, str] | None = None, with_masks: bool = True) -> Detections:
        return cls(
            xyxy=np.zeros((0, 4), np.float32),
            scores=np.zeros((0,), np.float32),
            class_ids=np.zeros((0,), np.int64),
            image_shape=tuple(image_shape),
            names=names or {},
            masks=[] if with_masks else None,
            mask_origins=np.zeros((0, 2), np.int64) if with_masks else None,
        )

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def class_names(self) -> list[str]:
        """The class name of each detection (``class_name``)."""
        return [class_name(self.names, c) for c in self.class_ids]

    def _require_masks(self) -> list[np.ndarray]:
        if self.masks is None or self.mask_origins is None:
            raise ValueError("these detections were decoded without masks")
        return self.masks

    def full_mask(self, i: int) -> np.ndarray:
        """Mask ``i`` pasted into a full-size (H, W) bool array."""
        local = self._require_masks()[i]
        h, w = self.image_shape
        out = np.zeros((h, w), bool)
        x0, y0 = (int(v) for v in self.mask_origins[i])
        out[y0 : y0 + local.shape[0], x0 : x0 + local.shape[1]] = local
        return out

    def full_masks(self) -> np.ndarray:
        """All masks as an (N, H, W) bool array (memory grows with N*H*W: prefer box-local masks)."""
        h, w = self.image_shape
        if len(self) == 0:
            return np.zeros((0, h, w), bool)
        return np.stack([self.full_mask(i) for i in range(len(self))])

    def rle(self) -> list[dict]:
        """COCO compressed RLE per mask: ``{"size": [h, w], "counts": str}`` at original resolution."""
        from .masks import encode_rle

        self._require_masks()
        return [encode_rle(self.full_mask(i)) for i in range(len(self))]

    def polygons(self) -> list[list[np.ndarray]]:
        """Outer contours per mask as lists of (K, 2) float32 arrays in original pixels."""
        from .masks import mask_to_polygons

        masks = self._require_masks()
        return [mask_to_polygons(m, self.mask_origins[i]) for i, m in enumerate(masks)]

    def to_records(self, image: str) -> list[dict]:
        """JSON records (``predict --save-json``): image, class, score, box in original pixels, COCO RLE mask
        (``None`` when decoded without masks), and ``track_id`` when the detections were tracked."""
        rles = self.rle() if self.masks is not None else [None] * len(self)
        records = [
            {
                "image": image,
                "class_id": int(c),
                "class_name": name,
                "score": round(float(s), 5),
                "bbox_xyxy": [round(float(v), 2) for v in box],
                "segmentation": rle,
            }
            for box, s, c, name, rle in zip(self.xyxy, self.scores, self.class_ids, self.class_names, rles)
        ]
        if self.track_ids is not None:
            for record, track_id in zip(records, self.track_ids.tolist()):
                record["track_id"] = track_id
        return records

    def to_coco(self, image_id: int, category_map: Mapping[int, int]) -> list[dict]:
        """COCO results records: xywh box, score, category id (``category_map[class_id]``), RLE mask at
        original resolution. Classes without a category are left out."""
        records = []
        rles = self.rle()
        for (x1, y1, x2, y2), score, c, rle in zip(self.xyxy.tolist(), self.scores.tolist(), self.class_ids.tolist(), rles):
            if c in category_map:
                records.append(
                    {
                        "image_id": image_id,
                        "category_id": category_map[c],
                        "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
                        "score": round(score, 5),
                        "segmentation": rle,
                    }
                )
        return records

    def drop_empty_masks(self) -> Detections:
        """Drop detections whose mask has no pixel (Ultralytics' predictor does the same)."""
        if self.masks is None:
            return self
        non_empty = np.fromiter((m.any() for m in self.masks), bool, len(self.masks))
        return self if non_empty.all() else self.select(non_empty)

    def __getitem__(self, index: Index) -> Detections:
        """``det[i]`` (one detection, still a ``Detections``), ``det[a:b]``, ``det[det.scores > 0.5]``,
        ``det[[0, 2]]``: as supervision's ``Detections``; see ``select``."""
        return self.select(index)

    def __iter__(self) -> Iterator[Detections]:
        """One-detection ``Detections``, in order (as iterating Ultralytics' ``Results`` does)."""
        for i in range(len(self)):
            yield self.select(i)

    def _positions(self, index: Index) -> np.ndarray:
        n = len(self)
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer, slice, list, np.ndarray)):
            raise TypeError(f"detections are selected by an int, a slice, a boolean mask or integer positions, not {type(index).__name__}")
        if isinstance(index, slice):
            return np.arange(n)[index]
        positions = np.asarray(index)
        if positions.ndim > 1:
            raise IndexError(f"detections are selected by a 1-D mask or positions, not shape {positions.shape}")
        if positions.dtype == bool:
            if positions.shape[0] != n:
                raise IndexError(f"a boolean mask of {positions.shape[0]} for {n} detections")
            return np.flatnonzero(positions)
        if positions.size == 0:
            return np.zeros(0, np.int64)
        if not np.issubdtype(positions.dtype, np.integer):
            raise TypeError(f"detections are selected by integer positions, not {positions.dtype}")
        outside = positions[(positions < -n) | (positions >= n)]
        if outside.size:
            raise IndexError(f"detection {int(outside[0])} out of range for {n} detections")
        return positions.reshape(-1).astype(np.int64) % max(n, 1)

    def select(self, index: Index) -> Detections:
        """A subset, every field carried (masks, origins, track ids, names): ``index`` is a position (a
        one-detection ``Detections``), a slice, a boolean mask over all detections or integer positions. Arrays
        are copies; the box-local mask arrays are shared. A bad index type is a ``TypeError``, a position out of
        range or a mask of the wrong length an ``IndexError``."""
        idx = self._positions(index)
        return Detections(
            xyxy=self.xyxy[idx],
            scores=self.scores[idx],
            class_ids=self.class_ids[idx],
            image_shape=self.image_shape,
            names=self.names,
            masks=None if self.masks is None else [self.masks[i] for i in idx],
            mask_origins=None if self.mask_origins is None else self.mask_origins[idx],
            track_ids=None if self.track_ids is None else self.track_ids[idx],
        )
