#!/usr/bin/env python3
"""NV12 for the RDK board: edgeseg's ``to_nv12`` against the RDK model zoo's way (OpenCV BGR -> I420, then a
numpy transpose copy of the U/V planes into a zeroed buffer), on letterboxed 640x640 inputs.

    python benchmarks/nv12_speed.py                          # coco128-seg images, 640x640
    python benchmarks/nv12_speed.py --images DIR --imgsz 640 --repeats 50 --cv-threads 1

Prints a markdown table of medians per image (all methods interleaved image by image, so load changes hit
them alike) and checks that every method writes the same bytes. Rows:

- zoo: ``cv2.cvtColor(BGR2YUV_I420)`` + ``uv.transpose().reshape()`` + ``np.zeros_like`` + two copies;
- edgeseg, whole frame: ``to_nv12(padded)``: one conversion, one ``cv2.merge`` interleave, no transpose copy;
- edgeseg, with the letterbox: ``to_nv12(padded, lb)`` (what the board backend runs): the same, converting only
  the content and filling the pad with its constant Y/U/V;
- for scale: ``to_input_tensor`` (the float RGB NCHW tensor ONNX Runtime takes).

Inputs: the coco128-seg images (mostly 640 wide, so the letterbox pads rows), a 16:9 camera frame (1280x720:
a quarter of the rows are pad) and a square one (no pad: the letterbox shortcut cannot help). Not a test:
run it on a quiet machine; on the board's A55 cores the ratios will differ.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from edgeseg.preprocess import letterbox, load_image, to_input_tensor, to_nv12  # noqa: E402
from edgeseg.sources import images_in  # noqa: E402

DEFAULT_IMAGES = REPO.parent / "shared" / "datasets" / "coco128-seg" / "images" / "train2017"


def zoo_nv12(padded_bgr: np.ndarray) -> np.ndarray:
    """The RDK model zoo's ``bgr2nv12`` after its resize (demos/.../YOLOv8_Seg.py), unchanged in substance."""
    height, width = padded_bgr.shape[:2]
    area = height * width
    yuv420p = cv2.cvtColor(padded_bgr, cv2.COLOR_BGR2YUV_I420).reshape((area * 3 // 2,))
    y = yuv420p[:area]
    uv_planar = yuv420p[area:].reshape((2, area // 4))
    uv_packed = uv_planar.transpose((1, 0)).reshape((area // 2,))
    nv12 = np.zeros_like(yuv420p)
    nv12[:area] = y
    nv12[area:] = uv_packed
    return nv12


METHODS = {
    "zoo (I420 + numpy transpose copy)": lambda padded, lb: zoo_nv12(padded),
    "edgeseg to_nv12, whole frame": lambda padded, lb: to_nv12(padded),
    "edgeseg to_nv12 with the letterbox (board backend)": lambda padded, lb: to_nv12(padded, lb),
    "for scale: to_input_tensor (float NCHW)": lambda padded, lb: to_input_tensor(padded),
}


def time_sets(sets: dict[str, list], repeats: int) -> dict[str, dict[str, float]]:
    """Median ms per image of every method on every input set, methods interleaved per image."""
    out: dict[str, dict[str, float]] = {}
    for set_name, inputs in sets.items():
        samples: dict[str, list[float]] = {m: [] for m in METHODS}
        for padded, lb in inputs:
            reference = zoo_nv12(padded)
            for name, fn in METHODS.items():
                if "nv12" in name and not np.array_equal(fn(padded, lb), reference):
                    raise SystemExit(f"{name}: different bytes from the zoo's conversion")
            for _ in range(repeats):
                for name, fn in METHODS.items():
                    t0 = time.perf_counter()
                    fn(padded, lb)
                    samples[name].append((time.perf_counter() - t0) * 1e3)
        out[set_name] = {m: statistics.median(v) for m, v in samples.items()}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="image directory (default: coco128-seg train2017)")
    ap.add_argument("--imgsz", type=int, default=640, help="network input size (default 640)")
    ap.add_argument("--max-images", type=int, default=64, help="images of --images to use (default 64)")
    ap.add_argument("--repeats", type=int, default=20, help="timed runs per image and method (default 20)")
    ap.add_argument("--cv-threads", type=int, default=None, help="cv2.setNumThreads (default: OpenCV's own)")
    args = ap.parse_args()
    if args.cv_threads is not None:
        cv2.setNumThreads(args.cv_threads)
    shape = (args.imgsz, args.imgsz)
    rng = np.random.default_rng(0)
    sets = {
        f"{args.images.name} ({min(args.max_images, len(images_in(args.images)))} images)": [
            letterbox(load_image(p), shape) for p in images_in(args.images)[: args.max_images]
        ],
        "16:9 frame 1280x720": [letterbox(rng.integers(0, 256, (720, 1280, 3), np.uint8), shape) for _ in range(8)],
        "square frame (no pad)": [letterbox(rng.integers(0, 256, (*shape, 3), np.uint8), shape) for _ in range(8)],
    }
    medians = time_sets(sets, args.repeats)
    zoo = next(iter(METHODS))
    print(
        f"BGR {args.imgsz}x{args.imgsz} letterboxed -> network input; median ms per image of {args.repeats} interleaved runs; "
        f"OpenCV {cv2.__version__}, {cv2.getNumThreads()} OpenCV thread(s)\n"
    )
    print("| method | " + " | ".join(sets) + " |")
    print("| --- |" + " ---: |" * len(sets))
    for name in METHODS:
        cells = [f"{medians[s][name]:.3f} ({medians[s][zoo] / medians[s][name]:.1f}x)" for s in sets]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\n(Nx) = the zoo's time / this method's time. All NV12 methods wrote identical bytes.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
