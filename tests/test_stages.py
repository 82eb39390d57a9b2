"""The stage names have one owner (``edgeseg.stages``): they are what ``Segmenter`` marks on its clock, in order,
and what the bench JSON has always keyed its times by."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from edgeseg.stages import STAGES, STREAM_STAGES, TOTAL

BENCH_BEFORE = Path(__file__).parent / "data" / "bench-before.json"  # written by `edgeseg bench` before the names had an owner


class RecordingClock:
    """A ``StageClock`` that keeps every mark, repeats included."""

    def __init__(self) -> None:
        self.marks: list[str] = []

    def mark(self, stage: str) -> None:
        self.marks.append(stage)


@pytest.mark.parametrize("with_masks", [True, False])
def test_segmenter_marks_exactly_the_stages_in_order(default_model, coco128_images, with_masks):
    from edgeseg.predict import Segmenter

    seg = Segmenter(default_model, threads=1)
    for path in coco128_images[:2]:
        clock = RecordingClock()
        seg(cv2.imread(str(path)), with_masks=with_masks, clock=clock)
        assert clock.marks == list(STAGES)


def test_stage_names_are_the_bench_json_keys():
    """The names are the keys a bench JSON written before this module existed holds, in its order."""
    model = json.loads(BENCH_BEFORE.read_text(encoding="utf-8"))["models"][0]
    assert list(model["latency_ms"]) == [*STAGES, TOTAL]
    assert STREAM_STAGES == ("read", "preprocess", "inference", "decode", "masks", "draw", "write")
