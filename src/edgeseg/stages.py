"""The pipeline's stage names, owned by the clock that hears them: ``Segmenter`` marks each stage of ``STAGES``
on a ``StageClock`` as it ends; the benchmark's times and the report's tables are keyed by the same names."""

from __future__ import annotations

from typing import Protocol

PREPROCESS, INFERENCE, DECODE, MASKS = "preprocess", "inference", "decode", "masks"
STAGES = (PREPROCESS, INFERENCE, DECODE, MASKS)  # one image's stages, in the order they are marked
TOTAL = "total"  # not a mark: the span of all of STAGES

# A video frame in ``bench --video``: read before the pipeline's stages, drawn and written after them.
READ, DRAW, WRITE = "read", "draw", "write"
STREAM_STAGES = (READ, *STAGES, DRAW, WRITE)


class StageClock(Protocol):
    """Receives ``mark(stage)`` when a stage of ``STAGES`` ends (the benchmark's timing hook)."""

    def mark(self, stage: str) -> None: ...
