"""How alike a predicted track and a detection are: box IoU, or the IoU of their box-local masks."""

from __future__ import annotations

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU of corner boxes ``a`` (N, 4) and ``b`` (M, 4)."""
    if a.shape[0] == 0 or b.shape[0] == 0:
        return np.zeros((a.shape[0], b.shape[0]))
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.maximum(ix2 - ix1, 0) * np.maximum(iy2 - iy1, 0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)  # boxes have positive sides


def local_mask_iou(mask_a: np.ndarray, origin_a: tuple[int, int], mask_b: np.ndarray, origin_b: tuple[int, int]) -> float:
    """IoU of two box-local masks placed at their (x, y) origins: only the overlap of their boxes is read."""
    ax, ay = origin_a
    bx, by = origin_b
    x0, y0 = max(ax, bx), max(ay, by)
    x1 = min(ax + mask_a.shape[1], bx + mask_b.shape[1])
    y1 = min(ay + mask_a.shape[0], by + mask_b.shape[0])
    inter = 0
    if x1 > x0 and y1 > y0:
        inter = int(np.count_nonzero(mask_a[y0 - ay : y1 - ay, x0 - ax : x1 - ax] & mask_b[y0 - by : y1 - by, x0 - bx : x1 - bx]))
    union = int(np.count_nonzero(mask_a)) + int(np.count_nonzero(mask_b)) - inter
    return inter / union if union else 0.0


def mask_iou(
    track_masks: list[np.ndarray], track_origins: np.ndarray, det_masks: list[np.ndarray], det_origins: np.ndarray, candidates: np.ndarray
) -> np.ndarray:
    """(N, M) mask IoU, computed only where ``candidates`` (N, M) is set (boxes that overlap); 0 elsewhere."""
    out = np.zeros(candidates.shape)
    for i, j in zip(*np.nonzero(candidates)):
        out[i, j] = local_mask_iou(track_masks[i], tuple(track_origins[i]), det_masks[j], tuple(det_origins[j]))
    return out
