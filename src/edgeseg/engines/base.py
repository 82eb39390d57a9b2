"""What every engine drives: a ``Predictor`` (``Segmenter`` is one), and the bound on how many of them an engine
runs per core."""

from __future__ import annotations

import os
from typing import Protocol

import numpy as np

from ..backends.base import ModelInfo
from ..decode import DecodeOptions
from ..preprocess import Nv12Frame
from ..results import Detections
from ..stages import StageClock

# Inference threads (predict --workers) and Ray actors each hold a loaded model (~60 MB for the n model in ONNX
# Runtime) and no more than one core's work: past a few per core they add memory, not speed.
PER_CORE_LIMIT = 4


class Predictor(Protocol):
    """One image in, ``Detections`` out, with the model's facts and options; ``workers(n)`` gives ``n`` predictors
    for ``n`` threads (each its own session, or this one shared where that is safe). An engine that runs in other
    processes (Ray) pickles the predictor: ``Segmenter`` pickles as the recipe to load its model again there."""

    info: ModelInfo
    options: DecodeOptions

    def __call__(
        self, image: str | os.PathLike | np.ndarray | Nv12Frame, with_masks: bool = True, clock: StageClock | None = None
    ) -> Detections: ...

    def workers(self, count: int) -> list[Predictor]: ...
