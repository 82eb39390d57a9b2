"""What the README's stills share: the project's sample image slid sideways by multiples of the model's 32-pixel
stride (so the memorising test model still sees what it learnt) into a clip, run through `edgeseg predict` with
`--save-video`, and one annotated frame of that video saved as a JPEG."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "src" / "edgeseg" / "assets" / "sample.jpg"
MODEL = REPO / "src" / "edgeseg" / "assets" / "yolov8n-seg-coco128-640.onnx"


def annotated_still(out: Path, *, shifts: Sequence[int], predict_args: Sequence[str], frame: int) -> None:
    """Write frame ``frame`` of ``edgeseg predict MODEL CLIP --save-video ... PREDICT_ARGS`` to ``out``, the clip
    being the sample image shifted right by each of ``shifts`` pixels in turn."""
    image = cv2.imread(str(SAMPLE))
    h, w = image.shape[:2]
    with tempfile.TemporaryDirectory() as tmp:
        clip, annotated = Path(tmp) / "slide.mp4", Path(tmp) / "annotated.mp4"
        writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (w, h))
        for dx in shifts:
            writer.write(cv2.warpAffine(image, np.float32([[1, 0, dx], [0, 1, 0]]), (w, h), borderValue=(114, 114, 114)))
        writer.release()
        subprocess.run(
            [sys.executable, "-m", "edgeseg.cli", "predict", str(MODEL), str(clip), "--save-video", str(annotated), *predict_args],
            check=True,
        )
        cap = cv2.VideoCapture(str(annotated))
        cap.set(cv2.CAP_PROP_POS_FRAMES, frame)
        ok, picture = cap.read()
        if not ok:
            raise SystemExit("could not read the annotated video")
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), picture, [cv2.IMWRITE_JPEG_QUALITY, 85])
    print(f"wrote {out}")
