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


_CORNERS_TO_CENTRE = np.array([[0.5, 0, -1, 0], [0, 0.5, 0, -1], [0.5, 0, 1, 0], [0, 0.5, 0, 1]])  # xyxy @ it = cx, cy, w, h
_CENTRE_TO_CORNERS = np.linalg.inv(_CORNERS_TO_CENTRE)


def xyxy_to_xyah(xyxy: np.ndarray) -> np.ndarray:
    """(N, 4) corner boxes -> (N, 4) centre x, centre y, aspect w/h, height."""
    out = np.asarray(xyxy, np.float64) @ _CORNERS_TO_CENTRE
    out[:, 2] /= out[:, 3]
    return out


def xyah_to_xyxy(xyah: np.ndarray) -> np.ndarray:
    """(N, >=4) states -> (N, 4) corner boxes (sides kept positive so a far prediction stays a box)."""
    cxcywh = np.maximum(xyah[:, :4], [-np.inf, -np.inf, 1e-3, 1e-3])
    cxcywh[:, 2] *= cxcywh[:, 3]
    return cxcywh @ _CENTRE_TO_CORNERS


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


_Q_PER_H2 = np.array([STD_POSITION**2] * 2 + [0.0, STD_POSITION**2] + [STD_VELOCITY**2] * 2 + [0.0, STD_VELOCITY**2])
_Q_CONST = np.array([0, 0, 1e-2**2, 0, 0, 0, 1e-5**2, 0])
_R_PER_H2 = np.array([STD_POSITION**2] * 2 + [0.0, STD_POSITION**2])
_R_CONST = np.array([0, 0, 1e-1**2, 0])


def predict(mean: np.ndarray, cov: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Every state moved ``dt`` frames ahead: x' = F x, P' = F P F^T + dt * Q (Q from the height before)."""
    if dt == 0 or mean.shape[0] == 0:
        return mean, cov
    motion = np.eye(8)
    motion[:4, 4:] = dt * np.eye(4)
    q = mean[:, 3:4] ** 2 * (dt * _Q_PER_H2) + dt * _Q_CONST
    mean = mean @ motion.T
    cov = motion @ cov @ motion.T
    np.einsum("nii->ni", cov)[...] += q
    return mean, cov


def update(mean: np.ndarray, cov: np.ndarray, xyah: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The states (M, 8), (M, 8, 8) corrected by measured boxes ``xyah`` (M, 4)."""
    h2 = mean[:, 3:4] ** 2
    s = cov[:, :4, :4] + (h2 * _R_PER_H2 + _R_CONST)[:, :, None] * np.eye(4)
    gain_t = np.linalg.solve(s, cov[:, :4, :])  # K^T = S^-1 H P (P and S symmetric)
    innovation = xyah - mean[:, :4]
    new_mean = mean + (innovation[:, None, :] @ gain_t)[:, 0, :]
    new_cov = cov - gain_t.transpose(0, 2, 1) @ cov[:, :4, :]  # P - K S K^T = P - K H P
    return new_mean, new_cov
