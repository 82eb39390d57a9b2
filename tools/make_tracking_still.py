#!/usr/bin/env python3
"""The README's tracking still: the project's sample image slid right by 32-pixel steps (the memorising test
model keeps seeing what it learnt), run through `edgeseg predict --track` with a counting line and a zone,
and the last annotated frame of the walk saved: ids, trails, the line with its counts, the zone.

    python tools/make_tracking_still.py docs/images/tracking-still.jpg
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
MODEL = REPO / "src" / "edgeseg" / "assets" / "yolov8n-seg-coco128-640.onnx"
SHIFTS = list(range(-96, 97, 32))  # 7 frames, every object 32 px further right each frame


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images/tracking-still.jpg")
    image = cv2.imread(str(SAMPLE))
    h, w = image.shape[:2]
    with tempfile.TemporaryDirectory() as tmp:
        clip, annotated = Path(tmp) / "walk.mp4", Path(tmp) / "annotated.mp4"
        writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (w, h))
        for dx in SHIFTS:
            writer.write(cv2.warpAffine(image, np.float32([[1, 0, dx], [0, 1, 0]]), (w, h), borderValue=(114, 114, 114)))
        writer.release()
        subprocess.run([sys.executable, "-m", "edgeseg.cli", "predict", str(MODEL), str(clip), "--track",
                        "--line", "gate=0.4,0.1,0.4,0.9", "--zone", "yard=0.62,0.45,0.98,0.45,0.98,0.95,0.62,0.95",
                        "--save-video", str(annotated)], check=True)  # fmt: skip
        cap = cv2.VideoCapture(str(annotated))
        cap.set(cv2.CAP_PROP_POS_FRAMES, len(SHIFTS) - 1)
        ok, frame = cap.read()
        if not ok:
            raise SystemExit("could not read the annotated video")
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), frame, [cv2.IMWRITE_JPEG_QUALITY, 85])
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
