"""Stage timing through the real pipeline: ``Segmenter`` marks a clock as each stage ends, so what is
timed is exactly what ``predict`` runs (no copy of the pipeline to keep in step)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from ..predict import Segmenter
from ..results import Detections
from ..stages import STAGES, TOTAL
from .result import Percentiles


class StageStamps:
    """A ``StageClock``: perf_counter_ns when it was made and when each stage ended."""

    def __init__(self) -> None:
        self.start = time.perf_counter_ns()
        self.ends: dict[str, int] = {}

    def mark(self, stage: str) -> None:
        self.ends[stage] = time.perf_counter_ns()

    def durations_ms(self) -> dict[str, float]:
        """ms per stage of ``STAGES`` (each from the end of the one before), and the total."""
        out, before = {}, self.start
        for stage in STAGES:
            out[stage] = (self.ends[stage] - before) / 1e6
            before = self.ends[stage]
        out[TOTAL] = (before - self.start) / 1e6
        return out


def timed_call(segmenter: Segmenter, image: np.ndarray) -> tuple[Detections, StageStamps]:
    """One image through the segmenter (preprocess, inference, decode, masks), with its stage times."""
    stamps = StageStamps()
    return segmenter(image, clock=stamps), stamps


def percentiles(samples_ms: Sequence[float]) -> Percentiles:
    a = np.asarray(samples_ms, np.float64)
    if a.size == 0:
        return Percentiles(float("nan"), float("nan"), float("nan"))
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return Percentiles(round(float(p50), 3), round(float(p90), 3), round(float(p99), 3))
