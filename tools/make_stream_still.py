#!/usr/bin/env python3
"""The README's video still: a clip made from the project's own sample image (slid by multiples of the
model's 32-pixel stride, so the memorising test model still sees what it learnt), run through
`edgeseg predict --save-video`, and one annotated frame saved.

    python tools/make_stream_still.py docs/images/stream-still.jpg
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "src" / "edgeseg" / "assets" / "sample.jpg"


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images/stream-still.jpg")
    image = cv2.imread(str(SAMPLE))
    h, w = image.shape[:2]
    with tempfile.TemporaryDirectory() as tmp:
        clip, annotated = Path(tmp) / "slide.mp4", Path(tmp) / "annotated.mp4"
        writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (w, h))
        for dx in [*range(-96, 97, 32), *range(64, -97, -32)]:
            shift = np.float32([[1, 0, dx], [0, 1, 0]])
            writer.write(cv2.warpAffine(image, shift, (w, h), borderValue=(114, 114, 114)))
        writer.release()
        subprocess.run([sys.executable, "-m", "edgeseg.cli", "predict", str(REPO / "src/edgeseg/assets/yolov8n-seg-coco128-640.onnx"),
                        str(clip), "--save-video", str(annotated), "--workers", "2"], check=True)  # fmt: skip
        cap = cv2.VideoCapture(str(annotated))
        cap.set(cv2.CAP_PROP_POS_FRAMES, 2)
        ok, frame = cap.read()
        if not ok:
            raise SystemExit("could not read the annotated video")
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), frame, [cv2.IMWRITE_JPEG_QUALITY, 85])
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
