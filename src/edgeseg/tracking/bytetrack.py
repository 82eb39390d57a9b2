"""ByteTrack (Zhang et al., 2022) over ``Detections``, numpy only, with Ultralytics' parameters and defaults.

Every frame: the tracks are predicted to the frame index (``kalman.py``); confirmed tracks (tracked or lost)
are matched to the high-score detections (score >= ``track_high_thresh``) by IoU, fused with the score; the
tracked ones left over get a second chance with the low-score detections (``track_low_thresh`` < score <
``track_high_thresh``) by plain IoU; tracks seen once so far (unconfirmed) are matched to the high-score
detections still free and dropped when they miss; the high-score detections left start new tracks when their
score reaches ``new_track_thresh``; lost tracks unseen for more than ``track_buffer`` frames are forgotten. A
track gets its id when it is confirmed (its second sighting, or the first frame of the tracker), so ids count
up 1, 2, 3 without gaps. What ``update`` returns are the detections of the tracks seen in this frame.

The tracks live in arrays (struct of arrays), not one object each, so a frame costs a fixed number of
numpy calls whatever the number of objects.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from ..errors import EdgesegError
from ..results import Detections
from .assignment import linear_assignment
from .kalman import MODELS
from .similarity import box_iou, mask_iou

TRACKED, LOST = 0, 1
DUPLICATE_IOU = 0.85  # a tracked and a lost track this alike are one object twice: the younger one goes
SECOND_STAGE_THRESH = 0.5  # cost limits of the second (low-score) and the unconfirmed stage, as in ByteTrack
UNCONFIRMED_THRESH = 0.7
IOU_KINDS = ("box", "mask")


@dataclass(frozen=True)
class TrackerConfig:
    """ByteTrack's settings, named and defaulted as in Ultralytics' ``bytetrack.yaml`` except ``fuse_score``
    (there True): weighting IoU by the detection score made occluded objects, whose scores sag, start new
    tracks, and turning it off removed every identity switch on the synthetic clips (docs/tracking.md).
    ``motion`` is the Kalman state (``kalman.py``): ``"xywh"`` (default: follows changing box shapes, measured
    better) or ``"xyah"`` (ByteTrack's; with ``fuse_score=True`` this tracker gives Ultralytics' results).
    ``track_buffer`` is in frames of the source (with a stride of 2 a lost track lives 15 processed frames).
    ``iou`` is what association compares: ``"box"`` (ByteTrack's) or ``"mask"``: the mean of the box IoU and
    the IoU of the box-local masks (the track's last mask moved with the predicted box), which tells apart
    objects whose boxes overlap while their shapes do not."""

    track_high_thresh: float = 0.25
    track_low_thresh: float = 0.1
    new_track_thresh: float = 0.25
    track_buffer: int = 30
    match_thresh: float = 0.8
    fuse_score: bool = False
    iou: str = "box"
    motion: str = "xywh"

    def __post_init__(self) -> None:
        for name in ("track_high_thresh", "track_low_thresh", "new_track_thresh", "match_thresh"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise EdgesegError(f"tracker: {name} must be a number between 0 and 1, got {value!r}")
        if not isinstance(self.track_buffer, int) or self.track_buffer < 0:
            raise EdgesegError(f"tracker: track_buffer must be an integer >= 0, got {self.track_buffer!r}")
        if self.iou not in IOU_KINDS:
            raise EdgesegError(f"tracker: iou must be one of {', '.join(IOU_KINDS)}, got {self.iou!r}")
        if self.motion not in MODELS:
            raise EdgesegError(f"tracker: motion must be one of {', '.join(MODELS)}, got {self.motion!r}")

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, **overrides) -> TrackerConfig:
        """The settings of an Ultralytics-style tracker yaml (``tracker_type: bytetrack``); keys this tracker
        does not use (``tracker_type``, BoT-SORT's ``gmc_method``...) are ignored."""
        import yaml

        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise EdgesegError(f"cannot read the tracker settings ({str(exc).splitlines()[0]})", Path(path)) from None
        if not isinstance(data, dict):
            raise EdgesegError("tracker settings must be a YAML mapping of names to values", Path(path))
        kind = data.get("tracker_type", "bytetrack")
        if kind != "bytetrack":
            raise EdgesegError(f"tracker_type {kind!r} is not supported (only bytetrack)", Path(path))
        known = {f.name for f in fields(cls)}
        return cls(**{**{k: v for k, v in data.items() if k in known}, **overrides})


class ByteTracker:
    """``update(detections, frame_index)`` -> the detections that belong to a track, with ``track_ids``.

    ``frame_index`` must increase from call to call (gaps are fine: the motion is predicted over them); left
    out, it is the previous one plus one. ``reset()`` forgets every track and starts the ids at 1 again."""

    def __init__(self, config: TrackerConfig = TrackerConfig()) -> None:
        self.config = config
        self.motion = MODELS[config.motion]
        self.reset()

    def reset(self) -> None:
        self.frame: int | None = None
        self._next_id = 1
        self.mean = np.zeros((0, 8))
        self.cov = np.zeros((0, 3, 4))
        self.ids = np.zeros(0, np.int64)  # 0 while unconfirmed
        self.state = np.zeros(0, np.int8)
        self.start = np.zeros(0, np.int64)
        self.last = np.zeros(0, np.int64)  # frame of the last sighting
        self.boxes = np.zeros((0, 4))  # last measured box (the masks' frame of reference)
        self.masks: list[np.ndarray] = []
        self.mask_origins = np.zeros((0, 2), np.int64)

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def update(self, detections: Detections, frame_index: int | None = None) -> Detections:
        cfg = self.config
        if frame_index is None:
            frame_index = 0 if self.frame is None else self.frame + 1
        frame_index = int(frame_index)
        if self.frame is not None and frame_index <= self.frame:
            raise EdgesegError(f"tracker: frame index {frame_index} after {self.frame}; frames must come in order")
        use_masks = cfg.iou == "mask"
        if use_masks and detections.masks is None:
            raise EdgesegError("tracker: mask IoU needs detections with masks")
        first_frame, previous = self.frame is None, self.frame
        self.frame = frame_index
        boxes = np.asarray(detections.xyxy, np.float64)
        scores = np.asarray(detections.scores, np.float64)
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # the state divides by the height
        high = (valid & (scores >= cfg.track_high_thresh)).nonzero()[0]
        low = (valid & (scores > cfg.track_low_thresh) & (scores < cfg.track_high_thresh)).nonzero()[0]

        n = len(self)
        if n:
            self.motion.stop_lost(self.mean, self.state == LOST)
            fresh = self.ids == 0  # seen once, at `previous`: matched as measured, as ByteTrack does (no velocity yet)
            kept = (self.mean[fresh], self.cov[fresh]) if fresh.any() else None
            self.mean, self.cov = self.motion.predict(self.mean, self.cov, float(frame_index - previous))  # all were at `previous`
            if kept is not None:
                self.mean[fresh], self.cov[fresh] = kept
        similarity = _Similarity(self, detections, boxes, scores, use_masks)
        assigned = np.full(n, -1, np.int64)
        remove = np.zeros(n, bool)
        free_high = high
        if n:
            confirmed = (self.ids > 0).nonzero()[0]
            if confirmed.size and high.size:
                m, free_tracks, free = linear_assignment(similarity.cost(confirmed, high, cfg.fuse_score), cfg.match_thresh)
                assigned[confirmed[m[:, 0]]] = high[m[:, 1]]
                rest, free_high = confirmed[free_tracks], high[free]
            else:
                rest = confirmed
            rest = rest[self.state[rest] == TRACKED]
            if rest.size and low.size:
                m, free_rest, _ = linear_assignment(similarity.cost(rest, low, False), SECOND_STAGE_THRESH)
                assigned[rest[m[:, 0]]] = low[m[:, 1]]
                rest = rest[free_rest]
            self.state[rest] = LOST
            unconfirmed = (self.ids == 0).nonzero()[0]
            if unconfirmed.size:
                if free_high.size:
                    m, free_unconfirmed, free = linear_assignment(
                        similarity.cost(unconfirmed, free_high, cfg.fuse_score), UNCONFIRMED_THRESH
                    )
                    assigned[unconfirmed[m[:, 0]]] = free_high[m[:, 1]]
                    newly_confirmed = unconfirmed[m[:, 0]]
                    self.ids[newly_confirmed] = np.arange(self._next_id, self._next_id + newly_confirmed.size)
                    self._next_id += newly_confirmed.size
                    unconfirmed, free_high = unconfirmed[free_unconfirmed], free_high[free]
                remove[unconfirmed] = True
        seen = (assigned >= 0).nonzero()[0]
        if seen.size:
            det_idx = assigned[seen]
            self.mean[seen], self.cov[seen] = self.motion.update(self.mean[seen], self.cov[seen], self.motion.measure(boxes[det_idx]))
            self.state[seen] = TRACKED
            self.last[seen] = frame_index
            self.boxes[seen] = boxes[det_idx]
            if use_masks:
                for t, d in zip(seen.tolist(), det_idx.tolist()):
                    self.masks[t] = detections.masks[d]
                self.mask_origins[seen] = detections.mask_origins[det_idx]
        remove |= (self.state == LOST) & (frame_index - self.last > cfg.track_buffer)
        if n:
            remove |= self._duplicates(assigned, similarity.iou, ~remove)
        out_tracks = ((assigned >= 0) & (self.ids > 0) & ~remove).nonzero()[0]
        out_dets, out_ids = assigned[out_tracks], self.ids[out_tracks]

        self._keep(~remove)
        new = free_high[scores[free_high] >= cfg.new_track_thresh]
        if new.size:
            new_ids = np.zeros(new.size, np.int64)
            if first_frame:  # the first frame confirms its tracks at once (there is nothing to confirm against)
                new_ids = np.arange(self._next_id, self._next_id + new.size)
                self._next_id += new.size
                out_dets, out_ids = np.concatenate([out_dets, new]), np.concatenate([out_ids, new_ids])
            self._add(detections, boxes, new, new_ids, frame_index, use_masks)
        order = np.argsort(out_dets, kind="stable")
        result = detections.select(out_dets[order])
        result.track_ids = out_ids[order]
        return result

    # ------------------------------------------------------------------------------------------ state

    def _duplicates(self, assigned: np.ndarray, iou: np.ndarray, alive: np.ndarray) -> np.ndarray:
        """Tracked/lost pairs that cover the same object (IoU > 0.85): the shorter-lived one of each pair. A
        tracked track is where its detection is and a lost one where it was predicted, so the IoU is the one
        association already computed."""
        drop = np.zeros(len(self), bool)
        tracked = (alive & (assigned >= 0)).nonzero()[0]
        lost = (alive & (self.state == LOST)).nonzero()[0]
        if tracked.size and lost.size and (iou[lost] > DUPLICATE_IOU).any():
            for b, a in np.argwhere(iou[np.ix_(lost, assigned[tracked])] > DUPLICATE_IOU):
                ta, tb = tracked[a], lost[b]
                age_a, age_b = self.last[ta] - self.start[ta], self.last[tb] - self.start[tb]
                drop[tb if age_a > age_b else ta] = True
        return drop

    def _keep(self, keep: np.ndarray) -> None:
        if keep.all():
            return
        for name in ("mean", "cov", "ids", "state", "start", "last", "boxes", "mask_origins"):
            setattr(self, name, getattr(self, name)[keep])
        if self.masks:
            self.masks = [m for m, k in zip(self.masks, keep) if k]

    def _add(self, detections: Detections, boxes: np.ndarray, idx: np.ndarray, ids: np.ndarray, frame: int, use_masks: bool) -> None:
        mean, cov = self.motion.initiate(self.motion.measure(boxes[idx]))
        k = idx.size
        self.mean = np.concatenate([self.mean, mean])
        self.cov = np.concatenate([self.cov, cov])
        self.ids = np.concatenate([self.ids, ids])
        self.state = np.concatenate([self.state, np.full(k, TRACKED, np.int8)])
        self.start = np.concatenate([self.start, np.full(k, frame, np.int64)])
        self.last = np.concatenate([self.last, np.full(k, frame, np.int64)])
        self.boxes = np.concatenate([self.boxes, boxes[idx]])
        if use_masks:
            self.masks.extend(detections.masks[i] for i in idx.tolist())
            self.mask_origins = np.concatenate([self.mask_origins, detections.mask_origins[idx]])
        else:
            self.mask_origins = np.concatenate([self.mask_origins, np.zeros((k, 2), np.int64)])


class _Similarity:
    """Costs ``1 - similarity`` between the predicted tracks and the detections of one frame; the box IoU of
    every pair is computed once, each stage reads its block of it."""

    def __init__(self, tracker: ByteTracker, detections: Detections, boxes: np.ndarray, scores: np.ndarray, use_masks: bool) -> None:
        self.tracker, self.detections, self.scores, self.use_masks = tracker, detections, scores, use_masks
        self.predicted = tracker.motion.boxes(tracker.mean)
        self.iou = box_iou(self.predicted, boxes)
        self.boxes = boxes

    def cost(self, tracks: np.ndarray, dets: np.ndarray, fuse_score: bool) -> np.ndarray:
        sim = self.iou[np.ix_(tracks, dets)]
        if self.use_masks:
            t = self.tracker
            # the track's last mask, moved as far as the predicted box centre moved since it was measured
            p = self.predicted[tracks]
            shift = (p[:, :2] + p[:, 2:]) / 2 - (t.boxes[tracks, :2] + t.boxes[tracks, 2:]) / 2
            origins = t.mask_origins[tracks] + np.round(shift).astype(np.int64)
            masks = mask_iou(
                [t.masks[i] for i in tracks.tolist()],
                origins,
                [self.detections.masks[j] for j in dets.tolist()],
                self.detections.mask_origins[dets],
                sim > 0,
            )
            sim = (sim + masks) / 2  # mask IoU alone runs lower than box IoU and drops true matches at the gate
        if fuse_score:
            sim = sim * self.scores[dets][None, :]
        return 1.0 - sim
