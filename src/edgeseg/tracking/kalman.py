"""A constant-velocity Kalman filter over boxes, batched over tracks (numpy only).

The state is ByteTrack's: centre x, centre y, aspect ratio w/h, height and their velocities, with the noise
model of Ultralytics' ``KalmanFilterXYAH`` (position noise 1/20 and velocity noise 1/160 of the height). Time is
the *frame index*: a track last updated ``dt`` frames ago is predicted ``dt`` steps at once (the process noise
grows with ``dt``), so a video stride or frames a live source dropped only make the prediction reach further.
"""

from __future__ import annotations

import numpy as np

STD_POSITION = 1.0 / 20
STD_VELOCITY = 1.0 / 160


def xyxy_to_xyah(xyxy: np.ndarray) -> np.ndarray:
    """(N, 4) corner boxes -> (N, 4) centre x, centre y, aspect w/h, height."""
    xyxy = np.asarray(xyxy, np.float64)
    w = xyxy[:, 2] - xyxy[:, 0]
    h = xyxy[:, 3] - xyxy[:, 1]
    return np.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2, w / h, h], axis=1)


def xyah_to_xyxy(xyah: np.ndarray) -> np.ndarray:
    """(N, >=4) states -> (N, 4) corner boxes (height kept positive so a far prediction stays a box)."""
    h = np.maximum(xyah[:, 3], 1e-3)
    w = xyah[:, 2] * h
    cx, cy = xyah[:, 0], xyah[:, 1]
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def initiate(xyah: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Means (N, 8) and covariances (N, 8, 8) of new tracks at the measured boxes, velocities zero."""
    n = xyah.shape[0]
    mean = np.zeros((n, 8))
    mean[:, :4] = xyah
    h = xyah[:, 3]
    std = np.stack(
        [2 * STD_POSITION * h, 2 * STD_POSITION * h, np.full(n, 1e-2), 2 * STD_POSITION * h,
         10 * STD_VELOCITY * h, 10 * STD_VELOCITY * h, np.full(n, 1e-5), 10 * STD_VELOCITY * h],
        axis=1,
    )  # fmt: skip
    cov = np.zeros((n, 8, 8))
    idx = np.arange(8)
    cov[:, idx, idx] = std**2
    return mean, cov


def predict(mean: np.ndarray, cov: np.ndarray, dt: np.ndarray) -> None:
    """Move every state ``dt`` (N,) frames ahead, in place: x += dt * v, P = F P F^T + dt * Q."""
    dt = np.asarray(dt, np.float64)
    if not dt.any():
        return
    h = mean[:, 3]
    n = mean.shape[0]
    q = np.stack(
        [STD_POSITION * h, STD_POSITION * h, np.full(n, 1e-2), STD_POSITION * h,
         STD_VELOCITY * h, STD_VELOCITY * h, np.full(n, 1e-5), STD_VELOCITY * h],
        axis=1,
    ) ** 2  # fmt: skip
    mean[:, :4] += dt[:, None] * mean[:, 4:]
    d = dt[:, None, None]
    p12 = cov[:, :4, 4:]
    p21 = cov[:, 4:, :4]
    p22 = cov[:, 4:, 4:]
    # F = [[I, dt I], [0, I]] written out by blocks: cheaper than two batched 8x8 products.
    cov[:, :4, :4] += d * (p12 + p21) + d * d * p22
    cov[:, :4, 4:] = p12 + d * p22
    cov[:, 4:, :4] = p21 + d * p22
    idx = np.arange(8)
    cov[:, idx, idx] += dt[:, None] * q


def update(mean: np.ndarray, cov: np.ndarray, xyah: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The states (M, 8), (M, 8, 8) corrected by measured boxes ``xyah`` (M, 4)."""
    h = mean[:, 3]
    r = np.stack([STD_POSITION * h, STD_POSITION * h, np.full(h.shape, 1e-1), STD_POSITION * h], axis=1) ** 2
    s = cov[:, :4, :4].copy()
    idx = np.arange(4)
    s[:, idx, idx] += r
    gain = np.linalg.solve(s, cov[:, :4, :]).transpose(0, 2, 1)  # K = P H^T S^-1 (P and S symmetric)
    innovation = xyah - mean[:, :4]
    new_mean = mean + np.einsum("nij,nj->ni", gain, innovation)
    new_cov = cov - gain @ s @ gain.transpose(0, 2, 1)
    return new_mean, new_cov
