"""Constant-velocity Kalman filters over boxes, batched over tracks (numpy only).

Two state forms, with the noise models of Ultralytics' filters: ``XYWH`` (centre, width, height and their
velocities; ``KalmanFilterXYWH``, BoT-SORT's) and ``XYAH`` (centre, aspect ratio w/h, height;
``KalmanFilterXYAH``, ByteTrack's). Position noise is 1/20 and velocity noise 1/160 of the box's size. XYAH
gives the aspect ratio almost no process noise, so a box whose shape changes (an object entering at the frame's
edge, turning, partly hidden) keeps a stale width for many frames; XYWH follows it, and measured fewer identity
switches (docs/tracking.md).

Every quantity moves on its own (the noise is diagonal and F only couples a quantity with its velocity), so
the 8x8 covariance of the textbook filter is four independent 2x2 blocks: it is kept as (N, 3, 4), the
variance of each quantity, its covariance with its velocity and the velocity's variance, and every step is a
few elementwise operations (the same numbers as the 8x8 form; ``full_covariance`` rebuilds it).

Time is the *frame index*: a track last updated ``dt`` frames ago is predicted ``dt`` steps at once (the
process noise grows with ``dt``), so a video stride or frames a live source dropped only make the prediction
reach further.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STD_POSITION = 1.0 / 20
STD_VELOCITY = 1.0 / 160
_CORNERS_TO_CENTRE = np.array([[0.5, 0, -1, 0], [0, 0.5, 0, -1], [0.5, 0, 1, 0], [0, 0.5, 0, 1]])  # xyxy @ it = cx, cy, w, h
_CENTRE_TO_CORNERS = np.linalg.inv(_CORNERS_TO_CENTRE)
_SIDES_MIN = np.array([-np.inf, -np.inf, 1e-3, 1e-3])


@dataclass(frozen=True)
class MotionModel:
    """A state form: ``size`` picks, per measured quantity, the box side its noise scales with (2 = width,
    3 = height of the cx, cy, w, h box), ``fixed`` the constant noise of a quantity that does not scale (the
    aspect ratio's); ``stopped_when_lost`` are the velocities a lost track stops changing."""

    name: str
    size: tuple[int, int, int, int]
    fixed: tuple[float, float, float, float]
    fixed_velocity: tuple[float, float, float, float]
    aspect: bool
    stopped_when_lost: tuple[int, ...]

    def measure(self, xyxy: np.ndarray) -> np.ndarray:
        """(N, 4) corner boxes -> (N, 4) measurements of this state form."""
        out = np.asarray(xyxy, np.float64) @ _CORNERS_TO_CENTRE
        if self.aspect:
            out[:, 2] /= out[:, 3]
        return out

    def boxes(self, state: np.ndarray) -> np.ndarray:
        """(N, >=4) states -> (N, 4) corner boxes (sides kept positive, so a far prediction stays a box)."""
        cxcywh = np.maximum(state[:, :4], _SIDES_MIN)
        if self.aspect:
            cxcywh[:, 2] *= cxcywh[:, 3]
        return cxcywh @ _CENTRE_TO_CORNERS

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # derived constants of a frozen dataclass, computed once
        set_(self, "_size", list(self.size))
        set_(self, "_scaled", np.array([0.0 if f else 1.0 for f in self.fixed]))
        set_(self, "_fixed", np.array(self.fixed, np.float64))
        set_(self, "_fixed_velocity", np.array(self.fixed_velocity, np.float64))
        set_(self, "_measurement_fixed", np.array([1e-1 if f else 0.0 for f in self.fixed]))  # the aspect's, as Ultralytics
        set_(self, "_stopped", list(self.stopped_when_lost))

    def _sides(self, state: np.ndarray) -> np.ndarray:
        """(N, 4) the box side each measured quantity's noise scales with (w or h; 0 where it does not)."""
        return state[:, self._size] * self._scaled

    def initiate(self, measured: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Means (N, 8) and covariances (N, 3, 4) of new tracks at the measured boxes, velocities zero."""
        n = measured.shape[0]
        mean = np.zeros((n, 8))
        mean[:, :4] = measured
        sides = self._sides(mean)
        cov = np.zeros((n, 3, 4))
        cov[:, 0] = (2 * STD_POSITION * sides + self._fixed) ** 2
        cov[:, 2] = (10 * STD_VELOCITY * sides + self._fixed_velocity) ** 2
        return mean, cov

    def predict(self, mean: np.ndarray, cov: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
        """Every state moved ``dt`` frames ahead: x' = F x, P' = F P F^T + dt * Q (Q from the box before)."""
        if dt == 0 or mean.shape[0] == 0:
            return mean, cov
        sides = self._sides(mean)
        pp, pv, vv = cov[:, 0], cov[:, 1], cov[:, 2]
        new_cov = np.empty_like(cov)
        new_cov[:, 0] = pp + 2 * dt * pv + dt * dt * vv + dt * (STD_POSITION * sides + self._fixed) ** 2
        new_cov[:, 1] = pv + dt * vv
        new_cov[:, 2] = vv + dt * (STD_VELOCITY * sides + self._fixed_velocity) ** 2
        new_mean = mean.copy()
        new_mean[:, :4] += dt * mean[:, 4:]
        return new_mean, new_cov

    def update(self, mean: np.ndarray, cov: np.ndarray, measured: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The states (M, 8), (M, 3, 4) corrected by ``measured`` (M, 4)."""
        pp, pv, vv = cov[:, 0], cov[:, 1], cov[:, 2]
        s = pp + (STD_POSITION * self._sides(mean) + self._measurement_fixed) ** 2
        gain_p, gain_v = pp / s, pv / s
        innovation = measured - mean[:, :4]
        new_mean = mean + np.concatenate([gain_p * innovation, gain_v * innovation], axis=1)
        new_cov = np.stack([pp - gain_p * pp, pv - gain_p * pv, vv - gain_v * pv], axis=1)
        return new_mean, new_cov

    def stop_lost(self, mean: np.ndarray, lost: np.ndarray) -> None:
        """A lost track keeps its course but stops growing (in place; as Ultralytics' multi_predict)."""
        if lost.any():
            mean[np.ix_(lost.nonzero()[0], self._stopped)] = 0.0


XYWH = MotionModel("xywh", size=(2, 3, 2, 3), fixed=(0, 0, 0, 0), fixed_velocity=(0, 0, 0, 0), aspect=False, stopped_when_lost=(6, 7))
XYAH = MotionModel("xyah", size=(3, 3, 3, 3), fixed=(0, 0, 1e-2, 0), fixed_velocity=(0, 0, 1e-5, 0), aspect=True, stopped_when_lost=(7,))
MODELS = {m.name: m for m in (XYWH, XYAH)}


def full_covariance(cov: np.ndarray) -> np.ndarray:
    """(N, 3, 4) compact covariances -> the (N, 8, 8) matrices of the textbook form."""
    n = cov.shape[0]
    full = np.zeros((n, 8, 8))
    i = np.arange(4)
    full[:, i, i] = cov[:, 0]
    full[:, i, i + 4] = full[:, i + 4, i] = cov[:, 1]
    full[:, i + 4, i + 4] = cov[:, 2]
    return full
